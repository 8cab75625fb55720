"""The class server: `make hub` / `make hub-stop` (python hub/hubctl.py start|stop|status|logins).

`start` (as root) brings up the course's JupyterHub on 127.0.0.1, idempotently:

1. the roster's accounts (hub/roster.csv: one instructor, the students) as real Linux
   users in the group of the class, homes mode 700;
2. the course's .venv made reachable for them: where a parent folder of the venv or of its
   base Python is closed to others (pyenv under /root, mode 700), the class group alone
   gets traverse-only access (an ACL entry `g:<group>:x`, never read or list);
3. the nbgrader exchange (nbgrader's default /usr/local/share/nbgrader/exchange);
4. the instructor's course: a copy of the course (nbgrader_config.py, source/, release/,
   grading/) in ~<instructor>/d2l-channels, made once and then left alone: the gradebook,
   submitted/, autograded/ and feedback/ live there;
5. per-role Jupyter configuration (nbgrader, which extensions, the formgrader iframe);
6. one random password per roster user (kept by root in the state folder; `logins` prints
   them again), then jupyterhub in the background; prints the URL and the log-ins.

`stop` stops the hub, the proxy and every user's server; nothing else is touched, so the
next `start` finds the gradebook, the submissions and the feedback where they were.

Settings (environment variables; the tests use their own):
  HUB_PORT      8000                                public port on 127.0.0.1
  HUB_STATE     /srv/d2l-channels-hub               hub database, cookie secret, log-ins, logs
  HUB_ROSTER    hub/roster.csv                      username,role,name  (role: instructor|student)
  HUB_HOMES     /home                               where new accounts get their home
  HUB_EXCHANGE  /usr/local/share/nbgrader/exchange  the nbgrader exchange
  HUB_GROUP     d2l-channels                        the class's Unix group
"""
import argparse
import csv
import grp
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COURSE_ID = "d2l-channels"
COURSE_FILES = ["nbgrader_config.py", "source", "release", "grading"]
USERNAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # also a DNS label: the user's subdomain
START_TIMEOUT = 120


def say(text):
    print(f"hub: {text}", flush=True)


def die(text):
    print(f"hub: {text}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def settings():
    env = os.environ
    state = Path(env.get("HUB_STATE", "/srv/d2l-channels-hub")).resolve()
    return {
        "repo": str(REPO),
        "state": str(state),
        "hub_dir": str(state / "hub"),
        "roster": str(Path(env.get("HUB_ROSTER", REPO / "hub" / "roster.csv")).resolve()),
        "homes": str(Path(env.get("HUB_HOMES", "/home")).resolve()),
        "exchange": str(Path(env.get("HUB_EXCHANGE", "/usr/local/share/nbgrader/exchange")).resolve()),
        "group": env.get("HUB_GROUP", "d2l-channels"),
        "port": int(env.get("HUB_PORT", "8000")),
        "venv_bin": str(REPO / ".venv" / "bin"),
        "proxy": str(REPO / "node_modules" / ".bin" / "configurable-http-proxy"),
        "config_dirs": {role: str(state / "config" / role) for role in ("instructor", "student")},
        "logins": str(state / "hub" / "logins.csv"),
    }


def read_roster(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(f)]
    bad = [r["username"] for r in rows if not USERNAME.match(r["username"]) or r["role"] not in {"instructor", "student"}]
    if bad:
        die(f"{path}: bad username or role (instructor|student) for {bad}")
    instructors = [r["username"] for r in rows if r["role"] == "instructor"]
    if len(instructors) != 1:
        die(f"{path}: exactly one instructor expected, found {instructors}")
    return rows


def instructor_of(rows):
    return next(r["username"] for r in rows if r["role"] == "instructor")


def run(*argv):
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        die(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


# --- 1. Accounts -----------------------------------------------------------------------------

def ensure_accounts(s, rows):
    try:
        grp.getgrnam(s["group"])
    except KeyError:
        run("groupadd", s["group"])
    Path(s["homes"]).mkdir(parents=True, exist_ok=True)
    for row in rows:
        name = row["username"]
        try:
            pwd.getpwnam(name)
        except KeyError:
            run("useradd", "--create-home", "--home-dir", os.path.join(s["homes"], name), "--shell", "/bin/bash",
                "--comment", row.get("name") or name, "--groups", s["group"], name)
            say(f"created user {name} ({row['role']})")
        else:
            if name not in grp.getgrnam(s["group"]).gr_mem:
                run("usermod", "--append", "--groups", s["group"], name)
        os.chmod(pwd.getpwnam(name).pw_dir, 0o700)  # nobody reads another user's files


# --- 2. The venv, reachable for the class ------------------------------------------------------

def python_paths(s):
    out = run(os.path.join(s["venv_bin"], "python"), "-c",
              "import os, sys; print(os.path.realpath(sys.executable)); print(sys.base_prefix); print(sys.prefix)")
    return [Path(p) for p in out.split()] + [REPO]


def open_for_group(s):
    """Traverse-only access to the parent folders of the venv and its base Python, for the class."""
    changed = []
    for target in python_paths(s):
        for folder in [target, *target.parents] if target.is_dir() else target.parents:
            mode = folder.stat().st_mode
            if mode & stat.S_IXOTH:
                continue
            if shutil.which("setfacl") is None:
                die(f"{folder} is closed to other users and setfacl is missing: apt-get install acl "
                    f"(or make the venv's Python readable for the group {s['group']})")
            run("setfacl", "-m", f"g:{s['group']}:x", str(folder))
            changed.append(str(folder))
    if changed:
        say(f"group {s['group']} may now traverse (not read) {', '.join(sorted(set(changed)))}")


def check_user_runs_venv(s, user):
    proc = subprocess.run(["runuser", "-u", user, "--", os.path.join(s["venv_bin"], "python"), "-c",
                           "import jupyterhub, nbgrader, torch"], capture_output=True, text=True, cwd="/")
    if proc.returncode != 0:
        die(f"user {user} cannot run the course's Python: {proc.stderr.strip()[-500:]}")


# --- 3. The exchange ----------------------------------------------------------------------------

def ensure_exchange(s):
    path = Path(s["exchange"])
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)  # what nbgrader's docs (and release_assignment) set: everyone may write
    for parent in path.parents:  # and reach it
        if not parent.stat().st_mode & stat.S_IXOTH:
            die(f"{parent} is closed to other users: choose another HUB_EXCHANGE")


# --- 4. The instructor's course -------------------------------------------------------------------

def ensure_course(s, instructor):
    user = pwd.getpwnam(instructor)
    course = Path(user.pw_dir) / COURSE_ID
    if not (course / "nbgrader_config.py").exists():
        course.mkdir(parents=True, exist_ok=True)
        for name in COURSE_FILES:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, course / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
            else:
                shutil.copy2(src, course / name)
        for path in [course, *course.rglob("*")]:
            os.lchown(path, user.pw_uid, user.pw_gid)
        say(f"course copied to {course} (the instructor's course folder from now on)")
    return course


# --- 5. Per-role Jupyter configuration ----------------------------------------------------------

# nbgrader #1870: JupyterHub >= 4.1 forbids iframes; with a subdomain per user 'self' is the user alone.
CSP = {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}


# No "get notified about Jupyter news?" pop-up (it would ask every user, and go online).
QUIET = {"@jupyterlab/apputils-extension:announcements": True}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o644)


def write_configs(s, course):
    exchange = json.dumps(s["exchange"])
    student, instructor = (Path(s["config_dirs"][r]) for r in ("student", "instructor"))
    write(student / "nbgrader_config.py",
          f"# Students of {COURSE_ID} on the class hub (written by hub/hubctl.py)\n"
          f"c = get_config()\nc.Exchange.root = {exchange}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n")
    write(student / "jupyter_server_config.json", json.dumps({"ServerApp": {
        "jpserver_extensions": {"nbgrader.server_extensions.formgrader": False,
                                "nbgrader.server_extensions.course_list": False},
        "tornado_settings": CSP}}, indent=1))
    write(student / "labconfig" / "page_config.json", json.dumps({"disabledExtensions": {
        "@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:create-assignment": True,
        "@jupyter/nbgrader:course-list": True, **QUIET}}, indent=1))
    write(instructor / "nbgrader_config.py",
          f"# The instructor of {COURSE_ID} on the class hub (written by hub/hubctl.py):\n"
          "# the formgrader and every nbgrader command work on the course copy in the home folder,\n"
          "# with its own nbgrader_config.py (sandboxed grading) and the class's exchange.\n"
          f"c = get_config()\nload_subconfig({json.dumps(str(course / 'nbgrader_config.py'))})\n"
          f"c.CourseDirectory.root = {json.dumps(str(course))}\nc.Exchange.root = {exchange}\n")
    write(instructor / "jupyter_server_config.json", json.dumps({"ServerApp": {"tornado_settings": CSP}}, indent=1))
    write(instructor / "labconfig" / "page_config.json", json.dumps({"disabledExtensions": QUIET}, indent=1))
    for folder in [Path(s["state"]) / "config", student, instructor, student / "labconfig", instructor / "labconfig"]:
        os.chmod(folder, 0o755)


# --- 6. Log-ins and the hub process -------------------------------------------------------------------

def ensure_logins(s, rows):
    path = Path(s["logins"])
    known = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            known = {r["username"]: r["password"] for r in csv.DictReader(f)}
    logins = {r["username"]: known.get(r["username"]) or secrets.token_urlsafe(9) for r in rows}
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["username", "password"])
        writer.writerows(logins.items())
    return logins


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hub_pid(s):
    try:
        pid = int((Path(s["hub_dir"]) / "jupyterhub.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def hub_url(s):
    return f"http://localhost:{s['port']}/"


def wait_until_up(s, proc, log):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            die(f"jupyterhub exited ({proc.returncode}); end of {log}:\n{Path(log).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{s['port']}/hub/api", timeout=5) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    die(f"jupyterhub did not answer within {START_TIMEOUT} s; see {log}")


def print_logins(s, rows, logins):
    print(f"\nThe class hub is up: {hub_url(s)}   (loopback only; *.localhost is this machine)")
    print("Log in with one of these accounts (passwords: `make hub-logins`, kept in "
          f"{s['logins']}, root only):")
    for row in rows:
        print(f"  {row['role']:<10} {row['username']:<12} {logins[row['username']]}")
    instructor = instructor_of(rows)
    print(f"Formgrader (instructor): http://{instructor}.localhost:{s['port']}/user/{instructor}/formgrader  "
          "or Nbgrader > Formgrader in JupyterLab")
    print("Stop it with `make hub-stop` (nothing is lost; `make hub` starts it again).", flush=True)


def start(s, foreground=False):
    if os.geteuid() != 0:
        die("run as root: the hub creates the class's Linux users and starts their servers as them")
    for tool in [Path(s["venv_bin"]) / "jupyterhub", Path(s["venv_bin"]) / "jupyterhub-singleuser", Path(s["proxy"])]:
        if not tool.exists():
            die(f"{tool} is missing: run `make setup` and `npm ci` (make hub does both)")
    rows = read_roster(s["roster"])
    hub_dir = Path(s["hub_dir"])
    hub_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(s["state"], 0o755)
    os.chmod(hub_dir, 0o700)
    if hub_pid(s):
        say(f"already running (pid {hub_pid(s)})")
        print_logins(s, rows, ensure_logins(s, rows))
        return
    ensure_accounts(s, rows)
    open_for_group(s)
    check_user_runs_venv(s, rows[0]["username"])
    ensure_exchange(s)
    course = ensure_course(s, instructor_of(rows))
    s["course"] = str(course)
    write_configs(s, course)
    logins = ensure_logins(s, rows)
    s["hub_port"], s["proxy_api_port"] = free_port(), free_port()
    settings_file = hub_dir / "settings.json"
    settings_file.write_text(json.dumps(s, indent=1))
    env = dict(os.environ, HUB_SETTINGS=str(settings_file),
               PATH=f"{s['venv_bin']}:{Path(s['proxy']).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    argv = [str(Path(s["venv_bin"]) / "jupyterhub"), "-f", str(REPO / "hub" / "jupyterhub_config.py")]
    if foreground:
        os.execve(argv[0], argv, env)
    log = hub_dir / "jupyterhub.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=hub_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (hub_dir / "jupyterhub.pid").write_text(str(proc.pid))
    wait_until_up(s, proc, log)
    say(f"jupyterhub running (pid {proc.pid}, log {log})")
    print_logins(s, rows, logins)


def stop(s):
    pid = hub_pid(s)
    hub_dir = Path(s["hub_dir"])
    if pid:
        os.kill(pid, signal.SIGTERM)  # JupyterHub stops the users' servers and its proxy
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.3)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        say(f"jupyterhub (pid {pid}) stopped")
    else:
        say("not running")
    # Leftovers of an unclean exit: the proxy, and servers of the roster's users started by the hub.
    try:
        proxy = int((hub_dir / "proxy.pid").read_text())
        if _alive(proxy):
            os.kill(proxy, signal.SIGTERM)
    except (OSError, ValueError):
        pass
    if Path(s["roster"]).exists():
        uids = set()
        for row in read_roster(s["roster"]):
            try:
                uids.add(pwd.getpwnam(row["username"]).pw_uid)
            except KeyError:
                pass
        for proc_dir in Path("/proc").glob("[0-9]*"):
            try:
                if proc_dir.stat().st_uid in uids and b"jupyterhub-singleuser" in (proc_dir / "cmdline").read_bytes():
                    os.kill(int(proc_dir.name), signal.SIGTERM)
            except (OSError, ValueError):
                pass
    (hub_dir / "jupyterhub.pid").unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours counts as gone
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "restart", "status", "logins"])
    parser.add_argument("--foreground", action="store_true", help="start: run jupyterhub in this terminal")
    args = parser.parse_args(argv)
    s = settings()
    if args.command in {"stop", "restart"}:
        stop(s)
    if args.command in {"start", "restart"}:
        start(s, foreground=args.foreground)
    elif args.command == "status":
        pid = hub_pid(s)
        print(f"running (pid {pid}): {hub_url(s)}" if pid else "not running")
        return 0 if pid else 3
    elif args.command == "logins":
        rows = read_roster(s["roster"])
        print_logins(s, rows, ensure_logins(s, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

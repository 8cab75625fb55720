"""The jail every process of grading runs in: bubblewrap, rlimits, no network. One policy.

Every jail is built by `sandbox_argv`, so the policy lives here once:

- the notebook's kernel during autograde and Validate (kernelspec `grading-sandbox`,
  selected in nbgrader_config.py; this file is its launcher);
- the student's child and the verifier of out-of-kernel verification, and the warm jails
  that fork them (grading/jail/host.py, grading/jail/zygote.py).

What the jail gives the process (see `sandbox_argv`):
- new pid, network, ipc, uts and cgroup namespaces: no network at all (not even loopback
  to the host), no view of other processes, everything killed when its launcher dies;
- a file system made of read-only binds: /usr, the Python of the venv, and a working
  directory that holds ONLY the instructor's helper files of the assignment (checks.py,
  policy.py, testkit.py): never the student's own files (a shipped torch.py or checks.py
  would shadow imports), never source/ notebooks, gradebook.db or other students' folders;
- write access only to size-limited tmpfs scratch space (/tmp and the working directory)
  and, for the kernel, to the private directory of its IPC sockets;
- an unprivileged uid without capabilities and with no_new_privs: as root, a fresh uid
  per sandbox (`fresh_uid`); otherwise nobody in a user namespace;
- rlimits: address space (c.Grading.memory_bytes), CPU time (c.Grading.cpu_seconds),
  processes, file size, open files, no core dumps;
- the machine's GPU when it has one (grading/jail/gpu.py), and nothing else of it.

The kernel talks to nbgrader over IPC sockets (TCP cannot cross the network namespace);
nbgrader_config.py puts them in a private directory (`ipc_directory`). When the kernel
runs a notebook that is not being graded (Validate in JupyterLab), its working directory
holds the notebook folder's own helper files instead, whatever the folder is called.

Without a working bubblewrap (macOS, containers without user namespaces) nothing is
sandboxed: the kernel launcher refuses with the reason from `sandbox_status`, unless the
instructor set c.Grading.allow_unsandboxed (`python -m grading grade --allow-unsandboxed`).

    python -m grading.jail.sandbox --install     install the kernelspec into this venv (make setup)
    python -m grading.jail.sandbox --status      say whether grading can be sandboxed here

This module is stdlib-only: its copy in the kernelspec folder (with gpu.py and env.py)
runs as a plain script (`python -I .../launcher.py CONNECTION_FILE`) when jupyter_client
starts the kernel, with nothing of the course on sys.path, so a student's files in the
working directory (where nbclient starts it) can never be imported by it. Its settings
come from the environment, in one variable (grading/jail/env.py).
"""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from grading.jail import gpu as _gpu
    from grading.jail.env import jail_settings
except ImportError:  # the kernelspec's copy (launcher.py): gpu.py and env.py lie beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gpu as _gpu
    from env import jail_settings

KERNEL_NAME = "grading-sandbox"
#: The uid inside a user namespace (unprivileged graders): nobody.
NOBODY = 65534
#: As root, every sandbox gets a uid of its own from here on: no account, no files, and
#: RLIMIT_NPROC (counted per real uid) then bounds each sandbox alone, so one
#: submission's fork bomb cannot starve the sandbox of the next one graded in parallel.
SANDBOX_UIDS = 2_000_000_000
#: ... up to here: pids stay below Linux's PID_MAX_LIMIT (2**22), 64 uids per launcher pid,
#: so the range ends below 2**32 - 1 (uid_t's "no uid") however high pid_max is set.
SANDBOX_UIDS_END = SANDBOX_UIDS + (2**22 << 6)

GiB, MiB = 2**30, 2**20
#: Per-process limits besides memory and CPU time (c.Grading.memory_bytes, cpu_seconds: the
#: jail's settings). torch alone maps ~3.3 GB of address space; the default 6 GiB leaves
#: room for the tensors of a notebook while two parallel graders still fit in 16 GB.
LIMITS = {"fsize": 256 * MiB, "nofile": 1024, "core": 0}
#: Processes and threads a sandbox may run (as root; unprivileged, on top of what the
#: grader's uid already runs): room for ipykernel's and torch's threads, not a fork bomb.
EXTRA_TASKS = 256
SCRATCH_SIZE = {"/tmp": 512 * MiB, "workdir": 64 * MiB}
#: Where the working directory appears inside the sandbox.
INSIDE_ROOT = "/sandbox"
#: Wall-clock limit of one sandboxed kernel (a notebook's whole run).
KERNEL_WALL_SECONDS = 900

# Files nbgrader does not copy from source/<assignment>/ either (CourseDirectory.ignore).
_IGNORED = re.compile(r"(^\.|^__pycache__$|^feedback$|\.pyc$|\.ipynb$)")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


# --- Can we sandbox? ---------------------------------------------------------------------

_STATUS = None


def sandbox_status():
    """(ok, reason): can student code be jailed on this machine? Probed once per process."""
    global _STATUS
    if _STATUS is None:
        _STATUS = _probe()
    return _STATUS


def _probe():
    if not sys.platform.startswith("linux"):
        return False, f"bubblewrap sandboxes need Linux; this is {sys.platform}"
    tools = ["bwrap", "prlimit"] + (["setpriv"] if _as_root() else [])
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        return False, f"{', '.join(missing)} not found on PATH (Debian/Ubuntu: apt-get install bubblewrap util-linux)"
    try:
        proc = subprocess.run(sandbox_argv(["true"]), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bubblewrap could not be started: {e}"
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        if _gpu.gpu_policy():  # the GPU's binds broke the jail: grade on the CPU instead, and say so
            _gpu._gpu_off(f"bubblewrap could not pass the GPU through ({detail})")
            return _probe()
        return False, f"bubblewrap does not work here ({detail}); are user namespaces disabled?"
    how = "as a fresh unprivileged uid" if _as_root() else "in a user namespace"
    return True, f"bubblewrap {how}, no network, read-only system, rlimits; {_gpu.gpu_summary()}"


def unsandboxed_allowed():
    """True when the instructor explicitly allowed grading without a sandbox (c.Grading.allow_unsandboxed)."""
    return jail_settings()["allow_unsandboxed"]


def refusal(reason):
    """The message printed when grading would run student code unjailed."""
    return (f"REFUSING TO GRADE: no sandbox for students' code ({reason}). Their code would run with "
            f"your permissions. Install bubblewrap (apt-get install bubblewrap), or for code you "
            f"trust only, set c.Grading.allow_unsandboxed = True (python -m grading grade --allow-unsandboxed).")


def refuse_unless_sandboxed():
    """Stop a grading command here when it would run students' code unjailed (exit status 1).

    With c.Grading.allow_unsandboxed it only warns, loudly.
    """
    ok, reason = sandbox_status()
    if ok:
        return
    if unsandboxed_allowed():
        print(f"WARNING: GRADING WITHOUT A SANDBOX ({reason}): students' code runs with your permissions.",
              file=sys.stderr, flush=True)
        return
    print(refusal(reason), file=sys.stderr, flush=True)
    raise SystemExit(1)


def _as_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


# --- The one policy ---------------------------------------------------------------------------

def sandbox_argv(cmd, *, workdir=None, helper_files=(), ro_binds=(), rw_binds=(), data_binds=(), env=None,
                 uid=None, gpu="auto"):
    """The argv that runs `cmd` jailed: prlimit, bwrap, and (as root) setpriv to a fresh uid.

    workdir      the directory `cmd` starts in, inside the sandbox (a fresh small tmpfs)
    helper_files [(host file, name)]: bound read-only into workdir (the assignment's checks.py)
    ro_binds     [(host path, path inside)], read-only
    rw_binds     [host directory], writable, same path inside (the kernel's IPC sockets)
    data_binds   [(fd, path inside)]: a read-only file with the contents read from fd
                 (the caller passes these fds to the child, e.g. Popen(pass_fds=...))
    env          extra environment variables; everything else is cleared
    uid          as root: the uid to run as (default: `fresh_uid()`)
    gpu          a `GpuPolicy` to pass the GPU through, None for none; "auto": `gpu.gpu_policy()`
                 (this machine's NVIDIA GPU unless the instructor turned it off)
    """
    gpu = _gpu.gpu_policy() if isinstance(gpu, str) else gpu  # "auto"
    root = _as_root()
    if root:
        uid = uid or fresh_uid()
        limits = dict(process_limits(gpu), nproc=EXTRA_TASKS)
    else:
        limits = dict(process_limits(gpu), nproc=_tasks_of(os.getuid()) + EXTRA_TASKS)
    argv = ["prlimit", *(f"--{k}={v}" for k, v in limits.items()), "--", "bwrap"]
    argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if root:
        # bwrap runs privileged (it may have to: here the venv's base Python lives under
        # /root, mode 700), then setpriv drops to a fresh unprivileged uid with no
        # capabilities. A user namespace would instead map the sandbox's uid back to root
        # outside, where RLIMIT_NPROC is not enforced; this way it is, per sandbox, and
        # whatever escapes the namespaces is still a uid that owns nothing.
        argv += ["--cap-drop", "ALL", *(a for cap in ("SETUID", "SETGID", "SETPCAP")
                                         for a in ("--cap-add", f"CAP_{cap}"))]
    else:
        # Unprivileged: a user namespace is the only way in; nested ones are refused.
        argv += ["--unshare-user", *_if_supported("--disable-userns"), "--uid", str(NOBODY), "--gid", str(NOBODY)]

    home = "/tmp"
    base_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "USER": "nobody", "LOGNAME": "nobody",
        "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/matplotlib",
        "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "CUDA_VISIBLE_DEVICES": "",
        # One thread each: graders run in parallel, and timing checks want a quiet core.
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    }
    if gpu:  # the GPU's environment replaces CUDA_VISIBLE_DEVICES="" (see gpu_policy)
        base_env.pop("CUDA_VISIBLE_DEVICES")
        base_env.update(gpu.env)
    argv.append("--clearenv")
    for key, value in {**base_env, **(env or {})}.items():
        argv += ["--setenv", key, str(value)]

    made = {"/", "/tmp", "/usr", "/proc", "/dev"}
    argv += _system_binds(made)
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += gpu_argv(gpu, made)  # nothing without a GPU
    argv += ["--perms", "1777", *_if_supported("--size", SCRATCH_SIZE["/tmp"]), "--tmpfs", "/tmp"]
    binds = [(src, dest, "--ro-bind") for src, dest in [*_python_binds(), *ro_binds, *(gpu.ro_binds if gpu else ())]]
    binds += [(path, path, "--bind") for path in rw_binds]
    for src, dest, how in sorted(binds, key=lambda b: b[1].count("/")):
        argv += _parents(dest, made) + [how, src, dest]
    for fd, dest in data_binds:
        argv += _parents(dest, made) + ["--perms", "0444", "--ro-bind-data", str(fd), dest]
    if workdir:
        argv += _parents(workdir, made)
        made.add(workdir)
        argv += ["--perms", "1777", *_if_supported("--size", SCRATCH_SIZE["workdir"]), "--tmpfs", workdir]
        for src, name in helper_files:
            argv += _parents(f"{workdir}/{name}", made) + ["--ro-bind", str(src), f"{workdir}/{name}"]
        argv += ["--chdir", workdir]
    if root:
        argv += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                 "--inh-caps=-all", "--bounding-set=-all", "--"]
    return argv + list(cmd)


_BWRAP_HELP = None


def _if_supported(flag, *values):
    """[flag, *values] if this bubblewrap knows the flag (--disable-userns and --size came in 0.7-0.8)."""
    global _BWRAP_HELP
    if _BWRAP_HELP is None:
        try:
            _BWRAP_HELP = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            _BWRAP_HELP = ""
    return [flag, *map(str, values)] if re.search(rf"^\s*{flag}\b", _BWRAP_HELP, re.M) else []


def _system_binds(made):
    """Read-only /usr plus the /bin, /lib* of merged-/usr or classic layouts, and ld.so's cache."""
    argv = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(path):
            argv += _parents(path, made) + ["--ro-bind", path, path]
    return argv


def _python_binds():
    """The venv and the interpreter it was made from, wherever they live (outside /usr)."""
    paths = {os.path.abspath(sys.prefix), os.path.abspath(sys.base_prefix),
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    keep = sorted(p for p in paths if not (p + "/").startswith("/usr/"))
    # A prefix inside another one is already visible.
    keep = [p for p in keep if not any(p != q and p.startswith(q + "/") for q in keep)]
    return [(p, p) for p in keep]


def _parents(path, made):
    """bwrap --dir for each missing parent of `path`, world-traversable (as root, bwrap
    would create them 0700 and the sandbox's uid could not reach the bind below)."""
    argv = []
    parts = Path(path).parent.parts
    for i in range(2, len(parts) + 1):
        parent = "/" + "/".join(parts[1:i])
        if parent not in made:
            made.add(parent)
            argv += ["--perms", "0755", "--dir", parent]
    made.add(path)
    return argv


_UIDS_TAKEN = 0


def fresh_uid():
    """A uid no other live sandbox has: from this process's pid and a counter of its own."""
    global _UIDS_TAKEN
    _UIDS_TAKEN += 1
    return SANDBOX_UIDS + (os.getpid() << 6) + _UIDS_TAKEN % 64


def _tasks_of(uid):
    """How many tasks (threads included) the real uid runs now: RLIMIT_NPROC counts them."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            total += int(fields.get("Threads", "1"))
    return total


def gpu_argv(gpu, made):
    """The bwrap arguments that pass `gpu`'s devices through (after --proc and --dev); [] for None.
    (Its driver folders are bound with the other read-only binds, after /tmp's tmpfs.)"""
    if not gpu:
        return []
    argv = []
    for src, dest in gpu.nodes:
        argv += _parents(dest, made) + ["--dev-bind", src, dest]
    for src, dest in gpu.proc:  # inside the fresh /proc: its parents exist there already
        made.add(dest)
        argv += ["--ro-bind", src, dest]
    return argv


def process_limits(gpu=None):
    """The rlimits of a jailed process: memory and CPU time from the jail's settings, LIMITS, and
    RLIMIT_DATA for RLIMIT_AS when the GPU is passed."""
    settings = jail_settings()
    limits = dict(LIMITS, cpu=settings["cpu"])
    limits["data" if gpu else "as"] = settings["memory"]
    return limits


def helper_files(course_root, assignment):
    """[(path, name)]: the instructor's non-notebook files of source/<assignment>/ (checks.py).

    These, and nothing of the student's, make up the sandbox's working directory: the
    same files nbgrader copies over the submission before grading.
    """
    if not (assignment and _NAME.match(assignment) and course_root and os.path.isabs(course_root)):
        return []  # never a path relative to the kernel's directory: that holds the student's files
    folder = Path(course_root) / "source" / assignment
    if not folder.is_dir():
        return []
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(_IGNORED.search(part) for part in rel.parts):
            files.append((path, rel.as_posix()))
    return files


def own_files(folder, limit=MiB):
    """[(path, name)]: the regular files beside a notebook that is not being graded (Validate):
    the helper modules it imports, whatever the folder is called. No link, no notebook, small."""
    files = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _IGNORED.search(entry.name) or not _NAME.match(entry.name):
            continue
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and st.st_size <= limit:
            files.append((Path(entry.path), entry.name))
    return files


def apply_limits():
    """Set LIMITS on this process (the unsandboxed fallback; prlimit does it otherwise)."""
    import resource
    names = {"as": "RLIMIT_AS", "cpu": "RLIMIT_CPU", "fsize": "RLIMIT_FSIZE", "nofile": "RLIMIT_NOFILE",
             "core": "RLIMIT_CORE", "data": "RLIMIT_DATA"}
    for key, value in process_limits(_gpu.gpu_policy()).items():
        which = getattr(resource, names[key], None)
        if which is not None:
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                pass  # macOS refuses some of them


# --- nbgrader's side: the kernelspec and the IPC directory --------------------------------------

def kernelspec():
    """The kernel.json of the sandboxed kernel: a copy of this file, run isolated (-I) by the venv's Python.

    A copy in the kernelspec folder, not a path into a course: the kernel must not start
    whatever version of this file some other copy of the course holds.
    """
    return {
        "argv": [sys.executable, "-I", "{resource_dir}/launcher.py", "{connection_file}"],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
        # bwrap puts the kernel in its own session: a SIGINT to the process group would not
        # reach it, an interrupt_request message does.
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }


def _kernelspec_files():
    here = Path(__file__).parent
    return {"kernel.json": json.dumps(kernelspec(), indent=1) + "\n", "launcher.py": Path(__file__).read_text(),
            "gpu.py": (here / "gpu.py").read_text(), "env.py": (here / "env.py").read_text()}


def install_kernelspec(prefix=sys.prefix):
    """Write <prefix>/share/jupyter/kernels/grading-sandbox/ (each file atomically); return kernel.json's path."""
    return _write_kernelspec(Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME)


def _write_kernelspec(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in _kernelspec_files().items():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / name)
    return folder / "kernel.json"


def ensure_kernelspec(prefix=sys.prefix):
    """Make the kernelspec current: in the venv (`prefix`), and in the user's Jupyter data
    folder if a copy is there (Jupyter looks there first) or the venv is read-only.
    Return the path of a current kernel.json.
    """
    folders = [Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME]
    try:
        from jupyter_core.paths import jupyter_data_dir
        folders.append(Path(jupyter_data_dir()) / "kernels" / KERNEL_NAME)
    except ImportError:
        pass
    wanted, current, failure = _kernelspec_files(), [], None
    for i, folder in enumerate(folders):
        if i and current and not (folder / "kernel.json").exists():
            continue  # no user copy to shadow the venv's
        try:
            if not all((folder / name).is_file() and (folder / name).read_text() == text
                       for name, text in wanted.items()):
                _write_kernelspec(folder)
            current.append(folder / "kernel.json")
        except OSError as error:
            failure = error
    if not current:
        raise failure
    return current[0]


_IPC_DIR = None


def ipc_directory():
    """A private directory for this process's kernel IPC sockets (made once, removed at exit).

    It must be absolute (jupyter_client would otherwise make socket paths relative to the
    kernel's working directory) and private to this grader: parallel graders never
    collide, and no other kernel's connection file is exposed. As root, the launcher
    hands it to each kernel's uid in turn (the kernel creates its sockets in it).
    """
    global _IPC_DIR
    if _IPC_DIR is None:
        import atexit
        _IPC_DIR = tempfile.mkdtemp(prefix="grading-ipc-")
        atexit.register(shutil.rmtree, _IPC_DIR, True)
    return _IPC_DIR


# --- The kernel launcher (what the kernelspec runs) ------------------------------------------

def _fail(message, code=3):
    print(f"[{KERNEL_NAME}] {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _kernel_argv(connection_file, extra):
    return [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file, *extra]


def launch_kernel(connection_file, extra):
    """Run ipykernel jailed for the notebook in the current directory; return its exit code."""
    ok, reason = sandbox_status()
    if not ok:
        if not unsandboxed_allowed():
            _fail(refusal(reason))
        print(f"[{KERNEL_NAME}] WARNING: NOT SANDBOXED ({reason}); c.Grading.allow_unsandboxed allows it.",
              file=sys.stderr, flush=True)
        apply_limits()
        os.execv(sys.executable, _kernel_argv(connection_file, extra))

    with open(connection_file) as f:
        info = json.load(f)
    if info.get("transport") != "ipc" or not os.path.isabs(info.get("ip", "")):
        _fail("this kernel needs c.KernelManager.transport = 'ipc' and an absolute c.KernelManager.ip "
              "(TCP cannot leave the sandbox's network namespace): see nbgrader_config.py")
    sockets = os.path.dirname(info["ip"])
    uid = fresh_uid() if _as_root() else None
    _prepare_ipc_directory(sockets, uid)

    # nbclient starts us in the notebook's folder. Grading (autograded/<student>/<assignment> of
    # the course): the instructor's helper files, never the student's. Anything else (Validate
    # in JupyterLab, whatever the folder is called): the folder's own helper files.
    here, course_root = os.getcwd(), jail_settings()["course"]
    assignment = os.path.basename(here)
    graded = bool(course_root) and os.path.realpath(here).startswith(
        os.path.join(os.path.realpath(course_root), "autograded") + os.sep)
    helpers = helper_files(course_root, assignment) if graded else own_files(here)
    workdir = f"{INSIDE_ROOT}/{assignment if _NAME.match(assignment) else 'notebook'}"
    inside_connection = "/run/kernel/connection.json"
    read_fd, write_fd = os.pipe()
    os.write(write_fd, json.dumps(info).encode())  # a few hundred bytes: fits the pipe buffer
    os.close(write_fd)
    argv = sandbox_argv(_kernel_argv(inside_connection, extra), workdir=workdir,
                        helper_files=helpers, rw_binds=[sockets], data_binds=[(read_fd, inside_connection)],
                        uid=uid)
    # ipykernel's banner would land in the grader's log; its stderr stays for crashes.
    return _supervise(subprocess.Popen(argv, pass_fds=[read_fd], stdout=subprocess.DEVNULL), read_fd)


def _prepare_ipc_directory(path, uid):
    """The socket directory is bound writable into the jail: it must be a private one.

    Whatever an earlier kernel left in it besides sockets goes (a symlink named like the
    next kernel's socket, say); as root the directory then belongs to this kernel's uid.
    """
    st = os.lstat(path)
    if _as_root():
        ours = st.st_uid == 0 or SANDBOX_UIDS <= st.st_uid < SANDBOX_UIDS_END
    else:
        ours = st.st_uid == os.getuid()
    if not (os.path.isdir(path) and not os.path.islink(path) and ours and not st.st_mode & 0o077):
        _fail(f"the IPC directory {path} must be a private directory (mode 700) of the grader: "
              "use grading.jail.sandbox.ipc_directory() as nbgrader_config.py does")
    for entry in os.scandir(path):
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif not stat.S_ISSOCK(mode):
            os.unlink(entry.path)
    if uid is not None:
        os.chown(path, uid, uid)


def _supervise(proc, read_fd):
    """Wait for the jailed kernel; kill it on SIGTERM, when our parent dies or after the wall limit."""
    os.close(read_fd)

    def stop(*_):
        proc.kill()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts arrive as messages
    parent = os.getppid()
    deadline = time.monotonic() + KERNEL_WALL_SECONDS
    while True:
        try:
            return proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent or time.monotonic() > deadline:
            stop()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--install"]:
        print(install_kernelspec())
    elif argv[:1] == ["--status"]:
        ok, reason = sandbox_status()
        print(("sandbox: " if ok else "NO SANDBOX: ") + reason)
        return 0 if ok else 1
    elif argv and not argv[0].startswith("-"):
        return launch_kernel(argv[0], argv[1:])
    else:
        print(__doc__.split("\n\n")[-2], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

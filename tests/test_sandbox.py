"""The grading sandbox (grading/jail/sandbox.py): what a student's kernel can and cannot do.

Kernels are started the way nbgrader starts them: through the `grading-sandbox`
kernelspec, over IPC sockets, with the working directory autograded/<student>/<assignment>.
A small fake course gives them things to steal: the instructor's notebook, a gradebook,
another student's folder, and the student's own shipped torch.py and checks.py.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import nbformat
import pytest
from jupyter_client import KernelManager

from conftest import ASSIGNMENT, ROOT, VENV_BIN, add_config, nbgrader, require, venv_env
from expect import MAX_WITH_EXTRA
from grading.jail import sandbox
from grading.jail.env import JAIL_ENV
from grading.nbsteps.execute import MAX_OUTPUT_BYTES
from grading.settings import Grading

pytestmark = pytest.mark.timeout(600)
SECRET = "hidden-test-secret-4711"


def need_bwrap():
    require(shutil.which("bwrap"), "bubblewrap (bwrap) is not installed")


def fake_course(root):
    """source/fake with the instructor's checks.py, a gradebook, and two students' folders."""
    (root / "source" / "fake").mkdir(parents=True)
    (root / "source" / "fake" / "checks.py").write_text('WHO = "instructor"\n')
    (root / "source" / "fake" / "fake.ipynb").write_text(json.dumps({"hidden": SECRET}))
    (root / "gradebook.db").write_text(SECRET)
    alice = root / "autograded" / "alice" / "fake"
    alice.mkdir(parents=True)
    (alice / "checks.py").write_text('WHO = "student"\n')
    (alice / "torch.py").write_text('raise ImportError("the student\'s torch.py shadowed torch")\n')
    (alice / "notes.txt").write_text(SECRET)
    (root / "autograded" / "bob" / "fake").mkdir(parents=True)
    (root / "autograded" / "bob" / "fake" / "answers.txt").write_text(SECRET)
    return root


class Kernel:
    """A kernel started like nbgrader starts it; `run(code)` returns its stdout, `value(expr)` a JSON value."""

    def __init__(self, course, cwd, kernel_name=sandbox.KERNEL_NAME, settings=None, **env):
        sandbox.ensure_kernelspec()
        self.km = KernelManager(kernel_name=kernel_name, transport="ipc",
                                ip=os.path.join(sandbox.ipc_directory(), "kernel"))
        # what nbgrader_config.py hands the kernel launcher: the jail's settings, one variable
        env = dict(venv_env(), **(settings or Grading()).environ(course), **env)
        self.km.start_kernel(cwd=str(cwd), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code, timeout=120):
        out, errors = [], []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                errors.append(f'{msg["content"]["ename"]}: {msg["content"]["evalue"]}')

        self.kc.execute_interactive(textwrap.dedent(code), output_hook=hook, timeout=timeout)
        assert not errors, errors
        return "".join(out)

    def value(self, code, timeout=120):
        """Run `code`, whose last line is an expression; return that expression's value via JSON."""
        *body, last = textwrap.dedent(code).strip().splitlines()
        return json.loads(self.run("\n".join(body + [f"import json as _j; print(_j.dumps({last}))"]), timeout))

    def shutdown(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    """One sandboxed kernel for alice in the fake course (starting one costs a second or two)."""
    need_bwrap()
    course = fake_course(tmp_path_factory.mktemp("jail") / "course")
    kernel = Kernel(course, course / "autograded" / "alice" / "fake", INSTRUCTOR_SECRET=SECRET)
    kernel.course = course
    yield kernel
    kernel.shutdown()


@pytest.mark.fast
def test_status_reports_a_working_sandbox():
    need_bwrap()
    ok, reason = sandbox.sandbox_status()
    assert ok, reason


def test_working_directory_holds_only_the_instructors_helper_files(jail):
    assert jail.value("import os\nsorted(os.listdir('.'))") == ["checks.py"]
    assert jail.value("import checks\nchecks.WHO") == "instructor"
    # The student's torch.py was not importable: this is the venv's torch.
    torch_file = jail.value("import torch\ntorch.__file__")
    assert torch_file.startswith(str(VENV_BIN.parent)), torch_file


def test_kernel_cannot_read_the_course_or_other_students(jail):
    course = jail.course
    secrets = [course / "source" / "fake" / "fake.ipynb", course / "gradebook.db",
               course / "autograded" / "bob" / "fake" / "answers.txt",
               course / "autograded" / "alice" / "fake" / "notes.txt",
               ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"]
    assert all(path.read_text() for path in secrets[:4]) and secrets[4].is_file()  # they exist out here
    readable = jail.value(f"""
        import os
        readable = []
        for path in {[str(p) for p in secrets]!r} + ['{course}', '/etc/passwd', '/etc/shadow']:
            try:
                with open(path) if os.path.isfile(path) else os.scandir(path):
                    readable.append(path)
            except OSError:
                pass
        readable""")
    assert readable == []
    # The repository's folder only exists as the way to its venv, if that lies inside it.
    seen = jail.value(f"import os\nsorted(os.listdir('{ROOT}')) if os.path.isdir('{ROOT}') else []")
    assert set(seen) <= {VENV_BIN.parent.name}
    assert jail.value("import os\nos.environ.get('INSTRUCTOR_SECRET')") is None


def test_kernel_has_no_network(jail):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(2)
    port = server.getsockname()[1]
    abstract = f"\0channels-test-{uuid.uuid4()}"
    unix_server = socket.socket(socket.AF_UNIX)
    unix_server.bind(abstract)
    unix_server.listen(1)
    try:
        reached = jail.value(f"""
            import socket
            reached = []
            for family, address in [(socket.AF_INET, ('127.0.0.1', {port})), (socket.AF_INET, ('1.1.1.1', 53)),
                                    (socket.AF_UNIX, {abstract!r})]:
                s = socket.socket(family)
                s.settimeout(2)
                try:
                    s.connect(address)
                    reached.append(repr(address))
                except OSError:
                    pass
            try:
                socket.getaddrinfo('pypi.org', 443)
                reached.append('dns')
            except OSError:
                pass
            reached""")
        assert reached == []
        with pytest.raises(socket.timeout):
            server.accept()
    finally:
        server.close()
        unix_server.close()


def test_kernel_writes_only_to_its_scratch_space(jail):
    marker = f"channels-sandbox-{uuid.uuid4()}"
    site = next(VENV_BIN.parent.glob("lib/python3*/site-packages"))
    forbidden = [f"{site}/{marker}.py", f"{jail.course}/gradebook.db", f"/usr/{marker}", "checks.py"]
    scratch = [f"/tmp/{marker}", f"{marker}.txt"]
    written = jail.value(f"""
        written = []
        for path in {forbidden + scratch!r}:
            try:
                with open(path, 'a') as f:
                    f.write('x')
                written.append(path)
            except OSError:
                pass
        written""")
    assert written == scratch
    # Nothing of it reached the host.
    assert not (site / f"{marker}.py").exists() and not os.path.exists(f"/tmp/{marker}")
    assert not list(jail.course.rglob(f"{marker}*"))
    assert (jail.course / "gradebook.db").read_text() == SECRET


def test_kernel_runs_unprivileged_under_limits(jail):
    facts = jail.value("""
        import os, re, resource
        status = open('/proc/self/status').read()
        field = lambda name: re.search(name + r':\\s+(\\S+)', status).group(1)
        facts = [os.getuid(), os.getgid(), field('CapEff'), field('NoNewPrivs'),
                 resource.getrlimit(resource.RLIMIT_AS)[0], resource.getrlimit(resource.RLIMIT_CPU)[0],
                 resource.getrlimit(resource.RLIMIT_NPROC)[0]]
        facts""")
    uid, gid, caps, nnp, address_space, cpu, nproc = facts
    # As root: a fresh uid of its own; otherwise nobody inside a user namespace.
    expected = sandbox.SANDBOX_UIDS <= uid < sandbox.SANDBOX_UIDS_END if os.geteuid() == 0 else uid == sandbox.NOBODY
    assert expected and gid == uid and (caps, nnp) == ("0000000000000000", "1")
    assert address_space == Grading().memory_bytes and cpu == Grading().cpu_seconds
    assert 0 < nproc < 100_000


def test_memory_hog_fails_inside_and_the_kernel_survives(jail):
    # 12 GiB of address space: without the limit this mapping would simply succeed.
    result = jail.value("""
        import mmap
        try:
            mmap.mmap(-1, 12 * 2**30)
            result = 'mapped'
        except (OSError, MemoryError) as e:
            result = type(e).__name__
        result""")
    assert result in ("OSError", "MemoryError")
    assert jail.value("1 + 1") == 2


def test_thread_bomb_hits_the_process_limit(jail):
    started = jail.value("""
        import threading
        stop, threads = threading.Event(), []
        try:
            for _ in range(5000):
                t = threading.Thread(target=stop.wait)
                t.start()
                threads.append(t)
        except RuntimeError:
            pass
        stop.set()
        for t in threads:
            t.join()
        len(threads)""")
    assert started < sandbox.EXTRA_TASKS + 64
    assert jail.value("2 + 2") == 4


def _processes_with(marker):
    found = []
    for cmdline in os.listdir("/proc"):
        try:
            with open(f"/proc/{cmdline}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(cmdline))
        except (OSError, ValueError):
            pass
    return found


def test_detached_daemon_dies_with_the_kernel(tmp_path):
    need_bwrap()
    course = fake_course(tmp_path / "course")
    kernel = Kernel(course, course / "autograded" / "alice" / "fake")
    marker = f"channels-daemon-{uuid.uuid4()}"
    try:
        kernel.run(f"""
            import os, time
            if os.fork() == 0:          # double fork + setsid: a daemon, re-parented away from the kernel
                os.setsid()
                if os.fork() == 0:
                    os.execv('/bin/sh', ['/bin/sh', '-c', 'while :; do sleep 1; done # {marker}'])
                os._exit(0)
            time.sleep(1)""")
        assert _processes_with(marker), "the daemon should run while the kernel does"
    finally:
        kernel.shutdown()
    deadline = time.monotonic() + 30
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []


def _launcher_argv(connection_file):
    kernel_json = sandbox.ensure_kernelspec()
    spec = json.loads(kernel_json.read_text())
    return [arg.replace("{connection_file}", str(connection_file)).replace("{resource_dir}", str(kernel_json.parent))
            for arg in spec["argv"]]


@pytest.mark.fast
def test_sandbox_uids_fit_whatever_the_launchers_pid(monkeypatch):
    """One uid per sandbox from the launcher's pid, even at Linux's largest pid (pid_max can be
    2**22): inside the range the IPC check accepts, below uid_t's "no uid"."""
    from grading.jail import sandbox
    uids = set()
    for pid in (1, 2_304_432, 2**22 - 1):  # 2_304_432 << 6 passed 2**31 - SANDBOX_UIDS
        monkeypatch.setattr(os, "getpid", lambda: pid)
        uids |= {sandbox.fresh_uid() for _ in range(64)}
    assert len(uids) == 3 * 64
    assert all(sandbox.SANDBOX_UIDS <= u < sandbox.SANDBOX_UIDS_END < 2**32 - 1 for u in uids)


@pytest.mark.fast
def test_launcher_refuses_without_bubblewrap(tmp_path):
    connection = tmp_path / "kernel.json"
    connection.write_text(json.dumps({"transport": "ipc", "ip": str(tmp_path / "kernel")}))
    env = dict(venv_env(), PATH=str(VENV_BIN))  # no bwrap, prlimit or setpriv
    env.pop(JAIL_ENV, None)
    proc = subprocess.run(_launcher_argv(connection), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 3
    assert "REFUSING TO GRADE" in proc.stderr and "bwrap" in proc.stderr


@pytest.mark.fast
def test_launcher_runs_unsandboxed_only_when_allowed(tmp_path):
    course = fake_course(tmp_path / "course")
    kernel = Kernel(course, course / "autograded" / "alice" / "fake", PATH=str(VENV_BIN),
                    settings=Grading(allow_unsandboxed=True))
    try:
        # Unjailed: the student's own files are right there (which is why it needs the flag).
        assert "notes.txt" in kernel.value("import os\nsorted(os.listdir('.'))")
    finally:
        kernel.shutdown()


# --- Through nbgrader -------------------------------------------------------------------------------

def solved_submission(course, student, extra_files=(), own_cells=()):
    """The release notebook with the source's answers in, as submitted/<student>/channels/."""
    source = nbformat.read(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    nb.cells[1:1] = [nbformat.v4.new_code_cell(code) for code in own_cells]
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{ASSIGNMENT}.ipynb")
    for name, text in extra_files:
        (folder / name).write_text(text)
    return folder


def total_score(course, student):
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return gb.find_submission(ASSIGNMENT, student).score


PROBE = """import os, json
print('PROBE', json.dumps([sorted(os.listdir('.')), os.getuid(), os.path.exists('../../../gradebook.db')]))"""
FLOOD = "while True:\n    print('x' * 1_000_000)"


def test_plain_nbgrader_autograde_grades_in_the_sandbox(course):
    need_bwrap()
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    # A shipped torch.py would break every import of torch, a shipped checks.py every test.
    solved_submission(course, "alice", own_cells=[PROBE, FLOOD], extra_files=[
        ("torch.py", "raise ImportError('shadowed')\n"), ("checks.py", "def assert_close(*a, **k): pass\n")])
    nbgrader(course, "autograde", ASSIGNMENT)
    graded_path = course / "autograded" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    # The flood was cut at the output limit: what is kept of it, not everything until the cell's timeout.
    assert graded_path.stat().st_size < 2 * MAX_OUTPUT_BYTES
    graded = nbformat.read(graded_path, as_version=4)
    probe = next(out.text for cell in graded.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []) if "PROBE" in out.get("text", ""))
    listing, uid, sees_gradebook = json.loads(probe.split("PROBE", 1)[1])
    helpers = sorted(p.name for p in (course / "source" / ASSIGNMENT).glob("*.py"))  # checks, policy, testkit
    assert listing == helpers and "checks.py" in helpers and uid != os.getuid() and not sees_gradebook
    assert total_score(course, "alice") == MAX_WITH_EXTRA  # the written answer waits for the instructor
    assert graded.metadata.kernelspec.name == "python3"  # feedback notebooks stay runnable


def test_plain_nbgrader_autograde_refuses_without_sandbox_unless_allowed(course):
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    solved_submission(course, "bob")
    env = dict(venv_env(), PATH=str(VENV_BIN))
    env[JAIL_ENV] = json.dumps({"allow_unsandboxed": True})  # the environment has no say: the config has
    cmd = [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT]
    refused = subprocess.run(cmd, cwd=course, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 1
    assert "REFUSING TO GRADE" in refused.stderr
    assert not (course / "autograded" / "bob").exists()
    add_config(course, "c.Grading.allow_unsandboxed = True")
    allowed = subprocess.run(cmd, cwd=course, env=env, capture_output=True, text=True, timeout=600)
    assert allowed.returncode == 0, allowed.stderr
    assert "WITHOUT A SANDBOX" in allowed.stderr
    assert total_score(course, "bob") == MAX_WITH_EXTRA


def test_config_fails_closed_when_grading_cannot_be_loaded(course):
    """Without grading/ nbgrader would fall back to an unconfined kernel: autograde must refuse."""
    shutil.rmtree(course / "grading")
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")  # runs no student code: still works
    assert (course / "release" / ASSIGNMENT / "channels.ipynb").exists()
    proc = nbgrader(course, "autograde", ASSIGNMENT, check=False)
    assert proc.returncode != 0
    assert "refusing to run notebooks without the sandbox" in proc.stdout + proc.stderr
    assert not (course / "autograded").exists()


@pytest.mark.fast
def test_the_jails_settings_cross_the_launchers_boundary_typed():
    """GRADING_JAIL (written by Grading.environ, read by jail_settings): what was set arrives; a
    value of the wrong type (a number for a flag, a flag for a number) falls back to the default."""
    from grading.jail.env import DEFAULTS, jail_settings
    settings = Grading(allow_unsandboxed=True, use_gpu=False, memory_bytes=2**30, cpu_seconds=60)
    got = jail_settings(settings.environ("/course"))
    assert got == dict(DEFAULTS, course="/course", allow_unsandboxed=True, use_gpu=False, memory=2**30, cpu=60)
    wrong = {JAIL_ENV: json.dumps({"allow_unsandboxed": 1, "use_gpu": "no", "memory": True, "cpu": 5.5})}
    assert jail_settings(wrong) == DEFAULTS
    assert jail_settings({JAIL_ENV: "not json"}) == jail_settings({}) == DEFAULTS


def test_validate_works_whatever_the_folder_is_called(course, tmp_path):
    """Validate (JupyterLab's button, `nbgrader validate`) runs the notebook in the sandboxed kernel
    with the helper files beside it: a folder not named after the assignment still has checks.py,
    policy.py and testkit.py, and the reference answers pass every visible test."""
    need_bwrap()
    from grading.fill import fill_notebook
    work = tmp_path / "my homework (2)"
    shutil.copytree(ROOT / "release" / ASSIGNMENT, work)
    notebook = work / f"{ASSIGNMENT}.ipynb"
    nbformat.write(fill_notebook(notebook, ROOT / "samples" / "class" / "ref_reference.py"), notebook)
    proc = nbgrader(course, "validate", str(notebook), check=False)
    assert "Success! Your notebook passes all the tests." in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "No module named" not in proc.stdout + proc.stderr

"""Shared fixtures: the repository's paths, a scratch copy of the course, and nbgrader runs.

Tests never grade inside the working tree: each one that runs nbgrader gets its own
copy of the course in a temporary folder, so tests can run in parallel and leave
`gradebook.db`, `submitted/` and `autograded/` of the checkout alone.
"""
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ASSIGNMENT = "channels"
#: In CI nothing may be skipped for a missing browser or tool: the test fails instead.
IN_CI = os.environ.get("CI", "").lower() == "true"



def venv_env(**extra):
    """The environment every nbgrader call needs: .venv/bin first on PATH (for alembic)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def require(condition, why):
    """Skip when a tool is missing on a developer's machine; fail in CI, where it must exist."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {why}: .ci/run should have installed it")
    pytest.skip(why)


def make_course(dest: Path) -> Path:
    """Copy the instructor's side of the course into `dest` and return it."""
    from grading.course import copy_course
    return copy_course(ROOT, dest)


@pytest.fixture
def course(tmp_path):
    """A private copy of the course folder, ready for nbgrader."""
    return make_course(tmp_path / "course")


def sandbox_or_trusted(course):
    """Grade `course` in the sandbox; on a developer's machine without bubblewrap, allow grading
    unsandboxed (the tests' code is trusted, as `make demo`'s samples are). Never in CI."""
    from grading.jail.sandbox import sandbox_status
    ok, reason = sandbox_status()
    if ok:
        return course
    if IN_CI:
        pytest.fail(f"CI=true and no sandbox: {reason}")
    return add_config(course, "c.Grading.allow_unsandboxed = True  # tests: no bubblewrap on this machine")


def add_config(course, text):
    """Add settings to the course's nbgrader_config.py where an instructor writes them: before
    the last block, which wires the engine and reads c.Grading as nbgrader loads the file."""
    path = course / "nbgrader_config.py"
    config = path.read_text(encoding="utf-8")
    at = config.index("\ntry:\n")
    path.write_text(config[:at] + "\n" + text.rstrip() + "\n" + config[at:], encoding="utf-8")
    return course


@pytest.fixture(scope="session")
def sample_class(tmp_path_factory, worker_id):
    """(course, {student: StudentResult}): the bundled sample class graded once, as `make demo`
    does (two workers), in a scratch copy that tests only read. Under xdist the workers share one
    copy: the first to get here grades it, the other waits on the lock and reads its results."""
    import json
    from filelock import FileLock
    from grading.fill import fill_class
    from grading.result import StudentResult
    from grading.run.batch import grade
    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    course, done = shared / "sample-class" / "course", shared / "sample-class" / "results.json"
    with FileLock(str(shared / "sample-class.lock")):
        if not done.exists():
            sandbox_or_trusted(make_course(course))
            fill_class(ROOT / "samples" / "class", course, ASSIGNMENT)
            results = grade(course, ASSIGNMENT, jobs=2, progress=False)
            done.write_text(json.dumps([r.to_dict() for r in results]), encoding="utf-8")
    return course, {d["student"]: StudentResult.from_dict(d) for d in json.loads(done.read_text(encoding="utf-8"))}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_server(app, root, tmp_path, *options):
    """A Jupyter server of its own (`app`: "jupyter-server", "jupyter-lab") on 127.0.0.1 serving
    `root`, with private config and runtime folders and a fresh token; yields (base URL, token,
    log path) once it answers, and always stops it (a server shuts its kernels down on SIGTERM)."""
    require((VENV_BIN / app).exists(), f"{app} is not installed in .venv")
    port, token = free_port(), secrets.token_hex(16)
    env = venv_env(JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
                   IPYTHONDIR=str(tmp_path / "ipython"))
    command = [str(VENV_BIN / app), "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", *options]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log_path = tmp_path / f"{app}.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"{app} exited:\n{log_path.read_text()}"
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{app} did not start:\n{log_path.read_text()}"
            time.sleep(0.5)
        yield base, token, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def nbgrader(course_dir, *args, check=True, timeout=900):
    """Run `nbgrader ARGS` in `course_dir` with the venv on PATH; return the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course_dir, env=venv_env(), capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc

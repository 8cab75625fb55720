"""Shared fixtures: the repository's paths, a scratch copy of the course, and nbgrader runs.

Tests never grade inside the working tree: each one that runs nbgrader gets its own
copy of the course in a temporary folder, so tests can run in parallel and leave
`gradebook.db`, `submitted/` and `autograded/` of the checkout alone.
"""
import os
import subprocess
import sys
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


def nbgrader(course_dir, *args, check=True, timeout=900):
    """Run `nbgrader ARGS` in `course_dir` with the venv on PATH; return the CompletedProcess."""
    proc = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course_dir, env=venv_env(), capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc

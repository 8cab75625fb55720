"""One assignment in one course folder: its paths, its contract, and every limit in one place.

    Course(root)        paths (submitted/, autograded/, .grading/), nbgrader's config, the
                        release notebook students got, and the contract read once from source/
    LIMITS              every timeout and size the pipeline itself uses (the jail's own
                        rlimits are in grading/sandbox.py, a standalone file)
"""
import hashlib
import json
import os
import sys
from pathlib import Path

import nbformat

from grading.contract import load_contract

ASSIGNMENT = "channels"
#: Where the pipeline keeps its own files (staging, verdicts, results, logs).
STATE_DIR = ".grading"
#: Grading code whose change means a regrade (the fingerprint includes it).
GRADING_CODE = ["rebuild.py", "grade_one.py", "preprocessors.py", "contract.py", "result.py", "verify.py",
                "verify_child.py", "guard.py", "sandbox.py"]

#: Seconds, unless named otherwise.
LIMITS = {
    "cell": 120,            # one cell in the kernel, then it is interrupted (nbgrader_config.py: Execute.timeout)
    "verify_call": 30,      # one call of a student's function in the verifier's child
    "verify_setup": 120,    # starting the child and running the student's cells
    "verify_total": 300,    # the verifier for one notebook
    "student_base": 120,    # a worker's budget for one student: this + cell × (tests + 3)
}


#: What a scratch copy of the course needs to grade: the instructor's files, never student outputs.
COURSE_FILES = ["nbgrader_config.py", "source", "release", "grading", "samples"]


def copy_course(root, dest):
    """Copy the instructor's side of the course at `root` into `dest` (tests, gpu-check); return dest."""
    import shutil
    root, dest = Path(root), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in COURSE_FILES:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def load_config(root):
    """The course's nbgrader_config.py as a traitlets Config."""
    from traitlets.config.loader import PyFileConfigLoader
    return PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()


class Course:
    """Paths and facts of one assignment in one course folder."""

    def __init__(self, root, assignment=ASSIGNMENT):
        self.root = Path(root).resolve()
        self.assignment = assignment
        self.config = load_config(self.root)
        release = sorted((self.root / "release" / assignment).glob("*.ipynb"))
        if len(release) != 1:
            raise RuntimeError(f"expected one notebook in release/{assignment}, found {len(release)}")
        self.notebook = release[0].name
        self.notebook_id = release[0].stem
        self.release = nbformat.read(release[0], as_version=4)
        self.contract = load_contract(self.root, assignment)
        self.state = self.root / STATE_DIR

    @property
    def course_id(self):
        return self.config.CourseDirectory.get("course_id", "default_course")

    @property
    def db_url(self):
        return self.config.CourseDirectory.get("db_url") or f"sqlite:///{self.root / 'gradebook.db'}"

    def submitted(self, student):
        return self.root / "submitted" / student / self.assignment

    def autograded(self, student):
        return self.root / "autograded" / student / self.assignment

    def verdicts_file(self, student):
        return self.state / "verdicts" / f"{student}.json"

    def cell_timeout(self):
        for section in ("Execute", "ExecutePreprocessor", "NotebookClient"):
            if "timeout" in self.config.get(section, {}):
                return self.config[section]["timeout"] or 0
        return LIMITS["cell"]

    def student_budget(self):
        """Wall-clock seconds one student may take before its worker is killed (a safety net:
        nbclient already interrupts each cell after `timeout` and gives up on a kernel that
        ignores the interrupt)."""
        return LIMITS["student_base"] + (self.cell_timeout() or LIMITS["cell"]) * (len(self.contract.tests) + 3)


def students_in(root):
    """Every student folder under root/submitted/ (sorted)."""
    folder = Path(root) / "submitted"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _hash_tree(h, folder, label):
    folder = Path(folder)
    if not folder.is_dir():
        h.update(f"{label}: none\n".encode())
        return
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        h.update(f"{label}/{path.relative_to(folder).as_posix()}\n".encode())
        if path.is_symlink():  # never follow a student's link (to /dev/zero, say)
            h.update(b"-> " + os.readlink(path).encode(errors="replace"))
        elif path.is_file():
            h.update(hashlib.sha256(path.read_bytes()).digest())


def fingerprint(root, assignment, student):
    """Changes when the submission, the course files or the grading code change."""
    from importlib.metadata import version
    root = Path(root)
    h = hashlib.sha256(f"nbgrader {version('nbgrader')}\n".encode())
    _hash_tree(h, root / "submitted" / student / assignment, "submitted")
    _hash_tree(h, root / "source" / assignment, "source")
    _hash_tree(h, root / "release" / assignment, "release")
    here = Path(__file__).resolve().parent
    for name in GRADING_CODE:
        path = here / name
        h.update(name.encode() + (hashlib.sha256(path.read_bytes()).digest() if path.exists() else b"-"))
    config = root / "nbgrader_config.py"
    h.update(config.read_bytes() if config.exists() else b"-")
    return h.hexdigest()


def write_json(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path, default):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def venv_first_on_path():
    """nbgrader shells out to `alembic`: put this Python's bin folder first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"


def run_nbgrader(root, *args):
    """`nbgrader ARGS` in the course folder (venv's bin first on PATH, for alembic)."""
    import subprocess
    venv_first_on_path()
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc

"""One assignment in one course folder: its paths, its contract and its settings.

    assignments(root)            the assignments of a course: the folders of source/ with one notebook
    choose_assignment(root, a)   `a`, or the course's only assignment, else an error that lists them
    Course(root, assignment)     paths (submitted/, autograded/, .grading/<assignment>/), nbgrader's
                                 config, the release notebook students got, the contract read once
                                 from source/, and the grading settings (grading/settings.py)

The engine knows no assignment by name: every command takes one, and nothing one assignment's
grading writes (results, staging, verdicts, logs, its report) touches another's.
"""
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import nbformat

from grading.contract import load_contract
from grading.settings import Grading

#: Where the pipeline keeps its own files: .grading/<assignment>/ (staging, verdicts, results, logs).
STATE_DIR = ".grading"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class AssignmentError(ValueError):
    """No such assignment, or no way to choose one; the message lists the course's assignments."""


def assignments(root):
    """The names of the course's assignments: folders of source/ that hold exactly one notebook."""
    folder = Path(root) / "source"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and _NAME.match(p.name) and len(list(p.glob("*.ipynb"))) == 1)


def choose_assignment(root, name=None):
    """`name` if the course has it; without a name, the course's only assignment; else AssignmentError."""
    found = assignments(root)
    listed = ", ".join(found) or "(none: source/ has no assignment folder with one notebook)"
    if name:
        if name not in found:
            raise AssignmentError(f"no assignment {name!r} in {Path(root) / 'source'}; the course has: {listed}")
        return name
    if len(found) != 1:
        raise AssignmentError(f"this course has {len(found)} assignments, say which one "
                              f"(python -m grading COMMAND ASSIGNMENT, or A=name with make): {listed}")
    return found[0]


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

    def __init__(self, root, assignment, settings=None):
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
        #: the engine's settings (nbgrader_config.py's c.Grading), or the ones given (a worker gets
        #: its parent's, `--allow-unsandboxed` included)
        self.settings = settings if settings is not None else Grading(config=self.config)
        # Loading nbgrader_config.py exported its own settings for the kernel launcher: the
        # ones given win, in this process and in every worker.
        self.settings.export(self.root)
        self.state = self.root / STATE_DIR / assignment

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

def students_in(root, assignment):
    """Every student who handed in `assignment`: submitted/<student>/<assignment> exists (sorted);
    real student folders only.

    A student folder that is a symbolic link (to a classmate's folder, to source/) or not a
    folder at all is nobody's submission: it is left out of the batch, with a warning on the
    log (grading/intake.py student_folders). Graded by name anyway, it scores 0 with the reason.
    """
    import logging
    from grading.intake import student_folders
    students, problems = student_folders(Path(root) / "submitted")
    for name, why in problems:
        logging.getLogger("grading.intake").warning("submitted/%s: %s", name, why)
    return [s for s in students if os.path.lexists(Path(root) / "submitted" / s / assignment)]


def _hash_file(h, path, st):
    """Hash a regular file's bytes, never more than MAX_BYTES: (size, mtime) stand for a larger one."""
    from grading.intake import INTAKE_LIMITS
    limit = INTAKE_LIMITS["file_bytes"]
    if st.st_size > limit:
        h.update(f"large {st.st_size} {st.st_mtime_ns}".encode())
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        h.update(f"unreadable {e.errno}".encode())
        return
    try:
        digest, left = hashlib.sha256(), limit + 1
        while left > 0:
            data = os.read(fd, min(1 << 20, left))
            if not data:
                break
            digest.update(data)
            left -= len(data)
        h.update(digest.digest())
    finally:
        os.close(fd)


def _hash_tree(h, folder, label):
    """Hash a folder's names and bytes without following links (a link is hashed as its text)."""
    import stat
    folder = Path(folder)
    # a student's submitted/<student> or submitted/<student>/<assignment> that is a link: its text only
    for top in (folder.parent, folder) if label == "submitted" else ():
        if top.is_symlink():
            h.update(f"{label}: link {top.name} -> ".encode() + os.readlink(top).encode(errors="replace"))
            return
    if not folder.is_dir():
        h.update(f"{label}: none\n".encode())
        return
    for path in sorted(folder.rglob("*")):  # rglob does not descend into linked folders
        if "__pycache__" in path.parts:
            continue
        h.update(f"{label}/{path.relative_to(folder).as_posix()}\n".encode())
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):  # never follow a student's link (to /dev/zero, say)
            h.update(b"-> " + os.readlink(path).encode(errors="replace"))
        elif stat.S_ISREG(st.st_mode):
            _hash_file(h, path, st)
        elif not stat.S_ISDIR(st.st_mode):
            h.update(f"special {stat.S_IFMT(st.st_mode)}".encode())


def course_digest(root, assignment):
    """What every student's grade of `assignment` depends on: the course's files of it, its
    configuration, nbgrader and the whole engine (any change regrades)."""
    from importlib.metadata import version
    root = Path(root)
    h = hashlib.sha256(f"nbgrader {version('nbgrader')}\n".encode())
    _hash_tree(h, root / "source" / assignment, "source")
    _hash_tree(h, root / "release" / assignment, "release")
    _hash_tree(h, Path(__file__).resolve().parent, "grading")
    config = root / "nbgrader_config.py"
    h.update(config.read_bytes() if config.exists() else b"-")
    return h.hexdigest()


def fingerprint(root, assignment, student, course=None):
    """Changes when the submission or what the grade depends on changes (`course`: the
    course_digest, computed once for a whole batch)."""
    h = hashlib.sha256((course or course_digest(root, assignment)).encode())
    _hash_tree(h, Path(root) / "submitted" / student / assignment, "submitted")
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

"""Autograde every submission: in parallel, sandboxed, and without losing anyone.

For each student the batch

1. reads the notebook (`rebuild.load_submission`): an unreadable one gets a zero record
   with the reason, a renamed or old-format one is graded and noted;
2. stages it under `.grading/staged/` (submitted/ is never modified), with the time stamp
   for late penalties and nothing else the student sent (no stray `torch.py`);
3. verifies each test cell out of the kernel (`verify.verify_notebook`) on the rebuilt
   notebook (`rebuild.rebuild`: release cells + the student's answers);
4. runs nbgrader's own Autograde in a persistent worker process against a private copy
   of the gradebook (RebuildFromRelease is its first step);
5. reconciles: for every test cell the verifier's verdict wins; a disagreement with the
   kernel is recorded for the instructor. When nbgrader failed (kernel died, a loop that
   ignores interrupts, out of memory, anything) the points are the verifier's, else 0,
   and a graded notebook that explains the failure is put in place for the feedback.

Speed: the workers are forked from a fork server that imported nbgrader and torch once,
and each has a warm jail (grading/zygote.py) that forks its kernels and verifier children
with torch already imported, emptied between students.

Only the parent process writes `gradebook.db`: it removes the old submission of every
student it is about to grade before any work starts (a failed regrade leaves no earlier
grade behind), then writes each result as it arrives. Workers write nothing but their
private database, the staged files and autograded/<student>/. The same function grades
a student whatever the number of workers, so the gradebook does not depend on `-j`.
Unchanged students (same submission, course files and grading code) are skipped unless
`regrade=True`; their last result is reported again.
"""
import copy
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
import traceback
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

import nbformat

from grading.rebuild import SubmissionError, is_answer, load_submission, rebuild, grade_id

ASSIGNMENT = "channels"
#: Where the pipeline keeps its own files (staging, private gradebooks, results, logs).
STATE_DIR = ".grading"
#: Grading code whose change means a regrade (the fingerprint includes it).
GRADING_CODE = ["rebuild.py", "batch.py", "verify.py", "verify_child.py", "sandbox.py"]

#: Stable flag codes (reports and tests use them) and what they mean.
FLAGS = {
    "missing_notebook": "未找到 notebook (notebook missing)",
    "unreadable_notebook": "notebook 无法读取 (unreadable notebook)",
    "renamed_notebook": "notebook 被改名 (renamed notebook)",
    "old_nbformat": "旧版 nbformat (old nbformat)",
    "cells_restored": "测试或说明单元被修改、删除或复制 (edited/deleted/duplicated locked cells restored)",
    "answer_missing": "答案单元缺失 (answer cell missing)",
    "duplicate_answer": "答案单元重复 (duplicated answer cell)",
    "metadata_missing": "nbgrader 元数据缺失 (nbgrader metadata missing)",
    "cells_ignored": "有无法识别的单元 (unreadable cells ignored)",
    "timeout": "运行超时 (timeout)",
    "kernel_died": "内核退出或内存不足 (kernel died or ran out of memory)",
    "autograde_failed": "nbgrader 自动评分失败 (autograde failed)",
    "verifier_disagrees": "内核结果与独立验证不一致 (kernel and verifier disagree)",
    "verifier_failed": "独立验证无法运行 (verifier failed)",
    "late": "迟交 (late submission)",
}
#: Flags that only inform; every other flag puts the student on the attention list.
QUIET_FLAGS = {"late"}


@dataclasses.dataclass
class StudentResult:
    """What grading one student produced; `scores` is exactly what the gradebook holds."""

    student: str
    status: str                 # "graded" | "failed" (nbgrader failed) | "unreadable" (nothing to grade)
    total: float                # sum of `scores` (None counts 0), before any late penalty
    max_total: float
    scores: dict                # grade_id -> points written to the gradebook (None: awaits manual grading)
    max_scores: dict            # grade_id -> max points
    tests: list                 # grade_ids of the autograded test cells, in notebook order
    kernel_scores: dict         # grade_id -> nbgrader's in-kernel points (None: not available)
    verdicts: dict              # grade_id -> {"passed": bool, "message": str} from the verifier
    messages: dict              # grade_id -> why that test cell failed (short, for students)
    reasons: list               # readable reasons the instructor should know, most important first
    flags: list                 # sorted codes from FLAGS
    notes: list                 # everything the loader and the rebuild changed
    fingerprint: str = ""
    seconds: float = 0.0
    skipped: bool = False       # unchanged since the last run: this is the stored result
    timestamp: str = None
    late_penalty: float = None
    timings: dict = dataclasses.field(default_factory=dict)  # seconds: load, verify, autograde
    warm_jail: bool = False     # graded in its worker's warm jail (grading/zygote.py)

    @property
    def needs_attention(self):
        return any(f not in QUIET_FLAGS for f in self.flags)

    @property
    def reason(self):
        """One short line for tables: the main reason, else the first failed test's message."""
        if self.reasons:
            return self.reasons[0]
        for gid in self.tests:
            if self.messages.get(gid):
                return f"{gid}: {self.messages[gid]}"
        return ""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class SandboxUnavailable(RuntimeError):
    """No sandbox and unsandboxed grading was not allowed; the message says why."""


# --- the course -----------------------------------------------------------------------

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
        self.state = self.root / STATE_DIR
        graded = [c for c in self.release.cells if c.metadata.get("nbgrader", {}).get("grade")]
        self.max_scores = {grade_id(c): float(c.metadata.nbgrader["points"]) for c in graded}
        self.tests = [grade_id(c) for c in graded if not is_answer(c)]
        self.manual = [grade_id(c) for c in graded if is_answer(c)]

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

    def cell_timeout(self):
        for section in ("Execute", "ExecutePreprocessor", "NotebookClient"):
            if "timeout" in self.config.get(section, {}):
                return self.config[section]["timeout"] or 0
        return 30

    def student_budget(self):
        """Wall-clock seconds one student may take before its worker is killed (a safety net:
        nbclient already interrupts each cell after `timeout` and gives up on a kernel that
        ignores the interrupt)."""
        return 120 + (self.cell_timeout() or 120) * (len(self.tests) + 3)


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


def _write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path, default):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


# --- the gradebook (parent process only) ----------------------------------------------

def _gradebook(course, url=None):
    import warnings
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning
    # nbgrader's add_submission trips SQLAlchemy's autoflush warnings; the data is right
    warnings.filterwarnings("ignore", category=SAWarning)
    return Gradebook(url or course.db_url, course.course_id)


def prepare_gradebook(course, students):
    """Make sure the gradebook knows the assignment and every student."""
    from nbgrader.api import MissingEntry
    with _gradebook(course) as gb:
        try:
            gb.find_notebook(course.notebook_id, course.assignment)
            known = True
        except MissingEntry:
            known = False
    if not known:
        register_assignment(course)
    with _gradebook(course) as gb:
        for student in students:
            gb.update_or_create_student(student)


def register_assignment(course):
    """Record the assignment's cells in the gradebook as `nbgrader generate_assignment` does,
    without rewriting release/: the students have that version, whatever source/ says now."""
    import tempfile
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log
    config = copy.deepcopy(course.config)
    with tempfile.TemporaryDirectory(prefix="channels-release-") as scratch:
        coursedir = CourseDirectory(config=config)
        coursedir.root = str(course.root)
        coursedir.release_directory = scratch
        coursedir.assignment_id = course.assignment
        app = GenerateAssignment(coursedir=coursedir, config=config)
        app.force = True
        result = capture_log(app)
    if not result["success"]:
        raise RuntimeError(f"could not record {course.assignment} in the gradebook:\n{result.get('error', '')}")


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
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _make_template(course, template):
    """A copy of the gradebook without submissions: each worker grades into its own copy of it."""
    from nbgrader.api import MissingEntry
    template.parent.mkdir(parents=True, exist_ok=True)
    db = Path(course.db_url.split("sqlite:///", 1)[1].split("?")[0])
    shutil.copy(db, template)
    with _gradebook(course, f"sqlite:///{template}") as gb:
        for sub in list(gb.find_assignment(course.assignment).submissions):
            try:
                gb.remove_submission(course.assignment, sub.student.id)
            except MissingEntry:
                pass


def _remove_submission(course, student):
    """Forget the student's old grades; return the manual grading worth keeping.

    Manual scores and comments survive only for answer cells whose text is unchanged
    (their answer hashes are in the last result).
    """
    from nbgrader.api import MissingEntry
    kept = {}
    with _gradebook(course) as gb:
        try:
            nb = gb.find_submission_notebook(course.notebook_id, course.assignment, student)
        except MissingEntry:
            return kept
        for grade in nb.grades:
            if grade.manual_score is not None or grade.extra_credit is not None:
                kept.setdefault(grade.name, {}).update(manual_score=grade.manual_score, extra_credit=grade.extra_credit)
        for comment in nb.comments:
            if comment.manual_comment:
                kept.setdefault(comment.name, {})["manual_comment"] = comment.manual_comment
        gb.remove_submission(course.assignment, student)
    return kept


def write_result(course, result, payload, kept):
    """Write one student's final grades into the gradebook (a fresh submission)."""
    from nbgrader.api import MissingEntry
    with _gradebook(course) as gb:
        gb.update_or_create_student(result.student)
        try:
            gb.remove_submission(course.assignment, result.student)
        except MissingEntry:
            pass
        extra = {"timestamp": result.timestamp} if result.timestamp else {}
        gb.add_submission(course.assignment, result.student, **extra)
        nb = gb.find_submission_notebook(course.notebook_id, course.assignment, result.student)
        nb.late_submission_penalty = result.late_penalty
        old_answers = payload.get("old_answers", {})
        for grade in nb.grades:
            score = result.scores.get(grade.name)
            grade.auto_score = score
            grade.needs_manual_grade = score is None
            carry = kept.get(grade.name)
            if carry and old_answers.get(grade.name) == payload["answers"].get(grade.name):
                grade.manual_score = carry.get("manual_score")
                grade.extra_credit = carry.get("extra_credit")
                grade.needs_manual_grade = False if grade.manual_score is not None else grade.needs_manual_grade
        for comment in nb.comments:
            comment.auto_comment = payload["comments"].get(comment.name)
            carry = kept.get(comment.name)
            if carry and old_answers.get(comment.name) == payload["answers"].get(comment.name):
                comment.manual_comment = carry.get("manual_comment")
        gb.db.commit()


def gradebook_scores(course_root, assignment=ASSIGNMENT):
    """{student: {grade_id: (auto_score, manual_score, needs_manual_grade)}} (for tests and reports)."""
    return _submissions(Course(course_root, assignment))


def _submissions(course):
    assignment = course.assignment
    out = {}
    with _gradebook(course) as gb:
        for sub in gb.find_assignment(assignment).submissions:
            for nb in sub.notebooks:
                out.setdefault(sub.student.id, {}).update(
                    {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in nb.grades})
    return out


# --- grading one student (runs in a worker) -------------------------------------------

def _answers(nb):
    """grade_id -> hash of the student's answer text (to keep manual grades of unchanged answers)."""
    return {grade_id(c): hashlib.sha256(c.source.encode()).hexdigest()[:16]
            for c in nb.cells if is_answer(c)}


def _stage(course, student, nb):
    """Put the readable notebook and the time stamp where nbgrader will look for them."""
    stage = course.state / "staged" / student / course.assignment
    shutil.rmtree(stage.parent, ignore_errors=True)
    stage.mkdir(parents=True)
    nbformat.write(nb, stage / course.notebook)
    stamp = course.submitted(student) / "timestamp.txt"
    notes = []
    if stamp.is_file() and not stamp.is_symlink() and stamp.stat().st_size <= 1024:
        from nbgrader.utils import parse_utc
        text = stamp.read_text(errors="replace").strip()
        try:
            parse_utc(text)
            (stage / "timestamp.txt").write_text(text)
        except (ValueError, OverflowError, TypeError):
            notes.append(f"timestamp.txt 无法解析，已忽略 (unreadable time stamp): {text[:40]!r}")
    # Written by `nbgrader submit` (exchange route): release_feedback looks for it in feedback/,
    # which generate_feedback fills from autograded/, which Autograde fills from here.
    secret = course.submitted(student) / "submission_secret.txt"
    if secret.is_file() and not secret.is_symlink() and secret.stat().st_size <= 1024:
        shutil.copyfile(secret, stage / "submission_secret.txt")
    return notes


def _autograde(course, student, db_path, jail=None):
    """nbgrader's Autograde for one staged student, in this process; (ok, log, error)."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log
    config = copy.deepcopy(course.config)
    coursedir = CourseDirectory(config=config)
    coursedir.root = str(course.root)
    coursedir.submitted_directory = str(course.state / "staged")
    coursedir.db_url = f"sqlite:///{db_path}"
    coursedir.assignment_id = course.assignment
    coursedir.student_id = student
    if jail is not None:  # this worker has a warm jail: its kernels are forked there
        from grading import zygote
        zygote.use_in_worker(*jail, config=config)
    app = Autograde(coursedir=coursedir, config=config)
    app.force = True
    app.create_student = True
    result = capture_log(app)
    return result["success"], result.get("log", ""), result.get("error", "")


def _private_grades(course, student, db_path):
    """What nbgrader wrote into the private gradebook: scores, comments, time stamp, penalty."""
    from nbgrader.api import MissingEntry
    out = {"kernel_scores": {}, "comments": {}, "timestamp": None, "late_penalty": None}
    with _gradebook(course, f"sqlite:///{db_path}") as gb:
        try:
            sub = gb.find_submission(course.assignment, student)
            nb = gb.find_submission_notebook(course.notebook_id, course.assignment, student)
        except MissingEntry:
            return out
        out["timestamp"] = sub.timestamp.isoformat() if sub.timestamp else None
        out["late_penalty"] = nb.late_submission_penalty
        out["kernel_scores"] = {g.name: g.auto_score for g in nb.grades}
        out["comments"] = {c.name: c.auto_comment for c in nb.comments}
    return out


def _kernel_messages(course, student):
    """grade_id -> 'Error: message' of each failed test cell in the autograded notebook,
    plus the grade_ids that timed out."""
    path = course.autograded(student) / course.notebook
    messages, timeouts = {}, []
    if not path.exists():
        return messages, timeouts
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                if out.get("ename") == "CellTimeoutError":
                    timeouts.append(grade_id(cell) or "?")
                if grade_id(cell) in course.tests:
                    messages.setdefault(grade_id(cell), f"{out.get('ename')}: {out.get('evalue', '')}".strip(": "))
    return messages, timeouts


def _verify(course, rebuilt):
    """The verifier's verdicts {grade_id: {"passed", "message"}}, or (None, error text)."""
    try:
        from grading.verify import verify_notebook
    except ImportError as e:
        return None, f"grading.verify 不可用 (verifier missing): {e}"
    try:
        verdicts = verify_notebook(course.root, course.assignment, rebuilt, course.notebook_id)
    except Exception as e:  # the verifier failing must not cost the student their grade
        return None, f"{type(e).__name__}: {e}"
    return {gid: {"passed": bool(v.passed), "message": str(v.message or "")}
            for gid, v in verdicts.items()}, ""


def write_fallback(course, student, rebuilt, reason):
    """A graded notebook for feedback when nbgrader produced none: the notebook that was
    to be graded, headed by the reason."""
    nb = copy.deepcopy(rebuilt)
    header = nbformat.v4.new_markdown_cell(
        "**自动评分没有完成 (autograding did not finish)**\n\n"
        f"原因 (reason)：{reason}\n\n"
        "下面是用于评分的 notebook：原始的说明与测试，加上你的答案。"
        "得分来自在内核之外对每个测试单元的独立验证；无法验证的测试记 0 分。")
    header["id"] = "grading-failure"
    nb.cells.insert(0, header)
    dest = course.autograded(student)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    nbformat.write(nb, dest / course.notebook)
    staged = course.state / "staged" / student / course.assignment / "submission_secret.txt"
    if staged.is_file():  # for `nbgrader release_feedback` (exchange route)
        shutil.copyfile(staged, dest / "submission_secret.txt")


def _failure_reason(error, log):
    """Classify an nbgrader failure: (flags, readable reason)."""
    text = f"{error}\n{log}"
    if "DeadKernelError" in text or "Kernel died" in text:
        return ["kernel_died"], "内核意外退出，可能是内存不足或代码结束了进程 (kernel died, e.g. out of memory)"
    if "CellTimeoutError" in text or "Timeout waiting" in text or "UnresponsiveKernelError" in text:
        return ["timeout"], "运行超时且内核不响应中断 (timeout; the kernel ignored the interrupt)"
    last = [line for line in error.strip().splitlines() if line.strip()][-1:] or ["unknown error"]
    return [], f"nbgrader 自动评分出错 (autograde error): {last[0][:200]}"


def _new_payload(student, status):
    return {"student": student, "status": status, "notes": [], "flags": [], "reasons": [],
            "kernel_scores": {}, "comments": {}, "verdicts": None, "messages": {}, "answers": {},
            "blank": [], "timestamp": None, "late_penalty": None, "seconds": 0.0, "timings": {}}


def grade_submission(course, student, template, send=None, jail=None):
    """Grade one student without touching the real gradebook; return the payload for `reconcile`.

    `send(kind, data)` reports partial results (the verdicts) before the risky part, so
    the parent still has them if this process has to be killed. `jail`: (socket, ipc
    directory, kernelspec folder) of a warm jail (grading/zygote.py) that was just reset.
    """
    start = time.monotonic()
    payload = _new_payload(student, "graded")
    try:
        nb, notes = load_submission(course.submitted(student), course.notebook)
    except SubmissionError as e:
        rebuilt, _ = rebuild(nbformat.v4.new_notebook(), course.release)
        write_fallback(course, student, rebuilt, e.reason)
        payload.update(status="unreadable", flags=[e.code], reasons=[e.reason])
        payload["seconds"] = time.monotonic() - start
        return payload
    rebuilt, rebuild_notes = rebuild(nb, course.release)
    notes = list(notes) + list(rebuild_notes)
    payload["notes"] = [str(n) for n in notes] + _stage(course, student, nb)
    payload["flags"] = sorted({n.code for n in notes if hasattr(n, "code")})
    payload["answers"] = _answers(rebuilt)
    payload["blank"] = [grade_id(c) for c in rebuilt.cells if is_answer(c) and not c.source.strip()]

    if jail is not None:
        from grading import zygote
        zygote.use_in_worker(*jail)  # the verifier's child is forked there too
        payload["warm_jail"] = True
    timings = payload["timings"] = {"load": time.monotonic() - start}
    payload["verdicts"], verify_error = _verify(course, rebuilt)
    timings["verify"] = time.monotonic() - start - sum(timings.values())
    if verify_error:
        payload["flags"].append("verifier_failed")
        payload["reasons"].append(f"独立验证失败 (verifier failed): {verify_error}")
    if send:
        send("partial", {k: payload[k] for k in ("verdicts", "flags", "reasons", "notes", "answers", "blank")})

    db = course.state / "work" / f"{student}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, db)
    ok, log, error = _autograde(course, student, db, jail)
    timings["autograde"] = time.monotonic() - start - sum(timings.values())
    (course.state / "logs").mkdir(parents=True, exist_ok=True)
    (course.state / "logs" / f"{student}.log").write_text(f"{log}\n{error}", encoding="utf-8")
    payload.update(_private_grades(course, student, db))
    db.unlink(missing_ok=True)
    if ok:
        payload["messages"], timeouts = _kernel_messages(course, student)
        if timeouts:
            payload["flags"].append("timeout")
            payload["reasons"].append(f"单元运行超时，已中断 (cell timed out, interrupted): {', '.join(timeouts)}")
    else:
        flags, reason = _failure_reason(error, log)
        payload.update(status="failed", kernel_scores={})
        payload["flags"] += flags + ["autograde_failed"]
        payload["reasons"].insert(0, reason)
        write_fallback(course, student, rebuilt, reason)
    payload["seconds"] = time.monotonic() - start
    return payload


def failed_payload(course, student, reason, flags, partial=None):
    """The payload of a student whose worker had to be killed or died."""
    payload = _new_payload(student, "failed")
    payload.update(partial or {})
    payload["flags"] = list(payload["flags"]) + flags + ["autograde_failed"]
    payload["reasons"] = [reason] + list(payload["reasons"])
    try:
        nb, _ = load_submission(course.submitted(student), course.notebook)
    except SubmissionError:
        nb = nbformat.v4.new_notebook()
    write_fallback(course, student, rebuild(nb, course.release)[0], reason)
    return payload


# --- reconciling kernel and verifier (parent) -------------------------------------------

def reconcile(course, payload, fp=""):
    """Final per-cell scores from nbgrader's kernel scores and the verifier's verdicts."""
    flags, reasons = set(payload["flags"]), list(payload["reasons"])
    kernel, verdicts = payload["kernel_scores"], payload["verdicts"]
    messages = dict(payload["messages"])
    scores = {}
    for gid in course.tests:
        top, k = course.max_scores[gid], kernel.get(gid)
        v = (verdicts or {}).get(gid)
        if v is not None:
            scores[gid] = top if v["passed"] else 0.0
            if not v["passed"] and v["message"]:
                messages[gid] = v["message"]
            elif v["passed"]:
                messages.pop(gid, None)
            if k is not None and (k >= top) != v["passed"]:
                flags.add("verifier_disagrees")
                said = "通过 (passed)" if v["passed"] else f"未通过 (failed): {v['message']}"
                reasons.append(f"{gid}: 内核得 {k:g}/{top:g} 分，独立验证{said}；以验证为准 (verifier wins)")
        else:
            scores[gid] = float(k) if k is not None else 0.0
    for gid in course.manual:
        # nbgrader gives 0 to an untouched answer; otherwise it waits for the instructor
        k = kernel.get(gid)
        if k is None and (payload["status"] == "unreadable" or gid in payload.get("blank", [])):
            k = 0.0  # nothing to read: no need to wait for the instructor
        scores[gid] = float(k) if k is not None else None
    if payload.get("late_penalty"):
        flags.add("late")
    if payload["status"] == "failed" and verdicts is None:
        reasons.append("没有独立验证的结果，测试记 0 分 (no verdicts: tests score 0)")
    ordered = [f for f in FLAGS if f in flags] + sorted(flags - FLAGS.keys())
    return StudentResult(
        student=payload["student"], status=payload["status"],
        total=sum(s or 0.0 for s in scores.values()), max_total=sum(course.max_scores.values()),
        scores=scores, max_scores=dict(course.max_scores), tests=list(course.tests),
        kernel_scores={g: kernel.get(g) for g in course.max_scores}, verdicts=verdicts or {},
        messages={g: m for g, m in messages.items() if g in course.tests and scores.get(g, 0) < course.max_scores[g]},
        reasons=reasons, flags=ordered, notes=list(payload["notes"]), fingerprint=fp,
        seconds=round(payload.get("seconds", 0.0), 3), timestamp=payload.get("timestamp"),
        late_penalty=payload.get("late_penalty"),
        timings={k: round(v, 3) for k, v in payload.get("timings", {}).items()},
        warm_jail=bool(payload.get("warm_jail")))


# --- persistent workers ------------------------------------------------------------------

#: Imported once by the fork server, before it forks the workers (each would pay ~5 s of CPU).
#: torch._dynamo: the verifier's first meta-tensor size check imports it (and sympy), ~2-3 s.
PRELOAD = ["grading.batch", "grading.rebuild", "grading.feedback", "grading.zygote", "nbgrader.converters",
           "nbgrader.api", "grading.verify", "torch", "torch._dynamo"]


def _fresh_jail(jail):
    """Empty the warm jail before the next student; None (one jail per process) if it is gone."""
    from grading import zygote
    if jail is None:
        return None
    try:
        zygote.reset(jail[0])
        return jail
    except OSError as e:
        print(f"grading without the warm jail from now on: {e}", file=sys.stderr, flush=True)
        os.environ.pop(zygote.ENV, None)
        return None


def _worker_main(conn, root, assignment, template, log_path, environ, jail):
    """Worker loop: keep nbgrader and torch imported, grade students sent by the parent one at a time."""
    os.environ.clear()
    os.environ.update(environ)  # the parent's environment now, not the fork server's
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)  # kernels inherit these: keep their chatter out of the progress bar
    logging.getLogger("traitlets").setLevel(logging.INFO)
    course = Course(root, assignment)
    for name in PRELOAD:  # already imported unless the fork server could not
        try:
            __import__(name)
        except ImportError:
            pass
    conn.send(("ready", None))
    while True:
        try:
            student = conn.recv()
        except EOFError:
            return
        if student is None:
            return
        jail = _fresh_jail(jail)
        try:
            payload = grade_submission(course, student, template, jail=jail,
                                       send=lambda kind, data: conn.send((kind, data)))
        except Exception:
            payload = failed_payload(course, student, "评分流程内部错误 (grading pipeline error): "
                                     + traceback.format_exc(limit=3)[-400:], [])
        conn.send(("done", payload))


def _warm_up():
    """Start the fork server now: its PRELOAD imports overlap with the parent's own work."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver
        _context()
        forkserver.ensure_running()


def _context():
    """Workers come from a fork server that imported PRELOAD once; spawn where there is none."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


class _Worker:
    def __init__(self, ctx, course, template, index, jail):
        self.parent_conn, child_conn = ctx.Pipe()
        log = course.state / "logs" / f"worker-{index}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = ctx.Process(target=_worker_main, daemon=True,
                                args=(child_conn, str(course.root), course.assignment, str(template), str(log),
                                      dict(os.environ), jail))
        self.proc.start()
        child_conn.close()
        self.student, self.deadline, self.partial, self.ready = None, None, {}, False

    def kill(self):
        """Kill the worker and everything it started (the kernel, the verifier's child)."""
        try:
            import psutil
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except Exception:
            procs = []
        self.proc.kill()
        for p in procs:
            try:
                p.kill()
            except Exception:
                pass
        self.proc.join(5)


def _warm_jail(course, index):
    """A warm jail for worker slot `index` (grading/zygote.py), or None: one jail per process then."""
    from grading.zygote import Zygote, ZygoteUnavailable
    log = course.state / "logs" / f"zygote-{index}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        return Zygote(course.root, course.assignment, str(log), str(course.state / "jupyter"))
    except ZygoteUnavailable:  # no sandbox (allowed) or switched off: nothing to warm
        return None
    except OSError as e:
        print(f"grading without a warm jail: {e}", file=sys.stderr)
        return None


class Pool:
    """`jobs` persistent grading workers; started early so they warm up while the parent prepares."""

    def __init__(self, course, template, jobs):
        self.course, self.template = course, template
        self.ctx = _context()
        # The warm jails start now too: they import torch while the fork server does.
        self.jails = [_warm_jail(course, i) for i in range(jobs)]
        self.workers = [_Worker(self.ctx, course, template, i, self._jail(i)) for i in range(jobs)]

    def _jail(self, i):
        z = self.jails[i]
        return (z.path, z.ipc_dir, z.jupyter_dir) if z is not None else None

    def run(self, students, budget, on_done):
        """Grade `students`; call on_done(payload) for each as it finishes (in any order)."""
        todo, workers = deque(students), self.workers
        while todo or any(w.student for w in workers):
            for w in workers:
                if w.ready and w.student is None and todo:
                    w.student, w.deadline, w.partial = todo.popleft(), time.monotonic() + budget, {}
                    w.parent_conn.send(w.student)
            deadlines = [w.deadline for w in workers if w.student]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            wait([w.parent_conn for w in workers] + [w.proc.sentinel for w in workers], timeout)
            for i, w in enumerate(workers):
                lost = self._check(w, budget, on_done)
                if lost:
                    w.kill()
                    if w.student:
                        flags = ["timeout"] if "limit" in lost else ["kernel_died"]
                        on_done(failed_payload(self.course, w.student, lost, flags, w.partial))
                    elif not w.ready:
                        raise RuntimeError(f"a grading worker could not start; see {self.course.state / 'logs'}")
                    workers[i] = _Worker(self.ctx, self.course, self.template, i, self._jail(i))

    @staticmethod
    def _check(w, budget, on_done):
        """Read what worker `w` sent; return why it is lost (died, over the time limit) or None."""
        try:
            while w.parent_conn.poll():
                kind, data = w.parent_conn.recv()
                if kind == "ready":
                    w.ready = True
                elif kind == "partial":
                    w.partial = data
                elif kind == "done":
                    on_done(data)
                    w.student = None
        except (EOFError, OSError):
            return "评分进程意外退出 (grading worker died)"
        if not w.proc.is_alive():
            return "评分进程意外退出 (grading worker died)"
        if w.student and time.monotonic() > w.deadline:
            return f"超过每位学生 {budget:.0f} 秒的评分时间上限 (grading time limit exceeded)"
        return None

    def close(self):
        for w in self.workers:
            try:
                w.parent_conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self.workers:
            w.proc.join(10)
            if w.proc.is_alive():
                w.kill()
        for z in self.jails:
            if z is not None:
                z.close()


# --- the batch -------------------------------------------------------------------------------

def check_sandbox():
    """Raise SandboxUnavailable unless the sandbox works or unsandboxed grading is allowed."""
    from grading.sandbox import refusal, sandbox_status, unsandboxed_allowed
    ok, reason = sandbox_status()
    if not ok and not unsandboxed_allowed():
        raise SandboxUnavailable(f"没有可用的沙箱，拒绝评分 (no sandbox, refusing to grade).\n{refusal(reason)}")
    return ok


def grade(course_root, assignment=ASSIGNMENT, students=None, jobs=None, regrade=False, progress=True):
    """Autograde the submissions under submitted/ and return one StudentResult per student.

    students: ids to grade (default: every folder under submitted/); jobs: worker
    processes (default: CPU cores); regrade: grade unchanged students again.
    Raises SandboxUnavailable when there is no sandbox and CHANNELS_ALLOW_UNSANDBOXED is unset.
    """
    venv_first_on_path()
    check_sandbox()
    root = Path(course_root).resolve()
    students = sorted(set(students)) if students else students_in(root)
    if not students:
        return []
    state = _read_json(root / STATE_DIR / "state.json", {})
    fingerprints = {s: fingerprint(root, assignment, s) for s in students}
    if regrade or any(state.get(s) != fp for s, fp in fingerprints.items()):
        _warm_up()  # the workers' imports, in the background while the gradebook is prepared
    course = Course(root, assignment)
    prepare_gradebook(course, students)
    graded_before = set(_submissions(course))

    results, todo = {}, []
    for student in students:
        fp = fingerprints[student]
        old = _read_json(course.state / "results" / f"{student}.json", None)
        if (not regrade and old and state.get(student) == fp and student in graded_before
                and course.autograded(student).exists()):
            result = StudentResult.from_dict(old)
            result.skipped = True
            results[student] = result
        else:
            todo.append((student, fp))

    if not todo:
        return [results[s] for s in students]
    template = course.state / "template.db"
    pool = Pool(course, template, min(max(1, jobs or os.cpu_count() or 1), len(todo)))
    try:
        return _grade_with(pool, course, students, todo, results, state, progress)
    finally:
        pool.close()


def _grade_with(pool, course, students, todo, results, state, progress):
    """The part of `grade` that runs while the workers warm up, then feeds them."""
    state_path = course.state / "state.json"
    # No earlier grade may survive a regrade, even one that is interrupted.
    kept, fingerprints, old_answers = {}, {}, {}
    for student, fp in todo:
        kept[student] = _remove_submission(course, student)
        state.pop(student, None)
        fingerprints[student] = fp
        old_answers[student] = _read_json(course.state / "answers" / f"{student}.json", {})
    _write_json(state_path, state)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="student", desc="autograde", file=sys.stderr, dynamic_ncols=True)

    def done(payload):
        student = payload["student"]
        payload["old_answers"] = old_answers.get(student, {})
        result = reconcile(course, payload, fingerprints[student])
        write_result(course, result, payload, kept.get(student, {}))
        _write_json(course.state / "results" / f"{student}.json", result.to_dict())
        _write_json(course.state / "answers" / f"{student}.json", payload["answers"])
        state[student] = fingerprints[student]
        _write_json(state_path, state)
        results[student] = result
        if bar:
            bar.set_postfix_str(f"{student} {result.total:g}/{result.max_total:g}")
            bar.update()

    try:
        _make_template(course, pool.template)
        pool.run([s for s, _ in todo], course.student_budget(), done)
    finally:
        if bar:
            bar.close()
    return [results[s] for s in students]

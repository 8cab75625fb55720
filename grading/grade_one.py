"""Grade one submission, without touching the real gradebook; return its Outcome.

    1. read the notebook (rebuild.load_submission): an unreadable one gets an Outcome that
       says why, and a graded notebook for the feedback that says it too;
    2. rebuild it from the release (rebuild.rebuild) and stage it under .grading/staged/
       with its time stamp and nothing else the student sent;
    3. verify every test cell out of the kernel (verify.verify_notebook) and write the
       verdicts where ApplyVerdicts will read them;
    4. run nbgrader's Autograde into a private copy of the gradebook: the kernel runs the
       student's cells, ApplyVerdicts writes the verdicts into the test cells, and nbgrader's
       own SaveAutoGrades scores them (partial credit), so feedback and grade agree;
    5. when nbgrader fails (kernel died, a loop that ignores interrupts, ...), the feedback
       notebook is the rebuilt one with the verdicts applied and the reason on top.

The parent (grading/batch.py) turns the Outcome into the student's result (result.reconcile)
and writes the real gradebook. `python -m grading run-one STUDENT` runs this alone.
"""
import copy
import dataclasses
import hashlib
import shutil
import time

import nbformat

from grading import gradebook
from grading.cells import grade_id, is_answer, is_test
from grading.preprocessors import verdict_outputs, write_verdicts
from grading.rebuild import SubmissionError, load_submission, rebuild
from grading.result import Outcome, Verdict


def _answers(nb):
    """grade_id -> hash of the student's answer text (to keep manual grades of unchanged answers)."""
    return {grade_id(c): hashlib.sha256(c.source.encode()).hexdigest()[:16] for c in nb.cells if is_answer(c)}


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


def _verify(course, rebuilt):
    """({grade_id: Verdict.to_dict()}, "") or (None, why the verifier reached no verdict)."""
    from grading.verify import verify_notebook
    try:
        verdicts = verify_notebook(course.root, course.assignment, rebuilt, course.notebook_id)
    except Exception as e:  # noqa: BLE001 (fail closed: the tests score 0, the reason is kept)
        return None, f"{type(e).__name__}: {e}"[:500]
    return {gid: v.to_dict() for gid, v in verdicts.items()}, ""


def _autograde(course, student, db_path, jail=None):
    """nbgrader's Autograde for one staged student, in this process; (ok, log, error)."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log
    config = copy.deepcopy(course.config)
    config.ApplyVerdicts.verdicts_file = str(course.verdicts_file(student))
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


def _timeouts(course, student):
    """grade_ids (or cell numbers) of the cells the kernel interrupted after the cell timeout."""
    path = course.autograded(student) / course.notebook
    if not path.exists():
        return []
    nb = nbformat.read(path, as_version=4)
    return [grade_id(c) or f"#{i + 1}" for i, c in enumerate(nb.cells)
            if any(o.get("ename") == "CellTimeoutError" for o in c.get("outputs", []))]


def _failure_reason(error, log):
    """Classify an nbgrader failure: (flags, readable reason)."""
    text = f"{error}\n{log}"
    if "DeadKernelError" in text or "Kernel died" in text:
        return ["kernel_died"], "内核意外退出，可能是内存不足或代码结束了进程 (kernel died, e.g. out of memory)"
    if "CellTimeoutError" in text or "Timeout waiting" in text or "UnresponsiveKernelError" in text:
        return ["timeout"], "运行超时且内核不响应中断 (timeout; the kernel ignored the interrupt)"
    last = [line for line in error.strip().splitlines() if line.strip()][-1:] or ["unknown error"]
    return [], f"nbgrader 自动评分出错 (autograde error): {last[0][:200]}"


def write_fallback(course, student, rebuilt, reason, verdicts):
    """The graded notebook for feedback when nbgrader produced none: the notebook that was
    graded, headed by the reason, with the verdicts (or failures) in its test cells."""
    nb = copy.deepcopy(rebuilt)
    for cell in nb.cells:
        if is_test(cell):
            test = course.contract.test(grade_id(cell))
            verdict = (verdicts or {}).get(test.grade_id) or \
                Verdict.failing(test, reason, "broken_notebook" if verdicts is None else "verifier_failed").to_dict()
            cell.outputs = verdict_outputs(verdict)
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


def grade_submission(course, student, template, send=None, jail=None):
    """Grade one student into a private copy of `template`; return the Outcome.

    `send(outcome)` reports the outcome as soon as the verdicts are in, before the risky
    part, so the parent still has them if this process has to be killed. `jail`: (socket,
    ipc directory, kernelspec folder) of a warm jail (grading/zygote.py) that was just reset.
    """
    start = time.monotonic()
    outcome = Outcome(student)
    try:
        nb, notes = load_submission(course.submitted(student), course.notebook)
    except SubmissionError as e:
        rebuilt, _ = rebuild(nbformat.v4.new_notebook(), course.release)
        write_fallback(course, student, rebuilt, e.reason, None)
        return dataclasses.replace(outcome, status="unreadable", flags=[e.code], reasons=[e.reason],
                                   seconds=time.monotonic() - start)
    rebuilt, rebuild_notes = rebuild(nb, course.release)
    notes = list(notes) + list(rebuild_notes)
    outcome.notes = [str(n) for n in notes] + _stage(course, student, nb)
    outcome.flags = sorted({n.code for n in notes if hasattr(n, "code")})
    outcome.answers = _answers(rebuilt)
    # nbgrader scores an untouched written answer 0; an empty one needs no instructor either
    outcome.manual = {grade_id(c): 0.0 for c in rebuilt.cells
                      if is_answer(c) and grade_id(c) in course.contract.manual and not c.source.strip()}

    if jail is not None:
        from grading import zygote
        zygote.use_in_worker(*jail)  # the verifier's child is forked there too
        outcome.warm_jail = True
    timings = outcome.timings = {"load": time.monotonic() - start}
    outcome.verdicts, verify_error = _verify(course, rebuilt)
    write_verdicts(course.verdicts_file(student), outcome.verdicts)
    timings["verify"] = time.monotonic() - start - sum(timings.values())
    if verify_error:
        outcome.flags.append("verifier_failed")
        outcome.reasons.append(f"独立验证失败，测试记 0 分 (verifier failed: tests score 0): {verify_error}")
    if send:
        send(outcome)

    db = course.state / "work" / f"{student}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, db)
    ok, log, error = _autograde(course, student, db, jail)
    timings["autograde"] = time.monotonic() - start - sum(timings.values())
    (course.state / "logs").mkdir(parents=True, exist_ok=True)
    (course.state / "logs" / f"{student}.log").write_text(f"{log}\n{error}", encoding="utf-8")
    private = gradebook.read_private(course, student, db)
    db.unlink(missing_ok=True)
    outcome.comments = private["comments"]
    outcome.timestamp, outcome.late_penalty = private["timestamp"], private["late_penalty"]
    if ok:
        outcome.manual.update({g: s for g, s in private["scores"].items() if g in course.contract.manual})
        timeouts = _timeouts(course, student)
        if timeouts:
            outcome.flags.append("timeout")
            outcome.reasons.append(f"单元运行超时，已中断 (cell timed out, interrupted): {', '.join(timeouts)}")
    else:
        flags, reason = _failure_reason(error, log)
        outcome.status = "failed"
        outcome.flags += flags + ["autograde_failed"]
        outcome.reasons.insert(0, reason)
        write_fallback(course, student, rebuilt, reason, outcome.verdicts or {})
    outcome.seconds = time.monotonic() - start
    return outcome


def failed_outcome(course, student, reason, flags, partial=None):
    """The Outcome of a student whose worker had to be killed or died (after `partial`, if any)."""
    outcome = dataclasses.replace(partial) if partial else Outcome(student)
    outcome.status = "failed"
    outcome.flags = list(outcome.flags) + flags + ["autograde_failed"]
    outcome.reasons = [reason] + list(outcome.reasons)
    try:
        nb, _ = load_submission(course.submitted(student), course.notebook)
    except SubmissionError:
        nb = nbformat.v4.new_notebook()
    write_fallback(course, student, rebuild(nb, course.release)[0], reason, outcome.verdicts or {})
    return outcome

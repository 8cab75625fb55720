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

The parent (grading/run/batch.py) turns the Outcome into the student's result (result.reconcile)
and writes the real gradebook. `python -m grading run-one STUDENT` runs this alone.
"""
import copy
import dataclasses
import functools
import hashlib
import shutil
import time
from pathlib import Path

import nbformat

from grading import gradebook, intake
from grading.cells import grade_id, is_answer, is_test
from grading.nbsteps.verdicts import put_verdicts, write_verdicts
from grading.rebuild import Note, SubmissionError, load_submission, rebuild
from grading.result import Outcome, all_failing, over_budget_reason


def _answers(nb):
    """grade_id -> hash of the student's answer text (to keep manual grades of unchanged answers)."""
    return {grade_id(c): hashlib.sha256(c.source.encode()).hexdigest()[:16] for c in nb.cells if is_answer(c)}


def _stage(course, student, nb):
    """Put the readable notebook and the time stamp where nbgrader will look for them.

    The time stamp and nbgrader's submission secret are read from the submission folder as
    small regular files only (no link followed, at most 1 KB: grading/intake.py read_small).
    """
    stage = course.state / "staged" / student / course.assignment
    shutil.rmtree(stage.parent, ignore_errors=True)
    stage.mkdir(parents=True)
    nbformat.write(nb, stage / course.notebook)
    folder, trusted = course.submitted(student), course.root / "submitted"
    notes = []
    stamp = intake.read_small(folder, "timestamp.txt", 1024, trusted)
    if stamp is not None:
        from nbgrader.utils import parse_utc
        text = stamp.decode("utf-8", errors="replace").strip()
        try:
            parse_utc(text)
            (stage / "timestamp.txt").write_text(text)
        except (ValueError, OverflowError, TypeError):
            notes.append(f"timestamp.txt 无法解析，已忽略 (unreadable time stamp): {text[:40]!r}")
    # Written by `nbgrader submit` (exchange route): release_feedback looks for it in feedback/,
    # which generate_feedback fills from autograded/, which Autograde fills from here.
    secret = intake.read_small(folder, "submission_secret.txt", 1024, trusted)
    if secret is not None:
        (stage / "submission_secret.txt").write_bytes(secret)
    return notes


@functools.lru_cache(maxsize=4)
def _instructor_texts(root, assignment, notebook):
    """(source notebook, texts students have besides the release notebook) or None without source/."""
    source = Path(root) / "source" / assignment / notebook
    if not source.is_file():
        return None
    public = tuple(p.read_text(encoding="utf-8", errors="replace")
                   for p in sorted((Path(root) / "release" / assignment).glob("*.py")))
    return nbformat.read(source, as_version=4), public


def _instructor_code(course, nb):
    """intake.instructor_code for this submission: [] when clean (or when it cannot be checked)."""
    try:
        texts = _instructor_texts(str(course.root), course.assignment, course.notebook)
        if texts is None:
            return []
        return intake.instructor_code(nb, texts[0], course.release, texts[1])
    except Exception:  # noqa: BLE001 (a flag, never a reason to stop grading)
        return []


def _verify(course, rebuilt, jails, seconds):
    """({grade_id: Verdict.to_dict()}, why verification stopped early or "", log for the instructor);
    (None, why, log) when it could not run at all."""
    from grading.verify import verify_notebook
    zygotes = {"child": jails["student"]["path"], "verifier": jails["verifier"]["path"]} if jails else None
    try:
        verdicts, error, log = verify_notebook(course.root, course.assignment, rebuilt, course.settings,
                                               zygotes=zygotes, seconds=seconds, contract=course.contract)
    except Exception as e:  # noqa: BLE001 (fail closed: the tests score 0, the reason is kept)
        return None, f"{type(e).__name__}: {e}"[:500], ""
    return {gid: v.to_dict() for gid, v in verdicts.items()}, error or "", log


def _autograde(course, student, db_path, jails=None, deadline=None):
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
    if deadline is not None:  # the student's budget: the kernel stops there (GradedExecute)
        config.GradedExecute.deadline = deadline
    if jails is not None:  # this worker has warm jails: its kernels are forked there
        from grading.jail import zygote
        student = jails["student"]
        zygote.use_for_kernels(student["path"], student["ipc_dir"], student["jupyter_dir"], config)
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
    put_verdicts(nb, course.contract, verdicts, reason, "broken_notebook" if verdicts is None else "verifier_failed")
    header = nbformat.v4.new_markdown_cell(
        "**自动评分没有完成 (autograding did not finish)**\n\n"
        f"原因 (reason)：{reason}\n\n"
        "下面是用于评分的 notebook：原始的说明与测试，加上你的答案。"
        "得分来自在内核之外对每个测试单元的独立验证；无法验证的测试记 0 分。")
    header["id"] = "grading-failure"
    nb.cells.insert(0, header)
    # the reason may quote what the student sent (file names): sanitized with their cells
    from grading.jail.sanitize import sanitize_notebook
    sanitize_notebook(nb)
    dest = course.autograded(student)
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    nbformat.write(nb, dest / course.notebook)
    staged = course.state / "staged" / student / course.assignment / "submission_secret.txt"
    if staged.is_file():  # for `nbgrader release_feedback` (exchange route)
        shutil.copyfile(staged, dest / "submission_secret.txt")


def grade_submission(course, student, template, send=None, jails=None):
    """Grade one student into a private copy of `template`; return the Outcome.

    `send(outcome)` reports the outcome as soon as the verdicts are in, before the risky
    part, so the parent still has them if this process has to be killed. `jails`: {role:
    {"path", "ipc_dir", "jupyter_dir"}} of this worker's warm jails (grading/jail/zygote.py),
    just reset. The whole grading of the student keeps within course.settings.student_seconds:
    past it, every test cell scores 0 with the reason (`over_budget`).
    """
    start = time.monotonic()
    deadline = start + course.settings.student_seconds
    outcome = Outcome(student)
    folder, trusted = course.submitted(student), course.root / "submitted"
    refused = intake.refused_at_intake(folder, trusted)  # what collect / zip_collect did not copy
    refused_text = (f"收集时拒绝了 {len(refused)} 个文件 ({len(refused)} files refused at collection): "
                    f"{intake.describe_refused(refused)}") if refused else ""
    try:
        nb, notes = load_submission(folder, course.notebook, trusted)
    except SubmissionError as e:
        rebuilt, _ = rebuild(nbformat.v4.new_notebook(), course.release)
        write_fallback(course, student, rebuilt, e.reason, None)
        return dataclasses.replace(outcome, status="unreadable", flags=[e.code] + (["files_refused"] if refused else []),
                                   reasons=[e.reason] + ([refused_text] if refused else []),
                                   seconds=time.monotonic() - start)
    rebuilt, rebuild_notes = rebuild(nb, course.release)
    notes = list(notes) + list(rebuild_notes)
    if refused:
        notes.append(Note("files_refused", refused_text))
    outcome.notes = [str(n) for n in notes] + _stage(course, student, nb)
    outcome.flags = sorted({n.code for n in notes if hasattr(n, "code")})
    found = _instructor_code(course, nb)
    if found:  # flagged for the instructor; the score is whatever the verifier gives
        outcome.flags.append("instructor_code")
        outcome.reasons.append("提交中含有教师的隐藏测试或参考答案 (the submission contains the instructor's hidden "
                               f"tests or solutions): {intake.describe_instructor_code(found)}")
    outcome.answers = _answers(rebuilt)
    # nbgrader scores an untouched written answer 0; an empty one needs no instructor either
    outcome.manual = {grade_id(c): 0.0 for c in rebuilt.cells
                      if is_answer(c) and grade_id(c) in course.contract.manual and not c.source.strip()}

    outcome.warm_jail = jails is not None
    timings = outcome.timings = {"load": time.monotonic() - start}
    outcome.verdicts, verify_error, verify_log = _verify(course, rebuilt, jails, deadline - time.monotonic())
    write_verdicts(course.verdicts_file(student), outcome.verdicts)
    timings["verify"] = time.monotonic() - start - sum(timings.values())
    if verify_error:
        outcome.flags.append("verifier_failed")
        outcome.reasons.append(f"独立验证没有完成，没有结果的测试记 0 分 (verification incomplete): {verify_error}")
    if send:
        send(outcome)

    db = course.state / "work" / f"{student}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, db)
    ok, log, error = _autograde(course, student, db, jails, deadline)
    timings["autograde"] = time.monotonic() - start - sum(timings.values())
    (course.state / "logs").mkdir(parents=True, exist_ok=True)
    (course.state / "logs" / f"{student}.log").write_text(f"{log}\n{error}\n{verify_log}", encoding="utf-8")
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
    if time.monotonic() > deadline:
        return over_budget(course, student, outcome, rebuilt)
    return outcome


def over_budget(course, student, outcome, rebuilt):
    """The student took longer than the budget: every test cell 0, with the reason (fail closed)."""
    reason = over_budget_reason(course.settings.student_seconds)
    verdicts = all_failing(course.contract, reason, "timeout")
    outcome = dataclasses.replace(outcome, status="failed", verdicts=verdicts, reasons=[reason] + list(outcome.reasons),
                                  flags=list(outcome.flags) + ["over_budget", "autograde_failed"])
    write_fallback(course, student, rebuilt, reason, verdicts)
    return outcome


def failed_outcome(course, student, reason, flags, partial=None):
    """The Outcome of a student whose worker had to be killed or died (after `partial`, if any;
    over the budget, every test cell scores 0 with `reason`)."""
    outcome = dataclasses.replace(partial) if partial else Outcome(student)
    if "over_budget" in flags:
        outcome.verdicts = all_failing(course.contract, reason, "timeout")
    outcome.status = "failed"
    outcome.flags = list(outcome.flags) + flags + ["autograde_failed"]
    outcome.reasons = [reason] + list(outcome.reasons)
    try:
        nb, _ = load_submission(course.submitted(student), course.notebook)
    except SubmissionError:
        nb = nbformat.v4.new_notebook()
    write_fallback(course, student, rebuild(nb, course.release)[0], reason, outcome.verdicts or {})
    return outcome

"""Autograde every submission of one assignment: in parallel, sandboxed, without losing anyone.

    grade(root, assignment)      every student who handed it in (or `students`), `jobs` workers
    run_one(root, assignment, student)   one student (`python -m grading run-one`), same budget

For each student a worker runs grading/run/grade_one.py (verify, then nbgrader's Autograde with
the verdicts applied) within the student's budget (c.Grading.student_seconds; a worker that
overruns it is killed from here, the student scores 0 and the next one is graded); this
process turns each Outcome into the student's result (result.reconcile) and writes it: the
gradebook (grading/gradebook.py, manual grading kept for unchanged answers) and
.grading/<assignment>/results/<student>.json and state.json.

Only this process writes `gradebook.db`: it removes the old submission of every student it
is about to grade before any work starts (a failed regrade leaves no earlier grade behind),
then writes each result as it arrives. The same function grades a student whatever the
number of workers, so the gradebook does not depend on `-j`. Unchanged students (same
submission, course files and grading code) are skipped unless `regrade=True`; their last
result is reported again.
"""
import os
import sys

from grading import gradebook
from grading.course import Course, course_digest, fingerprint, read_json, students_in, venv_first_on_path, write_json
from grading.result import StudentResult, reconcile


#: Seconds past a student's budget after which their worker is killed from outside.
BUDGET_GRACE = 30


class SandboxUnavailable(RuntimeError):
    """No sandbox and unsandboxed grading was not allowed; the message says why."""


def check_sandbox(settings):
    """Raise SandboxUnavailable unless the sandbox works or the settings allow grading without it."""
    from grading.jail.sandbox import refusal, sandbox_status
    ok, reason = sandbox_status()
    if not ok and not settings.allow_unsandboxed:
        raise SandboxUnavailable(f"没有可用的沙箱，拒绝评分 (no sandbox, refusing to grade).\n{refusal(reason)}")
    return ok


class _Writer:
    """Writes each student's result as it arrives: gradebook, results/, answers/, state.json."""

    def __init__(self, course, todo, state, results, bar=None):
        self.course, self.state, self.results, self.bar = course, state, results, bar
        self.fingerprints = dict(todo)
        self.kept, self.old_answers = {}, {}
        # No earlier grade may survive a regrade, even one that is interrupted.
        for student, _ in todo:
            self.kept[student] = gradebook.forget(course, student)
            self.old_answers[student] = read_json(course.state / "answers" / f"{student}.json", {})
            state.pop(student, None)
        write_json(course.state / "state.json", state)

    def __call__(self, outcome):
        student, course = outcome.student, self.course
        result = reconcile(course.contract, outcome, self.fingerprints[student])
        gradebook.write(course, result, outcome.comments, self.kept.get(student, {}),
                        self.old_answers.get(student, {}))
        write_json(course.state / "results" / f"{student}.json", result.to_dict())
        write_json(course.state / "answers" / f"{student}.json", result.answers)
        self.state[student] = self.fingerprints[student]
        write_json(course.state / "state.json", self.state)
        self.results[student] = result
        if self.bar:
            self.bar.set_postfix_str(f"{student} {result.total:g}/{result.max_total:g}")
            self.bar.update()


def grade(course_root, assignment, students=None, jobs=None, regrade=False, progress=True, settings=None):
    """Autograde the submissions of `assignment` under submitted/; one StudentResult per student.

    students: ids to grade (default: every student who handed it in); jobs: worker processes
    (default: CPU cores); regrade: grade unchanged students again; settings: a
    grading.settings.Grading (default: nbgrader_config.py's). Raises SandboxUnavailable
    when there is no sandbox and the settings do not allow grading without one.
    """
    from grading.run.pool import Pool, warm_up
    venv_first_on_path()
    root = os.path.realpath(course_root)
    course = Course(root, assignment, settings)
    check_sandbox(course.settings)
    students = sorted(set(students)) if students else students_in(root, assignment)
    if not students:
        return []
    state = read_json(course.state / "state.json", {})
    digest = course_digest(root, assignment)
    fingerprints = {s: fingerprint(root, assignment, s, digest) for s in students}
    if regrade or any(state.get(s) != fp for s, fp in fingerprints.items()):
        warm_up()  # the workers' imports, in the background while the gradebook is prepared
    gradebook.prepare(course, students)
    graded_before = gradebook.graded_students(course)

    results, todo = {}, []
    for student in students:
        fp = fingerprints[student]
        old = read_json(course.state / "results" / f"{student}.json", None)
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
    bar = None
    try:
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(todo), unit="student", desc=f"autograde {assignment}", file=sys.stderr,
                       dynamic_ncols=True)
        write = _Writer(course, todo, state, results, bar)
        gradebook.make_template(course, template)
        # The worker keeps the budget itself; killing it from here, a little later, is for a
        # worker that cannot even do that.
        pool.run([s for s, _ in todo], course.settings.student_seconds + BUDGET_GRACE, write)
    finally:
        if bar:
            bar.close()
        pool.close()
    return [results[s] for s in students]


def run_one(course_root, assignment, student, settings=None):
    """Grade one student, unchanged or not, exactly as a batch does (one worker, the same budget)."""
    return grade(course_root, assignment, students=[student], jobs=1, regrade=True, progress=False,
                 settings=settings)[0]

"""All gradebook I/O of the pipeline (only the parent process writes the real gradebook).

    prepare(course, students)          the assignment and every student are known
    forget(course, student)            remove a submission before it is regraded; return the
                                       manual grading worth keeping (scores, comments)
    write(course, result, kept, old)   the student's final grades as a fresh submission,
                                       manual grading carried over for unchanged answers
    read_private(course, student, db)  what nbgrader's SaveAutoGrades wrote into a worker's
                                       private copy (manual answers, comments, time stamp)
    scores(course_root, assignment)    {student: {grade_id: (auto, manual, needs_manual)}}
    read_gradebook(course_root, a)     {student: Submission}: the gradebook as `nbgrader export` reads it
"""
import copy
import dataclasses
import shutil
import tempfile
import warnings
from pathlib import Path


def open_gradebook(course, url=None):
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning
    # nbgrader's add_submission trips SQLAlchemy's autoflush warnings; the data is right
    warnings.filterwarnings("ignore", category=SAWarning)
    return Gradebook(url or course.db_url, course.course_id)


def prepare(course, students):
    """Make sure the gradebook knows the assignment and every student."""
    from nbgrader.api import MissingEntry
    with open_gradebook(course) as gb:
        try:
            gb.find_notebook(course.notebook_id, course.assignment)
            known = True
        except MissingEntry:
            known = False
    if not known:
        register_assignment(course)
    with open_gradebook(course) as gb:
        for student in students:
            gb.update_or_create_student(student)


def register_assignment(course):
    """Record the assignment's cells in the gradebook as `nbgrader generate_assignment` does,
    without rewriting release/: the students have that version, whatever source/ says now."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log
    config = copy.deepcopy(course.config)
    with tempfile.TemporaryDirectory(prefix="grading-release-") as scratch:
        coursedir = CourseDirectory(config=config)
        coursedir.root = str(course.root)
        coursedir.release_directory = scratch
        coursedir.assignment_id = course.assignment
        app = GenerateAssignment(coursedir=coursedir, config=config)
        app.force = True
        result = capture_log(app)
    if not result["success"]:
        raise RuntimeError(f"could not record {course.assignment} in the gradebook:\n{result.get('error', '')}")


def make_template(course, template):
    """A copy of the gradebook without submissions: each worker grades into its own copy of it."""
    from nbgrader.api import MissingEntry
    template = Path(template)
    template.parent.mkdir(parents=True, exist_ok=True)
    db = Path(course.db_url.split("sqlite:///", 1)[1].split("?")[0])
    shutil.copy(db, template)
    with open_gradebook(course, f"sqlite:///{template}") as gb:
        for sub in list(gb.find_assignment(course.assignment).submissions):
            try:
                gb.remove_submission(course.assignment, sub.student.id)
            except MissingEntry:
                pass


def forget(course, student):
    """Remove the student's submission; return {grade_id: manual grading} to keep.

    Manual scores, extra credit and comments survive only for answers whose text is
    unchanged (`write` compares the answer hashes). An extra-credit test cell's extra credit
    is grading's, not the instructor's: it is graded again.
    """
    from nbgrader.api import MissingEntry
    kept = {}
    graded_extra = course.contract.extra_credit
    with open_gradebook(course) as gb:
        try:
            nb = gb.find_submission_notebook(course.notebook_id, course.assignment, student)
        except MissingEntry:
            return kept
        for grade in nb.grades:
            extra = None if grade.name in graded_extra else grade.extra_credit
            if grade.manual_score is not None or extra is not None:
                kept.setdefault(grade.name, {}).update(manual_score=grade.manual_score, extra_credit=extra)
        for comment in nb.comments:
            if comment.manual_comment:
                kept.setdefault(comment.name, {})["manual_comment"] = comment.manual_comment
        gb.remove_submission(course.assignment, student)
    return kept


def write(course, result, comments, kept, old_answers):
    """Write one student's final grades into the gradebook (a fresh submission).

    `kept` (from `forget`) is carried over for every cell whose answer hash in
    `old_answers` equals the new one in `result.answers`. An extra-credit test cell has 0
    points in nbgrader: what it earned is recorded as its extra credit, on top of 100 %.
    """
    extra = course.contract.extra_credit
    from nbgrader.api import MissingEntry
    with open_gradebook(course) as gb:
        gb.update_or_create_student(result.student)
        try:
            gb.remove_submission(course.assignment, result.student)
        except MissingEntry:
            pass
        stamp = {"timestamp": result.timestamp} if result.timestamp else {}
        gb.add_submission(course.assignment, result.student, **stamp)
        nb = gb.find_submission_notebook(course.notebook_id, course.assignment, result.student)
        nb.late_submission_penalty = result.late_penalty

        def unchanged(name):
            return name in kept and old_answers.get(name) == result.answers.get(name)

        for grade in nb.grades:
            score = result.scores.get(grade.name)
            grade.auto_score = 0.0 if grade.name in extra else score
            grade.needs_manual_grade = score is None
            if unchanged(grade.name):
                carry = kept[grade.name]
                grade.manual_score = carry.get("manual_score")
                grade.extra_credit = carry.get("extra_credit")
                if grade.manual_score is not None:
                    grade.needs_manual_grade = False
            if grade.name in extra:
                grade.extra_credit = score
        for comment in nb.comments:
            comment.auto_comment = comments.get(comment.name)
            if unchanged(comment.name):
                comment.manual_comment = kept[comment.name].get("manual_comment")
        gb.db.commit()


def read_private(course, student, db_path):
    """What nbgrader wrote into a worker's private gradebook: scores, comments, time stamp, penalty."""
    from nbgrader.api import MissingEntry
    out = {"scores": {}, "comments": {}, "timestamp": None, "late_penalty": None}
    with open_gradebook(course, f"sqlite:///{db_path}") as gb:
        try:
            sub = gb.find_submission(course.assignment, student)
            nb = gb.find_submission_notebook(course.notebook_id, course.assignment, student)
        except MissingEntry:
            return out
        out["timestamp"] = sub.timestamp.isoformat() if sub.timestamp else None
        out["late_penalty"] = nb.late_submission_penalty
        out["scores"] = {g.name: g.auto_score for g in nb.grades}
        out["comments"] = {c.name: c.auto_comment for c in nb.comments}
    return out


def graded_students(course):
    """Students with a submission of the assignment in the gradebook."""
    with open_gradebook(course) as gb:
        return {sub.student.id for sub in gb.find_assignment(course.assignment).submissions}


def scores(course_root, assignment):
    """{student: {grade_id: (auto_score, manual_score, needs_manual_grade)}} (for tests and reports);
    an extra-credit cell's auto score is what it earned."""
    from grading.course import Course
    course = Course(course_root, assignment)
    out = {}
    with open_gradebook(course) as gb:
        for sub in gb.find_assignment(course.assignment).submissions:
            for nb in sub.notebooks:
                out.setdefault(sub.student.id, {}).update(
                    {g.name: (_auto(g), g.manual_score, g.needs_manual_grade) for g in nb.grades})
    return out


def _auto(grade):
    """What grading gave a cell: its auto score, or for extra credit what it earned on top."""
    if grade.extra_credit is not None and not grade.max_score:
        return (grade.auto_score or 0.0) + grade.extra_credit
    return grade.auto_score


# --- Reading it as `nbgrader export` does (reports, LMS files) ---------------------------------

def _db_url(course_root):
    """The gradebook of the course: nbgrader_config.py's db_url, else gradebook.db in the folder."""
    root = Path(course_root).resolve()
    config_file = root / "nbgrader_config.py"
    # Loading the config runs the sandbox set-up: only when it may set db_url at all.
    if config_file.is_file() and "db_url" in config_file.read_text(encoding="utf-8", errors="replace"):
        try:
            from traitlets.config.loader import PyFileConfigLoader
            config = PyFileConfigLoader(config_file.name, path=str(root)).load_config()
            url = config.CourseDirectory.get("db_url")
            if url:
                return url
        except BaseException:  # noqa: BLE001 (a broken config exits; the default place then)
            pass
    return f"sqlite:///{root / 'gradebook.db'}"


@dataclasses.dataclass
class Submission:
    """One student's row of the gradebook."""
    student: str
    name: str                # "Last, First" when the gradebook has names, else ""
    email: str
    submitted: bool          # False: in the gradebook without a submission (nbgrader export: 0)
    raw: float               # sum of the cell scores (manual score where given, else auto)
    penalty: float           # late submission penalty
    max_score: float
    seconds_late: float
    timestamp: str
    grades: dict             # grade_id -> (score, max, needs_manual_grade)

    @property
    def score(self):
        """What nbgrader's grades.csv calls score: raw minus penalty, never below 0."""
        return max(0.0, self.raw - self.penalty)


def read_gradebook(course_root, assignment):
    """{student: Submission} for every student in the gradebook (as `nbgrader export` sees it)."""
    from nbgrader.api import Gradebook, MissingEntry
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's deprecation chatter
        with Gradebook(_db_url(course_root)) as gb:
            try:
                max_score = gb.find_assignment(assignment).max_score
            except MissingEntry:
                return out
            for student in gb.students:
                name = ", ".join(n for n in (student.last_name, student.first_name) if n)
                try:
                    sub = gb.find_submission(assignment, student.id)
                except MissingEntry:
                    out[student.id] = Submission(student.id, name, student.email or "", False, 0.0, 0.0,
                                                 max_score, 0.0, "", {})
                    continue
                grades = {}
                for nb in sub.notebooks:
                    for g in nb.grades:
                        grades[g.name] = (float(g.score), float(g.max_score), bool(g.needs_manual_grade))
                out[student.id] = Submission(
                    student.id, name, student.email or "", True, float(sub.score),
                    float(sub.late_submission_penalty or 0.0), float(max_score),
                    float(sub.total_seconds_late or 0.0), sub.timestamp.isoformat() if sub.timestamp else "",
                    grades)
    return out


def gradebook_assignments(course_root):
    """The names of the assignments the course's gradebook knows, in their order there."""
    from nbgrader.api import Gradebook
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(_db_url(course_root)) as gb:
            return [a.name for a in gb.assignments]

"""One engine, any assignment: a second assignment beside channels, graded with the same commands.

tests/fixtures/padding/ (D2L §6.3, 填充与步幅) is added to a scratch course as source/padding/
the way docs/grading.md's "Adding an assignment" says (with the engine's testkit.py), then run through the instructor's commands: nbgrader generate_assignment,
`python -m grading grade padding`, `feedback padding`, `report`, `export-lms`. Its rules are
its own (convolutions allowed, an nn.Conv2d answer), channels' stay channels' (convolutions
refused), and grading one assignment leaves the other's results exactly as they were.
"""
import csv
import hashlib
import shutil
import subprocess
import sys

import nbformat
import pytest

from conftest import ROOT, make_course, nbgrader, sandbox_or_trusted, venv_env
from expect import MAX_WITH_EXTRA, T1
from grading.fill import fill_notebook, release_notebook, write_submission

FIXTURE = ROOT / "tests" / "fixtures" / "padding"
#: student -> (channels sample or None, padding sample or None: the release notebook untouched)
STUDENTS = {"ana": ("ref_reference", "right"), "ben": ("uses_conv2d", "mistakes"), "cai": (None, None)}
#: padding's exact grades: {student: {test cell: points}} (tests/fixtures/padding/samples/ say why)
PADDING = {
    "ana": {"test_output_shape": 2.0, "test_conv2d_padded": 2.0, "test_strided_layer": 2.0},
    # no parts: all or nothing; shape part kept, values part lost; the layer right
    "ben": {"test_output_shape": 0.0, "test_conv2d_padded": 1.0, "test_strided_layer": 2.0},
    "cai": {"test_output_shape": 0.0, "test_conv2d_padded": 0.0, "test_strided_layer": 0.0},
}


def add_assignment(course, name, folder):
    """What an instructor does to add an assignment (docs/grading.md): its folder under source/,
    with the engine's testkit.py beside the notebook."""
    dest = course / "source" / name
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("samples", "README.md"))
    shutil.copy(course / "grading" / "jail" / "testkit.py", dest / "testkit.py")


def grading(course, *args):
    """`python -m grading ARGS` in the course folder (what the Makefile's targets run)."""
    proc = subprocess.run([sys.executable, "-m", "grading", *args], cwd=course, env=venv_env(),
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"python -m grading {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def hand_in(course, assignment, student, sample, samples):
    release = release_notebook(course, assignment)
    nb = fill_notebook(release, samples / f"{sample}.py") if sample else nbformat.read(release, as_version=4)
    write_submission(course, student, {release.name: nb}, assignment)


def state_of(course, assignment):
    """What grading `assignment` produced: its results, verdicts and caches, and its gradebook rows."""
    from grading.gradebook import scores
    files = {p.relative_to(course).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for folder in ("results", "verdicts") for p in sorted((course / ".grading" / assignment / folder).rglob("*"))
             if p.is_file()}
    state = course / ".grading" / assignment / "state.json"
    return files, state.read_bytes(), scores(course, assignment)


@pytest.fixture(scope="module")
def two_assignments(tmp_path_factory):
    course = sandbox_or_trusted(make_course(tmp_path_factory.mktemp("engine") / "course"))
    add_assignment(course, "padding", FIXTURE)
    nbgrader(course, "generate_assignment", "padding", "--force")
    for student, (channels, _) in STUDENTS.items():
        if channels:
            hand_in(course, "channels", student, channels, ROOT / "samples" / "class")
    grading(course, "grade", "channels", "-q")
    before = state_of(course, "channels")
    for student, (_, padding) in STUDENTS.items():
        hand_in(course, "padding", student, padding, FIXTURE / "samples")
    out = grading(course, "grade", "--assignment", "padding", "-q")
    return course, before, out


@pytest.mark.timeout(1500)
def test_a_second_assignment_is_graded_by_its_own_rules(two_assignments):
    from grading.gradebook import scores
    course, _, _ = two_assignments
    assert (course / "release" / "padding" / "testkit.py").is_file()  # shipped beside the notebook
    got = {s: {g: auto for g, (auto, _, _) in grades.items()} for s, grades in scores(course, "padding").items()}
    assert got == PADDING
    # the convolution: allowed in padding (ana's F.conv2d, full marks), refused in channels
    channels = scores(course, "channels")
    assert channels["ana"][T1][0] == 3.0 and channels["ben"][T1][0] == 0.0
    assert sum(auto for auto, _, _ in channels["ana"].values() if auto) == MAX_WITH_EXTRA


def test_grading_one_assignment_leaves_the_others_results_alone(two_assignments):
    course, before, _ = two_assignments
    assert state_of(course, "channels") == before
    assert sorted(p.stem for p in (course / ".grading" / "channels" / "results").glob("*.json")) == ["ana", "ben"]
    assert sorted(p.stem for p in (course / ".grading" / "padding" / "results").glob("*.json")) == sorted(STUDENTS)


def test_feedback_report_and_lms_files_of_both(two_assignments, tmp_path):
    course, _, out = two_assignments
    grading(course, "feedback", "padding")
    page = (course / "feedback" / "ben" / "padding" / "padding.html").read_text(encoding="utf-8")
    assert "Score: 3.0 / 6.0" in page and "BEGIN HIDDEN TESTS" not in page
    assert not (course / "feedback" / "ben" / "channels").exists()  # only what was asked for

    from grading.reports import analytics
    assert f"班级报告 (class report): {course / analytics.report_path('padding')}" in out
    grading(course, "report")
    overview = (course / analytics.COURSE_REPORT).read_text(encoding="utf-8")
    assert "channels" in overview and "padding" in overview
    data = analytics.collect(course, "padding")
    assert data["totals"] == {"ana": 6.0, "ben": 3.0, "cai": 0.0}
    assert data["categories"]["test_conv2d_padded"] == {
        "values": {"students": ["ben"], "example": data["categories"]["test_conv2d_padded"]["values"]["example"],
                   "details": {}},
        "unanswered": {"students": ["cai"], "example": data["categories"]["test_conv2d_padded"]["unanswered"]["example"],
                       "details": {}}}
    assert "floor((n - k + p + s) / s)" in data["lines"]["ben"]  # padding's own hint, not channels'

    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,canvas_id,sis_user_id,sis_login_id,section,email,username,idnumber\n"
                      + "".join(f"{s},{s.title()},{i},S{i},{s},A,{s}@example.edu,{s},{i}\n"
                                for i, s in enumerate(STUDENTS, 1)), encoding="utf-8")
    grading(course, "export-lms", "--roster", str(roster), "--canvas-assignment", "padding=padding (42)")
    with open(course / "grades-canvas.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0][5:] == ["channels", "padding (42)"] and rows[1][5:] == ["20", "6"]
    by_login = {row[3]: row[5:] for row in rows[2:]}
    assert by_login == {"ana": [f"{MAX_WITH_EXTRA:g}", "6"], "ben": [by_login["ben"][0], "3"], "cai": ["0", "0"]}


@pytest.mark.fast
def test_commands_name_the_assignment_or_say_which_there_are(course):
    """With one assignment every command takes it by default; with two, a command without one
    says which there are (exit 2), and an unknown one is named."""
    from grading.course import AssignmentError, assignments, choose_assignment
    assert assignments(course) == ["channels"] and choose_assignment(course) == "channels"
    add_assignment(course, "padding", FIXTURE)
    assert assignments(course) == ["channels", "padding"]
    with pytest.raises(AssignmentError, match="2 assignments, say which one.*channels, padding"):
        choose_assignment(course)
    with pytest.raises(AssignmentError, match="no assignment 'chanels'.*channels, padding"):
        choose_assignment(course, "chanels")
    proc = subprocess.run([sys.executable, "-m", "grading", "--course", str(course), "run-one", "--student", "x"],
                          cwd=course, env=venv_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "say which one" in proc.stderr and "channels, padding" in proc.stderr


@pytest.mark.fast
def test_the_engine_names_no_assignment_and_its_map_names_every_module():
    """grading/ knows no assignment (no `channels`, no corr2d function: those live in
    source/channels/), and docs/grading.md's map names every module of grading/ and tools/."""
    import re
    naming = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "grading").rglob("*"))
              if p.is_file() and p.suffix in {".py", ".j2", ".json", ".md"}
              for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
              if re.search(r"channels|corr2d", line, re.I)]
    assert naming == [], naming
    doc = (ROOT / "docs" / "grading.md").read_text(encoding="utf-8")
    unnamed = [str(p.relative_to(ROOT)) for top in ("grading", "tools") for p in sorted((ROOT / top).rglob("*.py"))
               if p.name != "__init__.py" and f"`{p.name}`" not in doc and f"{p.stem}." not in doc]
    assert unnamed == [], f"docs/grading.md does not name {unnamed}"

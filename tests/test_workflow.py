"""The instructor's routes of docs/workflows.md, run end to end in scratch folders.

- LMS route: a Canvas download (samples/lms/submissions.zip) → `nbgrader zip_collect` →
  `make grade` → `nbgrader export`, with exact scores.
- Exchange route on one machine: release_assignment → fetch_assignment → submit → collect →
  `make grade` → generate_feedback → release_feedback → fetch_feedback, in a scratch exchange;
  each student works in a home folder of their own.
- `make bench` in its quick form prints its ratio lines.

The nbgrader commands are the ones docs/workflows.md shows (a test checks that they appear
there); `make grade` is `python -m grading grade`, run in the scratch course.
"""
import csv
import importlib.util
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from conftest import ASSIGNMENT, ROOT, nbgrader, sandbox_or_trusted, venv_env
from expect import MAX_WITH_EXTRA, expected_total
from test_samples import EXPECTED as SAMPLE_LOSSES

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from grading.fill import fill_notebook  # noqa: E402

COURSE_ID = "d2l-channels"
LMS = ROOT / "samples" / "lms"
DOCS = ROOT / "docs" / "workflows.md"

# The commands of docs/workflows.md (the exchange ones get --Exchange.root=<scratch> added here).
ZIP_COLLECT = ["zip_collect", ASSIGNMENT, "--ZipCollectApp.config_file=samples/lms/nbgrader_zip_config", "--force"]
RELEASE = ["release_assignment", ASSIGNMENT]
FETCH = ["fetch_assignment", ASSIGNMENT, f"--course={COURSE_ID}"]
SUBMIT = ["submit", ASSIGNMENT, f"--course={COURSE_ID}"]
COLLECT = ["collect", ASSIGNMENT]
FEEDBACK = ["generate_feedback", ASSIGNMENT]
RELEASE_FEEDBACK = ["release_feedback", ASSIGNMENT]
FETCH_FEEDBACK = ["fetch_feedback", ASSIGNMENT, f"--course={COURSE_ID}"]
EXPORT = ["export"]
DOCUMENTED = [ZIP_COLLECT, RELEASE, FETCH, SUBMIT, COLLECT, FEEDBACK, RELEASE_FEEDBACK, FETCH_FEEDBACK, EXPORT]

# 100 % is 20 points (17 autograded + 3 for the written answer, not graded yet here); the bonus's
# extra credit comes on top. Each sample's losses: tests/test_samples.py (why: samples/class/<sample>.py).
MAX_SCORE = 20.0


def sample_total(sample):
    return expected_total(SAMPLE_LOSSES[sample])


def make_grade(course, *students):
    """`make grade` in the scratch course: python -m grading grade (sandboxed where possible)."""
    sandbox_or_trusted(course)  # the bundled samples are trusted code
    proc = subprocess.run([sys.executable, "-m", "grading", "grade", "-q", *students], cwd=course,
                          env=venv_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"python -m grading grade failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def exported_scores(course):
    """`nbgrader export` → {student: (score, max_score)} from grades.csv."""
    nbgrader(course, *EXPORT)
    with open(course / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {row["assignment"] for row in rows} == {ASSIGNMENT}
    return {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in rows}


# --- LMS route ---------------------------------------------------------------------------

def load_make_archive():
    spec = importlib.util.spec_from_file_location("make_archive", LMS / "make_archive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lms_scores():
    """{Canvas login: expected total} of the students in samples/lms/submissions.zip."""
    return {login: sample_total(sample) for login, sample, *_ in load_make_archive().STUDENTS}


@pytest.mark.fast
def test_lms_archive_is_what_make_archive_builds():
    make_archive = load_make_archive()
    assert make_archive.build_archive() == (LMS / "submissions.zip").read_bytes(), (
        "samples/lms/submissions.zip is out of date (the release notebook or a sample changed): "
        "run `make release` (it runs samples/lms/make_archive.py)")
    assert lms_scores() == {"zhangwei": MAX_WITH_EXTRA, "lina": 6.0, "wangfang": 16.5}  # make_archive's docstring


def test_lms_route_zip_collect_grade_export(course):
    archive_dir = course / "downloaded" / ASSIGNMENT / "archive"
    archive_dir.mkdir(parents=True)
    shutil.copy2(LMS / "submissions.zip", archive_dir)

    log = nbgrader(course, *ZIP_COLLECT).stderr
    assert "Skipped notebook with invalid name 'Untitled.ipynb'" in log
    submitted = course / "submitted"
    expected = lms_scores()
    assert sorted(p.name for p in submitted.iterdir()) == sorted(expected)
    for student in expected:  # renamed back, LATE_ and -1 dropped, Untitled.ipynb left out
        assert [p.name for p in (submitted / student / ASSIGNMENT).iterdir()] == [f"{ASSIGNMENT}.ipynb"]

    make_grade(course)
    assert exported_scores(course) == {student: (score, MAX_SCORE) for student, score in expected.items()}


# --- Exchange route ----------------------------------------------------------------------

def student_nbgrader(home, *args):
    """nbgrader as a student: HOME and cwd are the student's own folder (their exchange cache too)."""
    env = {k: v for k, v in venv_env().items() if not k.startswith("JUPYTER")}
    env["HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"student: nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_exchange_route_on_one_machine(course, tmp_path):
    exchange = f"--Exchange.root={tmp_path / 'exchange'}"
    nbgrader(course, *RELEASE, exchange)

    # loop_fast keeps the values part of the bonus, loses its no-loop and speed parts
    students = {"chenjing": "ref_reference", "liuyang": "loop_fast"}
    homes = {}
    for student, sample in students.items():
        home = homes[student] = tmp_path / "home" / student
        home.mkdir(parents=True)
        student_nbgrader(home, *FETCH, exchange)
        notebook = home / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        assert (home / ASSIGNMENT / "checks.py").exists()
        nbformat.write(fill_notebook(notebook, ROOT / "samples" / "class" / f"{sample}.py"), str(notebook))
        # One OS user plays every student here: --student names the submitter.
        student_nbgrader(home, *SUBMIT, exchange, f"--student={student}")

    # Every submission belongs to the same OS user here, which collect would report as cheating.
    nbgrader(course, *COLLECT, exchange, "--CollectApp.check_owner=False")
    assert sorted(p.name for p in (course / "submitted").iterdir()) == sorted(students)

    make_grade(course)
    nbgrader(course, *FEEDBACK)
    nbgrader(course, *RELEASE_FEEDBACK, exchange)
    for student, sample in students.items():
        score = sample_total(sample)
        student_nbgrader(homes[student], *FETCH_FEEDBACK, exchange, f"--student={student}")
        pages = list((homes[student] / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
        assert len(pages) == 1, f"{student} fetched {pages}"
        html = pages[0].read_text(encoding="utf-8")
        assert f"Score: {score:.1f} / {MAX_SCORE:.1f}" in html
        assert "BEGIN HIDDEN TESTS" not in html

    assert exported_scores(course) == {student: (sample_total(sample), MAX_SCORE) for student, sample in students.items()}


@pytest.mark.fast
def test_docs_show_the_tested_commands():
    text = DOCS.read_text(encoding="utf-8")
    missing = [" ".join(["nbgrader", *cmd]) for cmd in DOCUMENTED if " ".join(["nbgrader", *cmd]) not in text]
    assert not missing, f"docs/workflows.md does not show the commands the tests run: {missing}"
    for target in ["make release", "make grade", "make lab", "make bench"]:
        assert target in text


# --- make bench --------------------------------------------------------------------------

def test_bench_quick_prints_its_ratios():
    proc = subprocess.run([sys.executable, "-m", "tools.bench", "--quick", "-n", "1"], cwd=ROOT,
                          env=venv_env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    patterns = [
        r'^import floor: python -c "import torch" takes \d+\.\d+ s',
        r"^  sequential, jobs=1 .* s/submission = +\d+\.\d+ x import floor$",
        r"^  parallel, jobs=\d+ .* s/submission = +\d+\.\d+ x import floor$",
        rf"^  every reference submission scored {MAX_WITH_EXTRA:g}/20 ",
        r"^grading goal: \d+\.\d+ x import floor .*: (PASS|FAIL)$",
        r"^privilege separation: \d+\.\d+ x the time per submission before .*: (PASS|FAIL)$",
        r"^student notebook: .* = \d+\.\d+ x import floor$",
        r"^  matmul, same FLOPs \(ceiling\) +cpu .* 1\.0000 x matmul$",
    ] + [rf"^  {re.escape(name)} +cpu .* GFLOP/s +\d+\.\d+ x matmul$" for name in
         ["F.conv2d", "corr2d_multi_in_out_fast (solution)", "loop over output pixels (checks.py)",
          "loops per channel pair (solution)"]]
    missing = [p for p in patterns if not re.search(p, out, re.M)]
    assert not missing, f"bench output lacks {missing}:\n{out}"

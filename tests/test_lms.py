"""Grade files for the LMS (grading/reports/lms.py): the Canvas and Moodle CSV layouts and the roster.

Layouts checked here (sources cited in grading/reports/lms.py):

- Canvas gradebook import: header `Student,ID,SIS User ID,SIS Login ID,Section,<Assignment>`
  (the assignment column may carry Canvas's id: `channels (12345)`), then the row
  `Points Possible` with the assignment's points, then one row per student.
- Moodle grade import (CSV): an identifier column (Email address / Username / ID number)
  and a grade column named after the grade item.

The scores must be those of nbgrader's own `grades.csv` (raw score minus late penalty,
0 without a submission): a made-up gradebook with a late penalty, a manual grade still to
do and a student without a submission is exported both ways and compared.
"""
import csv
import datetime
import io
import os
import subprocess
import sys
import warnings

import pytest

from conftest import ASSIGNMENT, ROOT, make_course, nbgrader, venv_env
from grading.gradebook import read_gradebook
from grading.reports import analytics, lms
from grading.reports.lms import RosterError, canvas_rows, moodle_rows, read_roster

ROSTER_HEADER = ",".join(lms.ROSTER_COLUMNS)


def write_roster(path, rows):
    path.write_text(ROSTER_HEADER + "\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def roster(tmp_path):
    return read_roster(write_roster(tmp_path / "roster.csv", [
        'ana,"Li, Ana",101,S1,ali,A,ana@example.edu,ana,1001',
        'ben,"Wu, Ben",,S2,,B,ben@example.edu,ben,1002',
    ]))


def parse(rows):
    """Rows as an LMS reads the file: written by csv, read back by csv."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return list(csv.reader(io.StringIO(buf.getvalue())))


@pytest.mark.fast
def test_canvas_layout(roster):
    scores = {"channels": {"ana": 18.0, "ben": 9.5}, "hw2": {"ana": 7.0}}  # ben has no hw2 yet: 0
    rows = parse(canvas_rows(scores, roster, {"channels": "channels (12345)"}, {"channels": 20.0, "hw2": 10.0}))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "channels (12345)", "hw2"]
    assert rows[1] == ["Points Possible", "", "", "", "", "20", "10"]
    assert rows[2:] == [["Li, Ana", "101", "S1", "ali", "A", "18", "7"], ["Wu, Ben", "", "S2", "", "B", "9.5", "0"]]


@pytest.mark.parametrize("field, header, values", [
    ("email", "Email address", ["ana@example.edu", "ben@example.edu"]),
    ("username", "Username", ["ana", "ben"]),
    ("idnumber", "ID number", ["1001", "1002"]),
])
@pytest.mark.fast
def test_moodle_layout(roster, field, header, values):
    scores = {"channels": {"ana": 18.0, "ben": 9.5}, "hw2": {"ana": 7.0}}
    rows = parse(moodle_rows(scores, roster, {"hw2": "Homework 2"}, field))
    assert rows == [[header, "channels", "Homework 2"], [values[0], "18", "7"], [values[1], "9.5", "0"]]


@pytest.mark.fast
def test_students_missing_from_the_roster_are_named(roster):
    scores = {"channels": {"ana": 1.0, "cai": 2.0}, "hw2": {"dan": 3.0}}
    for make in (lambda: canvas_rows(scores, roster, {}, {"channels": 20, "hw2": 10}, "roster.csv"),
                 lambda: moodle_rows(scores, roster, {}, "email", "roster.csv")):
        with pytest.raises(RosterError) as e:
            make()
        text = str(e.value)
        assert "cai" in text and "dan" in text and "ana" not in text.split(":")[1].split("\n")[0]
        assert "missing from the roster" in text and "roster.csv" in text


@pytest.mark.fast
def test_roster_problems_are_errors(tmp_path, roster):
    roster["ben"]["sis_user_id"] = ""
    with pytest.raises(RosterError, match="no Canvas.*ben"):
        canvas_rows({"channels": {"ben": 1.0}}, roster, {}, {"channels": 20})
    roster["ben"]["email"] = "ana@example.edu"
    with pytest.raises(RosterError, match="share the email"):
        moodle_rows({"channels": {"ana": 1.0, "ben": 1.0}}, roster, {}, "email")
    with pytest.raises(RosterError, match="more than once.*ana"):
        read_roster(write_roster(tmp_path / "twice.csv", ["ana,,1,,,,,,", "ana,,2,,,,,,"]))
    (tmp_path / "bad.csv").write_text("id,email\nana,a@x\n", encoding="utf-8")
    with pytest.raises(RosterError, match="student_id"):
        read_roster(tmp_path / "bad.csv")
    with pytest.raises(RosterError, match="cannot read"):
        read_roster(tmp_path / "nowhere.csv")
    with pytest.raises(ValueError):
        moodle_rows({"channels": {"ana": 1.0}}, roster, {}, "phone")


@pytest.mark.fast
def test_the_sample_roster_maps_the_whole_sample_class():
    roster = read_roster(ROOT / "samples" / "roster.csv")
    assert set(roster) == {p.stem for p in (ROOT / "samples" / "class").glob("*.py") if not p.stem.startswith("_")}
    for column in lms.ROSTER_COLUMNS:
        values = [row[column] for row in roster.values()]
        assert all(values), column
        if column not in {"name", "section"}:
            assert len(set(values)) == len(values), f"{column} is not unique"


# --- against nbgrader's own export ------------------------------------------------------------

DUE = datetime.datetime(2025, 3, 3, 9, 0)


def fake_gradebook(course, students):
    """Write course/gradebook.db: students = {id: None (no submission) or dict(scores=, manual=,
    extra=, timestamp=, penalty=)}; test cells not in scores get full points, extra credit
    cells (worth 0 in nbgrader) get `extra` of theirs, manual=None waits."""
    from nbgrader.api import Gradebook
    os.environ["PATH"] = venv_env()["PATH"]  # a new gradebook runs `alembic`
    cells, _ = analytics.read_cells(course, ASSIGNMENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush chatter inside nbgrader
        _fill_gradebook(Gradebook, course, cells, students)


def _fill_gradebook(Gradebook, course, cells, students):
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=DUE)
        gb.add_notebook("channels", ASSIGNMENT)
        for gid in cells.tests + cells.manual:
            gb.add_grade_cell(gid, "channels", ASSIGNMENT, max_score=0 if gid in cells.extra else cells.points[gid],
                              cell_type="markdown" if gid in cells.manual else "code")
        for student, spec in students.items():
            gb.add_student(student, first_name=student.title(), last_name="Test", email=f"{student}@example.edu")
            if spec is None:
                continue
            gb.add_submission(ASSIGNMENT, student, timestamp=spec.get("timestamp", DUE))
            nb = gb.find_submission_notebook("channels", ASSIGNMENT, student)
            for grade in nb.grades:
                if grade.name in cells.manual:
                    grade.auto_score, grade.manual_score = None, spec.get("manual")
                    grade.needs_manual_grade = spec.get("manual") is None
                elif grade.name in cells.extra:
                    grade.auto_score, grade.extra_credit = 0.0, spec.get("extra", {}).get(grade.name, 0.0)
                    grade.needs_manual_grade = False
                else:
                    grade.auto_score = spec.get("scores", {}).get(grade.name, cells.points[grade.name])
                    grade.needs_manual_grade = False
            nb.late_submission_penalty = spec.get("penalty")
            gb.db.commit()


@pytest.mark.timeout(300)
def test_lms_files_carry_the_scores_of_grades_csv(tmp_path):
    course = make_course(tmp_path / "course")
    fake_gradebook(course, {
        "ana": {"manual": 3.0},                                                     # 17 + 3
        "ben": {"scores": {"test_corr2d": 0.0}, "manual": 1.5,
                "timestamp": DUE + datetime.timedelta(hours=3), "penalty": 2.0},  # 14 + 1.5 - 2
        "cai": {"scores": {"test_conv_flops": 0.0},                                # 15, written to do,
                "extra": {"test_corr2d_multi_in_out_fast": 1.5}},                  # + 1.5 extra credit
        "dan": None,                                                               # no submission: 0
    })
    roster = write_roster(tmp_path / "roster.csv", [
        f'{s},"Test, {s.title()}",{100 + i},S{i},{s}x,A,{s}@example.edu,{s},{1000 + i}'
        for i, s in enumerate(["ana", "ben", "cai", "dan"])])
    nbgrader(course, "export")
    with open(course / "grades.csv", newline="") as fh:
        expected = {r["student_id"]: float(r["score"]) for r in csv.DictReader(fh)}
    assert expected == {"ana": 20.0, "ben": 13.5, "cai": 16.5, "dan": 0.0}

    paths, pending = lms.export_lms(course, roster, canvas_columns={ASSIGNMENT: "channels (777)"},
                                    moodle_id="idnumber")
    assert [p.name for p in paths] == ["grades-canvas.csv", "grades-moodle.csv"]
    assert all(p.parent == course for p in paths) and pending == ["cai"]
    with open(paths[0], newline="", encoding="utf-8") as fh:
        canvas = list(csv.reader(fh))
    assert canvas[0] == lms.CANVAS_COLUMNS + ["channels (777)"] and canvas[1][0] == "Points Possible"
    assert float(canvas[1][5]) == 20.0
    by_login = {row[3]: float(row[5]) for row in canvas[2:]}
    assert by_login == {f"{s}x": v for s, v in expected.items()}
    with open(paths[1], newline="", encoding="utf-8") as fh:
        moodle = list(csv.reader(fh))
    assert moodle[0] == ["ID number", "channels"]
    ids = {"1000": "ana", "1001": "ben", "1002": "cai", "1003": "dan"}
    assert {ids[i]: float(v) for i, v in moodle[1:]} == expected

    # the same from the command line; a roster without ben and dan names them and writes nothing
    run = [sys.executable, "-m", "grading", "--course", str(course), "export-lms"]
    for p in paths:
        p.unlink()
    proc = subprocess.run(run + ["--roster", str(roster)], cwd=course, env=venv_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "grades-canvas.csv" in proc.stdout and "cai" in proc.stdout  # the manual grade to do
    short = write_roster(tmp_path / "short.csv", [line for line in roster.read_text().splitlines()[1:]
                                                  if line.startswith(("ana", "cai"))])
    for p in paths:
        p.unlink()
    proc = subprocess.run(run + ["--roster", str(short)], cwd=course, env=venv_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert "ben, dan" in proc.stderr and "missing from the roster" in proc.stderr
    assert not any(p.exists() for p in paths)


def test_the_report_reads_the_same_gradebook(tmp_path):
    """Late student, manual grading to do and a student without a submission, from a real gradebook."""
    course = make_course(tmp_path / "course")
    fake_gradebook(course, {"ana": {"manual": 3.0},
                            "ben": {"timestamp": DUE + datetime.timedelta(hours=3), "penalty": 2.0},
                            "dan": None})
    book = read_gradebook(course, ASSIGNMENT)
    assert book["ben"].seconds_late == 3 * 3600 and book["ben"].score == 15.0 and book["ben"].raw == 17.0
    assert not book["dan"].submitted
    data = analytics.collect(course, ASSIGNMENT)
    assert data["totals"] == {"ana": 20.0, "ben": 17.0}
    assert data["late"] == [{"student": "ben", "timestamp": book["ben"].timestamp, "hours_late": 3.0,
                             "penalty": 2.0}]
    assert data["manual"] == {"written_1x1": ["ben"]}
    assert data["no_verdicts"] == []  # nobody lost a point, nothing to explain
    page = analytics.write_report(course, ASSIGNMENT)
    assert page == course / analytics.report_path(ASSIGNMENT) and "迟交 (late submissions)" in page.read_text()

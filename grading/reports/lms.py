"""Grade files an LMS imports: a Canvas gradebook CSV and a Moodle grade import CSV.

`python -m grading export-lms --roster ROSTER.csv` writes, beside nbgrader's own
`grades.csv` and from the same gradebook (score = raw score - late penalty, as
`nbgrader export` computes it, extra credit included; students without a submission get 0),
a column per assignment of the gradebook:

- `grades-canvas.csv` — Canvas, Grades → Import. Layout of Canvas's own gradebook export,
  which its importer reads back: the columns `Student, ID, SIS User ID, SIS Login ID,
  Section`, then one column per assignment named `<Assignment name>` or `<name> (<Canvas
  assignment id>)`, and a second row `Points Possible` with the assignment's points.
  Canvas finds the student by ID, SIS User ID or SIS Login ID.
  Followed: Canvas Instructor Guide, "How do I import grades in the Gradebook?"
  (community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807)
  and Ohio State's "Import a CSV file to Carmen grades" (teaching.resources.osu.edu/toolsets/
  carmencanvas/guides/calculating-final-grades/import-csv-file-carmen-grades): Student Name
  or Student ID or SIS User ID, then SIS Login ID, Section and the assignment name.
- `grades-moodle.csv` — Moodle, Grades → Import → CSV file. One identifier column (email
  address, username or ID number) and one grade column per assignment named after its grade
  item; on the import page map "Email address → useremail" (or "Username → username", "ID
  number → useridnumber") and each grade column to its grade item.
  Followed: MoodleDocs "Grade import" (docs.moodle.org/311/en/Grade_import): "Map from" /
  "Map to" the identifying column; email addresses are matched case-sensitively.

The roster maps nbgrader's student id to the LMS's ids, one row per student (an example for
the sample class: samples/roster.csv):

    student_id,name,canvas_id,sis_user_id,sis_login_id,section,email,username,idnumber

Only `student_id` and the ids the chosen LMS needs must be filled in. A student of the
gradebook missing from the roster is an error that names every such student (no file is
written then: an LMS import with silent gaps is worse than none).
"""
import csv
import io
from pathlib import Path

from grading.gradebook import gradebook_assignments, read_gradebook

ROSTER_COLUMNS = ["student_id", "name", "canvas_id", "sis_user_id", "sis_login_id", "section",
                  "email", "username", "idnumber"]
CANVAS_FILE = "grades-canvas.csv"
MOODLE_FILE = "grades-moodle.csv"
CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
#: Canvas's second row: the assignment's points (its importer recognises the row by this text).
POINTS_POSSIBLE = "Points Possible"
#: Moodle's identifier fields: roster column -> (CSV header, what to pick under "Map to").
MOODLE_IDS = {"email": ("Email address", "useremail"), "username": ("Username", "username"),
              "idnumber": ("ID number", "useridnumber")}


class RosterError(ValueError):
    """The roster cannot map the gradebook's students to the LMS; the message says who and why."""


def read_roster(path):
    """{student_id: {column: value}} from a roster CSV (UTF-8, a BOM is fine)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise RosterError(f"无法读取名单 (cannot read the roster) {path}: {e}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "student_id" not in [f.strip() for f in reader.fieldnames]:
        raise RosterError(f"名单 {path} 缺少 student_id 列 (the roster needs a student_id column; "
                          f"columns: {','.join(ROSTER_COLUMNS)})")
    roster, twice = {}, []
    for row in reader:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        sid = row.get("student_id", "")
        if not sid or sid.startswith("#"):
            continue
        if sid in roster:
            twice.append(sid)
        roster[sid] = row
    if twice:
        raise RosterError(f"名单 {path} 中这些学生出现了不止一次 (listed more than once): {', '.join(twice)}")
    return roster


def _check(students, roster, roster_name, needed, what):
    """Raise RosterError naming the students missing from the roster or lacking every `needed` id."""
    missing = [s for s in students if s not in roster]
    if missing:
        raise RosterError(f"名单 {roster_name} 中缺少这些学生 (students missing from the roster): "
                          f"{', '.join(missing)}\n请为每人加一行 (add one row each): {','.join(ROSTER_COLUMNS)}")
    no_id = [s for s in students if not any(roster[s].get(c) for c in needed)]
    if no_id:
        raise RosterError(f"名单 {roster_name} 中这些学生没有 {what} (no {what}): {', '.join(no_id)}")
    for column in needed:
        seen = {}
        for s in students:
            value = roster[s].get(column)
            if value and value in seen:
                raise RosterError(f"名单 {roster_name} 中 {seen[value]} 和 {s} 的 {column} 相同 "
                                  f"(two students share the {column} {value!r})")
            seen[value] = s


def _points(x):
    return f"{x:g}"


def canvas_rows(scores, roster, columns, points, roster_name="roster"):
    """The Canvas CSV as rows (header, Points Possible, one row per student).

    scores: {assignment: {student: score}}; columns: {assignment: its column header, e.g.
    "hw1" or "hw1 (12345)" with Canvas's assignment id}; points: {assignment: points}.
    """
    students = sorted({s for by in scores.values() for s in by})
    _check(students, roster, roster_name, ["canvas_id", "sis_user_id", "sis_login_id"],
           "Canvas 标识 (canvas_id, sis_user_id or sis_login_id)")
    names = list(scores)
    rows = [CANVAS_COLUMNS + [columns.get(n, n) for n in names],
            [POINTS_POSSIBLE, "", "", "", ""] + [_points(points[n]) for n in names]]
    for student in students:
        r = roster[student]
        rows.append([r.get("name") or student, r.get("canvas_id", ""), r.get("sis_user_id", ""),
                     r.get("sis_login_id", ""), r.get("section", "")]
                    + [_points(scores[n].get(student, 0.0)) for n in names])
    return rows


def moodle_rows(scores, roster, items, id_field="email", roster_name="roster"):
    """The Moodle CSV as rows: header (identifier, a grade item per assignment), then one row per student."""
    if id_field not in MOODLE_IDS:
        raise ValueError(f"Moodle identifier must be one of {', '.join(MOODLE_IDS)}, not {id_field!r}")
    header, _ = MOODLE_IDS[id_field]
    students = sorted({s for by in scores.values() for s in by})
    _check(students, roster, roster_name, [id_field], f"Moodle 的 {id_field}")
    names = list(scores)
    return [[header] + [items.get(n, n) for n in names]] + [
        [roster[s][id_field]] + [_points(scores[n].get(s, 0.0)) for n in names] for s in students]


def _write(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def final_scores(course_root):
    """({assignment: {student: score}}, {assignment: points}, [students whose manual grading is not
    done]) for every assignment of the gradebook, as `nbgrader export` reads it (extra credit included)."""
    scores, points, pending = {}, {}, set()
    for name in gradebook_assignments(course_root):
        book = read_gradebook(course_root, name)
        scores[name] = {s: sub.score for s, sub in sorted(book.items())}
        points[name] = next((sub.max_score for sub in book.values()), 0.0)
        pending |= {s for s, sub in book.items() if any(g[2] for g in sub.grades.values())}
    return scores, points, sorted(pending)


def export_lms(course_root, roster_path, out_dir=None, canvas_columns=None, moodle_items=None, moodle_id="email"):
    """Write grades-canvas.csv and grades-moodle.csv, a column per assignment; return ([paths],
    [students awaiting manual grading]).

    Raises RosterError (nothing written) when a student of the gradebook is not in the roster.
    """
    scores, points, pending = final_scores(course_root)
    roster = read_roster(roster_path)
    name = str(roster_path)
    canvas = canvas_rows(scores, roster, canvas_columns or {}, points, name)
    moodle = moodle_rows(scores, roster, moodle_items or {}, moodle_id, name)
    out = Path(out_dir or course_root)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / CANVAS_FILE, out / MOODLE_FILE]
    _write(paths[0], canvas)
    _write(paths[1], moodle)
    return paths, pending

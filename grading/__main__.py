"""`python -m grading COMMAND [ASSIGNMENT]`: the instructor's loop from the terminal.

    demo        generate the assignment, fill in the bundled sample class (samples/class/),
                autograde it, write feedback, grades.csv, the LMS files and the class report
    grade       autograde everything handed in (-j N workers, --regrade, --student S ...)
    feedback    nbgrader generate_feedback for every graded submission
    export      nbgrader export → grades.csv (every assignment)
    run-one     grade one student (--student S) and print the result, under the same budget
    report      the class report: .grading/<assignment>/report/index.html, and
                .grading/report/index.html with a column per assignment
    export-lms  Canvas and Moodle grade files beside grades.csv, a column per assignment

ASSIGNMENT (or --assignment NAME) is a folder of source/; without it, the course's only
assignment. `--all` (grade, feedback, report) takes every assignment of the course.
"""
import argparse
import os
import sys
from pathlib import Path

#: The course folder: the one holding this package and nbgrader_config.py.
ROOT = Path(__file__).resolve().parent.parent


def _say(text):
    print(f"\n== {text}", flush=True)


def _settings(root, allow_unsandboxed=False, demo=False):
    """The course's grading settings, with the command line's say on running without a sandbox."""
    from grading.course import load_config
    from grading.jail.sandbox import ensure_kernelspec, sandbox_status
    from grading.settings import Grading
    settings = Grading(config=load_config(root))
    ok, reason = sandbox_status()
    if ok:
        ensure_kernelspec()  # the venv, or the user's Jupyter folder when the venv is read-only
        print("沙箱可用 (sandbox ok): 学生代码在 bubblewrap 中运行")
    elif demo:
        print(f"没有可用的沙箱 (no sandbox): {reason}\n"
              "演示只为随附的、可信的样例学生评分，因此这次在没有沙箱的情况下继续 "
              "(grading the trusted bundled samples WITHOUT a sandbox).")
        settings.allow_unsandboxed = True
    elif allow_unsandboxed:
        print(f"警告 (warning): 没有沙箱 ({reason})，按 --allow-unsandboxed 的要求直接运行学生代码。")
        settings.allow_unsandboxed = True
    settings.export(root)  # grade() refuses loudly unless allowed
    return settings


def _assignments(root, args):
    """The assignments a command works on: --all, the one named, or the course's only one."""
    from grading.course import assignments, choose_assignment
    if getattr(args, "all", False):
        return assignments(root)
    return [choose_assignment(root, args.assignment_option or args.assignment)]


def _nbgrader(root, *args):
    """Run an nbgrader command, print its one-line outcome; return True on success."""
    from grading.course import run_nbgrader
    try:
        run_nbgrader(root, *args)
    except RuntimeError as e:
        print(f"nbgrader {' '.join(args)}: 有错误 (errors):\n{str(e)[-2000:]}", file=sys.stderr)
        return False
    print(f"nbgrader {' '.join(args)}: ok")
    return True


def _grade(root, assignment, args, settings, students=None):
    from grading.reports.table import format_attention, format_manual, format_table, write_reports
    from grading.run.batch import SandboxUnavailable, grade
    try:
        results = grade(root, assignment, students=students or None, jobs=args.jobs, regrade=args.regrade,
                        progress=not args.quiet, settings=settings)
    except SandboxUnavailable as e:
        print(str(e), file=sys.stderr)
        return None
    print(f"\n{assignment}:")
    print(format_table(results))
    print(format_manual(results))
    print(format_attention(results))
    json_path, md_path = write_reports(root, assignment, results)
    print(f"报告 (reports): {md_path.relative_to(root)}, {json_path.relative_to(root)}")
    return results


def _report(root):
    """Write the class reports (grading/reports/analytics.py) and print their paths; a failure only warns."""
    from grading.reports.analytics import write_reports
    try:
        paths = write_reports(root)
    except Exception as e:  # noqa: BLE001 (the grades are safe in the gradebook either way)
        print(f"班级报告没有生成 (class report failed): {type(e).__name__}: {e}", file=sys.stderr)
        return None
    for path in paths:
        print(f"班级报告 (class report): {path}")
    return paths


def _export_lms(root, roster, canvas_columns=None, moodle_items=None, moodle_id="email"):
    """Write the Canvas and Moodle CSVs (grading/reports/lms.py); print their paths or the roster problem."""
    from grading.reports.lms import RosterError, export_lms
    try:
        paths, pending = export_lms(root, roster, canvas_columns=canvas_columns, moodle_items=moodle_items,
                                    moodle_id=moodle_id)
    except RosterError as e:
        print(f"LMS 成绩文件没有写出 (LMS grade files not written): {e}", file=sys.stderr)
        return False
    for path in paths:
        print(f"LMS 成绩文件 (grade file for the LMS): {path}")
    if pending:
        print(f"注意 (note): {len(pending)} 名学生的人工评分尚未完成，按 0 分计入 "
              f"(manual grading not done, counted as 0): {' '.join(pending)}")
    return True


def cmd_demo(root, args):
    from grading.fill import fill_class
    settings = _settings(root, demo=True)
    assignment = _assignments(root, args)[0]
    _say(f"nbgrader generate_assignment {assignment} (学生版 notebook → release/)")
    if not _nbgrader(root, "generate_assignment", assignment, "--force"):
        return 1
    _say("随附的样例班级 (the bundled sample class) → submitted/")
    students = fill_class(root / "samples" / "class", root, assignment)
    print(f"{len(students)} 名学生 (students): {' '.join(students)}")
    _say("自动评分 (autograde)")
    if _grade(root, assignment, args, settings, students) is None:
        return 2
    _say("反馈 (feedback) 与成绩表 (grades.csv)")
    _nbgrader(root, "generate_feedback", assignment, "--force")
    _nbgrader(root, "export")
    print(f"feedback/: {root / 'feedback'}\ngrades.csv: {root / 'grades.csv'}")
    roster = root / "samples" / "roster.csv"
    if roster.is_file():
        _export_lms(root, roster)
    _say("班级报告 (class report)")
    return 0 if _report(root) else 1


def cmd_grade(root, args):
    settings = _settings(root, args.allow_unsandboxed)
    for assignment in _assignments(root, args):
        if _grade(root, assignment, args, settings, args.student) is None:
            return 2
    _report(root)
    return 0


def cmd_run_one(root, args):
    import json
    from grading.run.batch import SandboxUnavailable, run_one
    settings = _settings(root, args.allow_unsandboxed)
    try:
        result = run_one(root, _assignments(root, args)[0], args.student_id, settings)
    except SandboxUnavailable as e:
        print(str(e), file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
    print(f"{result.student}: {result.total:g}/{result.max_total:g}", file=sys.stderr)
    return 0


def cmd_feedback(root, args):
    ok = [_nbgrader(root, "generate_feedback", a, "--force") for a in _assignments(root, args)]
    return 0 if all(ok) else 1


def cmd_export(root, args):
    return 0 if _nbgrader(root, "export") else 1


def cmd_report(root, args):
    return 0 if _report(root) else 1


def cmd_export_lms(root, args):
    ok = _export_lms(root, args.roster, dict(args.canvas_assignment or []) or None,
                     dict(args.moodle_item or []) or None, args.moodle_id)
    return 0 if ok else 1


def _column(text):
    """ASSIGNMENT=COLUMN of --canvas-assignment / --moodle-item."""
    name, sep, column = text.partition("=")
    if not sep or not name or not column:
        raise argparse.ArgumentTypeError("write ASSIGNMENT=COLUMN, e.g. hw1=\"hw1 (12345)\"")
    return name, column


def main(argv=None):
    from grading.course import AssignmentError
    # nbgrader shells out to `alembic`: the venv's bin folder must come first on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__.split("\n")[0])
    parser.add_argument("--course", type=Path, default=ROOT, help="course folder (default: this repository)")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_assignment(p, every=False):
        p.add_argument("assignment", nargs="?", help="a folder of source/ (default: the course's only assignment)")
        p.add_argument("--assignment", dest="assignment_option", metavar="NAME", help="the same, as an option")
        if every:
            p.add_argument("--all", action="store_true", help="every assignment of the course")
        return p

    for name in ("demo", "grade"):
        p = with_assignment(sub.add_parser(name), every=name == "grade")
        p.add_argument("-j", "--jobs", type=int, default=None, help="worker processes (default: CPU cores)")
        p.add_argument("--regrade", action="store_true", help="grade unchanged submissions again")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        if name == "grade":
            p.add_argument("--allow-unsandboxed", action="store_true",
                           help="run student code without the sandbox (trusted submissions only)")
            p.add_argument("-s", "--student", action="append", help="grade only this student (repeatable)")
    p = with_assignment(sub.add_parser("run-one"))
    p.add_argument("--student", dest="student_id", required=True, help="the student to grade")
    p.add_argument("--allow-unsandboxed", action="store_true", help="run student code without the sandbox")
    with_assignment(sub.add_parser("feedback"), every=True)
    sub.add_parser("export")
    sub.add_parser("report")
    p = sub.add_parser("export-lms", help="Canvas and Moodle grade import files")
    p.add_argument("--roster", type=Path, required=True,
                   help="CSV: student_id,name,canvas_id,sis_user_id,sis_login_id,section,email,username,idnumber")
    p.add_argument("--canvas-assignment", type=_column, action="append", metavar="ASSIGNMENT=COLUMN",
                   help='Canvas column of an assignment, e.g. hw1="hw1 (12345)" (default: its name)')
    p.add_argument("--moodle-item", type=_column, action="append", metavar="ASSIGNMENT=ITEM",
                   help="Moodle grade item of an assignment (default: its name)")
    p.add_argument("--moodle-id", default="email", choices=["email", "username", "idnumber"],
                   help="how Moodle identifies the student (default: email)")
    args = parser.parse_args(argv)
    root = args.course.resolve()
    command = {"demo": cmd_demo, "grade": cmd_grade, "feedback": cmd_feedback, "export": cmd_export,
               "report": cmd_report, "export-lms": cmd_export_lms, "run-one": cmd_run_one}
    try:
        return command[args.command](root, args)
    except AssignmentError as e:
        print(str(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""`python -m grading demo|grade|feedback|export`: the instructor's loop from the terminal.

    demo      generate the assignment, fill in the bundled sample class, autograde it,
              write feedback and grades.csv, print the table and the attention list
    grade     autograde everything under submitted/ (-j N workers, --regrade, STUDENT...)
    feedback  nbgrader generate_feedback for every graded submission
    export    nbgrader export → grades.csv
    run-one   grade one student in this process and print the result (STUDENT; for debugging)
    report    the class report: .grading/report/index.html (distribution, failure reasons, attention)
    export-lms  Canvas and Moodle grade files beside grades.csv (--roster ROSTER.csv)
"""
import argparse
import os
import sys
from pathlib import Path

#: The course folder: the one holding this package and nbgrader_config.py.
ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "channels"


def _say(text):
    print(f"\n== {text}", flush=True)


def _sandbox(allow_unsandboxed, demo=False):
    """Prepare the sandboxed kernel, or allow grading without it (flag or demo); False to refuse."""
    from grading.sandbox import ensure_kernelspec, sandbox_status
    ok, reason = sandbox_status()
    if ok:
        ensure_kernelspec()  # the venv, or the user's Jupyter folder when the venv is read-only
        print("沙箱可用 (sandbox ok): 学生代码在 bubblewrap 中运行")
        return True
    if demo:
        print(f"没有可用的沙箱 (no sandbox): {reason}\n"
              "演示只为随附的、可信的样例学生评分，因此这次在没有沙箱的情况下继续 "
              "(grading the trusted bundled samples WITHOUT a sandbox).")
        os.environ["CHANNELS_ALLOW_UNSANDBOXED"] = "1"
        return True
    if allow_unsandboxed:
        print(f"警告 (warning): 没有沙箱 ({reason})，按 --allow-unsandboxed 的要求直接运行学生代码。")
        os.environ["CHANNELS_ALLOW_UNSANDBOXED"] = "1"
    return True  # grade() itself refuses loudly unless allowed


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


def _grade(root, args, students=None):
    from grading.batch import SandboxUnavailable, grade
    from grading.report import format_attention, format_manual, format_table, write_reports
    try:
        results = grade(root, ASSIGNMENT, students=students or None, jobs=args.jobs,
                        regrade=args.regrade, progress=not args.quiet)
    except SandboxUnavailable as e:
        print(str(e), file=sys.stderr)
        return None
    print()
    print(format_table(results))
    print(format_manual(results))
    print(format_attention(results))
    json_path, md_path = write_reports(root, results)
    print(f"报告 (reports): {md_path.relative_to(root)}, {json_path.relative_to(root)}")
    return results


def _report(root):
    """Write the class report (grading/analytics.py) and print its path; a failure only warns."""
    from grading.analytics import write_report
    try:
        path = write_report(root, ASSIGNMENT)
    except Exception as e:  # noqa: BLE001 (the grades are safe in the gradebook either way)
        print(f"班级报告没有生成 (class report failed): {type(e).__name__}: {e}", file=sys.stderr)
        return None
    print(f"班级报告 (class report): {path}")
    return path


def _export_lms(root, roster, canvas_column=None, moodle_item=None, moodle_id="email"):
    """Write the Canvas and Moodle CSVs (grading/lms.py); print their paths or the roster problem."""
    from grading.lms import RosterError, export_lms
    try:
        paths, pending = export_lms(root, roster, assignment=ASSIGNMENT, canvas_column=canvas_column,
                                    moodle_item=moodle_item, moodle_id=moodle_id)
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
    _sandbox(False, demo=True)
    _say("nbgrader generate_assignment (学生版 notebook → release/)")
    if not _nbgrader(root, "generate_assignment", ASSIGNMENT, "--force"):
        return 1
    _say("随附的样例班级 (the bundled sample class) → submitted/")
    students = fill_class(root / "samples" / "class", root, ASSIGNMENT)
    print(f"{len(students)} 名学生 (students): {' '.join(students)}")
    _say("自动评分 (autograde)")
    results = _grade(root, args, students)
    if results is None:
        return 2
    _say("反馈 (feedback) 与成绩表 (grades.csv)")
    _nbgrader(root, "generate_feedback", ASSIGNMENT, "--force")
    _nbgrader(root, "export")
    print(f"feedback/: {root / 'feedback'}\ngrades.csv: {root / 'grades.csv'}")
    roster = root / "samples" / "roster.csv"
    if roster.is_file():
        _export_lms(root, roster)
    _say("班级报告 (class report)")
    return 0 if _report(root) else 1


def cmd_grade(root, args):
    _sandbox(args.allow_unsandboxed)
    if _grade(root, args, args.students) is None:
        return 2
    _report(root)
    return 0


def cmd_run_one(root, args):
    import json
    from grading.batch import SandboxUnavailable, run_one
    _sandbox(args.allow_unsandboxed)
    try:
        result = run_one(root, args.student)
    except SandboxUnavailable as e:
        print(str(e), file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1))
    print(f"{result.student}: {result.total:g}/{result.max_total:g}", file=sys.stderr)
    return 0


def cmd_feedback(root, args):
    return 0 if _nbgrader(root, "generate_feedback", ASSIGNMENT, "--force") else 1


def cmd_export(root, args):
    return 0 if _nbgrader(root, "export") else 1


def cmd_report(root, args):
    return 0 if _report(root) else 1


def cmd_export_lms(root, args):
    ok = _export_lms(root, args.roster, args.canvas_assignment, args.moodle_item, args.moodle_id)
    return 0 if ok else 1


def main(argv=None):
    # nbgrader shells out to `alembic`: the venv's bin folder must come first on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__.split("\n")[0])
    parser.add_argument("--course", type=Path, default=ROOT, help="course folder (default: this repository)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("demo", "grade"):
        p = sub.add_parser(name)
        p.add_argument("-j", "--jobs", type=int, default=None, help="worker processes (default: CPU cores)")
        p.add_argument("--regrade", action="store_true", help="grade unchanged submissions again")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        if name == "grade":
            p.add_argument("--allow-unsandboxed", action="store_true",
                           help="run student code without the sandbox (trusted submissions only)")
            p.add_argument("students", nargs="*", help="student ids (default: everyone under submitted/)")
    p = sub.add_parser("run-one")
    p.add_argument("student")
    p.add_argument("--allow-unsandboxed", action="store_true", help="run student code without the sandbox")
    sub.add_parser("feedback")
    sub.add_parser("export")
    sub.add_parser("report")
    p = sub.add_parser("export-lms", help="Canvas and Moodle grade import files")
    p.add_argument("--roster", type=Path, required=True,
                   help="CSV: student_id,name,canvas_id,sis_user_id,sis_login_id,section,email,username,idnumber")
    p.add_argument("--canvas-assignment", default=None,
                   help='Canvas column, e.g. "channels (12345)" with the Canvas assignment id (default: channels)')
    p.add_argument("--moodle-item", default=None, help="Moodle grade item name (default: channels)")
    p.add_argument("--moodle-id", default="email", choices=["email", "username", "idnumber"],
                   help="how Moodle identifies the student (default: email)")
    args = parser.parse_args(argv)
    root = args.course.resolve()
    command = {"demo": cmd_demo, "grade": cmd_grade, "feedback": cmd_feedback, "export": cmd_export,
               "report": cmd_report, "export-lms": cmd_export_lms, "run-one": cmd_run_one}
    return command[args.command](root, args)


if __name__ == "__main__":
    sys.exit(main())

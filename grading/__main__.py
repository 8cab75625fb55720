"""`python -m grading demo|grade|feedback|export`: the instructor's loop from the terminal.

    demo      generate the assignment, fill in the bundled sample class, autograde it,
              write feedback and grades.csv, print the table and the attention list
    grade     autograde everything under submitted/ (-j N workers, --regrade, STUDENT...)
    feedback  nbgrader generate_feedback for every graded submission
    export    nbgrader export → grades.csv
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
    from grading.sandbox import install_kernelspec, sandbox_status
    ok, reason = sandbox_status()
    if ok:
        install_kernelspec()
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
    from grading.batch import run_nbgrader
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
    return 0


def cmd_grade(root, args):
    _sandbox(args.allow_unsandboxed)
    return 0 if _grade(root, args, args.students) is not None else 2


def cmd_feedback(root, args):
    return 0 if _nbgrader(root, "generate_feedback", ASSIGNMENT, "--force") else 1


def cmd_export(root, args):
    return 0 if _nbgrader(root, "export") else 1


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
    sub.add_parser("feedback")
    sub.add_parser("export")
    args = parser.parse_args(argv)
    root = args.course.resolve()
    command = {"demo": cmd_demo, "grade": cmd_grade, "feedback": cmd_feedback, "export": cmd_export}
    return command[args.command](root, args)


if __name__ == "__main__":
    sys.exit(main())

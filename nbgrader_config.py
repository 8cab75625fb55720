"""nbgrader settings for this course (D2L §6.4 多输入多输出通道 and any assignment beside it).

nbgrader reads this file whenever it runs in this folder: `make grade`, `make demo`, a plain
`nbgrader autograde ASSIGNMENT`, Validate and the formgrader in JupyterLab. Keep `.venv/bin`
on PATH when you call nbgrader yourself (it shells out to `alembic`). The engine behind the
custom steps is the `grading/` package next to this file; what each assignment forbids and
allows is in source/<assignment>/policy.py.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # so that nbgrader can import the grading package
    sys.path.insert(0, HERE)

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

# --- The course -------------------------------------------------------------------
c.CourseDirectory.course_id = "d2l-channels"
c.CourseDirectory.root = HERE

# --- Grading (grading/settings.py: every limit and switch of the engine) ----------------
c.Grading.student_seconds = 900       # one student's whole grading, on every path; past it: 0, with the reason
c.Grading.verify_seconds = 300        # the out-of-kernel verification of one notebook
c.Grading.verify_call_seconds = 30    # one call of a student's function
c.Grading.memory_bytes = 6 * 2**30    # per jailed process (kernel, child, verifier)
c.Grading.use_gpu = True              # pass the machine's NVIDIA GPU into the jails when it has one
c.Execute.timeout = 120               # one cell in the student's kernel, then it is interrupted
c.CappedExecute.max_output_bytes = 2 * 2**20           # output kept per cell ...
c.CappedExecute.max_notebook_output_bytes = 8 * 2**20  # ... and per notebook
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100

# --- Intake (grading/intake.py) -----------------------------------------------------
# `nbgrader collect` and `nbgrader zip_collect` copy only regular files and real folders:
# links (at any depth), fifos, devices, oversized files, unsafe archive members (links, "..",
# absolute paths, zip bombs) are refused, logged with the student id and listed in the
# student's submitted/<student>/<assignment>/intake.json; grading flags them (files_refused).
# Set here, before the rest: these commands run no student code and need no sandbox.
c.ExchangeFactory.collect = "grading.intake.SafeExchangeCollect"
c.ZipCollectApp.extractor_plugin = "grading.intake.SafeExtractor"

# Commands that never run student code; every other one (autograde, validate, the
# formgrader) must get the sandbox or not run at all.
NO_CODE_RUN = {"generate_assignment", "assign", "release_assignment", "collect", "zip_collect", "export",
               "db", "list", "fetch_assignment", "submit", "generate_feedback", "release_feedback",
               "fetch_feedback", "quickstart", "--version", "--help"}

# --- The engine: keep this block last (it reads the settings above as nbgrader loads the file) ---
try:
    # The sandboxed kernel, the autograde and feedback steps (grading/nbsteps/), the
    # feedback page's template: grading/settings.py configure_nbgrader says what and why.
    from grading.settings import configure_nbgrader
    configure_nbgrader(c, HERE, refuse_now=sys.argv[1:2] == ["autograde"])
except Exception as error:
    # traitlets would log this and go on with nbgrader's defaults, which means grading in
    # an unconfined kernel: stop instead, unless this command runs no student code.
    if sys.argv[1:2] and sys.argv[1] in NO_CODE_RUN:
        raise
    raise SystemExit(f"nbgrader_config.py: the grading set-up failed ({error!r}); "
                     "refusing to run notebooks without the sandbox. Run `make setup` "
                     "from the course folder.") from error

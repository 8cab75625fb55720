"""nbgrader settings for the course 多输入多输出通道 (D2L §6.4).

nbgrader reads this file whenever it runs in this folder: `make grade`, `make demo`,
a plain `nbgrader autograde channels`, and the formgrader in JupyterLab. Keep
`.venv/bin` on PATH when you call nbgrader yourself (it shells out to `alembic`).
The code behind the custom steps lives in the `grading/` package next to this file.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # so that nbgrader can import grading.* preprocessors
    sys.path.insert(0, HERE)

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

# GPU: where the grading machine has an NVIDIA GPU, the sandbox passes it through (device
# nodes and driver, read-only; see grading/sandbox.py) and the hidden tests run on it.
# False grades on the CPU everywhere. (The environment variable CHANNELS_USE_GPU=0/1 wins.)
USE_GPU = True

# --- The course -------------------------------------------------------------------
c.CourseDirectory.course_id = "d2l-channels"
c.CourseDirectory.root = HERE

# Commands that never run student code; every other one (autograde, validate, the
# formgrader) must get the sandbox below or not run at all.
NO_CODE_RUN = {"generate_assignment", "assign", "release_assignment", "collect", "zip_collect", "export",
               "db", "list", "fetch_assignment", "submit", "generate_feedback", "release_feedback",
               "fetch_feedback", "quickstart", "--version", "--help"}


def configure_grading(c):
    # --- Sandbox (grading/sandbox.py) --------------------------------------------------
    # Every notebook nbgrader executes here (autograde, also a plain `nbgrader autograde`)
    # runs in the kernel `channels-sandbox`: ipykernel inside bubblewrap, no network, a
    # read-only system, only the instructor's checks.py in its working directory, rlimits.
    # Without bubblewrap that kernel refuses to start unless CHANNELS_ALLOW_UNSANDBOXED=1.
    from grading import sandbox  # noqa: E402

    os.environ[sandbox.COURSE_ENV] = HERE  # whose source/<assignment>/checks.py the jail gets
    os.environ.setdefault(sandbox.GPU_ENV, "1" if USE_GPU else "0")  # USE_GPU above
    if not sandbox.gpu_enabled():  # then the verifier, outside the jail, stays on the CPU too
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if sys.argv[1:2] == ["autograde"]:  # `nbgrader autograde ...`: refuse up front, not per notebook
        sandbox.refuse_unless_sandboxed()
    sandbox.ensure_kernelspec()
    c.Execute.kernel_name = sandbox.KERNEL_NAME
    # TCP cannot leave the jail's network namespace: IPC sockets in a private, absolute directory.
    c.KernelManager.transport = "ipc"
    c.KernelManager.ip = os.path.join(sandbox.ipc_directory(), "kernel")
    c.Execute.timeout = 120  # seconds per cell; then the kernel is interrupted (by message)
    c.Execute.interrupt_on_timeout = True
    # The steps of grading/preprocessors.py: the kernel runs locked down (no convolutions, no
    # new processes) with its output capped at 2 MB a cell, and runs no test cell; then the
    # verifier's verdicts are written into the test cells, and nbgrader scores those
    # (partial credit per part), so the gradebook, the feedback and the verdicts agree.
    from grading.preprocessors import autograde_steps  # noqa: E402
    c.Autograde.autograde_preprocessors = autograde_steps()
    c.CappedExecute.max_output_bytes = sandbox.MAX_OUTPUT_BYTES
    c.LimitOutput.max_lines = 1000
    c.LimitOutput.max_traceback = 100

    # --- Autograding (grading/rebuild.py, grading/preprocessors.py) --------------------
    # Grade the release notebook's cells with the student's answers put in (edited, deleted
    # or duplicated test cells and changed points cannot change the grade); then nbgrader's
    # own sanitizing steps. `make grade` adds the batch safety around this.
    from nbgrader.preprocessors import (  # noqa: E402
        CheckCellMetadata, ClearOutput, DeduplicateIds, OverwriteCells, OverwriteKernelspec)
    from grading.preprocessors import RebuildFromRelease  # noqa: E402

    c.Autograde.sanitize_preprocessors = [
        RebuildFromRelease, ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata,
    ]

    # --- Feedback (grading/feedback.py) ------------------------------------------------
    # nbgrader's steps, then: no hidden test code and no tracebacks in test cells, only the
    # failure messages (nbgrader #917, #1156, #1363).
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
    from nbgrader.preprocessors import GetGrades  # noqa: E402
    from grading.preprocessors import HideHiddenTests  # noqa: E402

    c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, HideHiddenTests]


try:
    configure_grading(c)
except Exception as error:
    # traitlets would log this and go on with nbgrader's defaults, which means grading in
    # an unconfined kernel: stop instead, unless this command runs no student code.
    if sys.argv[1:2] and sys.argv[1] in NO_CODE_RUN:
        raise
    raise SystemExit(f"nbgrader_config.py: the grading set-up failed ({error!r}); "
                     "refusing to run notebooks without the sandbox. Run `make setup` "
                     "from the course folder.") from error

"""Every limit and switch of the grading engine, in one typed place (set in nbgrader_config.py).

    c.Grading.student_seconds = 900     # in nbgrader_config.py, like nbgrader's own settings
    settings = Grading(config=course.config)

The settings object is passed explicitly to whatever needs it. Environment variables are
used only where a process boundary leaves no other way — the kernel launcher that
jupyter_client starts (grading/jail/sandbox.py) — and then through one function each way:
`Grading.environ()` writes them, `jail/env.py`'s `jail_settings()` reads them.
"""
import json

from traitlets import Bool, Float, Integer
from traitlets.config import Configurable

from grading.jail.env import DEFAULTS, JAIL_ENV


class Grading(Configurable):
    """The grading engine's settings (`c.Grading.<name>` in nbgrader_config.py)."""

    student_seconds = Float(900, help="Wall-clock budget of one student's grading, every path (batch, run-one, "
                                      "the formgrader, nbgrader autograde): past it, every test cell scores 0 "
                                      "with the reason, and the next student is graded.").tag(config=True)
    verify_seconds = Float(300, help="Verification of one notebook (within the student's budget).").tag(config=True)
    verify_call_seconds = Float(30, help="One call of a student's function in the verifier's child.").tag(config=True)
    verify_setup_seconds = Float(120, help="Starting the child and running the student's cells.").tag(config=True)
    memory_bytes = Integer(DEFAULTS["memory"], help="Address space (RLIMIT_AS; RLIMIT_DATA with a GPU) of each jailed "
                                         "process: the kernel, the child, the verifier.").tag(config=True)
    cpu_seconds = Integer(DEFAULTS["cpu"], help="CPU time (RLIMIT_CPU) of each jailed process.").tag(config=True)
    use_gpu = Bool(True, help="Pass the machine's NVIDIA GPU into the jails, when it has one.").tag(config=True)
    gpu_memory_fraction = Float(0.0, help="Fraction of the GPU's memory one jailed process may allocate "
                                           "(0: 0.9 / CPU cores).").tag(config=True)
    allow_unsandboxed = Bool(False, help="Grade without bubblewrap (students' code runs with your permissions: "
                                         "only for code you trust).").tag(config=True)
    warm_jails = Bool(True, help="One warm jail per worker and role (torch imported once).").tag(config=True)

    def limits(self):
        """The verifier's limits as plain data (what the verifier's jail receives in its plan)."""
        return {"call": self.verify_call_seconds, "setup": self.verify_setup_seconds, "total": self.verify_seconds}

    def environ(self, course_root):
        """{JAIL_ENV: JSON} for the kernel launcher, a process jupyter_client starts (read by sandbox.jail_settings)."""
        return {JAIL_ENV: json.dumps({"course": str(course_root), "allow_unsandboxed": self.allow_unsandboxed,
                                      "use_gpu": self.use_gpu, "gpu_memory_fraction": self.gpu_memory_fraction,
                                      "memory": self.memory_bytes, "cpu": self.cpu_seconds})}

    def export(self, course_root):
        """Put the jail's settings where the kernel launcher finds them (os.environ, GRADING_JAIL):
        the one writer of grading/jail/env.py's variable. Also keeps CUDA out of this process
        when the GPU is turned off (the verifier's child inherits it)."""
        import os
        os.environ.update(self.environ(course_root))
        if not self.use_gpu:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""


def configure_nbgrader(c, course_root, refuse_now=False):
    """Wire the engine into nbgrader's config `c` (nbgrader_config.py calls this).

    - the jail's settings for the kernel launcher (GRADING_JAIL, from c.Grading);
    - every notebook nbgrader executes (autograde, Validate, the formgrader) runs in the
      kernel `grading-sandbox`: ipykernel inside bubblewrap, over IPC sockets in a private
      directory (TCP cannot leave the jail's network namespace); `refuse_now` (a plain
      `nbgrader autograde`) stops at once when there is no sandbox and none was allowed;
    - the autograde steps of grading/nbsteps/ (rebuild from the release, the locked-down
      kernel within the student's budget, sanitizing, the verdicts, extra credit);
    - the feedback steps and the offline feedback page (grading/nbsteps/feedback.py), on
      GenerateFeedback's own exporter;
    - the formgrader's manual-grading page with MathJax from the course, not a CDN
      (grading/nbsteps/formgrade.py), on the exporter nbgrader builds for the formgrader.
    """
    import os

    from grading.jail import sandbox
    from grading.nbsteps import autograde_steps, feedback_steps, sanitize_steps
    from grading.nbsteps import feedback, formgrade

    Grading(config=c).export(course_root)
    if refuse_now:
        sandbox.refuse_unless_sandboxed()
    sandbox.ensure_kernelspec()
    c.Execute.kernel_name = sandbox.KERNEL_NAME
    c.KernelManager.transport = "ipc"
    c.KernelManager.ip = os.path.join(sandbox.ipc_directory(), "kernel")
    c.Execute.interrupt_on_timeout = True
    c.Autograde.sanitize_preprocessors = sanitize_steps()
    c.Autograde.autograde_preprocessors = autograde_steps()
    c.GenerateFeedback.preprocessors = feedback_steps()
    feedback.configure_exporter(c.GenerateFeedback.HTMLExporter)
    formgrade.configure_exporter(c, course_root)

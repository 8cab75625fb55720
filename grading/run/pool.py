"""Persistent grading workers: nbgrader and torch imported once, one student at a time each.

A generic executor for `grade_one.grade_submission`: workers come from a fork server that
imported PRELOAD once; each worker may have two warm jails (grading/jail/zygote.py: one for
the student's code, one for the verifier) that are emptied before every student. A worker
that dies or runs past the per-student budget is killed (with everything it started) and
replaced; its student gets `failed_outcome`: every test cell 0, with the reason.
"""
import logging
import multiprocessing
import os
import sys
import time
import traceback
from collections import deque
from multiprocessing.connection import wait

from grading.result import over_budget_reason

#: Imported once by the fork server, before it forks the workers (each would pay ~5 s of CPU).
#: torch._dynamo: the verifier's first meta-tensor size check imports it (and sympy), ~2-3 s.
PRELOAD = ["grading.run.grade_one", "grading.nbsteps.execute", "grading.nbsteps.verdicts", "grading.jail.zygote",
           "nbgrader.converters", "nbgrader.api", "grading.verify"]


def _fresh_jails(jails):
    """Empty the warm jails before the next student; None (a jail per process) if one is gone."""
    from grading.jail import zygote
    if jails is None:
        return None
    try:
        for role in ("student", "verifier"):
            zygote.reset(jails[role]["path"])
        return jails
    except OSError as e:
        print(f"grading without the warm jails from now on: {e}", file=sys.stderr, flush=True)
        return None


def _worker_main(conn, root, assignment, settings, template, log_path, environ, jails):
    """Worker loop: keep nbgrader imported, grade students sent by the parent one at a time."""
    from grading.course import Course
    from grading.run.grade_one import failed_outcome, grade_submission
    from grading.settings import Grading
    # The fork server's environment is from when it started: the parent's now (the jail's settings).
    os.environ.clear()
    os.environ.update(environ)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)  # kernels inherit these: keep their chatter out of the progress bar
    logging.getLogger("traitlets").setLevel(logging.INFO)
    course = Course(root, assignment, Grading(**settings))
    for name in PRELOAD:  # already imported unless the fork server could not
        try:
            __import__(name)
        except ImportError:
            pass
    conn.send(("ready", None))
    while True:
        try:
            student = conn.recv()
        except EOFError:
            return
        if student is None:
            return
        jails = _fresh_jails(jails)
        try:
            outcome = grade_submission(course, student, template, jails=jails,
                                       send=lambda partial: conn.send(("partial", partial)))
        except Exception:
            outcome = failed_outcome(course, student, "评分流程内部错误 (grading pipeline error): "
                                     + traceback.format_exc(limit=3)[-400:], [])
        conn.send(("done", outcome))


def warm_up():
    """Start the fork server now: its PRELOAD imports overlap with the parent's own work."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver
        _context()
        forkserver.ensure_running()


def _context():
    """Workers come from a fork server that imported PRELOAD once; spawn where there is none."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


class _Worker:
    def __init__(self, ctx, course, template, index, jails):
        self.parent_conn, child_conn = ctx.Pipe()
        log = course.state / "logs" / f"worker-{index}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = ctx.Process(target=_worker_main, daemon=True,
                                args=(child_conn, str(course.root), course.assignment,
                                      course.settings.trait_values(config=True), str(template), str(log),
                                      dict(os.environ), jails))
        self.proc.start()
        child_conn.close()
        self.student, self.deadline, self.partial, self.ready = None, None, None, False

    def kill(self):
        """Kill the worker and everything it started (the kernel, the verifier's child)."""
        try:
            import psutil
            procs = psutil.Process(self.proc.pid).children(recursive=True)
        except Exception:  # noqa: BLE001
            procs = []
        self.proc.kill()
        for p in procs:
            try:
                p.kill()
            except Exception:  # noqa: BLE001
                pass
        self.proc.join(5)


def _warm_jails(course, index):
    """The warm jails of worker slot `index` (grading/jail/zygote.py), {role: Zygote}, or None:
    a jail per process then (no sandbox, warm jails turned off, or one could not start)."""
    from grading.jail.zygote import Zygote, ZygoteUnavailable
    if not course.settings.warm_jails:
        return None
    jails = {}
    try:
        for role in ("student", "verifier"):
            log = course.state / "logs" / f"zygote-{role}-{index}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            jails[role] = Zygote(course.root, course.assignment, str(log), str(course.state / "jupyter"), role)
    except (ZygoteUnavailable, OSError) as e:
        if not isinstance(e, ZygoteUnavailable):
            print(f"grading without warm jails: {e}", file=sys.stderr)
        for z in jails.values():
            z.close()
        return None
    return jails


class Pool:
    """`jobs` persistent grading workers; started early so they warm up while the parent prepares."""

    def __init__(self, course, template, jobs):
        self.course, self.template = course, template
        self.ctx = _context()
        # The warm jails start now too: they import torch while the fork server does.
        self.jails = [_warm_jails(course, i) for i in range(jobs)]
        self.workers = [_Worker(self.ctx, course, template, i, self._jail(i)) for i in range(jobs)]

    def _jail(self, i):
        """What worker `i` needs of its warm jails (plain data: it crosses to the worker process)."""
        jails = self.jails[i]
        if jails is None:
            return None
        return {role: {"path": z.path, "ipc_dir": z.ipc_dir, "jupyter_dir": z.jupyter_dir} for role, z in jails.items()}

    def run(self, students, budget, on_done):
        """Grade `students`; call on_done(outcome) for each as it finishes (in any order)."""
        from grading.run.grade_one import failed_outcome
        todo, workers = deque(students), self.workers
        while todo or any(w.student for w in workers):
            for w in workers:
                if w.ready and w.student is None and todo:
                    w.student, w.deadline, w.partial = todo.popleft(), time.monotonic() + budget, None
                    w.parent_conn.send(w.student)
            deadlines = [w.deadline for w in workers if w.student]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            wait([w.parent_conn for w in workers] + [w.proc.sentinel for w in workers], timeout)
            for i, w in enumerate(workers):
                lost = self._check(w, budget, on_done)
                if lost:
                    flag, why = lost
                    w.kill()
                    if w.student:
                        # Over the budget: every test 0 (the rule); a worker that died keeps the
                        # verdicts it had already sent.
                        over = flag == "over_budget"
                        on_done(failed_outcome(self.course, w.student, why, [flag], None if over else w.partial))
                    elif not w.ready:
                        raise RuntimeError(f"a grading worker could not start; see {self.course.state / 'logs'}")
                    workers[i] = _Worker(self.ctx, self.course, self.template, i, self._jail(i))

    @staticmethod
    def _check(w, budget, on_done):
        """Read what worker `w` sent; return (flag, why) when it is lost (kernel_died: it died,
        over_budget: past the time limit), else None."""
        try:
            while w.parent_conn.poll():
                kind, data = w.parent_conn.recv()
                if kind == "ready":
                    w.ready = True
                elif kind == "partial":
                    w.partial = data
                elif kind == "done":
                    on_done(data)
                    w.student = None
        except (EOFError, OSError):
            return "kernel_died", "评分进程意外退出 (grading worker died)"
        if not w.proc.is_alive():
            return "kernel_died", "评分进程意外退出 (grading worker died)"
        if w.student and time.monotonic() > w.deadline:
            return "over_budget", over_budget_reason(budget)
        return None

    def close(self):
        for w in self.workers:
            try:
                w.parent_conn.send(None)
            except (OSError, ValueError):
                pass
        for w in self.workers:
            w.proc.join(10)
            if w.proc.is_alive():
                w.kill()
        for jails in self.jails:
            for z in (jails or {}).values():
                z.close()

"""Persistent grading workers: nbgrader and torch imported once, one student at a time each.

A generic executor for `grade_one.grade_submission`: workers come from a fork server that
imported PRELOAD once; each worker may have a warm jail (grading/zygote.py) that is emptied
before every student. A worker that dies or runs past the per-student budget is killed
(with everything it started) and replaced; its student gets `failed_outcome`, with the
verdicts it had already sent.
"""
import logging
import multiprocessing
import os
import sys
import time
import traceback
from collections import deque
from multiprocessing.connection import wait

#: Imported once by the fork server, before it forks the workers (each would pay ~5 s of CPU).
#: torch._dynamo: the verifier's first meta-tensor size check imports it (and sympy), ~2-3 s.
PRELOAD = ["grading.grade_one", "grading.preprocessors", "grading.zygote", "nbgrader.converters",
           "nbgrader.api", "grading.verify", "torch", "torch._dynamo"]


def _fresh_jail(jail):
    """Empty the warm jail before the next student; None (one jail per process) if it is gone."""
    from grading import zygote
    if jail is None:
        return None
    try:
        zygote.reset(jail[0])
        return jail
    except OSError as e:
        print(f"grading without the warm jail from now on: {e}", file=sys.stderr, flush=True)
        os.environ.pop(zygote.ENV, None)
        return None


def _worker_main(conn, root, assignment, template, log_path, environ, jail):
    """Worker loop: keep nbgrader and torch imported, grade students sent by the parent one at a time."""
    from grading.course import Course
    from grading.grade_one import failed_outcome, grade_submission
    os.environ.clear()
    os.environ.update(environ)  # the parent's environment now, not the fork server's
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)  # kernels inherit these: keep their chatter out of the progress bar
    logging.getLogger("traitlets").setLevel(logging.INFO)
    course = Course(root, assignment)
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
        jail = _fresh_jail(jail)
        try:
            outcome = grade_submission(course, student, template, jail=jail,
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
    def __init__(self, ctx, course, template, index, jail):
        self.parent_conn, child_conn = ctx.Pipe()
        log = course.state / "logs" / f"worker-{index}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = ctx.Process(target=_worker_main, daemon=True,
                                args=(child_conn, str(course.root), course.assignment, str(template), str(log),
                                      dict(os.environ), jail))
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


def _warm_jail(course, index):
    """A warm jail for worker slot `index` (grading/zygote.py), or None: one jail per process then."""
    from grading.zygote import Zygote, ZygoteUnavailable
    log = course.state / "logs" / f"zygote-{index}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        return Zygote(course.root, course.assignment, str(log), str(course.state / "jupyter"))
    except ZygoteUnavailable:  # no sandbox (allowed) or switched off: nothing to warm
        return None
    except OSError as e:
        print(f"grading without a warm jail: {e}", file=sys.stderr)
        return None


class Pool:
    """`jobs` persistent grading workers; started early so they warm up while the parent prepares."""

    def __init__(self, course, template, jobs):
        self.course, self.template = course, template
        self.ctx = _context()
        # The warm jails start now too: they import torch while the fork server does.
        self.jails = [_warm_jail(course, i) for i in range(jobs)]
        self.workers = [_Worker(self.ctx, course, template, i, self._jail(i)) for i in range(jobs)]

    def _jail(self, i):
        z = self.jails[i]
        return (z.path, z.ipc_dir, z.jupyter_dir) if z is not None else None

    def run(self, students, budget, on_done):
        """Grade `students`; call on_done(outcome) for each as it finishes (in any order)."""
        from grading.grade_one import failed_outcome
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
                    w.kill()
                    if w.student:
                        flags = ["timeout"] if "limit" in lost else ["kernel_died"]
                        on_done(failed_outcome(self.course, w.student, lost, flags, w.partial))
                    elif not w.ready:
                        raise RuntimeError(f"a grading worker could not start; see {self.course.state / 'logs'}")
                    workers[i] = _Worker(self.ctx, self.course, self.template, i, self._jail(i))

    @staticmethod
    def _check(w, budget, on_done):
        """Read what worker `w` sent; return why it is lost (died, over the time limit) or None."""
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
            return "评分进程意外退出 (grading worker died)"
        if not w.proc.is_alive():
            return "评分进程意外退出 (grading worker died)"
        if w.student and time.monotonic() > w.deadline:
            return f"超过每位学生 {budget:.0f} 秒的评分时间上限 (grading time limit exceeded)"
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
        for z in self.jails:
            if z is not None:
                z.close()

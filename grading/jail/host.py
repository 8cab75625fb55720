"""The grader's side of verification: starts the jails, hands the verifier its children, reads verdicts.

    run_verifier(course_root, assignment, plan, seconds, ...) -> (verdict messages, error, log)

The verifier (grading/jail/verifier.py) runs the instructor's test cells in a jail of its own;
each call of a student's function runs in the student's child (grading/jail/child.py), in
another jail. The host starts the verifier with one control socket and sends it the plan;
whenever the verifier asks for a child, the host ends the previous one, starts a new one
and passes the verifier the two ends of its pipes: the two jails then talk to each other
directly, and the host never reads a byte the student's code wrote. What the host reads
from the verifier is small and bounded (framed JSON, no blobs, a few messages per test
cell) and becomes a verdict only through grading/jail/verdicts.py, checked against the
contract. At `seconds` the host kills both jails from outside, whatever they are doing.

A process of a role is started from a warm jail (grading/jail/zygote.py) when the worker
has one, else in a jail of its own (grading/jail/sandbox.py's bubblewrap policy), else — only
where the instructor allowed it — unjailed with the same rlimits.
"""
import contextlib
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grading.jail import zygote
from grading.jail.protocol import ProtocolError, pack, unpack_header

HERE = Path(__file__).resolve().parent
#: The engine's code a jail sees (read-only): the package marker and this folder, nothing else.
ENGINE_ROOT = HERE.parent.parent
MAX_CONTROL_MESSAGE = 1 << 20
#: Messages the verifier may send per test cell (a verdict, a few children and questions).
MESSAGES_PER_TEST = 8


def jail_files(course_root, assignment):
    """(working directory inside, helper files [(host path, name)], read-only binds) of a jail.

    The working directory holds only the instructor's helper files of source/<assignment>/
    (checks.py, policy.py) and the engine's testkit.py, never a student's file; the engine's
    jail code is bound read-only under zygote.ENGINE.
    """
    from grading.jail import sandbox
    helpers = [(path, name) for path, name in sandbox.helper_files(course_root, assignment) if name != "testkit.py"]
    helpers.append((HERE / "testkit.py", "testkit.py"))
    binds = [(str(ENGINE_ROOT / "grading" / "__init__.py"), f"{zygote.ENGINE}/grading/__init__.py"),
             (str(HERE), f"{zygote.ENGINE}/grading/jail")]
    return f"{sandbox.INSIDE_ROOT}/{assignment}", helpers, binds


def _boot(role, engine):
    """The `python -c` program that runs grading.jail.<role>.main(sys.argv) with the engine at `engine`."""
    return f"import sys; sys.path.insert(0, {engine!r}); from grading.jail import {role}; {role}.main(sys.argv)"


class Process:
    """A jailed process of a role, however it was started: wait, kill, its last words."""

    def __init__(self, handle, stderr):
        self.handle, self.stderr = handle, stderr

    def wait(self, timeout):
        if isinstance(self.handle, zygote.Forked):
            return self.handle.wait(timeout)
        try:
            return self.handle.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if isinstance(self.handle, zygote.Forked):
            self.handle.kill()
        elif self.handle.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.handle.pid, 9)  # its own session: bwrap and the whole jail go
            self.handle.wait()

    def last_words(self, limit=2000):
        """The end of what it wrote to stderr (before the student's code ran: the child then closes it)."""
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 4 * limit))
            return self.stderr.read().decode(errors="replace").strip()[-limit:]
        except (OSError, ValueError):
            return ""

    def close(self):
        self.kill()
        with contextlib.suppress(OSError):
            self.stderr.close()


class Launcher:
    """Starts the processes of one student's verification: from warm jails, bubblewrap or (allowed) bare.

    `zygotes`: {role: socket path} of this worker's warm jails (reset for this student).
    """

    def __init__(self, course_root, assignment, zygotes=None, unsandboxed=False):
        self.course_root, self.assignment = str(course_root), assignment
        self.zygotes, self.unsandboxed = dict(zygotes or {}), unsandboxed
        self._scratch = None

    def start(self, role, fds):
        stderr = tempfile.TemporaryFile()
        if role in self.zygotes:
            with open(os.devnull, "rb") as null_in, open(os.devnull, "wb") as null_out:
                handle = zygote.spawn(self.zygotes[role], role, [null_in.fileno(), null_out.fileno(),
                                                                  stderr.fileno(), *fds])
            return Process(handle, stderr)
        from grading.jail import sandbox
        workdir, helpers, binds = jail_files(self.course_root, self.assignment)
        if self.unsandboxed:
            cwd = self._scratch_dir(helpers)
            argv = [sys.executable, "-I", "-c", _boot(role, str(ENGINE_ROOT)), *map(str, fds)]
            preexec = sandbox.apply_limits
        else:
            cwd, preexec = None, None
            argv = sandbox.sandbox_argv([sys.executable, "-I", "-c", _boot(role, zygote.ENGINE), *map(str, fds)],
                                        workdir=workdir, helper_files=helpers, ro_binds=binds)
        handle = subprocess.Popen(argv, cwd=cwd, pass_fds=tuple(fds), start_new_session=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                  preexec_fn=preexec)
        return Process(handle, stderr)

    def _scratch_dir(self, helpers):
        import shutil
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="grading-unsandboxed-")
            for src, name in helpers:
                Path(self._scratch, name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, Path(self._scratch, name))
        return self._scratch

    def close(self):
        import shutil
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


class _Control:
    """The host's end of the verifier's control socket: bounded framed messages, with a deadline."""

    def __init__(self, sock, deadline):
        self.sock, self.deadline = sock, deadline

    def _recv(self, n):
        data = b""
        while len(data) < n:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise TimeoutError
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def receive(self):
        (size,) = struct.unpack(">I", self._recv(4))
        if size > MAX_CONTROL_MESSAGE:
            raise ProtocolError(f"a message of {size} bytes")
        header, sizes = unpack_header(self._recv(size), max_blobs=0)
        if sizes or not isinstance(header.get("op"), str):
            raise ProtocolError("malformed message")
        return header

    def send(self, header, fds=()):
        self.sock.settimeout(max(0.01, self.deadline - time.monotonic()))
        data = pack(header)
        if fds:
            sent = socket.send_fds(self.sock, [data], list(fds))
            data = data[sent:]
        self.sock.sendall(data)


def run_verifier(launcher, plan, seconds):
    """Run the verifier on `plan` for at most `seconds`; return (verdict messages, error, log).

    The messages are the verifier's raw verdicts in the order it sent them, for
    grading/jail/verdicts.py to check; `error` says (to the student) why verification
    stopped early, None when it finished; `log` is for the instructor's log only (the end
    of the verifier's stderr: its last words, what the tests printed; it may quote hidden
    test code).
    """
    deadline = time.monotonic() + seconds
    host_sock, jail_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    control = _Control(host_sock, deadline)
    verifier = child = None
    messages, error, log = [], None, ""
    limit = MESSAGES_PER_TEST * (len(plan["tests"]) + 1)
    try:
        verifier = launcher.start("verifier", [jail_sock.fileno()])
        jail_sock.close()
        control.send({"op": "plan", **plan})
        for _ in range(limit):
            header = control.receive()
            op = header["op"]
            if op == "verdict":
                messages.append(header)
            elif op == "child":
                if child is not None:
                    child.close()
                child, reply, fds = _new_child(launcher)
                try:
                    control.send(reply, fds)
                finally:
                    for fd in fds:  # the verifier has its own copies now
                        os.close(fd)
            elif op == "why":
                code = child.wait(2) if child is not None else None
                control.send({"op": "why", "exit": code, "stderr": child.last_words() if child else ""})
            elif op == "done":
                break
            else:
                raise ProtocolError(f"unknown request {op[:40]!r}")
        else:
            raise ProtocolError(f"more than {limit} messages")
    except TimeoutError:
        error = f"独立验证 (verification) 超过了 {seconds:.0f} 秒的时间上限，没有结果的测试记 0 分 (time limit)"
    except (EOFError, OSError, ProtocolError) as e:
        code = verifier.wait(2) if verifier is not None else None
        error = f"独立验证 (verification) 进程意外结束（退出码 {code}），没有结果的测试记 0 分 (verifier ended early)"
        log = f"{type(e).__name__}: {e}\n{verifier.last_words(8000) if verifier else ''}"
    finally:
        if verifier is not None and not log:  # what the instructor's tests printed, for the student's log
            log = verifier.last_words(8000)
        for process in (child, verifier):
            if process is not None:
                process.close()
        with contextlib.suppress(OSError):
            host_sock.close()
        with contextlib.suppress(OSError):
            jail_sock.close()
    return messages, error, log


def _new_child(launcher):
    """Start a student's child with two fresh pipes: (process, reply to the verifier, the ends to pass)."""
    to_child, from_verifier = os.pipe()    # the child reads to_child, the verifier writes from_verifier
    from_child, to_verifier = os.pipe()    # the child writes to_verifier, the verifier reads from_child
    for fd in (to_child, to_verifier):
        _widen(fd)
    try:
        child = launcher.start("child", [to_child, to_verifier])
    except (OSError, ConnectionError) as e:
        child = None
        for fd in (from_verifier, from_child):
            os.close(fd)
        reply, fds = {"op": "child", "ok": False, "error": f"学生代码的进程无法启动 (child could not start): {e}"}, []
    else:
        reply, fds = {"op": "child", "ok": True}, [from_verifier, from_child]
    finally:
        os.close(to_child)
        os.close(to_verifier)
    return child, reply, fds


def _widen(fd):
    """Room for a whole message of tensors in the pipe: one write, no ping-pong of wake-ups."""
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default works, a little slower

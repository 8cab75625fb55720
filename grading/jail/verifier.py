"""The instructor's side of grading, in a jail of its own: runs the test cells, streams verdicts.

The host (grading/jail/host.py) starts this file jailed with one control socket. Over it the
verifier receives the plan (the instructor's test cells, their parts, the answer names,
the cells the student's child runs, the assignment's rules and limits), asks the host for
a student's child whenever it needs one (two pipe ends arrive as file descriptors), and
sends one verdict per test cell as soon as the cell has run, then "done". It never writes
anywhere else: its jail has no writable place but a small /tmp, no network, no view of
the gradebook, other submissions or the course besides the instructor's helper files.

Each test cell runs in a clean namespace where each answer name (a function the student wrote) is a `Proxy`:
a call runs the student's function in the child, which answers with a recipe of the aten
operations it ran; the proxy replays the recipe here (grading/jail/replay.py) on the test's
own tensors. So the result, the operators that testkit.record_ops sees, in-place changes to
the arguments and the time taken are all measured on this side. A recipe is hostile input:
at worst it spoils the verdict of the student who sent it.

    python -I verifier.py CONTROL_FD        (what the host runs, jailed)
"""
import builtins
import contextlib
import importlib.util
import os
import re
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

from grading.jail import guard
from grading.jail.child import tensor_inputs
from grading.jail.protocol import MAX_HEADER, ProtocolError, decode, encode, pack, unpack_header
from grading.jail.replay import MAX_CONSTANT_ELEMENTS, ForbiddenOperator, Replay, VerifierError

GRACE = 5
MAX_MESSAGE = 1000
#: The most children one notebook may use up (each hang or crash costs one).
MAX_CHILDREN = 8
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,60}$")
#: The one part of a test cell that declares none: the whole cell, all or nothing.
ALL_TESTS = "all"


class StudentError(Exception):
    """An exception of the student's code whose type is not a built-in one."""


# --- The control socket: the host --------------------------------------------------------------

class Host:
    """The verifier's end of the control socket (framed messages; descriptors with a child)."""

    def __init__(self, fd):
        self.sock = socket.socket(fileno=fd)

    def send(self, header):
        self.sock.sendall(pack(header))

    def receive(self, max_fds=0):
        fds, data = [], b""
        while len(data) < 4:
            chunk, got, _, _ = socket.recv_fds(self.sock, 4 - len(data), max_fds) if max_fds and not fds \
                else (self.sock.recv(4 - len(data)), [], 0, None)
            fds += got
            if not chunk:
                raise EOFError("the host closed the control socket")
            data += chunk
        (size,) = struct.unpack(">I", data)
        if size > MAX_HEADER:
            raise ProtocolError(f"header of {size} bytes")
        raw = b""
        while len(raw) < size:
            chunk = self.sock.recv(min(1 << 20, size - len(raw)))
            if not chunk:
                raise EOFError("the host closed the control socket")
            raw += chunk
        header, sizes = unpack_header(raw)
        if sizes:
            raise ProtocolError("the host sends no blobs")
        return header, fds


# --- The student's child ------------------------------------------------------------------------

class ChildLink:
    """A student's child that ran the student's cells; `call` runs one of their functions."""

    def __init__(self, host, plan, deadline):
        self.host, self.plan, self.deadline = host, plan, deadline
        self.limits = plan["limits"]
        self.dead = None      # why the current child cannot answer any more
        self.started = 0      # children used so far
        self.setup = None     # the child's report on the student's cells
        self.references = {}  # the instructor's functions of earlier questions, for the test now running
        self._in = self._out = None

    def start(self):
        import torch
        if self.started >= MAX_CHILDREN:
            raise VerifierError(f"独立校验 (verification) 已经重启了 {MAX_CHILDREN} 次学生代码的进程，不再重试")
        self._close()
        self.started += 1
        self.host.send({"op": "child"})
        reply, fds = self.host.receive(max_fds=2)
        if not reply.get("ok") or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise VerifierError(str(reply.get("error", "no child"))[:MAX_MESSAGE])
        self._in, self._out = fds
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self.dead = None
        header, blobs = self._exchange(
            {"op": "setup", "cells": self.plan["cells"], "names": self.plan["answers"],
             "forbidden": self.plan.get("forbidden"), "forbidden_what": self.plan.get("forbidden_what"),
             "cell_timeout": self.limits["call"]},
            [], self.limits["setup"], "运行你的代码单元格时")
        errors, names = header.get("errors"), header.get("names")
        if not (isinstance(errors, list) and isinstance(names, dict)):
            self._fail("独立校验 (verification) 进程的回复不合规范（setup）")
        values = {}
        for name, info in names.items():
            if isinstance(info, dict) and "value" in info:
                try:
                    values[name] = decode(info["value"], blobs, torch, layers=self.plan.get("layers", ()))
                except ProtocolError as e:
                    self._fail(f"独立校验 (verification) 进程的回复不合规范（{e}）")
        self.setup = {"errors": errors, "names": names, "values": values}

    def ensure_running(self):
        """Before each test cell: start the child, or replace one that died or hung in a call.

        One test's hang or crash must not fail the others. A child that could not even run
        the student's cells is not tried again.
        """
        if self.started and not (self.dead and self.setup is not None):
            return
        self.setup = None
        try:
            self.start()
        except VerifierError as e:
            self.dead = str(e)

    def _close(self):
        for fd in (self._in, self._out):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._in = self._out = None

    def call(self, name, args, kwargs):
        """Run name(*args, **kwargs) in the child; return its reply (header, blobs)."""
        import torch
        if self.dead:
            raise VerifierError(self.dead)
        blobs = []
        inputs = tensor_inputs(args, kwargs, torch)
        request = {"op": "call", "name": name, "timeout": self.limits["call"],
                   "args": encode(tuple(args), blobs, torch), "kwargs": encode(dict(kwargs), blobs, torch),
                   # the child computes there too when it can (a GPU passed into the jail)
                   "device": str(inputs[0].device) if inputs else "cpu", "references": self.references}
        # The child's own alarm interrupts a slow call and keeps the child; this deadline, a
        # little later, is for a child that does not answer even then.
        return self._exchange(request, blobs, self.limits["call"] + GRACE, f"调用 {name} 时")

    def left(self):
        return self.deadline - time.monotonic()

    def _exchange(self, header, blobs, timeout, what):
        if self.left() <= 0:
            self._fail(f"独立校验 (verification) 用完了 {self.limits['total']} 秒的总时间")
        limit = min(timeout, self.left())
        deadline = time.monotonic() + max(limit, 0)
        try:
            self._write(pack(header, blobs), deadline)
            (size,) = struct.unpack(">I", self._read(4, deadline))
            if size > MAX_HEADER:
                raise ProtocolError(f"header of {size} bytes")
            reply, sizes = unpack_header(self._read(size, deadline))
            return reply, [self._read(n, deadline) for n in sizes]
        except TimeoutError:
            self._fail(f"独立校验 (verification) 中{what}超过 {limit:.0f} 秒没有回应（死循环或太慢？）")
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._fail(f"独立校验 (verification) 进程在{what}意外退出（{self._why()}；内存超限、os._exit 或崩溃？）")
        except ProtocolError as e:
            self._fail(f"独立校验 (verification) 进程的回复不合规范（{e}）")

    def _why(self):
        """How the child ended, from the host (its exit status and its last words before the student's code)."""
        try:
            self.host.send({"op": "why"})
            reply, _ = self.host.receive()
        except (OSError, EOFError, ProtocolError):
            return "原因不明"
        code = reply.get("exit")
        how = f"被信号 {-code} 终止" if isinstance(code, int) and code < 0 else f"退出码 {code}"
        text = str(reply.get("stderr") or "").strip()
        return f"{how}\n{text[-MAX_MESSAGE:]}" if text else how

    def _fail(self, message):
        self.dead = message
        self._close()
        raise VerifierError(message)

    def _write(self, data, deadline):
        view = memoryview(data)
        while view:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([], [self._in], [], wait)[1]:
                raise TimeoutError
            view = view[os.write(self._in, view[:65536]):]

    def _read(self, n, deadline):
        chunks = []
        while n:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self._out], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(self._out, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


# --- The trusted side of a call ---------------------------------------------------------------------

class Proxy:
    """Stands for the student's function `name` in a test cell.

    A call runs the function in the child, which answers with the aten operations it ran;
    the proxy replays them here, on the caller's own tensors and under whatever the test
    cell has set up (testkit.record_ops's recorder, a timer). So the result, the operator
    list, in-place changes to the arguments and the time taken are all this process's.
    """

    def __init__(self, child, name):
        self._child, self.__name__ = child, name
        self.__qualname__ = name

    def __repr__(self):
        return f"<function {self.__name__} (verified in a sandbox)>"

    def __call__(self, *args, **kwargs):
        import torch
        from torch.utils._python_dispatch import _disable_current_modes
        with _disable_current_modes():  # the messages are not the function's operations
            reply, blobs = self._child.call(self.__name__, args, kwargs)
        try:
            return self._result(reply, blobs, args, kwargs, torch)
        except ProtocolError as e:
            self._child.dead = f"独立校验 (verification) 进程的回复不合规范（{e}）"
            raise VerifierError(self._child.dead) from None

    def _result(self, reply, blobs, args, kwargs, torch):
        name, plan = self.__name__, self._child.plan
        blocked = reply.get("blocked") or []
        if blocked:
            ops = "、".join(str(op)[:60] for op in blocked[:5])
            raise ForbiddenOperator(f"{name} 调用了{plan.get('forbidden_what') or '禁止的算子'} {ops}，"
                                    "在独立校验中被拦截：本题要用张量运算自己实现。")
        if not reply.get("ok"):
            raise _student_exception(reply.get("error"), name)
        trace = reply.get("trace")
        if not isinstance(trace, dict):
            raise ProtocolError("answer without a trace")
        inputs = tensor_inputs(args, kwargs, torch)
        device = inputs[0].device if inputs else torch.device("cpu")
        deadline = min(self._child.deadline, time.monotonic() + plan["limits"]["call"])
        result = reply.get("result")
        layer = isinstance(result, dict) and result.get("t") == "layer"
        # A layer comes back as data and is checked as such: its recipe (the layer's own
        # initialisation included) only matters for what it does to the arguments.
        limit = None if layer else MAX_CONSTANT_ELEMENTS
        # Devices in the recipe are the child's: kept as recorded when the child computed on
        # the test's device, else (a child without the GPU) everything is where the inputs are.
        same_device = reply.get("device") == str(device)
        replay = Replay(trace, blobs, inputs, device, torch, deadline, constants_limit=limit,
                        keep_devices=same_device, forbidden=plan.get("forbidden"))
        replay.run()
        if layer:
            from torch.utils._python_dispatch import _disable_current_modes
            with _disable_current_modes():  # a layer: its parameters, run here
                return decode(result, blobs, torch, layers=plan.get("layers", ())).to(device)
        replay.scalars = 0
        return replay.value(result)


def _student_exception(error, function):
    """The exception the student's function raised, rebuilt from its type name and message."""
    error = error if isinstance(error, dict) else {}
    name = str(error.get("type", "Exception"))
    name = name if _IDENTIFIER.match(name) else "Exception"
    message = str(error.get("message", ""))[:MAX_MESSAGE]
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = type(name, (StudentError,), {})
    try:
        exc = cls(message)
    except Exception:  # noqa: BLE001 (built-ins such as UnicodeDecodeError need more arguments)
        exc = type(name, (StudentError,), {})(message)
    exc.verify_function = function
    return exc


# --- Running the instructor's test cells -----------------------------------------------------------

def load_helpers(folder, testkit_path):
    """Make the instructor's helper modules of `folder` (checks.py, policy.py) importable, with the
    engine's own testkit whatever the folder holds; return testkit."""
    spec = importlib.util.spec_from_file_location("testkit", testkit_path)
    testkit = importlib.util.module_from_spec(spec)
    sys.modules["testkit"] = testkit
    spec.loader.exec_module(testkit)
    sys.path.insert(0, str(folder))
    return testkit


def run_test(test, bindings, testkit):
    """Run one test cell with `bindings` for the answer names; return its parts' outcomes.

    Every `with part(...)` block of the cell runs (testkit.RECORD collects their outcomes);
    a part passes when all its blocks ran and passed. A part that never ran (the cell
    failed before it) fails with the cell's error: nothing is assumed to have passed.
    """
    grade_id, code, parts = test["grade_id"], test["code"], test["parts"]
    namespace = {"__name__": "__verify__", "__builtins__": builtins, **bindings}
    record, outside = [], None
    testkit.RECORD = record
    try:
        exec(compile(code, f"<test {grade_id}>", "exec"), namespace)
    except Exception as e:  # noqa: BLE001 (any failure of the test is the verdict)
        outside = e
    finally:
        testkit.RECORD = None
    first_error = {}
    for block, error in record:
        if first_error.get(block.name) is None:
            first_error[block.name] = error
    outcomes = []
    for name in parts:
        if name in first_error:
            error = first_error[name]
        elif outside is not None:
            error = outside
        elif name == ALL_TESTS:  # a cell without parts: it passed if it ran through
            error = None
        else:
            error = AssertionError("这一项的测试没有运行 (part not run)")
        if error is None:
            outcomes.append({"name": name, "passed": True})
        else:
            outcomes.append({"name": name, "passed": False, "message": describe_failure(error),
                             "category": category_of(error), "function": getattr(error, "verify_function", None)})
    return outcomes


def category_of(error):
    """The category code of a failure (testkit.CATEGORIES, or the verifier's own)."""
    category = getattr(error, "category", None)
    if isinstance(category, str):
        return category
    name = type(error).__name__
    if name == "NotImplementedError" or (name == "NameError" and getattr(error, "verify_function", None) is None):
        return "unanswered"
    if name == "TimeoutError":
        return "timeout"
    if name == "TooManyOperations":  # child.py's limit: a loop over pixels, most likely
        return "too_slow"
    return "error"


def describe_failure(e):
    """What the student reads: the check's message, or who raised what (never a line of the test)."""
    function = getattr(e, "verify_function", None)
    if isinstance(e, AssertionError) and str(e) and function is None:
        text = str(e)  # the instructor's message (testkit.CheckFailure), already for the student
    elif type(e).__name__ == "NotImplementedError":
        text = f"{function or '这个函数'} 还没有作答：删掉 raise NotImplementedError() 并完成代码 (not answered yet)"
    elif type(e).__name__ == "NameError" and function is None:
        text = f"NameError: {e}（这个答案没有定义：答案单元格运行出错，或者还没有作答）"
    else:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if function:
            text = f"{function} 出错 (raised)：{text}"
    return text[:MAX_MESSAGE]


def bindings(child):
    """The answer names as the test cell sees them: proxies for functions, values as sent."""
    if child.setup is None:  # the child never came up: every call reports why
        return {name: Proxy(child, name) for name in child.plan["answers"]}
    bound = {}
    for name in child.plan["answers"]:
        info = child.setup["names"].get(name, {})
        if isinstance(info, dict) and info.get("callable"):
            bound[name] = Proxy(child, name)
        elif name in child.setup["values"]:
            bound[name] = child.setup["values"][name]
    return bound


def with_setup_errors(message, errors):
    errors = [e for e in errors if isinstance(e, dict)]
    errors.sort(key=lambda e: not str(e.get("cell", "")).startswith("<answer"))  # answers first
    notes = "；".join(f"{e.get('cell', '?')} {e.get('type', '')}: {str(e.get('message', ''))[:120]}"
                     for e in errors[:3])
    return f"{message}（你的代码单元格运行出错：{notes}）"[:MAX_MESSAGE]


def verify(plan, host, testkit):
    """Run every test cell of the plan, sending each verdict to the host as soon as it is known."""
    deadline = time.monotonic() + plan["limits"]["total"]
    child = ChildLink(host, plan, deadline)
    for test in plan["tests"]:
        child.ensure_running()
        child.references = test.get("references") or {}
        outcomes = run_test(test, bindings(child), testkit)
        for outcome in outcomes:
            if not outcome["passed"] and outcome["category"] == "unanswered" and child.setup and child.setup["errors"]:
                outcome["message"] = with_setup_errors(outcome["message"], child.setup["errors"])
        host.send({"op": "verdict", "grade_id": test["grade_id"], "parts": outcomes})
    child._close()
    host.send({"op": "done", "children": child.started})


def main(argv):
    host = Host(int(argv[1]))
    plan, _ = host.receive()
    import torch
    torch.set_num_threads(1)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    testkit = load_helpers(os.getcwd(), Path(__file__).with_name("testkit.py"))
    # Trusted code, hostile data: no new process whatever a test cell or a recipe does.
    guard.forbid_processes(threads=True)
    verify(plan, host, testkit)


if __name__ == "__main__":
    main(sys.argv)

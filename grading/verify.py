"""Out-of-kernel verification: re-run each test cell where the student's code cannot reach it.

Inside the graded kernel a submission can change anything: monkeypatch torch.allclose or
checks.assert_close, change how IPython runs or reports cells, swallow exceptions, keep
a convolution under another name. So every autograded test cell is run a second time:

- here, in the grader's process (trusted): the test cell's code from the INSTRUCTOR's
  source notebook, with the instructor's checks.py, in a clean namespace where each
  answer name (corr2d, ...) is a `Proxy`;
- each proxy call goes to a child process (grading/verify_child.py, jailed by
  grading/sandbox.py) that ran the student's cells and nothing else, and that has
  torch's convolution operators blocked at the dispatcher;
- the child answers with the aten operations the function ran, and the proxy REPLAYS
  them here on the test's own tensors (`Replay`). So the result, the operators that
  checks.record_ops sees, in-place changes to the arguments and the time taken are all
  measured here; nothing the child reports about itself is believed. A forged recipe
  could only be another computation of the answer from the arguments (constants, the
  one way to smuggle values in, are limited to a handful of numbers).

Only data crosses (JSON and raw tensor bytes, never pickle), and this side never
executes student code (only aten operators, each checked for the memory it would
take), so all comparisons, tolerances and messages are the instructor's.

    verify_notebook(course_root, assignment, notebook) -> {grade_id: Verdict}

The pipeline reconciles these verdicts with the kernel's (grading/batch.py): the
verifier's verdict wins, disagreements are reported to the instructor.

    python -m grading.verify COURSE ASSIGNMENT NOTEBOOK.ipynb    print the verdicts as JSON
"""
import ast
import builtins
import contextlib
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from grading import sandbox
from grading.contract import ALL_TESTS, defined_names, parts_of
from grading.result import PartVerdict, Verdict
from grading.verify_child import (
    MAX_HEADER, MAX_NODES, ProtocolError, decode, encode, pack, tensor_inputs, unpack_header)

CHILD = Path(__file__).with_name("verify_child.py")
CHILD_INSIDE = "/verifier/verify_child.py"
GUARD = Path(__file__).with_name("guard.py")
GUARD_INSIDE = "/verifier/guard.py"
#: Seconds: one call of a student's function; starting the child and running the
#: student's cells (torch's import included); everything for one notebook.
CALL_TIMEOUT = 30
SETUP_TIMEOUT = 120
TOTAL_TIMEOUT = 300
GRACE = 5
MAX_MESSAGE = 1000
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,60}$")


class VerifierError(Exception):
    """The child could not answer: it hung, died, or broke the protocol."""
    category = "verifier_failed"


class ForbiddenOperator(AssertionError):
    """The student's function reached a convolution operator (blocked in the child)."""
    category = "conv_used"


class StudentError(Exception):
    """An exception of the student's code whose type is not a built-in one."""


class ConstantResult(AssertionError):
    """The recipe computes its result from more constants than the function could need."""
    category = "values"


# --- What to run: the instructor's notebook says -------------------------------------------------

@dataclass
class Plan:
    tests: list          # [(grade_id, code, parts)] autograded test cells, in order (parts: contract.Part)
    answers: list        # names the solution cells define (corr2d, train_hours, ...)
    solution_ids: set    # grade_ids of solution cells
    imports: dict        # grade_id -> code of read-only cells that only import
    instructor_ids: set  # every grade_id of the source notebook


def plan_from(source_nb):
    """Read the test cells, answer names and import cells from the instructor's notebook."""
    plan = Plan([], [], set(), {}, set())
    for cell in source_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if gid:
            plan.instructor_ids.add(gid)
        if cell.cell_type != "code" or not gid:
            continue
        if meta.get("solution"):
            plan.solution_ids.add(gid)
            plan.answers += [n for n in defined_names(cell.source) if n not in plan.answers]
        elif meta.get("grade"):
            plan.tests.append((gid, cell.source, parts_of(cell)))
        elif _only_imports(cell.source):
            plan.imports[gid] = cell.source
    return plan


def _only_imports(source):
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def student_cells(notebook, plan):
    """[{"label", "source"}]: what the child runs, in the notebook's order.

    The student's answers and own cells, and the instructor's import cells (their source
    from the instructor's notebook); never test cells or other instruction cells.
    """
    cells = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in plan.solution_ids:
            cells.append({"label": f"<answer cell {gid}>", "source": cell.source})
        elif gid in plan.imports:
            cells.append({"label": f"<cell {gid}>", "source": plan.imports[gid]})
        elif gid not in plan.instructor_ids:
            cells.append({"label": f"<your cell {index + 1}>", "source": cell.source})
    return cells


# --- The child process --------------------------------------------------------------------------

class Child:
    """A jailed verify_child.py that ran the student's cells; `call` runs one of their functions."""

    def __init__(self, course_root, assignment, cells, answers, deadline):
        self.course_root, self.assignment = Path(course_root), assignment
        self.cells, self.answers, self.deadline = cells, answers, deadline
        self.proc = None
        self.dead = None      # why the current child cannot answer any more
        self.restarts = 0     # children replaced after a hang or crash
        self.setup = None     # the child's report on the student's cells

    # Lifetime.
    def start(self):
        import torch
        to_child, self._child_in = os.pipe()
        self._child_out, from_child = os.pipe()
        for fd in (to_child, from_child):
            _widen(fd)
        workdir = f"{sandbox.INSIDE_ROOT}/{self.assignment}"
        helpers = sandbox.helper_files(self.course_root, self.assignment)
        ok, reason = sandbox.sandbox_status()
        zygote = os.environ.get("CHANNELS_ZYGOTE")  # the grading worker's warm jail (grading/zygote.py)
        if ok and zygote:
            argv, cwd = [sys.executable, "-I", str(CHILD.with_name("zygote.py")), "attach", "verify",
                         str(to_child), str(from_child)], None
        elif ok:
            cmd = [sys.executable, "-I", CHILD_INSIDE, str(to_child), str(from_child)]
            argv, cwd = sandbox.sandbox_argv(cmd, workdir=workdir, helper_files=helpers,
                                             ro_binds=[(str(CHILD), CHILD_INSIDE), (str(GUARD), GUARD_INSIDE)]), None
        elif sandbox.unsandboxed_allowed():
            cwd = self._scratch = tempfile.mkdtemp(prefix="channels-verify-")
            for src, name in helpers:
                Path(cwd, name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, Path(cwd, name))
            argv = [sys.executable, "-I", str(CHILD), str(to_child), str(from_child)]
        else:
            raise RuntimeError(sandbox.refusal(reason))
        # Its stderr until the student's code starts: why a child could not even start.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, pass_fds=(to_child, from_child), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            preexec_fn=None if ok else sandbox.apply_limits)
        os.close(to_child)
        os.close(from_child)
        os.set_blocking(self._child_in, False)
        os.set_blocking(self._child_out, False)
        self.dead = None
        header, blobs = self._exchange({"op": "setup", "cells": self.cells, "names": self.answers,
                                        "cell_timeout": CALL_TIMEOUT}, [], SETUP_TIMEOUT, "运行你的代码单元格时")
        errors, names = header.get("errors"), header.get("names")
        if not (isinstance(errors, list) and isinstance(names, dict)):
            self._fail("独立校验 (verification) 进程的回复不合规范（setup）")
        values = {}
        for name, info in names.items():
            if isinstance(info, dict) and "value" in info:
                try:
                    values[name] = decode(info["value"], blobs, torch)
                except ProtocolError as e:
                    self._fail(f"独立校验 (verification) 进程的回复不合规范（{e}）")
        self.setup = {"errors": errors, "names": names, "values": values}

    def ensure_running(self):
        """Before each test cell: start the child, or replace one that died or hung in a call.

        One test's hang or crash must not fail the others (in the kernel, the next cell runs
        too). A child that could not even run the student's cells is not tried again.
        """
        if self.proc is not None and not (self.dead and self.setup is not None):
            return
        if self.proc is not None:
            self.restarts += 1
            self.stop()
        self.setup = None
        try:
            self.start()
        except VerifierError as e:
            self.dead = str(e)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.write(self._child_in, pack({"op": "exit"}))
            try:
                self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        for fd in (getattr(self, "_child_in", None), getattr(self, "_child_out", None)):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._child_in = self._child_out = None
        if getattr(self, "_stderr", None):
            self._stderr.close()
        if getattr(self, "_scratch", None):
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _kill(self):
        if self.proc is not None and self.proc.poll() is None:
            # Its own session: prlimit/bwrap and (with --die-with-parent) the whole jail go.
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # Calls.
    def call(self, name, args, kwargs):
        """Run name(*args, **kwargs) in the child; return its reply (header, blobs)."""
        import torch
        if self.dead:
            raise VerifierError(self.dead)
        blobs = []
        inputs = tensor_inputs(args, kwargs, torch)
        request = {"op": "call", "name": name, "timeout": CALL_TIMEOUT,
                   "args": encode(tuple(args), blobs, torch), "kwargs": encode(dict(kwargs), blobs, torch),
                   # the child computes there too when it can (a GPU passed into the jail)
                   "device": str(inputs[0].device) if inputs else "cpu"}
        # The child's own alarm (CALL_TIMEOUT) interrupts a slow call and keeps the child;
        # this deadline, a little later, is for a child that does not answer even then.
        return self._exchange(request, blobs, CALL_TIMEOUT + GRACE, f"调用 {name} 时")

    def _left(self):
        return self.deadline - time.monotonic()

    def _exchange(self, header, blobs, timeout, what):
        if self._left() <= 0:
            self._fail(f"独立校验 (verification) 用完了 {TOTAL_TIMEOUT} 秒的总时间")
        limit = min(timeout, self._left())
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
        except (EOFError, BrokenPipeError):
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._kill()
                code = self.proc.returncode
            how = f"被信号 {-code} 终止" if code is not None and code < 0 else f"退出码 {code}"
            self._fail(f"独立校验 (verification) 进程在{what}意外退出（{how}；内存超限、os._exit 或崩溃？）"
                       + self._startup_errors())
        except ProtocolError as e:
            self._fail(f"独立校验 (verification) 进程的回复不合规范（{e}）")

    def _startup_errors(self):
        """The last lines the child wrote before the student's code ran (a broken install, say)."""
        self._stderr.seek(0)
        text = self._stderr.read()[-4000:].decode(errors="replace").strip()
        return f"\n{text[-MAX_MESSAGE:]}" if text else ""

    def _fail(self, message):
        self.dead = message
        self._kill()
        raise VerifierError(message)

    def _write(self, data, deadline):
        view = memoryview(data)
        while view:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([], [self._child_in], [], wait)[1]:
                raise TimeoutError
            view = view[os.write(self._child_in, view[:65536]):]

    def _read(self, n, deadline):
        chunks = []
        while n:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([self._child_out], [], [], wait)[0]:
                raise TimeoutError
            chunk = os.read(self._child_out, min(n, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


def _widen(fd):
    """Room for a whole message of tensors in the pipe: one write, no ping-pong of wake-ups."""
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: the default works, a little slower


# --- The trusted side of a call ---------------------------------------------------------------------

#: Limits on a recipe from the child: elements of constants (tensors the function did not
#: compute from its arguments: the only way values could be smuggled in, so kept tiny),
#: numbers in one operation's arguments, bytes one operation may allocate, all of them.
MAX_CONSTANT_ELEMENTS = 64
#: Constants up to this size are checked element by element against the replay's `.item()` values.
MAX_ITEM_CONSTANT = 1_000_000
MAX_SCALARS = 64
MAX_OP_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 2 * 2**30


class Proxy:
    """Stands for the student's function `name` in a test cell.

    A call runs the function in the child, which answers with the aten operations it ran;
    the proxy replays them here, on the caller's own tensors and under whatever the test
    cell has set up (checks.record_ops's recorder, a timer). So the result, the operator
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
            raise VerifierError(f"独立校验 (verification) 进程的回复不合规范（{e}）") from None

    def _result(self, reply, blobs, args, kwargs, torch):
        name = self.__name__
        blocked = reply.get("blocked") or []
        if blocked:
            ops = "、".join(str(op)[:60] for op in blocked[:5])
            raise ForbiddenOperator(f"{name} 调用了卷积算子 (convolution operator) {ops}，在独立校验中被拦截："
                                    "本题只能用张量运算自己实现。")
        if not reply.get("ok"):
            raise _student_exception(reply.get("error"), name)
        trace = reply.get("trace")
        if not isinstance(trace, dict):
            raise ProtocolError("answer without a trace")
        inputs = tensor_inputs(args, kwargs, torch)
        device = inputs[0].device if inputs else torch.device("cpu")
        deadline = min(self._child.deadline, time.monotonic() + CALL_TIMEOUT)
        result = reply.get("result")
        layer = isinstance(result, dict) and result.get("t") == "conv2d"
        # A layer comes back as data and is checked as such: its recipe (the layer's own
        # initialisation included) only matters for what it does to the arguments.
        limit = None if layer else MAX_CONSTANT_ELEMENTS
        # Devices in the recipe are the child's: kept as recorded when the child computed on
        # the test's device, else (a child without the GPU) everything is where the inputs are.
        same_device = reply.get("device") == str(device)
        replay = Replay(trace, blobs, inputs, device, torch, deadline, constants_limit=limit,
                        keep_devices=same_device)
        replay.run()
        if layer:
            from torch.utils._python_dispatch import _disable_current_modes
            with _disable_current_modes():
                return decode(result, blobs, torch).to(device)  # a layer: its parameters, run here
        replay.scalars = 0
        return replay.value(result)


class Replay:
    """Run a recipe of aten operations from the child on trusted tensors, with limits."""

    def __init__(self, trace, blobs, inputs, device, torch, deadline=None, constants_limit=MAX_CONSTANT_ELEMENTS,
                 keep_devices=False):
        self.torch, self.device, self.blobs, self.deadline = torch, device, blobs, deadline
        self.keep_devices = keep_devices
        self.constants_limit = constants_limit
        nodes, constants = trace.get("nodes"), trace.get("constants")
        if not (isinstance(nodes, list) and isinstance(constants, list) and trace.get("inputs") == len(inputs)):
            raise ProtocolError("malformed trace")
        if len(nodes) > MAX_NODES:
            raise ProtocolError(f"more than {MAX_NODES} operations")
        self.nodes, self.constants = nodes, constants
        self.values = dict(enumerate(inputs))
        self.constant_elements = self.allocated = self.scalars = 0
        # Numbers this replay itself read out of tensors (`.item()`): a constant made of
        # them (torch.tensor([... .item() ...])) was computed from the arguments, not smuggled.
        self.item_values = set()

    def run(self):
        for node in self.nodes:
            if not isinstance(node, dict) or not isinstance(node.get("out"), list):
                raise ProtocolError("malformed operation")
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise VerifierError(f"独立校验 (verification) 中重放 (replay) 运算超过 {CALL_TIMEOUT} 秒")
            op = self._operator(node.get("op"))
            self.scalars = 0
            args = self.value(node.get("args"))
            kwargs = self.value({"t": "kwargs", "items": node.get("kwargs")})
            if not isinstance(args, list):
                raise ProtocolError("malformed arguments")
            self._check_size(op, args, kwargs)
            out = op(*args, **kwargs)  # recorded by the test's operator log, if one is on
            flat = list(out) if isinstance(out, (list, tuple)) else [out]
            if len(flat) != len(node["out"]):
                raise ProtocolError(f"{op} gave {len(flat)} results, the trace says {len(node['out'])}")
            for number, result in zip(node["out"], flat):
                if number is not None:
                    self._store(number, result)
            if op is self.torch.ops.aten._local_scalar_dense.default and isinstance(out, (int, float, bool)):
                self.item_values.add(out)

    def _operator(self, name):
        parts = str(name).split(".")
        if len(parts) != 3 or parts[0] != "aten" or not all(_IDENTIFIER.match(p) for p in parts[1:]):
            raise ProtocolError(f"operation {str(name)[:80]!r} is not an aten operator")
        try:
            op = getattr(getattr(self.torch.ops.aten, parts[1]), parts[2])
        except (AttributeError, RuntimeError):
            raise ProtocolError(f"unknown operator {name}") from None
        if not isinstance(op, self.torch._ops.OpOverload):
            raise ProtocolError(f"unknown operator {name}")
        return op

    def _store(self, number, value):
        if type(number) is not int or not 0 <= number < 4 * MAX_NODES:
            raise ProtocolError("bad value number")
        self.values[number] = value

    def value(self, obj):
        """An argument of the recipe as a value here: references resolved, constants checked."""
        torch = self.torch
        if obj is None or isinstance(obj, (bool, int, float, str)):
            self.scalars += 1
            if self.scalars > MAX_SCALARS:
                raise ProtocolError(f"more than {MAX_SCALARS} numbers in one operation")
            return obj
        if not isinstance(obj, dict):
            raise ProtocolError("malformed argument")
        kind = obj.get("t")
        if kind == "ref":
            if obj.get("v") not in self.values:
                raise ProtocolError("reference to an unknown value")
            return self.values[obj["v"]]
        if kind == "const":
            return self._constant(obj)
        if kind in ("list", "tuple"):
            items = obj.get("items")
            if not isinstance(items, list):
                raise ProtocolError("malformed list")
            items = [self.value(v) for v in items]
            return items if kind == "list" else tuple(items)
        if kind == "kwargs":
            items = obj.get("items")
            if not isinstance(items, dict) or not all(isinstance(k, str) and _IDENTIFIER.match(k) for k in items):
                raise ProtocolError("malformed keyword arguments")
            return {k: self.value(v) for k, v in items.items()}
        if kind == "complex":
            return complex(float(obj.get("re", 0.0)), float(obj.get("im", 0.0)))
        if kind == "device":
            return self._device(obj.get("name"))
        if kind in ("dtype", "layout", "memory_format"):
            value = getattr(torch, str(obj.get("name")), None)
            if not isinstance(value, getattr(torch, kind)):
                raise ProtocolError(f"unknown {kind} {obj.get('name')!r}")
            return value
        raise ProtocolError(f"unknown argument type {kind!r}")

    def _device(self, name):
        """A device of the recipe: the CPU or the inputs' device, nothing else."""
        if not self.keep_devices:
            return self.device  # the child computed on the CPU; here, where the arguments live
        if name == "cpu":
            return self.torch.device("cpu")
        if name == str(self.device):
            return self.device
        raise ProtocolError(f"device {str(name)[:40]!r} is neither the CPU nor the inputs' device")

    def _constant(self, obj):
        torch = self.torch
        index = obj.get("i")
        if type(index) is not int or not 0 <= index < len(self.constants):
            raise ProtocolError("reference to an unknown constant")
        from torch.utils._python_dispatch import _disable_current_modes
        with _disable_current_modes():
            value = decode(self.constants[index], self.blobs, torch)
            if not isinstance(value, torch.Tensor):
                raise ProtocolError("constant is not a tensor")
            derived = 0
            if self.item_values and value.numel() <= MAX_ITEM_CONSTANT:
                derived = sum(v in self.item_values for v in value.flatten().tolist())
            self.constant_elements += value.numel() - derived
            if self.constants_limit is not None and self.constant_elements > self.constants_limit:
                raise ConstantResult(
                    f"用到了 {self.constant_elements} 个不是由参数算出来的数（常量、numpy 或 Python 列表）："
                    "独立校验只认张量运算 (tensor operations) 的结果")
            value = value.to(self._device(obj.get("device", "cpu")))
        self._store(obj.get("v"), value)
        return value

    def _check_size(self, op, args, kwargs):
        """Refuse an operation that would allocate too much, judged on the meta device first.

        Views and in-place operations allocate nothing (resize_ and set_ aside); the rest is
        run on meta tensors once per operator and argument shapes (a loop repeats them).
        """
        torch = self.torch
        if op.is_view or (op._schema.is_mutable and op._schema.name not in _RESIZING):
            return
        signature = (str(op), _signature(args, torch), _signature(kwargs, torch))
        size = _META_SIZES.get(signature)
        if size is None:
            if len(_META_SIZES) > 10_000:
                _META_SIZES.clear()
            size = _META_SIZES[signature] = _meta_bytes(op, args, kwargs, torch)
        self.allocated += size
        if size > MAX_OP_BYTES or self.allocated > MAX_TOTAL_BYTES:
            raise MemoryError(f"{op} 需要的内存太多 ({size} 字节)")


_RESIZING = {"aten::resize_", "aten::resize_as_", "aten::set_"}
_META_SIZES = {}


def _signature(value, torch):
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), tuple(value.stride()), value.dtype)
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v, torch) for v in value)
    if isinstance(value, dict):
        return tuple((k, _signature(v, torch)) for k, v in sorted(value.items()))
    return value if isinstance(value, (int, float, bool, str, type(None), complex)) else str(value)


def _meta_bytes(op, args, kwargs, torch):
    """Bytes `op` would allocate for these arguments (0 when it cannot tell: no meta kernel,
    or a size that depends on the data, as for nonzero or item)."""
    from torch.utils._python_dispatch import _disable_current_modes

    def meta(v):
        if isinstance(v, torch.Tensor):
            return v.to("meta")
        if isinstance(v, list):
            return [meta(x) for x in v]
        if isinstance(v, dict):
            return {k: meta(x) for k, x in v.items()}
        return torch.device("meta") if isinstance(v, torch.device) else v

    kwargs = meta(kwargs)
    if any(a.name == "device" and a.kwarg_only for a in op._schema.arguments):
        kwargs["device"] = torch.device("meta")  # a factory: zeros, ones, arange, ...
    with _disable_current_modes():
        try:
            out = op(*meta(args), **kwargs)
        except Exception:  # noqa: BLE001
            return 0
    flat = out if isinstance(out, (list, tuple)) else [out]
    return sum(t.numel() * t.element_size() for t in flat if isinstance(t, torch.Tensor))


def _student_exception(error, function):
    """The exception the student's function raised, rebuilt from its type name and message."""
    error = error if isinstance(error, dict) else {}
    name = str(error.get("type", "Exception"))
    name = name if _IDENTIFIER.match(name) else "Exception"
    message = str(error.get("message", ""))[:MAX_MESSAGE]
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)) or cls is ProtocolError:
        cls = type(name, (StudentError,), {})
    try:
        exc = cls(message)
    except Exception:  # noqa: BLE001 (built-ins such as UnicodeDecodeError need more arguments)
        exc = type(name, (StudentError,), {})(message)
    exc.verify_function = function
    return exc


# --- Running the instructor's test cells -----------------------------------------------------------

@contextlib.contextmanager
def instructor_modules(folder):
    """Make the instructor's helper modules (checks.py) importable as themselves, for a while."""
    names = {p.stem: p for p in Path(folder).glob("*.py") if _IDENTIFIER.match(p.stem)}
    saved = {name: sys.modules.pop(name, None) for name in names}
    try:
        for name, path in names.items():
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def run_test(grade_id, code, parts, bindings, checks):
    """Run one test cell with `bindings` for the answer names; return its Verdict.

    Every `with part(...)` block of the cell runs (checks.RECORD collects their outcomes);
    a part passes when all its blocks ran and passed. A part that never ran (the cell
    failed before it) fails with the cell's error: nothing is assumed to have passed.
    """
    namespace = {"__name__": "__verify__", "__builtins__": builtins, **bindings}
    record, outside = [], None
    checks.RECORD = record
    try:
        exec(compile(code, f"<test {grade_id}>", "exec"), namespace)
    except Exception as e:  # noqa: BLE001 (any failure of the test is the verdict)
        outside = e
    finally:
        checks.RECORD = None
    first_error = {}
    for block, error in record:
        if first_error.get(block.name) is None:
            first_error[block.name] = error
    verdicts = []
    for p in parts:
        if p.name in first_error:
            error = first_error[p.name]
        elif outside is not None:
            error = outside
        elif p.name == ALL_TESTS:  # a cell without parts: it passed if it ran through
            error = None
        else:
            error = AssertionError("这一项的测试没有运行 (part not run)")
        if error is None:
            verdicts.append(PartVerdict(p.name, p.label, p.points, True))
        else:
            verdicts.append(PartVerdict(p.name, p.label, p.points, False, _describe_failure(error, grade_id),
                                        category_of(error)))
    return Verdict(grade_id, verdicts)


def category_of(error):
    """The category code of a failure (grading/categories.py)."""
    category = getattr(error, "category", None)
    if isinstance(category, str):
        return category
    name = type(error).__name__
    if name == "NotImplementedError" or (name == "NameError" and getattr(error, "verify_function", None) is None):
        return "unanswered"
    if name == "TimeoutError":
        return "timeout"
    return "error"


def _describe_failure(e, grade_id):
    if isinstance(e, AssertionError) and str(e):
        text = str(e)  # the instructor's message (checks.CheckFailure), already for the student
    else:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    if not str(e):
        tb = e.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == f"<test {grade_id}>":
                line = tb.tb_lineno
            tb = tb.tb_next
        if line:
            text += f"（测试单元格第 {line} 行）"
    function = getattr(e, "verify_function", None)
    if function:
        text = f"{function} 出错：{text}"
    return text[:MAX_MESSAGE]


def verify_notebook(course_root, assignment, notebook, notebook_name=None):
    """Verify every autograded test cell of `notebook` (the student's graded NotebookNode).

    Returns {grade_id: Verdict} for the test cells of the instructor's source notebook
    source/<assignment>/<notebook_name or assignment>.ipynb.
    """
    course_root = Path(course_root)
    folder = course_root / "source" / assignment
    source = nbformat.read(folder / f"{notebook_name or assignment}.ipynb", as_version=4)
    plan = plan_from(source)
    cells = student_cells(notebook, plan)
    deadline = time.monotonic() + TOTAL_TIMEOUT
    verdicts = {}
    with Child(course_root, assignment, cells, plan.answers, deadline) as child, instructor_modules(folder):
        checks = sys.modules.get("checks")
        for grade_id, code, parts in plan.tests:
            child.ensure_running()
            verdict = run_test(grade_id, code, parts, _bindings(child), checks)
            for part in verdict.parts:
                if not part.passed and "NameError" in part.message and child.setup and child.setup["errors"]:
                    part.message = _with_setup_errors(part.message, child.setup["errors"])
            verdicts[grade_id] = verdict
    return verdicts


def _bindings(child):
    """The answer names as the test cell sees them: proxies for functions, values as sent."""
    if child.setup is None:  # the child never came up: every call reports why
        return {name: Proxy(child, name) for name in child.answers}
    bindings = {}
    for name in child.answers:
        info = child.setup["names"].get(name, {})
        if isinstance(info, dict) and info.get("callable"):
            bindings[name] = Proxy(child, name)
        elif name in child.setup["values"]:
            bindings[name] = child.setup["values"][name]
    return bindings


def _with_setup_errors(message, errors):
    errors = [e for e in errors if isinstance(e, dict)]
    errors.sort(key=lambda e: not str(e.get("cell", "")).startswith("<answer"))  # answers first
    notes = "；".join(f"{e.get('cell', '?')} {e.get('type', '')}: {str(e.get('message', ''))[:120]}"
                     for e in errors[:3])
    return f"{message}（你的代码单元格运行出错：{notes}）"[:MAX_MESSAGE]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    course, assignment, path = argv
    notebook = nbformat.read(path, as_version=4)
    verdicts = verify_notebook(course, assignment, notebook, Path(path).stem)
    print(json.dumps({k: v.to_dict() for k, v in verdicts.items()}, ensure_ascii=False, indent=1))
    return 0 if all(v.passed for v in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

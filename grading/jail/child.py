"""The student's side of a graded call: runs the student's cells, answers each call with a recipe.

The host (grading/jail/host.py) starts this file in a jail of its own, with two pipes that
the verifier (grading/jail/verifier.py, in another jail) writes to and reads from. The
verifier sends, in this order:

- `setup`: the assignment's forbidden operator pattern, the notebook's cells to run (the
  student's answers and own cells, and the instructor's import cells) and the answer
  names. Before any student code runs, this process blocks the forbidden operators at
  torch's dispatcher and forbids new threads and processes (grading/jail/guard.py): every
  operation of a student's function then runs in this thread, where the recorder sees it.
- `call`: run one answer function on the arguments sent. The answer is not a value to
  believe but a RECIPE: the aten operations the function ran (`Trace`), each tensor argument
  a reference to an input, an earlier result or a constant. The verifier replays it on its
  own tensors under the instructor's checks. Only pure tensor operators may run
  (grading/jail/ops.py, which the replay enforces again); a call may carry `references`:
  the instructor's versions of the earlier questions' functions, bound in place of the
  student's for the duration of the call (one mistake costs once).

Whatever the student's code does in here (patch torch, forge the recipe, write to the pipes)
it can at most hand over a different recipe, and a recipe is judged by what it computes.
"""
import os
import signal
import sys

from grading.jail import guard, ops
from grading.jail.protocol import MAX_TEXT, ProtocolError, decode, encode, pack, read_message

#: Operations one traced call may run.
MAX_NODES = 100_000


class _Magics:
    """get_ipython() for notebook cells run outside IPython: magics and shell escapes do nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _cell_code(source, label):
    try:
        return compile(source, label, "exec")
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager  # %magics, !commands
        return compile(TransformerManager().transform_cell(source), label, "exec")


class _Alarm(BaseException):
    """Raised by SIGALRM into student code; not an Exception so that `except Exception` misses it."""


def _on_alarm(*_):
    raise _Alarm()


class TooManyOperations(RuntimeError):
    """A call ran more operations than the trace holds (the verifier files it under too_slow)."""


def _error(e, seconds=None):
    if isinstance(e, _Alarm):
        return {"type": "TimeoutError", "message": f"超过 {seconds} 秒没有结束（死循环或太慢？）"}
    return {"type": type(e).__name__, "message": str(e)[:MAX_TEXT]}


def tensor_inputs(args, kwargs, torch):
    """The tensors among a call's arguments, in the order both sides number them."""
    return [a for a in [*args, *(kwargs[k] for k in sorted(kwargs))] if isinstance(a, torch.Tensor)]


def _layout(t):
    try:
        return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
    except (RuntimeError, NotImplementedError):
        return None


def tracer_class(torch, forbidden, hits):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Trace(TorchDispatchMode):
        """Record every aten operation: name, arguments (tensors as references), outputs."""

        @classmethod
        def _should_skip_dynamo(cls):  # torch's opt-out from importing torch._dynamo (seconds)
            return False

        def __init__(self, inputs):
            super().__init__()
            self.numbers, self.alive, self.nodes, self.constants, self.blobs = {}, [], [], [], []
            self.views = {}  # memory and layout -> number: finds aliases made without an operation
            self.n_inputs = len(inputs)
            for t in inputs:
                self._number(t)

        def _number(self, t, number=None):
            number = len(self.alive) if number is None else number
            self.numbers[id(t)] = number
            self.alive.append(t)  # keeps id() unique while the call is traced
            layout = _layout(t)
            if layout is not None:
                self.views.setdefault(layout, number)
            return number

        def arg(self, value):
            if isinstance(value, torch.Tensor):
                if id(value) not in self.numbers:
                    # nn.Parameter(t), t.data, from_numpy(t.numpy()): the same memory, no operation
                    alias = self.views.get(_layout(value))  # the views hold no None layout
                    if alias is not None:
                        self._number(value, alias)
                if id(value) in self.numbers:
                    return {"t": "ref", "v": self.numbers[id(value)]}
                self.constants.append(encode(value, self.blobs, torch))
                number = self._number(value)
                return {"t": "const", "i": len(self.constants) - 1, "v": number, "device": str(value.device)}
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            if isinstance(value, (list, tuple)):
                return {"t": "tuple" if isinstance(value, tuple) else "list", "items": [self.arg(v) for v in value]}
            if isinstance(value, complex):
                return {"t": "complex", "re": value.real, "im": value.imag}
            for kind in ("dtype", "layout", "memory_format"):
                if isinstance(value, getattr(torch, kind)):
                    return {"t": kind, "name": str(value).removeprefix("torch.")}
            if isinstance(value, torch.device):
                return {"t": "device", "name": str(value)}
            if isinstance(value, torch.Generator):
                return None  # the replay draws from a generator of its own
            raise TypeError(f"无法在独立校验中复现的参数类型 {type(value).__name__}")

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if ops.is_forbidden(func, forbidden):
                hits.append(f"aten.{ops.packet(func)}")
                raise RuntimeError(f"aten.{ops.packet(func)}：评分时禁止使用 (forbidden while grading)")
            why = ops.refusal(func)
            if why:
                raise RuntimeError(why)
            node = {"op": str(func), "args": self.arg(list(args)),
                    "kwargs": {k: self.arg(v) for k, v in kwargs.items()}}
            out = func(*args, **kwargs)
            flat = out if isinstance(out, (list, tuple)) else [out]
            node["out"] = [self.numbers.get(id(t), None) if isinstance(t, torch.Tensor) and id(t) in self.numbers
                           else self._number(t) if isinstance(t, torch.Tensor) else None for t in flat]
            self.nodes.append(node)
            if len(self.nodes) > MAX_NODES:
                raise TooManyOperations(f"一次调用的张量运算超过 {MAX_NODES} 次，多半是在对像素做 Python 循环 "
                                        "(too many tensor operations in one call: a Python loop over pixels?)")
            return out

    return Trace


def _device(name, torch):
    """The device to compute on: the test's GPU when this child has it, else the CPU."""
    if isinstance(name, str) and name.startswith("cuda") and torch.cuda.is_available():
        try:
            return torch.device(name)
        except RuntimeError:
            pass
    return torch.device("cpu")


def _to(value, device, torch):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device, torch) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device, torch) for k, v in value.items()}
    return value


class Child:
    """The student's namespace and the calls into it."""

    def __init__(self, torch):
        self.torch = torch
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__, "get_ipython": _Magics}
        self.imports = []      # the instructor's import cells: the references run after them
        self.references = {}   # hash of a reference set -> its namespace
        self.hits, self.forbidden, self.trace_class = [], None, None

    def setup(self, header):
        torch = self.torch
        self.forbidden = header.get("forbidden") or None
        # the dispatcher's block, for every route (the hits are the calls it stopped)
        self.hits = guard.block_operators(torch, self.forbidden, str(header.get("forbidden_what") or "禁止的算子"))
        self.trace_class = tracer_class(torch, self.forbidden, self.hits)
        with self.trace_class([]):  # the first use of a dispatch mode imports a little: not in a timed call
            torch.zeros(1) + 1
        # No thread and no process from here on (grading/jail/guard.py).
        guard.forbid_processes(threads=False)
        errors = []
        seconds = int(header.get("cell_timeout", 60))
        for cell in header.get("cells", []):
            if cell.get("instructor"):
                self.imports.append(cell)
            signal.alarm(seconds)
            try:
                exec(_cell_code(cell["source"], cell["label"]), self.namespace)
            except BaseException as e:  # noqa: B036 (the student's code may raise anything)
                errors.append({"cell": cell["label"], **_error(e, seconds)})
            finally:
                signal.alarm(0)
        out = []
        return {"ok": True, "errors": errors, "names": self._describe(header.get("names", []), out)}, out

    def _describe(self, names, out):
        """What each answer name is after the cells ran: a function, a value, or nothing."""
        described = {}
        for name in names:
            if name not in self.namespace:
                described[name] = {"missing": True}
            elif callable(self.namespace[name]):
                described[name] = {"callable": True}
            else:
                try:
                    described[name] = {"value": encode(self.namespace[name], out, self.torch)}
                except Exception as e:  # noqa: BLE001 (whatever the student's object does)
                    described[name] = {"error": _error(e)}
        return described

    def _references(self, cells):
        """The instructor's functions of earlier questions, defined in a namespace of their own."""
        key = tuple(cell.get("source", "") for cell in cells)
        if key not in self.references:
            space = {"__name__": "__reference__", "__builtins__": __builtins__}
            for cell in self.imports + list(cells):
                exec(compile(cell["source"], cell.get("label", "<reference>"), "exec"), space)
            self.references = {key: space}  # one set at a time: they only grow question by question
        return self.references[key]

    def call(self, header, blobs):
        torch = self.torch
        name = header.get("name")
        fn = self.namespace.get(name)
        if not callable(fn):
            return {"ok": False, "error": {"type": "NameError", "message": f"name '{name}' is not defined"}}, []
        try:
            args = decode(header.get("args"), blobs, torch)
            kwargs = decode(header.get("kwargs"), blobs, torch)
        except ProtocolError as e:
            return {"ok": False, "error": {"type": "ProtocolError", "message": str(e)}}, []
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            return {"ok": False, "error": {"type": "ProtocolError", "message": "malformed call"}}, []
        device = _device(header.get("device"), torch)
        if device.type != "cpu":  # compute where the test's tensors are (a GPU passed into the jail)
            args, kwargs = _to(args, device, torch), _to(kwargs, device, torch)
        swapped = {}
        references = header.get("references") or {}
        if references.get("names"):
            space = self._references(references.get("cells", []))
            for ref in references["names"]:
                if ref in space and ref != name:
                    swapped[ref] = self.namespace.get(ref, swapped)
                    self.namespace[ref] = space[ref]
        del self.hits[:]
        trace = self.trace_class(tensor_inputs(args, kwargs, torch))
        seconds = int(header.get("timeout", 60))
        signal.alarm(seconds)
        try:
            with trace:
                result = fn(*args, **kwargs)
            signal.alarm(0)
            out = trace.blobs
            # A layer goes back as data (the verifier runs it itself); everything else as
            # references into the trace.
            encoded = encode(result, out, torch) if isinstance(result, torch.nn.Module) else trace.arg(result)
            answer = {"ok": True, "result": encoded, "device": str(device),
                      "trace": {"nodes": trace.nodes, "constants": trace.constants, "inputs": trace.n_inputs}}
        except BaseException as e:  # noqa: B036
            signal.alarm(0)
            out = []
            answer = {"ok": False, "error": _error(e, seconds)}
        finally:
            for ref, old in swapped.items():  # the student's own functions again
                if old is swapped:
                    self.namespace.pop(ref, None)
                else:
                    self.namespace[ref] = old
        answer["blocked"] = sorted(set(self.hits))
        return answer, out


def serve(read_fd, write_fd):
    reader = os.fdopen(read_fd, "rb", buffering=0)
    writer = os.fdopen(write_fd, "wb", buffering=0)

    def read(n):
        chunks = []
        while n:
            chunk = reader.read(n)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def reply(header, blobs=()):
        view = memoryview(pack(header, blobs))
        while view:  # a raw write may take less than all of it
            view = view[writer.write(view):]

    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, os.getcwd())  # `import checks` finds the instructor's copy (python -I left cwd out)
    if torch.cuda.is_available():  # CUDA starts threads of its own: before the guard forbids them
        torch.zeros(1, device="cuda")
    signal.signal(signal.SIGALRM, _on_alarm)
    child = Child(torch)
    while True:
        try:
            header, blobs = read_message(read)
        except EOFError:
            return
        op = header.get("op")
        if op == "exit":
            return
        if op == "setup" and child.trace_class is None:
            # Until here, stderr went to the host (for a child that cannot start); the
            # student's code gets /dev/null, and its prints cannot reach the protocol either.
            sys.stderr.flush()
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
            reply(*child.setup(header))
        elif op == "call" and child.trace_class is not None:
            reply(*child.call(header, blobs))
        else:
            reply({"ok": False, "error": {"type": "ProtocolError", "message": f"unexpected op {str(op)[:40]!r}"}})


def main(argv):
    serve(int(argv[1]), int(argv[2]))


if __name__ == "__main__":
    main(sys.argv)

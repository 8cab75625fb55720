"""The verifier's untrusted half: runs a student's code in the sandbox and answers calls.

grading/verify.py starts this file jailed (grading/sandbox.py) as
`python -I verify_child.py IN_FD OUT_FD`, in a working directory that holds only the
instructor's checks.py. Before any student code runs it blocks every convolution operator
of torch (aten::convolution, conv2d, mkldnn_*, slow_conv*, quantized::conv*, ...: the
names checks.py's rule matches) at the dispatcher, with a kernel that raises, for every
backend and composite key. Every path to a convolution (F.conv2d, nn.Conv2d, an alias
captured at import, torch.ops, vmap, inference_mode) ends at those kernels. The library
handles are leaked on purpose, so no Python object can undo the registrations.

Then it executes the notebook's code cells (the answers and the student's own cells) in
one namespace and serves calls of the answer functions. A call's answer is not a value
to believe but a RECIPE: the aten operations the function ran (`Trace`), with each
tensor argument named as a reference to an earlier result, an input, or a (small)
constant. verify.py replays the recipe on its own tensors, under the instructor's
checks, so the values, the operator list, in-place changes to the inputs and the time
taken are all measured outside this process. Whatever the student's code does in here
(patch torch.equal, checks' operator log, ...) it can at most hand over a different
recipe, and a recipe that computes the right answer with the right operations is a
right answer.

The protocol is data only, in both directions (never pickle): a 4-byte big-endian
header length, a JSON header, then raw byte blobs whose lengths the header lists.
Values are JSON scalars, or {"t": ...} objects for tuples, lists, dicts, tensors
(dtype, shape and a blob of raw bytes), nn.Conv2d layers (constructor arguments plus
weight and bias), and in recipes references, dtypes, devices, layouts and memory formats.
verify.py imports `encode`, `decode` and the framing from here, so both sides speak
exactly the same format.
"""
import json
import os
import signal
import struct
import sys

MiB = 2**20
MAX_HEADER = 64 * MiB
MAX_BLOBS = 256 * MiB
MAX_DEPTH = 16
MAX_TEXT = 2000
#: Element types a tensor may have on the wire.
DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128",
          "uint8", "int8", "int16", "int32", "int64", "bool")
#: Operations one traced call may run.
MAX_NODES = 100_000


class ProtocolError(Exception):
    """A message that does not follow the protocol (too large, malformed, wrong types)."""


# --- Framing ---------------------------------------------------------------------------------------

def pack(header, blobs=()):
    """One message as bytes."""
    head = json.dumps({**header, "blobs": [len(b) for b in blobs]}, ensure_ascii=False).encode()
    return b"".join([struct.pack(">I", len(head)), head, *blobs])


def unpack_header(raw):
    """Parse and check a header; return (header, blob sizes)."""
    try:
        header = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"unreadable header: {e}") from None
    sizes = header.pop("blobs", None) if isinstance(header, dict) else None
    if not (isinstance(sizes, list) and all(type(s) is int and s >= 0 for s in sizes)):
        raise ProtocolError("header without a valid blob list")
    if sum(sizes) > MAX_BLOBS:
        raise ProtocolError(f"message larger than {MAX_BLOBS // MiB} MiB")
    return header, sizes


def read_message(read):
    """Read one message with read(n) -> exactly n bytes; return (header, blobs)."""
    (size,) = struct.unpack(">I", read(4))
    if size > MAX_HEADER:
        raise ProtocolError(f"header of {size} bytes")
    header, sizes = unpack_header(read(size))
    return header, [read(n) for n in sizes]


# --- Values ------------------------------------------------------------------------------------------

def encode(value, blobs, torch, depth=0):
    """A JSON-able description of `value`; tensor bytes are appended to `blobs`."""
    if depth > MAX_DEPTH:
        raise TypeError("返回值嵌套太深")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        blobs.append(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return {"t": "tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "blob": len(blobs) - 1}
    if isinstance(value, torch.nn.Conv2d):
        config = {name: getattr(value, name) for name in
                  ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                   "padding_mode")}
        config["padding"] = value.padding if isinstance(value.padding, str) else tuple(value.padding)
        return {"t": "conv2d", "config": encode(config, blobs, torch, depth + 1),
                "weight": encode(value.weight, blobs, torch, depth + 1),
                "bias": encode(value.bias, blobs, torch, depth + 1)}
    if isinstance(value, (tuple, list)):
        return {"t": type(value).__name__ if type(value) in (tuple, list) else "tuple",
                "items": [encode(v, blobs, torch, depth + 1) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"t": "dict", "items": {k: encode(v, blobs, torch, depth + 1) for k, v in value.items()}}
    if isinstance(value, complex):
        return {"t": "complex", "re": value.real, "im": value.imag}
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return encode(value.item(), blobs, torch, depth + 1)  # numpy scalars
    raise TypeError(f"无法传回类型为 {type(value).__name__} 的值")


def decode(obj, blobs, torch, depth=0):
    """The value `encode` described, checked strictly: this also parses untrusted replies."""
    if depth > MAX_DEPTH:
        raise ProtocolError("value nested too deeply")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise ProtocolError(f"not an encoded value: {str(obj)[:80]}")
    kind = obj["t"]
    if kind == "tensor":
        return _decode_tensor(obj, blobs, torch)
    if kind in ("tuple", "list"):
        items = obj.get("items")
        if not isinstance(items, list):
            raise ProtocolError("sequence without items")
        seq = [decode(v, blobs, torch, depth + 1) for v in items]
        return tuple(seq) if kind == "tuple" else seq
    if kind == "dict":
        items = obj.get("items")
        if not isinstance(items, dict):
            raise ProtocolError("dict without items")
        return {str(k): decode(v, blobs, torch, depth + 1) for k, v in items.items()}
    if kind == "complex":
        return complex(float(obj.get("re", 0.0)), float(obj.get("im", 0.0)))
    if kind == "conv2d":
        return _decode_conv2d(obj, blobs, torch, depth)
    raise ProtocolError(f"unknown value type {kind!r}")


def _decode_tensor(obj, blobs, torch):
    dtype, shape, index = obj.get("dtype"), obj.get("shape"), obj.get("blob")
    if dtype not in DTYPES:
        raise ProtocolError(f"dtype {dtype!r} not allowed")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(type(n) is int and n >= 0 for n in shape)):
        raise ProtocolError(f"bad shape {shape!r}")
    if type(index) is not int or not 0 <= index < len(blobs):
        raise ProtocolError("tensor without its data")
    dt = getattr(torch, dtype)
    numel = 1
    for n in shape:
        numel *= n
    data = blobs[index]
    if len(data) != numel * dt.itemsize:
        raise ProtocolError(f"tensor data of {len(data)} bytes for shape {shape} {dtype}")
    if numel == 0:
        return torch.empty(shape, dtype=dt)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dt).reshape(shape)


def _decode_conv2d(obj, blobs, torch, depth):
    config = decode(obj.get("config"), blobs, torch, depth + 1)
    weight = decode(obj.get("weight"), blobs, torch, depth + 1)
    bias = decode(obj.get("bias"), blobs, torch, depth + 1)
    if not isinstance(config, dict) or not isinstance(weight, torch.Tensor) \
            or not (bias is None or isinstance(bias, torch.Tensor)):
        raise ProtocolError("malformed nn.Conv2d")
    allowed = {"in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
               "padding_mode"}
    if set(config) - allowed:
        raise ProtocolError(f"unexpected nn.Conv2d arguments {sorted(set(config) - allowed)}")
    if weight.dim() != 4 or weight.numel() > 2**24:
        raise ProtocolError("nn.Conv2d weight is not a reasonable 4-d tensor")
    try:
        # On the meta device: no memory and no random initialisation for weights replaced anyway.
        layer = torch.nn.Conv2d(**config, bias=bias is not None, dtype=weight.dtype, device="meta")
    except (TypeError, ValueError, RuntimeError) as e:
        raise ProtocolError(f"nn.Conv2d cannot be rebuilt: {e}") from None
    if layer.weight.shape != weight.shape or (bias is not None and layer.bias.shape != bias.shape):
        raise ProtocolError("nn.Conv2d parameters do not match its configuration")
    # The student's own tensors, dtype included, exactly as their layer held them.
    layer.weight = _parameter(weight, torch)
    if bias is not None:
        layer.bias = _parameter(bias, torch)
    return layer


def _parameter(t, torch):
    return torch.nn.Parameter(t, requires_grad=t.is_floating_point() or t.is_complex())


# --- The child --------------------------------------------------------------------------------------

def _guard():
    """grading/guard.py, beside this file (in the jail: /verifier/guard.py)."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guard.py")
    spec = importlib.util.spec_from_file_location("_channels_guard", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def _error(e, seconds=None):
    if isinstance(e, _Alarm):
        return {"type": "TimeoutError", "message": f"超过 {seconds} 秒没有结束（死循环或太慢？）"}
    return {"type": type(e).__name__, "message": str(e)[:MAX_TEXT]}


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
    trace_class = _tracer_class(torch)
    with trace_class([]):  # the first use of a dispatch mode imports a little: not in a timed call
        torch.zeros(1) + 1
    if torch.cuda.is_available():  # CUDA starts threads of its own: before the guard forbids them
        torch.zeros(1, device="cuda")
    guard = _guard()
    hits = guard.block_convolutions(torch)
    # No thread and no process from here on: every operation of the student's code runs
    # in this thread, where the recorder sees it (grading/guard.py).
    guard.forbid_processes(threads=False)
    signal.signal(signal.SIGALRM, _on_alarm)
    # Until here, stderr went to the verifier (for a child that cannot start); the
    # student's code gets /dev/null, and its prints cannot reach the protocol either.
    sys.stderr.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__, "get_ipython": _Magics}

    while True:
        try:
            header, blobs = read_message(read)
        except EOFError:
            return
        op = header.get("op")
        if op == "exit":
            return
        if op == "setup":
            errors = []
            seconds = int(header.get("cell_timeout", 60))
            for cell in header["cells"]:
                signal.alarm(seconds)
                try:
                    exec(_cell_code(cell["source"], cell["label"]), namespace)
                except BaseException as e:  # noqa: B036 (the student's code may raise anything)
                    errors.append({"cell": cell["label"], **_error(e, seconds)})
                finally:
                    signal.alarm(0)
            out = []
            reply({"ok": True, "errors": errors, "names": _describe(header.get("names", []), namespace, out, torch)},
                  out)
        elif op == "call":
            reply(*_call(header, blobs, namespace, hits, trace_class, torch))
        else:
            reply({"ok": False, "error": {"type": "ProtocolError", "message": f"unknown op {op!r}"}})


def _describe(names, namespace, out, torch):
    """What each answer name is after the cells ran: a function, a value, or nothing."""
    described = {}
    for name in names:
        if name not in namespace:
            described[name] = {"missing": True}
        elif callable(namespace[name]):
            described[name] = {"callable": True}
        else:
            try:
                described[name] = {"value": encode(namespace[name], out, torch)}
            except Exception as e:  # noqa: BLE001 (whatever the student's object does)
                described[name] = {"error": _error(e)}
    return described


def tensor_inputs(args, kwargs, torch):
    """The tensors among a call's arguments, in the order both sides number them."""
    return [a for a in [*args, *(kwargs[k] for k in sorted(kwargs))] if isinstance(a, torch.Tensor)]


def _tracer_class(torch):
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
            if _layout(t) is not None:
                self.views.setdefault(_layout(t), number)
            return number

        def arg(self, value):
            if isinstance(value, torch.Tensor):
                if id(value) not in self.numbers and _layout(value) in self.views.keys() - {None}:
                    # nn.Parameter(t), t.data, from_numpy(t.numpy()): the same memory, no operation
                    self._number(value, self.views[_layout(value)])
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
            raise TypeError(f"无法在独立校验中复现的参数类型 {type(value).__name__}")

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func.namespace != "aten":  # a custom operator: its insides are not recorded
                raise RuntimeError(f"{func} 不是 PyTorch 自带的算子：评分时只能用 torch 的张量运算 "
                                   "(only PyTorch's own operators, no custom operators)")
            node = {"op": str(func), "args": self.arg(list(args)),
                    "kwargs": {k: self.arg(v) for k, v in kwargs.items()}}
            out = func(*args, **kwargs)
            flat = out if isinstance(out, (list, tuple)) else [out]
            node["out"] = [self.numbers.get(id(t), None) if isinstance(t, torch.Tensor) and id(t) in self.numbers
                           else self._number(t) if isinstance(t, torch.Tensor) else None for t in flat]
            self.nodes.append(node)
            if len(self.nodes) > MAX_NODES:
                raise RuntimeError(f"运算次数超过 {MAX_NODES} (too many operations)")
            return out

    return Trace


def _layout(t):
    try:
        return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
    except (RuntimeError, NotImplementedError):
        return None


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


def _call(header, blobs, namespace, hits, trace_class, torch):
    name = header["name"]
    fn = namespace.get(name)
    if not callable(fn):
        return {"ok": False, "error": {"type": "NameError", "message": f"name '{name}' is not defined"}}, []
    try:
        args = decode(header["args"], blobs, torch)
        kwargs = decode(header["kwargs"], blobs, torch)
    except ProtocolError as e:
        return {"ok": False, "error": {"type": "ProtocolError", "message": str(e)}}, []
    device = _device(header.get("device"), torch)
    if device.type != "cpu":  # compute where the test's tensors are (a GPU passed into the jail)
        args, kwargs = _to(args, device, torch), _to(kwargs, device, torch)
    del hits[:]
    trace = trace_class(tensor_inputs(args, kwargs, torch))
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
    answer["blocked"] = sorted(set(hits))
    return answer, out


def main(argv):
    read_fd, write_fd = int(argv[1]), int(argv[2])
    serve(read_fd, write_fd)


if __name__ == "__main__":
    main(sys.argv)

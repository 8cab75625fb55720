"""Replay a recipe from the student's child on the test's own tensors: hostile input, bounded.

A recipe (grading/jail/child.py) lists the aten operations a student's function ran, each
tensor argument a reference to an input, an earlier result or a constant. `Replay.run`
executes it here, in the verifier's jail, so the result, the operators the test's recorder
sees, in-place changes to the arguments and the time taken are all measured on this side.
Nothing in the recipe is believed:

- every operator must be a pure tensor operator of the allowlist and not one the
  assignment forbids (grading/jail/ops.py, the policy the child enforces too);
- each operation's cost is bounded from its shapes before it runs (`ops.work`, logical
  sizes: an expanded view costs what it stands for), and so is the whole call's, and the
  memory an operation would allocate (judged on the meta device);
- every number that enters from outside — tensor constants and Python scalars alike —
  counts toward the constant limit, except small structural integers and the values this
  replay itself read out with `.item()` (`ops.counted_numbers`);
- random operators draw from a generator of the replay's own, never the global one;
- devices are the CPU or the inputs' device, dtypes and layouts torch's own.
"""
import re
import time

from grading.jail import ops
from grading.jail.protocol import ProtocolError, decode

#: Elements of constants and numbers from outside one call may bring (the only way to smuggle
#: values in, so kept small), numbers in one operation's arguments, memory and work.
MAX_CONSTANT_ELEMENTS = 16
#: Constants up to this size are checked element by element against the replay's `.item()` values.
MAX_ITEM_CONSTANT = 1_000_000
MAX_SCALARS = 64
MAX_OP_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 2 * 2**30
#: Work units (about a multiply-add or an element touched) of one operation and of one call.
MAX_OP_WORK = 2**30
MAX_CALL_WORK = 2**32
#: Operations one recipe may hold (the child stops tracing there too).
MAX_NODES = 100_000
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,60}$")


class VerifierError(Exception):
    """The child could not answer, or answered outside the protocol: no verdict from this call."""
    category = "verifier_failed"


class ForbiddenOperator(AssertionError):
    """The student's function reached an operator the assignment forbids."""
    category = "forbidden_op"


class ConstantResult(AssertionError):
    """The recipe computes its result from more numbers than the function could need."""
    category = "values"


class TooMuchWork(AssertionError):
    """One operation, or the whole call, would compute far more than any answer needs."""
    category = "timeout"


class Replay:
    """Run a recipe of aten operations from the child on trusted tensors, with limits."""

    def __init__(self, trace, blobs, inputs, device, torch, deadline=None, constants_limit=MAX_CONSTANT_ELEMENTS,
                 keep_devices=False, forbidden=None):
        self.torch, self.device, self.blobs, self.deadline = torch, device, blobs, deadline
        self.keep_devices, self.forbidden = keep_devices, forbidden
        self.constants_limit = constants_limit
        nodes, constants = trace.get("nodes"), trace.get("constants")
        if not (isinstance(nodes, list) and isinstance(constants, list) and trace.get("inputs") == len(inputs)):
            raise ProtocolError("malformed trace")
        if len(nodes) > MAX_NODES:
            raise ProtocolError(f"more than {MAX_NODES} operations")
        self.nodes, self.constants = nodes, constants
        self.values = dict(enumerate(inputs))
        self.constant_elements = self.allocated = self.scalars = self.work = 0
        # Integers up to this are sizes, dimensions and slice bounds of these inputs.
        self.structural = max([64] + [int(t.numel()) for t in inputs])
        # Numbers this replay itself read out of tensors (`.item()`): a constant made of
        # them (torch.tensor([... .item() ...])) was computed from the arguments, not smuggled.
        self.item_values = set()
        self.generators = {}

    def run(self):
        for node in self.nodes:
            if not isinstance(node, dict) or not isinstance(node.get("out"), list):
                raise ProtocolError("malformed operation")
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise TooMuchWork("独立校验 (verification) 中重放 (replay) 这次调用的运算超时")
            op = self._operator(node.get("op"))
            self.scalars = 0
            args = self.value(node.get("args"))
            kwargs = self.value({"t": "kwargs", "items": node.get("kwargs")})
            if not isinstance(args, list):
                raise ProtocolError("malformed arguments")
            self._count_numbers(op, args, kwargs)
            if ops.packet(op) in ops.RANDOM and any(a.name == "generator" for a in op._schema.arguments):
                kwargs["generator"] = self._generator()
            self._check_cost(op, args, kwargs)
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
            raise ProtocolError(f"unknown operator {str(name)[:80]}") from None
        if not isinstance(op, self.torch._ops.OpOverload):
            raise ProtocolError(f"unknown operator {str(name)[:80]}")
        if ops.is_forbidden(op, self.forbidden):
            raise ForbiddenOperator(f"aten.{ops.packet(op)}：本题禁止使用这个算子，独立校验的重放 (replay) 拒绝了它")
        why = ops.refusal(op)
        if why:
            raise ProtocolError(why)
        return op

    def _generator(self):
        device = self.device if self.keep_devices or self.device.type != "cpu" else self.torch.device("cpu")
        if device not in self.generators:
            self.generators[device] = self.torch.Generator(device=device).manual_seed(0)
        return self.generators[device]

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
            if isinstance(obj, str) and len(obj) > 40:
                raise ProtocolError("string argument too long")
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
            return complex(decode(obj, [], torch))
        if kind == "device":
            return self._device(obj.get("name"))
        if kind in ("dtype", "layout", "memory_format"):
            value = getattr(torch, str(obj.get("name"))[:40], None)
            if not isinstance(value, getattr(torch, kind)):
                raise ProtocolError(f"unknown {kind} {str(obj.get('name'))[:40]!r}")
            return value
        raise ProtocolError(f"unknown argument type {str(kind)[:40]!r}")

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
            self._add_constants(value.numel() - derived)
            value = value.to(self._device(obj.get("device", "cpu")))
        self._store(obj.get("v"), value)
        return value

    def _count_numbers(self, op, args, kwargs):
        self._add_constants(len(ops.counted_numbers(op, args, kwargs, self.structural, self.item_values)))

    def _add_constants(self, n):
        self.constant_elements += n
        if self.constants_limit is not None and self.constant_elements > self.constants_limit:
            raise ConstantResult(
                f"用到了 {self.constant_elements} 个不是由参数算出来的数（常量、numpy、Python 的数或列表）："
                "独立校验只认由参数经张量运算 (tensor operations) 算出的结果")

    def _check_cost(self, op, args, kwargs):
        """Refuse an operation that would compute or allocate too much, judged before it runs.

        Memory: views and in-place operations allocate nothing (resize_ aside); the rest is
        run on meta tensors once per operator and argument shapes (a loop repeats them).
        Work: from the logical sizes of its tensors (grading/jail/ops.py).
        """
        torch = self.torch
        inputs = [t for t in _tensors(args) + _tensors(kwargs) if isinstance(t, torch.Tensor)]
        size, outputs = _meta(op, args, kwargs, torch)
        if not (op.is_view or (op._schema.is_mutable and op._schema.name not in _RESIZING)):
            self.allocated += size
            if size > MAX_OP_BYTES or self.allocated > MAX_TOTAL_BYTES:
                raise TooMuchWork(f"aten.{ops.packet(op)} 需要的内存太多（{size} 字节）(too much memory)")
        if op.is_view:
            return
        work = ops.work(op, inputs, outputs)
        self.work += work
        if work > MAX_OP_WORK or self.work > MAX_CALL_WORK:
            raise TooMuchWork(f"aten.{ops.packet(op)} 的运算量太大（约 {work:.3g} 次，这次调用一共 {self.work:.3g} 次）"
                              "(too much work for one call)")


_RESIZING = {"aten::resize_", "aten::resize_as_", "aten::set_"}
_META = {}


def _tensors(value):
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return [value]


def _signature(value, torch):
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), tuple(value.stride()), value.dtype)
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v, torch) for v in value)
    if isinstance(value, dict):
        return tuple((k, _signature(v, torch)) for k, v in sorted(value.items()))
    return value if isinstance(value, (int, float, bool, str, type(None), complex)) else str(value)


def _meta(op, args, kwargs, torch):
    """(bytes `op` would allocate, its outputs as meta tensors) for these arguments, cached per
    operator and argument shapes; (0, []) when it cannot tell (no meta kernel, or a size that
    depends on the data, as for nonzero)."""
    signature = (str(op), _signature(args, torch), _signature({k: v for k, v in kwargs.items() if k != "generator"},
                                                               torch))
    if signature not in _META:
        if len(_META) > 10_000:
            _META.clear()
        _META[signature] = _meta_outputs(op, args, kwargs, torch)
    return _META[signature]


def _meta_outputs(op, args, kwargs, torch):
    from torch.utils._python_dispatch import _disable_current_modes

    def meta(v):
        if isinstance(v, torch.Tensor):
            return v.to("meta")
        if isinstance(v, list):
            return [meta(x) for x in v]
        if isinstance(v, dict):
            return {k: meta(x) for k, x in v.items()}
        return torch.device("meta") if isinstance(v, torch.device) else v

    kwargs = meta({k: v for k, v in kwargs.items() if k != "generator"})
    if any(a.name == "device" and a.kwarg_only for a in op._schema.arguments):
        kwargs["device"] = torch.device("meta")  # a factory: zeros, ones, arange, ...
    with _disable_current_modes():
        try:
            out = op(*meta(args), **kwargs)
        except Exception:  # noqa: BLE001
            return 0, []
    flat = [t for t in (out if isinstance(out, (list, tuple)) else [out]) if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in flat), flat

"""The framing and the value codec of every pipe between jails and the grader: data only.

A message is a 4-byte big-endian header length, a JSON header, then raw byte blobs whose
lengths the header lists. Values are JSON scalars, or {"t": ...} objects for tuples,
lists, dicts, complex numbers, tensors (dtype, shape and a blob of raw bytes) and layers
(`nn.Module`s of the classes an assignment allows: constructor arguments plus parameters).
Nothing is ever unpickled; `decode` checks every field, because one side of each pipe is
hostile (the student's child, or the verifier as seen by the grader).

Standalone: the standard library, and torch where tensors cross.
"""
import inspect
import json
import struct

MiB = 2**20
MAX_HEADER = 64 * MiB
MAX_BLOBS = 256 * MiB
MAX_DEPTH = 16
MAX_TEXT = 2000
#: Element types a tensor may have on the wire.
DTYPES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128",
          "uint8", "int8", "int16", "int32", "int64", "bool")
#: A layer's constructor arguments: numbers this large are no honest layer's.
MAX_LAYER_INT = 2**16
MAX_LAYER_ELEMENTS = 2**24


class ProtocolError(Exception):
    """A message that does not follow the protocol (too large, malformed, wrong types)."""


# --- Framing ---------------------------------------------------------------------------------------

def pack(header, blobs=()):
    """One message as bytes."""
    head = json.dumps({**header, "blobs": [len(b) for b in blobs]}, ensure_ascii=False).encode()
    return b"".join([struct.pack(">I", len(head)), head, *blobs])


def unpack_header(raw, max_blobs=MAX_BLOBS):
    """Parse and check a header; return (header, blob sizes)."""
    try:
        header = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"unreadable header: {str(e)[:200]}") from None
    sizes = header.pop("blobs", None) if isinstance(header, dict) else None
    if not (isinstance(sizes, list) and all(type(s) is int and s >= 0 for s in sizes)):
        raise ProtocolError("header without a valid blob list")
    if sum(sizes) > max_blobs:
        raise ProtocolError(f"message larger than {max_blobs // MiB} MiB")
    return header, sizes


def read_message(read, max_header=MAX_HEADER, max_blobs=MAX_BLOBS):
    """Read one message with read(n) -> exactly n bytes; return (header, blobs)."""
    (size,) = struct.unpack(">I", read(4))
    if size > max_header:
        raise ProtocolError(f"header of {size} bytes")
    header, sizes = unpack_header(read(size), max_blobs)
    return header, [read(n) for n in sizes]


# --- Values ------------------------------------------------------------------------------------------

def encode(value, blobs, torch, depth=0):
    """A JSON-able description of `value`; tensor bytes are appended to `blobs`."""
    if depth > MAX_DEPTH:
        raise TypeError("返回值嵌套太深 (nested too deeply)")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        blobs.append(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return {"t": "tensor", "dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                "blob": len(blobs) - 1}
    if isinstance(value, torch.nn.Module):
        return _encode_layer(value, blobs, torch, depth)
    if isinstance(value, (tuple, list)):
        return {"t": type(value).__name__ if type(value) in (tuple, list) else "tuple",
                "items": [encode(v, blobs, torch, depth + 1) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"t": "dict", "items": {k: encode(v, blobs, torch, depth + 1) for k, v in value.items()}}
    if isinstance(value, complex):
        return {"t": "complex", "re": value.real, "im": value.imag}
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return encode(value.item(), blobs, torch, depth + 1)  # numpy scalars
    raise TypeError(f"无法传回类型为 {type(value).__name__} 的值 (cannot send a {type(value).__name__})")


def decode(obj, blobs, torch, depth=0, layers=()):
    """The value `encode` described, checked strictly: this also parses untrusted messages.

    `layers`: the names of the torch.nn classes that may cross (an assignment's policy).
    """
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
        seq = [decode(v, blobs, torch, depth + 1, layers) for v in items]
        return tuple(seq) if kind == "tuple" else seq
    if kind == "dict":
        items = obj.get("items")
        if not isinstance(items, dict):
            raise ProtocolError("dict without items")
        return {str(k): decode(v, blobs, torch, depth + 1, layers) for k, v in items.items()}
    if kind == "complex":
        return complex(_number(obj.get("re", 0.0)), _number(obj.get("im", 0.0)))
    if kind == "layer":
        return _decode_layer(obj, blobs, torch, depth, layers)
    raise ProtocolError(f"unknown value type {kind!r}")


def _number(x):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ProtocolError("malformed number")
    return float(x)


def _decode_tensor(obj, blobs, torch):
    dtype, shape, index = obj.get("dtype"), obj.get("shape"), obj.get("blob")
    if dtype not in DTYPES:
        raise ProtocolError(f"dtype {dtype!r} not allowed")
    if not (isinstance(shape, list) and len(shape) <= 8 and all(type(n) is int and n >= 0 for n in shape)):
        raise ProtocolError(f"bad shape {str(shape)[:80]}")
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


# --- Layers (nn.Module answers): constructor arguments and parameters, never code ---------------------

def _layer_arguments(cls):
    """The constructor arguments of a layer class that describe it (not device, dtype, bias)."""
    names = list(inspect.signature(cls.__init__).parameters)[1:]
    return [n for n in names if n not in ("device", "dtype", "bias", "args", "kwargs")]


def _plain(value):
    """A constructor argument as plain data: ints, floats, bools, strings, tuples of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    raise TypeError(f"无法传回层的参数 {type(value).__name__}")


def _encode_layer(layer, blobs, torch, depth):
    cls = type(layer)
    if cls.__module__.split(".")[:2] != ["torch", "nn"]:
        raise TypeError(f"无法传回 {cls.__name__}：只能返回 torch.nn 里的层 (only torch.nn layers)")
    config = {n: _plain(getattr(layer, n)) for n in _layer_arguments(cls) if hasattr(layer, n)}
    params = {name: encode(p, blobs, torch, depth + 1) for name, p in layer.named_parameters(recurse=False)}
    return {"t": "layer", "class": cls.__name__, "config": config, "params": params}


def _layer_arguments_all(cls):
    return list(inspect.signature(cls.__init__).parameters)[1:]


def _check_plain(value, depth=0):
    if depth > 3:
        raise ProtocolError("layer argument nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str) and len(value) > 40:
            raise ProtocolError("layer argument too long")
        return value
    if isinstance(value, int):
        if abs(value) > MAX_LAYER_INT:
            raise ProtocolError(f"layer argument {value} out of range (|x| ≤ {MAX_LAYER_INT})")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, list) and len(value) <= 8:
        return tuple(_check_plain(v, depth + 1) for v in value)
    raise ProtocolError("malformed layer argument")


def _decode_layer(obj, blobs, torch, depth, layers):
    name = obj.get("class")
    if name not in layers:
        raise ProtocolError(f"a layer of class {str(name)[:40]!r} may not be returned here")
    cls = getattr(torch.nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ProtocolError(f"unknown layer class {name!r}")
    config, params = obj.get("config"), obj.get("params")
    if not isinstance(config, dict) or not isinstance(params, dict):
        raise ProtocolError("malformed layer")
    allowed = set(_layer_arguments(cls))
    if set(config) - allowed:
        raise ProtocolError(f"unexpected {name} arguments {sorted(set(config) - allowed)[:5]}")
    config = {k: _check_plain(v) for k, v in config.items()}
    tensors = {}
    for key, value in params.items():
        if not isinstance(key, str) or len(key) > 40:
            raise ProtocolError("malformed layer parameter")
        t = decode(value, blobs, torch, depth + 1)
        if not isinstance(t, torch.Tensor) or t.numel() > MAX_LAYER_ELEMENTS:
            raise ProtocolError(f"{name}.{key} is not a reasonable tensor")
        tensors[key] = t
    dtype = next(iter(tensors.values())).dtype if tensors else torch.float32
    kwargs = dict(config)
    if "bias" in _layer_arguments_all(cls):
        kwargs["bias"] = "bias" in tensors
    try:
        # On the meta device: no memory and no random initialisation for parameters replaced anyway.
        layer = cls(**kwargs, dtype=dtype, device="meta")
    except (TypeError, ValueError, RuntimeError) as e:
        raise ProtocolError(f"{name} cannot be rebuilt: {str(e)[:200]}") from None
    own = dict(layer.named_parameters(recurse=False))
    if set(own) != set(tensors):
        raise ProtocolError(f"{name} parameters {sorted(tensors)} do not match its configuration {sorted(own)}")
    for key, t in tensors.items():
        if own[key].shape != t.shape:
            raise ProtocolError(f"{name}.{key} has shape {tuple(t.shape)}, its configuration says "
                                f"{tuple(own[key].shape)}")
        # The student's own tensors, dtype included, exactly as their layer held them.
        setattr(layer, key, torch.nn.Parameter(t, requires_grad=t.is_floating_point() or t.is_complex()))
    return layer

"""The test-cell API of every assignment graded by this course's engine.

Test cells import their checks from here (`from testkit import part, assert_close`), and an
assignment's own helper module (e.g. `checks.py`) adds only its reference functions and
data. A copy of this file lies beside every released notebook so that the visible tests run
on a student's machine; at grading the verifier uses the instructor's copy, so editing it
changes nothing. Only torch and the standard library are imported.

- `part`               one graded part of a test cell and its points: `with part("dtype", 0.5, "..."):`
- `assert_close`       the one tolerance check for tensors: type, shape, dtype, device, values
- `assert_number`      the same for a plain number
- `assert_raises`      a function refuses bad input with the given exception (shape checks)
- `assert_layer`       an nn.Module of the given class whose parameters are the given tensors
- `call_checked`       a call by the rules: inputs unchanged, no operator the assignment forbids
- `record_ops`         the aten operators a call runs (`.compute`: those that compute)
- `assert_no_growth`   the computing operators do not grow with the input (no Python loop over
                       it), on sizes drawn when the test runs
- `assert_one_matmul`  exactly one matrix product and nothing that grows with the input
- `assert_faster`      a speed check against a baseline that also checks every timed result
- `random_tensors`     seeded inputs (grading twice gives the same result); `draw` sizes that
                       nobody can know in advance

Every failure is a `CheckFailure`: a message for the student, one or two lines in Chinese
with the English term, ending with the test case ("［用例 ...］"), and a category code for
the instructor's report (the codes are listed in `CATEGORIES`).
"""
import random
import re
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# On a GPU, float32 matmul uses TF32 (10-bit mantissa) by default: a correct answer would
# miss a float64 reference by ~1e-3. Compare true float32 (every `part` switches it off too).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

#: Default tolerances per dtype (absolute, relative).
TOLERANCE = {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 1e-4)}
#: Category codes a failure may carry (grading/categories.py names them for teachers).
CATEGORIES = ("shape", "values", "dtype", "device", "type", "shape_check", "input_modified", "forbidden_op",
              "loop", "pixel_loop", "too_slow", "unanswered", "error", "timeout")
#: Matrix products, however they are written (@, matmul, mm, einsum, tensordot, linear).
MATMUL_OPS = frozenset({"mm", "bmm", "addmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot"})
#: Operators that compute nothing: views and bookkeeping (a view is free, padding with it is too).
_NOT_COMPUTE = frozenset({"detach", "alias", "lift_fresh", "lift_fresh_copy", "_local_scalar_dense",
                          "resolve_conj", "resolve_neg", "_to_copy", "clone", "contiguous", "empty",
                          "empty_like", "empty_strided", "new_empty", "new_empty_strided"})


def __getattr__(name):
    # The device of the tests, looked up on first use (asking CUDA at import would start it).
    if name == "DEVICE":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise AttributeError(name)


class CheckFailure(AssertionError):
    """A failed check: the message for the student, `category` for the instructor's report."""

    def __init__(self, message, category):
        super().__init__(message)
        self.category = category


def fail(message, case, category):
    """Raise the CheckFailure of a check (the helpers set __tracebackhide__: IPython shows the
    test cell's line and the message, not the frames in between)."""
    __tracebackhide__ = True
    raise CheckFailure(f"{message}［用例 {case}］", category)


# --- Partial credit -----------------------------------------------------------------------------

#: While grading, the verifier sets this to a list and every `part` appends its outcome to it;
#: None (in your own session) means a failure stops the test cell as usual.
RECORD = None


class part:
    """One graded part of a test cell: `with part("dtype", 0.5, "float64 与设备"):`.

    A test cell's points are split over its parts (their points add up to the cell's), and
    each part scores all or nothing. A part may continue in a later block, `with part("dtype"):`
    (the hidden tests add cases to the visible ones); it passes when all its blocks pass.
    In your session a failing part stops the cell with its message, like any test. At grading
    every block runs, and the cell scores the points of the parts that passed.
    """

    def __init__(self, name, points=None, label=None):
        self.name, self.points, self.label = name, points, label

    def __enter__(self):
        self._tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        return self

    def __exit__(self, kind, error, tb):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._tf32
        if RECORD is None:
            return False  # your session: the failure is the cell's
        if kind is not None and not issubclass(kind, Exception):
            return False  # KeyboardInterrupt, SystemExit: not a verdict
        RECORD.append((self, error))
        return True


# --- Values ---------------------------------------------------------------------------------------

def _shape(t):
    return tuple(t.shape)


def assert_close(got, expected, case, atol=None, rtol=None, hint="", diagnose=None):
    """Check that `got` is a tensor like `expected`: shape, dtype, device, then values.

    Tolerances default to TOLERANCE[expected.dtype]; atol=rtol=0 asks for exact equality.
    `hint` is added to a dtype or device failure (where to look); `diagnose(got)` may name a
    known mistake when the values are wrong (a flipped kernel, say): a string, or None.
    """
    __tracebackhide__ = True
    if got is None:
        fail("函数返回了 None：是不是忘了 return？", case, "type")
    if not isinstance(got, torch.Tensor):
        fail(f"应返回张量 (torch.Tensor)，得到 {type(got).__name__}。", case, "type")
    if got.shape != expected.shape:
        fail(f"形状 (shape) 不对：期望 {_shape(expected)}，得到 {_shape(got)}。", case, "shape")
    if got.dtype != expected.dtype:
        fail(f"数据类型 (dtype) 不对：期望 {expected.dtype}，得到 {got.dtype}；结果应与输入的 dtype 相同{hint}。",
             case, "dtype")
    if got.device != expected.device:
        fail(f"设备 (device) 不对：期望 {expected.device}，得到 {got.device}；结果应与输入在同一设备上{hint}。",
             case, "device")
    default_atol, default_rtol = TOLERANCE.get(expected.dtype, (0.0, 0.0))
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    got64, exp64 = got.detach().double().cpu(), expected.detach().double().cpu()
    error = (got64 - exp64).abs().nan_to_num(nan=float("inf"))
    excess = error - (atol + rtol * exp64.abs())
    if excess.numel() and excess.max() > 0:
        known = diagnose(got) if diagnose else None
        where = tuple(int(i) for i in torch.unravel_index(excess.argmax(), excess.shape))
        detail = (f"{int((excess > 0).sum())}/{excess.numel()} 个元素超出容差 (tolerance)；位置 {where}："
                  f"期望 {exp64[where].item():.10g}，得到 {got64[where].item():.10g}")
        fail(f"数值 (values) 不对：{known}（{detail}）" if known else f"数值 (values) 不对：{detail}。", case, "values")


def assert_number(got, expected, case, rel=1e-9):
    """Check that `got` is a real number within relative error `rel` of `expected`."""
    __tracebackhide__ = True
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        fail(f"应返回一个数 (int 或 float)，得到 {type(got).__name__}。", case, "type")
    if not abs(got - expected) <= rel * abs(expected):
        fail(f"数值 (values) 不对：期望 {expected:.6g}，得到 {got:.6g}。", case, "values")


def assert_raises(fn, args, errors, case, why):
    """Check that fn(*args) refuses its arguments with one of `errors` (e.g. ValueError).

    `why` says what is wrong with the arguments, for the message."""
    __tracebackhide__ = True
    who = getattr(fn, "__name__", "你的函数")
    try:
        fn(*args)
    except errors as e:
        if getattr(e, "category", None) is None:
            return  # the function's own refusal (a failed check or a refused operator is not one)
        raise
    except NotImplementedError:
        raise  # not answered yet: said as such, not as a missing shape check
    except Exception as e:  # noqa: BLE001 (any other exception is the student's)
        names = " 或 ".join(e.__name__ for e in (errors if isinstance(errors, tuple) else (errors,)))
        fail(f"形状检查 (shape check)：{why}，{who} 应当 raise {names}，却抛出了 {type(e).__name__}: "
             f"{str(e)[:120]}", case, "shape_check")
    names = " 或 ".join(e.__name__ for e in (errors if isinstance(errors, tuple) else (errors,)))
    fail(f"形状检查 (shape check)：{why}，{who} 应当 raise {names}（并说明原因），却正常返回了。", case, "shape_check")


def assert_layer(layer, cls, params, case):
    """Check that `layer` is a `cls` whose parameters are `params` ({name: tensor}, dtype included)."""
    __tracebackhide__ = True
    if not isinstance(layer, cls):
        fail(f"应返回 {cls.__name__}，得到 {type(layer).__name__}。", case, "type")
    for name, expected in params.items():
        value = getattr(layer, name, None)
        if value is None:
            fail(f"这个 {cls.__name__} 没有 {name}：创建时不要写 {name}=False。", case, "values")
        assert_close(value.detach(), expected, f"{case}：{name}")


# --- Operators -----------------------------------------------------------------------------------

class OpList(list):
    """The aten operators a call ran, by name (['mm', 'view', ...]); `.compute`: those that compute."""

    def __init__(self):
        super().__init__()
        self.compute = []


def is_compute(name, is_view):
    """True for an operator that computes (a view or bookkeeping computes nothing)."""
    return not is_view and name not in _NOT_COMPUTE


class _OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = OpList()

    @classmethod
    def _should_skip_dynamo(cls):  # torch's opt-out: do not import torch._dynamo (~2 s) on first use
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::", 1)[-1]
        self.ops.append(name)
        if is_compute(name, func.is_view):
            self.ops.compute.append(name)
        return func(*args, **(kwargs or {}))


def record_ops(fn, *args):
    """Call fn(*args); return (result, OpList of the aten operators it ran)."""
    with _OpLog() as log:
        result = fn(*args)
    return result, log.ops


def forbidden_ops(ops, pattern):
    """The operators of `ops` whose name matches the forbidden `pattern` (sorted, unique)."""
    return sorted({op for op in ops if pattern and re.search(pattern, op)})


def call_checked(fn, *args, case, forbidden=None, forbidden_what="禁止的算子"):
    """Call fn(*args) by the rules and return its result: no tensor argument changed, and (with
    `forbidden`, a regular expression over aten operator names) none of those operators run."""
    __tracebackhide__ = True
    who = getattr(fn, "__name__", "你的函数")
    before = [a.clone() if isinstance(a, torch.Tensor) else None for a in args]
    result, ops = record_ops(fn, *args)
    bad = forbidden_ops(ops, forbidden)
    if bad:
        fail(f"{who} 调用了{forbidden_what} {', '.join('aten.' + op for op in bad)}：本题要用张量运算自己实现。",
             case, "forbidden_op")
    for i, (a, old) in enumerate(zip(args, before)):
        if old is not None and not (a.shape == old.shape and torch.equal(a, old)):
            fail(f"{who} 修改了第 {i + 1} 个参数（原地操作 in-place）：输入必须保持不变。", case, "input_modified")
    return result


def draw(low, high):
    """An integer in [low, high] that nobody can know before the test runs (not seeded)."""
    return random.SystemRandom().randint(low, high)


def _fresh(args):
    """Copies of the tensor arguments: a rule about operators is not spoilt by an in-place change."""
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def assert_no_growth(fn, inputs, cap, case, what, category="pixel_loop", hint=""):
    """Fail if the computing operators of fn grow with the input, or exceed `cap`.

    `inputs`: argument tuples of growing size (draw their sizes when the test runs, so a
    function cannot tell them apart in advance); `cap`: the most computing operators an
    answer without such a loop needs, for the largest input. Views are free, so padding a
    call with them changes nothing; padding with computing operators runs into the cap.
    """
    __tracebackhide__ = True
    who = getattr(fn, "__name__", "你的函数")
    counts = [len(record_ops(fn, *_fresh(args))[1].compute) for args in inputs]
    if len(set(counts)) > 1 or counts[-1] > cap:
        grow = " → ".join(str(c) for c in counts)
        fail(f"{who} 的计算运算 (compute operations) 次数随{what}变化或太多（{grow} 次，上限 {cap}）：说明对{what}"
             f"用了 Python 循环 (loop){hint}。", case, category)


def assert_one_matmul(fn, inputs, cap, case, hint=""):
    """Fail unless fn runs exactly one matrix product, and nothing that grows with the input."""
    __tracebackhide__ = True
    who = getattr(fn, "__name__", "你的函数")
    for args in inputs:
        _, ops = record_ops(fn, *_fresh(args))
        products = [op for op in ops.compute if op.rstrip("_") in MATMUL_OPS]
        if len(products) != 1:
            fail(f"{who} 应当只做一次矩阵乘法 (matrix multiplication)，实际做了 {len(products)} 次{hint}。", case, "loop")
    assert_no_growth(fn, inputs, cap, case, "输入的大小", category="loop", hint=hint)


# --- Speed ---------------------------------------------------------------------------------------

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, args, repeats=5, check=None):
    """The shortest of `repeats` times of fn(*args), in seconds (after one warm-up).

    `check(result)` is called on every result, timed or not (a function that recognises
    repeated arguments cannot return garbage fast). On the CPU the time is the CPU time of
    the whole process (work handed to another thread counts, waiting for a core does not);
    on a GPU it is wall-clock time around synchronised calls.
    """
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), torch.device("cpu"))
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    result = fn(*args)
    if check:
        check(result)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = clock()
        result = fn(*args)
        _sync(device)
        times.append(clock() - start)
        if check:
            check(result)
    return min(times)


def assert_faster(fast, slow, args, factor, case, check=None, repeats=5):
    """Fail unless fast(*args) is at least `factor` times faster than slow(*args) (best of `repeats`).

    `check(result)` verifies every result of `fast`, timed ones included. Both run on one
    thread: with a second one, a busy machine (parallel grading) can delay a small matrix
    product by a whole scheduler time slice.
    """
    __tracebackhide__ = True
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_fast = best_time(fast, args, repeats, check)
        t_slow = best_time(slow, args, 2)  # the baseline hardly varies and is slow
    finally:
        torch.set_num_threads(threads)
    if t_slow < factor * t_fast:
        who = getattr(fast, "__name__", "你的函数")
        ratio = t_slow / t_fast if t_fast > 0 else float("inf")
        how = f"快 {ratio:.1f} 倍" if ratio >= 1 else f"慢 {1 / ratio:.1f} 倍"
        english = f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
        fail(f"{who} 不够快：用时 {t_fast * 1e3:.2f} ms，基准 (baseline) {t_slow * 1e3:.2f} ms，"
             f"比基准{how} ({english} than the baseline)，要求至少快 {factor} 倍。", case, "too_slow")


# --- Inputs ---------------------------------------------------------------------------------------

def random_tensors(seed, *shapes, dtype=torch.float32, device=None):
    """Reproducible standard-normal tensors of the given shapes, on `device` (default: DEVICE)."""
    device = __getattr__("DEVICE") if device is None else device
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).to(device) for s in shapes]


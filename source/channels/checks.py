"""Test helpers of the assignment 多输入多输出通道 (D2L §6.4).

The test cells of channels.ipynb import everything they need from here, so every check
and every message lives in one place. You may read this file; at grading time the
instructor's copy is used, so editing it does not change your grade.

- `part`                one graded part of a test cell and its points: `with part("dtype", 0.5, "..."):`.
- `assert_close`        the one tolerance check for tensors: type, shape, dtype, device, values.
- `assert_number`       the same for a plain number (conv_flops, train_hours).
- `assert_conv2d_layer` an nn.Conv2d whose weight and bias are the given tensors.
- `call_checked`        calls your function by the rules of the assignment: no convolution
                        operator, inputs left unchanged.
- `record_ops`          the aten operators a call runs; `forbid_conv` and the loop checks
                        (`assert_matmul_once`, `assert_same_op_count`) are built on it.
- `assert_faster`       the speed check of the bonus question against `loop_corr2d_multi_in_out`.
- `reference_*`         float64 references (the tests may use F.conv2d; your answers may not).
- `random_tensors`      the tests' inputs: seeded, so grading twice gives the same result.

Messages are in Chinese with the English term, one or two lines, and end with the
test case, e.g. ``形状 (shape) 不对：期望 (2, 2)，得到 (3, 3)。［用例 corr2d 书中例子 (book example)］``.
Every failure is a `CheckFailure` that also carries a category code (shape, dtype, values, ...:
grading/categories.py), so that the instructor's report can group what the class got wrong.
"""
import re
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# On a GPU, float32 matmul and cuDNN use TF32 (10-bit mantissa) by default: a correct
# answer would then miss the float64 reference by ~1e-3. Compare true float32 instead
# (and every `part` of a test switches TF32 off again while it runs).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

#: Default tolerances per dtype (absolute, relative).
TOLERANCE = {torch.float64: (1e-9, 1e-9), torch.float32: (1e-4, 1e-4)}

# aten names of every convolution kernel: convolution, _convolution, conv2d, conv_tbc,
# cudnn_convolution, mkldnn_convolution, slow_conv2d, _conv_depthwise2d, ... but not
# _convert_* (which only contains the letters "conv").
_CONV_OP = re.compile(r"conv(olution|\d|_)")
# A matrix product, however it is written (@, matmul, mm, einsum, tensordot, linear).
_MATMUL_OPS = {"mm", "bmm", "addmm", "baddbmm", "mv", "addmv", "dot", "vdot", "matmul", "linear"}


class CheckFailure(AssertionError):
    """A failed check: the message for the student, `category` for the instructor's report."""

    def __init__(self, message, category):
        super().__init__(message)
        self.category = category


# The helpers set __tracebackhide__: IPython then shows the test cell's line, the final
# `raise` below and the message, not the frames in between.
def _fail(message, case, category):
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
        # TF32 off while the part runs, even if the notebook turned it on after `import checks`.
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


def _shape(t):
    return tuple(t.shape)


def assert_close(got, expected, case, atol=None, rtol=None):
    """Check that `got` is a tensor like `expected`: shape, dtype, device, then values.

    Tolerances default to TOLERANCE[expected.dtype]; atol=rtol=0 asks for exact equality.
    """
    __tracebackhide__ = True
    if got is None:
        _fail("函数返回了 None：是不是忘了 return？", case, "type")
    if not isinstance(got, torch.Tensor):
        _fail(f"应返回张量 (torch.Tensor)，得到 {type(got).__name__}。", case, "type")
    if got.shape != expected.shape:
        _fail(f"形状 (shape) 不对：期望 {_shape(expected)}，得到 {_shape(got)}。", case, "shape")
    if got.dtype != expected.dtype:
        _fail(f"数据类型 (dtype) 不对：期望 {expected.dtype}，得到 {got.dtype}；结果应与输入的 dtype 相同。", case, "dtype")
    if got.device != expected.device:
        _fail(f"设备 (device) 不对：期望 {expected.device}，得到 {got.device}；结果应与输入在同一设备上。", case, "device")
    default_atol, default_rtol = TOLERANCE.get(expected.dtype, (0.0, 0.0))
    atol = default_atol if atol is None else atol
    rtol = default_rtol if rtol is None else rtol
    got64, exp64 = got.detach().double().cpu(), expected.detach().double().cpu()
    error = (got64 - exp64).abs().nan_to_num(nan=float("inf"))
    excess = error - (atol + rtol * exp64.abs())
    if excess.numel() and excess.max() > 0:
        where = tuple(int(i) for i in torch.unravel_index(excess.argmax(), excess.shape))
        _fail(f"数值 (values) 不对：{int((excess > 0).sum())}/{excess.numel()} 个元素超出容差 (tolerance)；"
              f"位置 {where} 误差 {error[where].item():.2g}：期望 {exp64[where].item():.10g}，"
              f"得到 {got64[where].item():.10g}。", case, "values")


class _OpLog(TorchDispatchMode):
    """Record the aten operator of every tensor operation run inside the `with` block."""

    def __init__(self):
        super().__init__()
        self.ops = []

    @classmethod
    def _should_skip_dynamo(cls):  # torch's opt-out: do not import torch._dynamo (~2 s) on first use
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket).removeprefix("aten."))
        return func(*args, **(kwargs or {}))


def record_ops(fn, *args):
    """Call fn(*args); return (result, list of the aten operators it ran, e.g. ['mm', 'view'])."""
    with _OpLog() as log:
        result = fn(*args)
    return result, log.ops


def _conv_ops(ops):
    return sorted({op for op in ops if _CONV_OP.search(op)})


def _no_conv(ops, who, case):
    __tracebackhide__ = True
    bad = _conv_ops(ops)
    if bad:
        _fail(f"{who} 调用了卷积算子 (convolution operator) {', '.join('aten.' + op for op in bad)}："
              "本作业要用张量运算自己实现，不能用 F.conv2d、nn.Conv2d、torch.conv2d 等。", case, "conv_used")


@contextmanager
def forbid_conv(who="你的函数", case="卷积算子检查"):
    """Fail if a convolution reaches torch's dispatcher inside the block, however it was called."""
    __tracebackhide__ = True
    with _OpLog() as log:
        yield log.ops
    _no_conv(log.ops, who, case)


def call_checked(fn, *args, case, allow_conv=False):
    """Call fn(*args) by the rules of the assignment and return its result.

    Fails if fn changes one of its tensor arguments or (unless allow_conv) runs a
    convolution operator.
    """
    __tracebackhide__ = True
    who = getattr(fn, "__name__", "你的函数")
    before = [a.clone() if isinstance(a, torch.Tensor) else None for a in args]
    result, ops = record_ops(fn, *args)
    if not allow_conv:
        _no_conv(ops, who, case)
    for i, (a, old) in enumerate(zip(args, before)):
        if old is not None and not (a.shape == old.shape and torch.equal(a, old)):
            name = ("X", "K")[i] if i < 2 else f"第 {i + 1} 个参数"
            _fail(f"{who} 修改了输入 {name}（原地操作 in-place）：输入必须保持不变。", case, "input_modified")
    return result


def assert_number(got, expected, case, rel=1e-9):
    """Check that `got` is a real number within relative error `rel` of `expected`."""
    __tracebackhide__ = True
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        _fail(f"应返回一个数 (int 或 float)，得到 {type(got).__name__}。", case, "type")
    if not abs(got - expected) <= rel * abs(expected):
        _fail(f"数值不对：期望 {expected:.6g}，得到 {got:.6g}。", case, "values")


def assert_conv2d_layer(layer, K, b, case):
    """Check that `layer` is an nn.Conv2d whose weight is K and whose bias is b."""
    __tracebackhide__ = True
    if not isinstance(layer, torch.nn.Conv2d):
        _fail(f"应返回 nn.Conv2d，得到 {type(layer).__name__}。", case, "type")
    if layer.bias is None:
        _fail("这个 nn.Conv2d 没有偏置 (bias)：创建时不要写 bias=False。", case, "values")
    assert_close(layer.weight.detach(), K, f"{case}：权重 weight")
    assert_close(layer.bias.detach(), b, f"{case}：偏置 bias")


def assert_matmul_once(fn, small, large, case):
    """Check that fn runs one matrix product whose operator count does not grow with the input.

    `small` and `large` are two (X, K) argument tuples of different sizes.
    """
    __tracebackhide__ = True
    who = getattr(fn, "__name__", "你的函数")
    _, ops_small = record_ops(fn, *small)
    _, ops_large = record_ops(fn, *large)
    if not _MATMUL_OPS & set(ops_small):
        _fail(f"{who} 没有用矩阵乘法 (matrix multiplication)：把 X 变形为 (c_i, n_h·n_w)、"
              "K 变形为 (c_o, c_i)，再做一次 torch.matmul。", case, "loop")
    assert_same_op_count(ops_small, ops_large, who, "通道数或图像大小", case)


def assert_same_op_count(ops_small, ops_large, who, what, case):
    """Fail if a larger input ran more tensor operations: a sign of a Python loop."""
    __tracebackhide__ = True
    if len(ops_large) != len(ops_small):
        _fail(f"{who} 的张量运算次数随{what}增长（{len(ops_small)} → {len(ops_large)} 次）："
              "说明用了 Python 循环 (loop)，这里应当整体用张量运算。", case, "loop")


def assert_faster(fast, slow, args, factor, case, repeats=5):
    """Fail unless fast(*args) is at least `factor` times faster than slow(*args) (best of `repeats`).

    Both run on one thread: with a second thread, a busy machine (parallel grading) can
    delay a small matrix product by a whole scheduler time slice (~15 ms).
    """
    __tracebackhide__ = True
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # The slow baseline hardly varies and costs ~50 ms a call: two repeats are enough.
        t_fast, t_slow = best_time(fast, args, repeats), best_time(slow, args, 2)
    finally:
        torch.set_num_threads(threads)
    if t_slow < factor * t_fast:
        who = getattr(fast, "__name__", "你的函数")
        _fail(f"{who} 不够快：用时 {t_fast * 1e3:.2f} ms，逐像素循环基准 (loop baseline) "
              f"{t_slow * 1e3:.1f} ms，只快 {t_slow / t_fast:.1f} 倍，要求至少 {factor} 倍。", case, "too_slow")


def best_time(fn, args, repeats=5):
    """The shortest of `repeats` times of fn(*args), in seconds (after one warm-up).

    On the CPU this is the CPU time of the whole process, every thread included: work that
    a call hands to another thread still counts, and waiting for a core (many notebooks
    graded at once) does not. On a GPU it is wall-clock time around synchronised calls.
    """
    clock = time.perf_counter if DEVICE.type == "cuda" else time.process_time
    fn(*args)
    times = []
    for _ in range(repeats):
        _sync()
        start = clock()
        fn(*args)
        _sync()
        times.append(clock() - start)
    return min(times)


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def loop_corr2d_multi_in_out(X, K):
    """The speed baseline: one Python iteration per output pixel, all channels at once."""
    c_o, _, k_h, k_w = K.shape
    m_h, m_w = X.shape[1] - k_h + 1, X.shape[2] - k_w + 1
    Y = X.new_zeros((c_o, m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            Y[:, i, j] = (X[:, i:i + k_h, j:j + k_w] * K).sum(dim=(1, 2, 3))
    return Y


def _float64_cpu(*tensors):
    return [t.detach().to("cpu", torch.float64) for t in tensors]


def reference_corr2d(X, K):
    """X: (n_h, n_w), K: (k_h, k_w) -> (m_h, m_w), in float64 on the CPU."""
    X, K = _float64_cpu(X, K)
    return F.conv2d(X[None, None], K[None, None])[0, 0]


def reference_corr2d_multi_in(X, K):
    """X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w), in float64 on the CPU."""
    X, K = _float64_cpu(X, K)
    return F.conv2d(X[None], K[None])[0, 0]


def reference_corr2d_multi_in_out(X, K):
    """X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w), in float64 on the CPU."""
    X, K = _float64_cpu(X, K)
    return F.conv2d(X[None], K)[0]


def random_tensors(seed, *shapes, dtype=torch.float32, device=DEVICE):
    """Reproducible standard-normal tensors of the given shapes (the hidden tests' inputs)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).to(device) for s in shapes]


"""The operator policy of a graded call, enforced on both sides of the pipe.

A student's function runs in the child (grading/jail/child.py) and comes back as a recipe
of aten operations that the verifier replays (grading/jail/replay.py). Both sides ask this
module, so the child refuses what the replay would refuse and a forged recipe gains nothing:

- `refusal(op)`, `is_forbidden(op, pattern)`: an operator may run only if it is a pure tensor operator of the
  allowlist (`ALLOWED`): no file, storage, shared memory, random generator or other global
  state (torch.from_file, share_memory_, set_, normal_, ...), no custom operator, and nothing
  the assignment forbids (its policy's `FORBIDDEN_OPS` pattern, e.g. convolutions).
- `work(op, inputs, outputs)`: what one operation costs, judged from shapes before it runs
  (logical sizes, so an expanded view of a huge size costs what it would compute).
- `counted_numbers(op, args, kwargs, bound)`: the numbers an operation brings in from
  outside the arguments (Python scalars as much as tensor constants): they count toward a
  recipe's constant limit, except small structural integers (sizes, dimensions, slice
  bounds) and the values the replay itself read out with `.item()`.

Standalone: the standard library, and torch where it is loaded.
"""
import math
import re

#: Pure tensor operators (aten overload packets; an in-place "_" variant listed where allowed).
_ELEMENTWISE = """
    abs neg sign sgn add sub rsub mul div true_divide floor_divide remainder fmod reciprocal pow
    exp exp2 expm1 log log2 log10 log1p sqrt rsqrt square sin cos tan asin acos atan atan2 sinh
    cosh tanh sigmoid relu hardtanh clamp clamp_min clamp_max clip maximum minimum fmax fmin
    floor ceil round trunc frac copysign addcmul addcdiv lerp where eq ne lt le gt ge isnan
    isinf isfinite isclose nan_to_num logical_and logical_or logical_not logical_xor
    bitwise_and bitwise_or bitwise_not bitwise_xor masked_fill erf erfc
""".split()
_REDUCTIONS = """
    sum mean prod amax amin max min argmax argmin cumsum cumprod any all std var var_mean
    std_mean norm linalg_vector_norm logsumexp count_nonzero _softmax _log_softmax softmax
    log_softmax equal is_nonzero
""".split()
_MATMUL = "mm bmm addmm baddbmm addbmm mv addmv dot vdot outer ger _unsafe_index".split()
#: Convolutions (what F.conv*d and nn.Conv*d reach at the dispatcher): allowed unless the
#: assignment's FORBIDDEN_OPS names them.
CONVOLUTION = frozenset(["convolution", "_convolution"])
_SHAPE = """
    view _unsafe_view reshape _reshape_alias expand expand_as permute transpose t unsqueeze
    squeeze select slice narrow unfold as_strided alias diagonal unbind split split_with_sizes
    chunk flatten unflatten movedim view_as view_as_real view_as_complex real imag conj _conj
    resolve_conj resolve_neg _neg_view detach lift_fresh lift_fresh_copy contiguous clone
    _to_copy to _local_scalar_dense item
""".split()
_CREATION = """
    empty empty_like empty_strided new_empty new_empty_strided zeros zeros_like new_zeros ones
    ones_like new_ones full full_like new_full arange linspace scalar_tensor eye fill zero
""".split()
_GATHER = """
    cat stack hstack vstack flip roll repeat repeat_interleave tile index index_select gather
    scatter scatter_add index_put _index_put_impl index_add index_copy take masked_select
    nonzero sort argsort topk kthvalue searchsorted bucketize tril triu diag diag_embed trace
    constant_pad_nd im2col col2im copy resize resize_as
""".split()
#: Random numbers: the replay draws them from a generator of its own (never the global one),
#: so they bring in nothing; layers initialise their weights with them.
_RANDOM = """
    uniform normal bernoulli random exponential geometric cauchy log_normal randn rand randint
    randperm randn_like rand_like randint_like multinomial
""".split()
#: Operators whose in-place variant ("add_") is as pure as the operator itself.
_INPLACE = set(_ELEMENTWISE) | {"fill", "zero", "copy", "index_put", "_index_put_impl", "index_add",
                                "index_copy", "scatter", "scatter_add", "resize", "resize_as", "tril",
                                "triu", "cumsum", "cumprod", "squeeze", "unsqueeze", "transpose", "t",
                                "as_strided", "detach", "masked_fill", "addmm", "baddbmm", "addbmm", "addmv"}
ALLOWED = frozenset(_ELEMENTWISE + _REDUCTIONS + _MATMUL + _SHAPE + _CREATION + _GATHER + _RANDOM + list(CONVOLUTION)
                    + [name + "_" for name in _INPLACE | set(_RANDOM)])
#: Operators that draw random numbers (a `generator` argument: the replay passes its own).
RANDOM = frozenset(_RANDOM + [name + "_" for name in _RANDOM])
#: Matrix products: their work is the product of the three (four) sizes.
MATMUL = frozenset(_MATMUL) - {"_unsafe_index"}
#: Operators whose work grows as n·log(n).
_SORTING = frozenset("sort argsort topk kthvalue searchsorted".split())
#: Integers that stand for "to the end" in slices (sys.maxsize and its negative).
_SENTINELS = {2**63 - 1, -(2**63), -(2**63 - 1)}
#: Scalars any code writes without bringing in data (x * 1, y + 0, -x).
_FREE_SCALARS = {0, 1, -1, 0.0, 1.0, -1.0, 0.5, 2, 2.0}


def packet(op):
    """'add_' for aten.add_.Tensor (the overload packet's name, without the namespace)."""
    return op._schema.name.split("::", 1)[-1] if hasattr(op, "_schema") else str(op)


def refusal(op):
    """Why `op` (an OpOverload) may not run while graded, or None when it may.

    (What the assignment forbids on top, `is_forbidden`, is checked first by the callers: it
    has a message and a category of its own.)
    """
    namespace = getattr(op, "namespace", None)
    if namespace != "aten":
        return f"{op} 不是 PyTorch 自带的算子：评分时只能用 torch 的张量运算 (only PyTorch's own operators)"
    name = packet(op)
    if name not in ALLOWED:
        return (f"aten.{name} 不是评分时允许的纯张量运算（不能读写文件、共享内存、随机数或全局状态）"
                f" (aten.{name} is not an allowed pure tensor operation while grading)")
    return None


def is_forbidden(op, forbidden):
    """True when the assignment's policy forbids `op` (e.g. every convolution)."""
    return bool(forbidden) and bool(re.search(forbidden, packet(op)))


def _numel(t):
    n = 1
    for d in t.shape:
        n *= int(d)
    return n


def work(op, inputs, outputs):
    """Units of work of one operation (about one per multiply-add or element touched).

    `inputs`: the tensors among its arguments (logical sizes count, not storage: an expanded
    view is as costly as what it stands for); `outputs`: the tensors it makes (meta ones
    are fine). Judged before the operation runs.
    """
    name = packet(op).rstrip("_")
    shapes = [tuple(int(d) for d in t.shape) for t in inputs]
    moved = sum(_numel(t) for t in inputs) + sum(_numel(t) for t in outputs)
    if name in MATMUL and len(shapes) >= 2:
        a, b = shapes[-2], shapes[-1]  # addmm & co.: the bias comes first
        if len(a) == 2 and len(b) == 2:        # (n, k) @ (k, m)
            return a[0] * a[1] * b[1] + moved
        if len(a) == 3 and len(b) == 3:        # (batch, n, k) @ (batch, k, m)
            return a[0] * a[1] * a[2] * b[2] + moved
        return moved
    if name in CONVOLUTION and len(shapes) >= 2 and shapes[1] and shapes[1][0]:
        # each output (or, transposed, each input) element: one multiply-add per weight of a filter
        weight = shapes[1]
        per_element = _numel(inputs[1]) // weight[0]
        return max([_numel(t) for t in outputs] + [_numel(inputs[0])]) * per_element + moved
    if name in _SORTING:
        return moved * max(1, math.ceil(math.log2(max(2, moved))))
    return moved


def counted_numbers(op, args, kwargs, bound, known=()):
    """The numbers of one operation's arguments that count as constants brought in from outside.

    Floating-point and complex numbers count wherever they appear (a tensor argument given
    as a number is a wrapped constant), except the few any code writes (0, ±1, 2, 0.5) and
    those in `known` (read out of tensors by this replay). Integers are structural (sizes,
    dimensions, slice bounds, arange's end) while |x| ≤ `bound` (or "to the end"), and count
    beyond it. Booleans, strings, dtypes and devices never count.
    """
    schema = op._schema.arguments
    pairs = list(zip(schema, args)) + [(a, kwargs[a.name]) for a in schema if a.name in kwargs]
    counted = []

    def visit(value):
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return
        if isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
            return
        if isinstance(value, int):
            if abs(value) > bound and value not in _SENTINELS and value not in known:
                counted.append(value)
        elif isinstance(value, (float, complex)):
            if value not in _FREE_SCALARS and value not in known:
                counted.append(value)

    for _, value in pairs:
        visit(value)
    return counted

"""The jails of verification (grading/jail/): protocol, operator policy, replay, verdicts, verifier.

The fast tests (`pytest -m fast`) exercise each piece on data: the codec and its refusals,
the allowlist against the operators honest answers use, forged recipes the replay must
refuse, the rules that padding cannot fool, the parser of verdicts. The others run the
real verifier jail and the student's child on notebooks made from the instructor's source
notebook with some answers replaced (bubblewrap needed: skipped without it, a failure in CI).
"""
import shutil

import nbformat
import pytest
import torch

from conftest import ASSIGNMENT, ROOT, require
from grading.contract import load_contract
from grading.fill import load_sections
from grading.jail import ops, testkit
from grading.jail.protocol import ProtocolError, decode, encode
from grading.jail.replay import ConstantResult, ForbiddenOperator, Replay, TooMuchWork
from grading.jail.verdicts import VerdictError, parse, verdicts_of
from grading.settings import Grading

SOURCE = ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
CONTRACT = load_contract(ROOT, ASSIGNMENT)
TESTS = CONTRACT.test_ids
fast = pytest.mark.fast


# --- The codec -----------------------------------------------------------------------------------

def round_trip(value, layers=()):
    blobs = []
    return decode(encode(value, blobs, torch), blobs, torch, layers=layers)


@fast
def test_values_survive_the_round_trip():
    tensors = [torch.randn(2, 3, dtype=torch.float64), torch.randn(4).to(torch.bfloat16), torch.tensor(3.5),
               torch.zeros(0, 5), torch.arange(12).reshape(3, 4).t(), torch.tensor([True, False]),
               torch.randn(2, dtype=torch.complex64), torch.arange(6, dtype=torch.uint8)]
    for t in tensors:
        back = round_trip(t)
        assert back.dtype == t.dtype and back.shape == t.shape and torch.equal(back, t)
    assert round_trip((1, [2.5, None], {"a": "文字"}, True)) == (1, [2.5, None], {"a": "文字"}, True)
    layer = torch.nn.Conv2d(3, 4, (2, 3), stride=2, padding=1, dtype=torch.float64)
    back = round_trip(layer, layers=("Conv2d",))
    assert type(back) is torch.nn.Conv2d and (back.kernel_size, back.stride, back.padding) == ((2, 3), (2, 2), (1, 1))
    assert torch.equal(back.weight, layer.weight) and torch.equal(back.bias, layer.bias)
    assert round_trip(torch.nn.Conv2d(1, 1, 1, bias=False), layers=("Conv2d",)).bias is None
    linear = round_trip(torch.nn.Linear(3, 2), layers=("Linear",))
    assert type(linear) is torch.nn.Linear and linear.weight.shape == (2, 3)


MALFORMED = {
    "dtype": {"t": "tensor", "dtype": "object", "shape": [1], "blob": 0},
    "size": {"t": "tensor", "dtype": "float32", "shape": [3], "blob": 0},
    "shape": {"t": "tensor", "dtype": "float32", "shape": [-1], "blob": 0},
    "blob": {"t": "tensor", "dtype": "float32", "shape": [1], "blob": 7},
    "type": {"t": "pickle", "data": "gASVAAAA"},
    "plain dict": {"a": 1},
    "layer not allowed": {"t": "layer", "class": "Linear", "config": {}, "params": {}},
    "layer arguments": {"t": "layer", "class": "Conv2d", "config": {"device": "cuda", "in_channels": 1},
                        "params": {}},
    # an absurd padding would make the test run a layer that eats the machine's memory
    "absurd padding": {"t": "layer", "class": "Conv2d", "params": {},
                       "config": {"in_channels": 1, "out_channels": 1, "kernel_size": [1, 1], "padding": [10**7, 1]}},
}


@fast
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_values_are_refused(case):
    with pytest.raises(ProtocolError):
        decode(MALFORMED[case], [b"\0" * 4], torch, layers=("Conv2d",))


# --- The operator policy --------------------------------------------------------------------------

def _ops_of(fn, *args):
    from torch.utils._python_dispatch import TorchDispatchMode
    seen = set()

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.add(func)
            return func(*args, **(kwargs or {}))

    with Log():
        fn(*args)
    return seen


@fast
def test_every_operator_honest_answers_use_is_allowed():
    """The class's and the corpus's honest answers run only allowed operators (and convolutions
    are what the policy forbids, not what the allowlist misses)."""
    samples = sorted((ROOT / "samples" / "class").glob("*.py")) + [ROOT / "tests/hostile/samples/unusual_correct.py"]
    calls = {"corr2d": lambda X, K: (X[0], K[0, 0]), "corr2d_multi_in": lambda X, K: (X, K[0]),
             "corr2d_multi_in_out": lambda X, K: (X, K), "corr2d_multi_in_out_fast": lambda X, K: (X, K),
             "corr2d_multi_in_out_1x1": lambda X, K: (X, K[:, :, :1, :1].contiguous()),
             "conv2d_layer": lambda X, K: (K, torch.randn(2))}
    refused = set()
    for path in samples:
        namespace = {"torch": torch, "nn": torch.nn}
        for kind, gid, code in load_sections(path):
            if kind == "code":
                exec(code, namespace)
        for name, args in calls.items():
            if name in namespace and "uses_conv2d" not in path.name:
                try:
                    found = _ops_of(namespace[name], *args(torch.randn(3, 6, 7), torch.randn(2, 3, 2, 3)))
                except (NameError, NotImplementedError, KeyError):
                    continue
                refused |= {str(op) for op in found if ops.refusal(op)}
    assert not refused


@fast
def test_side_effects_and_custom_operators_are_refused():
    for op in (torch.ops.aten.from_file.default, torch.ops.aten.set_.source_Storage, torch.ops.aten._pin_memory.default,
               torch.ops.aten.share_memory_ if hasattr(torch.ops.aten, "share_memory_") else torch.ops.aten.set_.default,
               torch.ops.aten._foreach_add.List):
        assert ops.refusal(op), op
    assert ops.is_forbidden(torch.ops.aten.convolution.default, r"conv(olution|\d|_)")
    assert not ops.is_forbidden(torch.ops.aten.convolution.default, None)


@fast
def test_work_counts_logical_sizes():
    """An expanded view costs what it stands for: cheap in memory, not in work."""
    big = torch.zeros(1).expand(10**6, 10**5)
    assert ops.work(torch.ops.aten.sum.default, [big], [torch.zeros(())]) >= 10**11
    a, b = torch.zeros(30, 40), torch.zeros(40, 50)
    assert ops.work(torch.ops.aten.mm.default, [a, b], [torch.zeros(30, 50)]) >= 30 * 40 * 50
    # a convolution (allowed where the policy does not forbid it): a multiply-add per weight of a
    # filter for each output element, even when the input is an expanded view of one number
    X, K = torch.zeros(1).expand(1, 64, 1000, 1000), torch.zeros(128, 64, 3, 3)
    out = torch.empty(1, 128, 998, 998, device="meta")
    assert ops.work(torch.ops.aten.convolution.default, [X, K], [out]) >= 128 * 998 * 998 * 64 * 9


@fast
def test_numbers_from_outside_count_and_structure_does_not():
    full, mul, slice_ = torch.ops.aten.full.default, torch.ops.aten.mul.Tensor, torch.ops.aten.slice.Tensor
    x = torch.zeros(4, 4)
    assert ops.counted_numbers(full, [[2, 2], 3.14159], {}, bound=64) == [3.14159]
    assert ops.counted_numbers(mul, [x, 7.5], {}, bound=64) == [7.5]         # a wrapped number
    assert ops.counted_numbers(mul, [x, 7.5], {}, bound=64, known={7.5}) == []  # read out with .item()
    assert ops.counted_numbers(slice_, [x, 0, 1, 2**63 - 1, 1], {}, bound=64) == []  # to the end
    assert ops.counted_numbers(slice_, [x, 0, 1, 10**9, 1], {}, bound=64) == [10**9]
    assert ops.counted_numbers(full, [[2, 2], 56], {}, bound=64) == []         # a small integer is structure


# --- The replay: a recipe is hostile input --------------------------------------------------------

def replay(nodes, constants=(), inputs=(), blobs=(), forbidden=None):
    trace = {"nodes": nodes, "constants": list(constants), "inputs": len(inputs)}
    run = Replay(trace, list(blobs), list(inputs), torch.device("cpu"), torch, forbidden=forbidden)
    run.run()
    return run


def node(op, *args, out=(None,), **kwargs):
    return {"op": op, "args": {"t": "list", "items": list(args)}, "kwargs": kwargs, "out": list(out)}


def ref(v):
    return {"t": "ref", "v": v}


@fast
def test_replay_runs_a_recipe_on_trusted_tensors():
    X = torch.ones(2, 3)
    run = replay([node("aten.mm.default", ref(0), ref(1), out=[2]), node("aten.mul_.Scalar", ref(0), 0.0, out=[0])],
                 inputs=[X, torch.ones(3, 4)])
    assert torch.equal(run.value(ref(2)), torch.full((2, 4), 3.0))
    assert torch.equal(X, torch.zeros(2, 3))  # the in-place step reached the caller's tensor


@fast
def test_forged_recipes_are_refused(tmp_path):
    """What no student's function may make the grader do, whatever the child sends."""
    target = tmp_path / "written.py"
    blobs = []
    constant = encode(torch.zeros(100), blobs, torch)
    cases = [
        # files: torch.from_file(..., shared=True) maps a file writable
        (node("aten.from_file.default", str(target), True, 16, out=[0]), ProtocolError),
        (node("builtins.eval.default", "1"), ProtocolError),
        (node("aten.convolution.default", ref(0), ref(0), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, out=[1]),
         ForbiddenOperator),
        (node("aten.sum.default", ref(9), out=[1]), ProtocolError),
        (node("aten.ones.default", {"t": "list", "items": [2**36]}, out=[1]), TooMuchWork),
        (node("aten.neg.default", {"t": "const", "i": 0, "v": 1}, out=[2]), ConstantResult),
    ]
    for forged, error in cases:
        with pytest.raises(error):
            replay([forged], constants=[constant], inputs=[torch.ones(1, 1, 2, 2)], blobs=blobs,
                   forbidden=r"conv(olution|\d|_)")
    assert not target.exists()


@fast
def test_cheap_memory_huge_work_is_refused_before_it_runs():
    """An expand costs no memory; summing it would take minutes: refused from its shapes."""
    expand = node("aten.expand.default", ref(0), {"t": "list", "items": [10**5, 10**5]}, out=[1])
    total = node("aten.sum.default", ref(1), out=[2])
    with pytest.raises(TooMuchWork):
        replay([expand, total], inputs=[torch.ones(1, 1)])


@fast
def test_python_scalars_count_as_constants():
    """An answer computed elsewhere and written in number by number counts like a tensor constant."""
    nodes = [node("aten.new_zeros.default", ref(0), {"t": "list", "items": [70]}, out=[1])]
    for i in range(70):
        nodes += [node("aten.select.int", ref(1), 0, i, out=[2 + 2 * i]),
                  node("aten.fill_.Scalar", ref(2 + 2 * i), 0.1234 + i, out=[2 + 2 * i])]
    with pytest.raises(ConstantResult):
        replay(nodes, inputs=[torch.ones(3)])


@fast
def test_random_operators_draw_from_the_replays_own_generator():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    replay([node("aten.uniform_.default", ref(0), -1.0, 1.0, out=[0])], inputs=[torch.empty(5)])
    assert torch.equal(before, torch.get_rng_state())


# --- Rules that cannot be padded ------------------------------------------------------------------

def _windows(X, K):
    c_o, c_i, k_h, k_w = K.shape
    return torch.einsum("oiab,ihwab->ohw", K, X.unfold(1, k_h, 1).unfold(2, k_w, 1))


def _pixel_loop(X, K, pad_to=0):
    c_o, _, k_h, k_w = K.shape
    m_h, m_w = X.shape[1] - k_h + 1, X.shape[2] - k_w + 1
    Y = X.new_zeros((c_o, m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            Y[:, i, j] = (X[:, i:i + k_h, j:j + k_w] * K).sum(dim=(1, 2, 3))
    for _ in range(max(0, pad_to - 3 * m_h * m_w)):
        X.view(-1)  # padding: views cost nothing and count for nothing
    return Y


def _inputs(sizes, c_i=3, c_o=2, k=3):
    return [testkit.random_tensors(m, (c_i, m + k - 1, m + k - 1), (c_o, c_i, k, k), device="cpu") for m in sizes]


@fast
def test_a_pixel_loop_fails_however_it_is_padded():
    inputs = _inputs([4, 16, 40])
    testkit.assert_no_growth(_windows, inputs, cap=496, case="t", what="输出像素数")
    for pad in (0, 10_000):
        with pytest.raises(testkit.CheckFailure) as failure:
            testkit.assert_no_growth(lambda X, K: _pixel_loop(X, K, pad), inputs, cap=496, case="t", what="输出像素数")
        assert failure.value.category == "pixel_loop"


@fast
def test_one_matmul_means_one_product_of_the_whole_input():
    def one(X, K):
        return (K.reshape(K.shape[0], -1) @ X.reshape(X.shape[0], -1)).reshape(K.shape[0], *X.shape[1:])

    def per_channel(X, K):
        return torch.stack([(k.reshape(1, -1) @ X.reshape(X.shape[0], -1)).reshape(X.shape[1:]) for k in K])

    inputs = [testkit.random_tensors(n, (2 * n, 3 * n, 4), (3 * n, 2 * n, 1, 1), device="cpu") for n in (1, 3)]
    testkit.assert_one_matmul(one, inputs, cap=16, case="t")
    with pytest.raises(testkit.CheckFailure, match="矩阵乘法"):
        testkit.assert_one_matmul(per_channel, inputs, cap=16, case="t")


@fast
def test_every_timed_call_is_checked():
    """A function that recognises repeated arguments cannot return garbage fast."""
    X, K = testkit.random_tensors(1, (4, 20, 20), (4, 4, 3, 3), device="cpu")
    want = _windows(X, K)
    seen = []

    def memo(X, K):
        if seen:
            return torch.zeros_like(seen[0])
        seen.append(_windows(X, K))
        return seen[0]

    with pytest.raises(testkit.CheckFailure, match="数值"):
        testkit.assert_faster(memo, _pixel_loop, (X, K), 2, "t", check=lambda Y: testkit.assert_close(Y, want, "t"))


@fast
def test_speed_messages_say_how_many_times_slower_with_both_times():
    X, K = testkit.random_tensors(1, (2, 12, 12), (2, 2, 3, 3), device="cpu")
    with pytest.raises(testkit.CheckFailure) as failure:
        testkit.assert_faster(_pixel_loop, _windows, (X, K), 5, "t")
    message = str(failure.value)
    assert "倍" in message and "slower than the baseline" in message and message.count(" ms") == 2, message


# --- The verdicts: the one parser of what comes out ----------------------------------------------

@fast
def test_verdicts_are_checked_against_the_contract():
    test = CONTRACT.test("test_corr2d")
    good = {"grade_id": "test_corr2d",
            "parts": [{"name": p.name, "passed": p.name != "dtype", "message": "x" * 5000, "category": "dtype"}
                      for p in test.parts]}
    verdict = parse(good, test)
    assert verdict.score == test.points - 0.5 and len(verdict.failed[0].message) <= 1000
    for bad in ({**good, "grade_id": "test_conv_flops"}, {**good, "parts": good["parts"][:-1]},
                {**good, "parts": good["parts"] + good["parts"][:1]},
                {**good, "parts": [{**p, "passed": "yes"} for p in good["parts"]]}):
        with pytest.raises(VerdictError):
            parse(bad, test)
    # points and labels are the contract's, whatever the message says; unknown categories are errors
    forged = {**good, "parts": [{**p, "points": 100, "label": "<script>", "category": "<b>"} for p in good["parts"]]}
    verdict = parse(forged, test)
    assert verdict.max == test.points and all(p.label != "<script>" for p in verdict.parts)
    assert {p.category for p in verdict.failed} == {"error"}
    everything = verdicts_of([good], CONTRACT, "time limit")
    assert list(everything) == TESTS and everything["test_conv_flops"].score == 0
    assert everything["test_conv_flops"].message == "time limit"


# --- The verifier in its jail, end to end ---------------------------------------------------------

def need_bwrap():
    require(shutil.which("bwrap"), "bubblewrap (bwrap) is not installed")


def student_notebook(answers=(), own=()):
    """The source notebook with `answers` {grade_id: code} in and `own` cells after the imports."""
    nb = nbformat.read(SOURCE, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in dict(answers):
            cell.source = dict(answers)[gid]
    at = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == "imports")
    nb.cells[at + 1:at + 1] = [nbformat.v4.new_code_cell(code) for code in own]
    return nb


def run_verifier(nb, **settings):
    from grading.verify import verify_notebook
    need_bwrap()
    verdicts, error, log = verify_notebook(ROOT, ASSIGNMENT, nb, Grading(**settings))
    assert list(verdicts) == TESTS
    return verdicts


def passed(verdicts):
    return [gid for gid, v in verdicts.items() if v.passed]


@pytest.mark.timeout(300)
def test_correct_answers_pass_every_test():
    assert passed(run_verifier(student_notebook())) == TESTS


WRITES_A_FILE = """\
import os
def corr2d(X, K):
    # The forged reply of a child: a recipe that maps a file of the course writable and fills it.
    import json, struct
    path = {path!r}
    body = {{"ok": True, "device": "cpu", "blocked": [], "result": {{"t": "ref", "v": 2}},
            "trace": {{"inputs": 2, "constants": [], "nodes": [
                {{"op": "aten.from_file.default", "args": {{"t": "list", "items": [path, True, 64]}},
                 "kwargs": {{}}, "out": [2]}}]}}}}
    head = json.dumps({{**body, "blobs": []}}).encode()
    os.write(int(__import__("sys").argv[2]), struct.pack(">I", len(head)) + head)
    os._exit(0)
"""


@pytest.mark.timeout(300)
def test_a_forged_recipe_writes_nothing_and_scores_nothing(tmp_path):
    target = ROOT / "grading" / "pwned_by_recipe.py"
    assert not target.exists()
    verdicts = run_verifier(student_notebook({"corr2d": WRITES_A_FILE.format(path=str(target))}))
    assert not target.exists()
    assert verdicts["test_corr2d"].score == 0
    assert verdicts["test_corr2d_multi_in"].passed  # graded with the instructor's corr2d


HOSTILE_CHILD = {
    "sleeps": ("import time\n", "    while True:\n        time.sleep(1)\n", "没有结束"),
    "exits": ("import os\n", "    os._exit(0)\n", "意外退出"),
    "forges replies": ("import os\n", "    for fd in range(3, 64):\n        try:\n"
                       "            os.write(fd, b'\\xff' * 64)\n        except OSError:\n            pass\n"
                       "    while True:\n        pass\n", "不合规范"),
    "floods stdout": ("", "    while True:\n        print('x' * 100_000)\n", "没有结束"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", HOSTILE_CHILD)
def test_a_hostile_child_fails_its_test_clearly_and_no_other(kind):
    head, body, expected = HOSTILE_CHILD[kind]
    fast_answer = f"{head}def corr2d_multi_in_out_fast(X, K):\n{body}"
    verdicts = run_verifier(student_notebook({"corr2d_multi_in_out_fast": fast_answer}), verify_call_seconds=5)
    assert passed(verdicts) == TESTS[:-1]
    assert expected in verdicts["test_corr2d_multi_in_out_fast"].message


@pytest.mark.timeout(300)
def test_broken_cells_fail_only_what_they_define():
    nb = student_notebook({"conv2d_layer": "def conv2d_layer(K, b)\n    return None\n"},
                          own=["while True:\n    pass\n", "import sys\nsys.exit('bye')\n"])
    verdicts = run_verifier(nb, verify_call_seconds=5)
    assert passed(verdicts) == [t for t in TESTS if t != "test_conv2d_layer"]
    message = verdicts["test_conv2d_layer"].message
    assert "NameError" in message and "SyntaxError" in message, message


@pytest.mark.timeout(300)
def test_the_verifier_is_killed_at_its_deadline():
    """A verification that would run on is stopped from outside: what is missing scores 0, with the reason."""
    slow = "import time\ndef corr2d(X, K):\n    time.sleep(20)\n"
    verdicts = run_verifier(student_notebook({"corr2d": slow}), verify_seconds=8, verify_call_seconds=30)
    assert not verdicts["test_corr2d"].passed
    assert all("时间上限" in v.message or "没有回应" in v.message or "总时间" in v.message
               for v in verdicts.values() if not v.passed)


@pytest.mark.timeout(300)
def test_one_mistake_costs_once():
    """corr2d's float32 is charged in test_corr2d only: the later functions get the instructor's corr2d."""
    book = ("def corr2d(X, K):\n    h, w = K.shape\n    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))\n"
            "    for i in range(Y.shape[0]):\n        for j in range(Y.shape[1]):\n"
            "            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()\n    return Y\n")
    verdicts = run_verifier(student_notebook({"corr2d": book}))
    assert [p.name for p in verdicts["test_corr2d"].failed] == ["dtype", "shapes"]
    assert verdicts["test_corr2d_multi_in"].passed and verdicts["test_corr2d_multi_in_out"].passed


CONVOLUTIONS = {
    # An alias captured when the cell ran.
    "corr2d": """\
from torch.nn.functional import conv2d as _correlate
def corr2d(X, K):
    return _correlate(X[None, None], K[None, None])[0, 0]
""",
    # The operator itself, by a computed name.
    "corr2d_multi_in": """\
import torch
_op = getattr(torch.ops.aten, "con" + "volution")
def corr2d_multi_in(X, K):
    return _op(X[None], K[None], None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)[0, 0]
""",
    # A module, called under inference_mode.
    "corr2d_multi_in_out": """\
import torch
def corr2d_multi_in_out(X, K):
    layer = torch.nn.Conv2d(K.shape[1], K.shape[0], K.shape[2:], bias=False, dtype=X.dtype)
    layer.weight.data = K.clone()
    with torch.inference_mode():
        return layer(X[None])[0].clone()
""",
    # A convolution whose failure is swallowed, with a wrong fallback.
    "corr2d_multi_in_out_fast": """\
import torch.nn.functional as F
def corr2d_multi_in_out_fast(X, K):
    try:
        return F.conv2d(X[None], K)[0]
    except Exception:
        return X.new_zeros((K.shape[0], X.shape[1] - K.shape[2] + 1, X.shape[2] - K.shape[3] + 1))
""",
}


@pytest.mark.timeout(300)
def test_convolution_under_any_name_is_blocked():
    verdicts = run_verifier(student_notebook(CONVOLUTIONS))
    assert passed(verdicts) == ["test_corr2d_multi_in_out_1x1", "test_conv_flops", "test_conv2d_layer"]
    for name in CONVOLUTIONS:
        values = next(p for p in verdicts[f"test_{name}"].parts if p.name == "values")
        assert values.category == "forbidden_op" and "卷积算子" in values.message, values.message


@pytest.mark.timeout(300)
def test_without_a_sandbox_verification_runs_only_when_allowed(monkeypatch):
    from grading.jail import sandbox
    from grading.verify import verify_notebook
    monkeypatch.setattr(sandbox, "_STATUS", (False, "no bubblewrap in this test"))
    with pytest.raises(RuntimeError, match="REFUSING TO GRADE"):
        verify_notebook(ROOT, ASSIGNMENT, student_notebook(), Grading())
    verdicts, error, _ = verify_notebook(ROOT, ASSIGNMENT, student_notebook(), Grading(allow_unsandboxed=True))
    assert error is None and passed(verdicts) == TESTS


@pytest.mark.timeout(300)
def test_a_child_that_cannot_start_says_why(monkeypatch):
    """A broken install (here: the child's module cannot be imported) fails every test with its last words."""
    from grading.jail import host
    boot = host._boot
    monkeypatch.setattr(host, "_boot", lambda role, engine: boot(role, engine).replace(
        "from grading.jail import child", "from grading.jail import missing_child_module"))
    verdicts = run_verifier(student_notebook(), warm_jails=False)
    assert not any(v.passed for v in verdicts.values())
    assert all("missing_child_module" in v.message for v in verdicts.values()), verdicts["test_corr2d"].message


@fast
def test_the_child_runs_answers_own_cells_and_the_instructors_imports_only():
    from grading.verify import plan_for, read_source
    src = read_source(nbformat.read(SOURCE, as_version=4))
    nb = student_notebook(own=["x = 1"])
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ("imports", "test_corr2d"):
            cell.source = "import os; os.system('echo tampered')"
    plan = plan_for(CONTRACT, src, nb, Grading())
    labels = [c["label"] for c in plan["cells"]]
    assert labels[:2] == ["<cell imports>", "<your cell 3>"] and not any("test" in label for label in labels)
    assert plan["cells"][0]["source"] == src.imports["imports"] and plan["cells"][0]["instructor"]
    assert len(plan["cells"]) == 2 + len(src.solution_ids)
    # one mistake costs once: each test gets the instructor's versions of the EARLIER answers only
    refs = {t["grade_id"]: t["references"].get("names", []) for t in plan["tests"]}
    assert refs["test_corr2d"] == [] and refs["test_corr2d_multi_in"] == ["corr2d"]
    assert refs["test_corr2d_multi_in_out"] == ["corr2d", "corr2d_multi_in"]
    assert "corr2d_multi_in_out_fast" not in refs["test_corr2d_multi_in_out_fast"]


@fast
def test_replay_keeps_the_childs_devices_only_when_it_computed_on_the_tests_device():
    """A child with the GPU records cpu/cuda as they were (torch.zeros without device= is on the CPU
    there too, and fails the device check); a child without it computed everything on the CPU."""
    empty = {"nodes": [], "constants": [], "inputs": 0}
    gpu = torch.device("cuda:0")  # a device object only: no GPU needed
    run = Replay(empty, [], [], gpu, torch, keep_devices=True)
    assert run._device("cpu") == torch.device("cpu") and run._device("cuda:0") == gpu
    with pytest.raises(ProtocolError):
        run._device("cuda:1")
    run.keep_devices = False
    assert run._device("cpu") == gpu

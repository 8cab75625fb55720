"""Out-of-kernel verification (grading/verify.py and grading/verify_child.py).

Each test cell of the instructor's notebook runs in the test process with the answer
functions replaced by proxies to a sandboxed child that ran only the student's cells.
Student notebooks here are the instructor's source notebook with some answers replaced.
"""
import copy
import shutil

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from conftest import ASSIGNMENT, ROOT, require
from grading import sandbox, verify
from grading.verify_child import ProtocolError, decode, encode

pytestmark = pytest.mark.timeout(600)
SOURCE = ROOT / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
TESTS = ["test_corr2d", "test_corr2d_multi_in", "test_corr2d_multi_in_out", "test_corr2d_multi_in_out_1x1",
         "test_conv_flops", "test_conv2d_layer", "test_corr2d_multi_in_out_fast"]


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


def run_verifier(nb, sandboxed=True):
    if sandboxed:
        need_bwrap()
    verdicts = verify.verify_notebook(ROOT, ASSIGNMENT, nb)
    assert list(verdicts) == TESTS
    return verdicts


def passed(verdicts):
    return [gid for gid, v in verdicts.items() if v.passed]


WRONG_CORR2D = """\
def corr2d(X, K):
    return X.new_zeros((X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1))
"""


def test_correct_answers_pass_every_test():
    verdicts = run_verifier(student_notebook())
    assert passed(verdicts) == TESTS, {g: v.message for g, v in verdicts.items()}


# Everything a notebook can do to the grading machinery in its own kernel.
TAMPER = """\
import checks, torch
checks.assert_close = lambda *args, **kwargs: None
checks.call_checked = lambda fn, *args, case, **kwargs: fn(*args)
torch.allclose = torch.equal = lambda *args, **kwargs: True
# From now on IPython wraps every cell in `try: ... except BaseException: pass`.
get_ipython().input_transformers_post.append(
    lambda lines: ["try:\\n"] + ["    " + line for line in lines] + ["\\nexcept BaseException:\\n    pass\\n"])
"""


def test_tampering_fools_the_kernel_but_not_the_verifier(tmp_path):
    nb = student_notebook({"corr2d": WRONG_CORR2D}, own=[TAMPER])
    # In a kernel (plain here: this is about the notebook, not the jail) every test "passes".
    shutil.copy(SOURCE.with_name("checks.py"), tmp_path)
    executed = NotebookClient(copy.deepcopy(nb), timeout=300, kernel_name="python3",
                              resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [c.metadata.nbgrader["grade_id"] for c in executed.cells
              if c.cell_type == "code" and any(o.output_type == "error" for o in c.get("outputs", []))]
    assert errors == []
    verdicts = run_verifier(nb)
    # The wrong corr2d fails, and so does everything built on it; the rest is untouched.
    assert passed(verdicts) == ["test_corr2d_multi_in_out_1x1", "test_conv_flops", "test_conv2d_layer",
                                "test_corr2d_multi_in_out_fast"]
    assert "数值 (values) 不对" in verdicts["test_corr2d"].message


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


def test_convolution_under_any_name_is_blocked():
    verdicts = run_verifier(student_notebook(CONVOLUTIONS))
    assert passed(verdicts) == ["test_corr2d_multi_in_out_1x1", "test_conv_flops", "test_conv2d_layer"]
    for name in CONVOLUTIONS:
        message = verdicts[f"test_{name}"].message
        assert verdicts[f"test_{name}"].category == "conv_used" and "卷积算子" in message, message


# What the corpus of hostile submissions showed: the child's own reports can be forged,
# so nothing it says about operators or its inputs may count.
FORGED_REPORTS = {
    # Right values, a loop over output channels, and checks' operator log made to say "mm".
    "corr2d_multi_in_out_1x1": """\
import checks, torch
def _one_mm(self, func, types, args=(), kwargs=None):
    self.ops[:] = ["mm"]
    return func(*args, **(kwargs or {}))
checks._OpLog.__torch_dispatch__ = _one_mm
def corr2d_multi_in_out_1x1(X, K):
    return torch.stack([K[o, :, 0, 0] @ X.reshape(X.shape[0], -1) for o in range(K.shape[0])]).reshape(
        K.shape[0], *X.shape[1:])
""",
    # Right values, the input wiped afterwards, and torch.equal made blind to it.
    "corr2d_multi_in": """\
import torch
torch.equal = lambda a, b: True
def corr2d_multi_in(X, K):
    Y = sum(corr2d(x, k) for x, k in zip(X, K))
    X.zero_()
    return Y
""",
    # Right values computed in numpy, plus a matrix product for show.
    "corr2d_multi_in_out_fast": """\
import numpy as np, torch
from numpy.lib.stride_tricks import sliding_window_view
def corr2d_multi_in_out_fast(X, K):
    windows = sliding_window_view(X.numpy().copy(), K.shape[2:], axis=(1, 2))
    Y = torch.from_numpy(np.einsum("oikl,ixykl->oxy", K.numpy(), windows).astype(X.numpy().dtype))
    return Y + (X[:1, :1, :1] @ X[:1, :1, :1]) * 0
""",
}


def test_forged_reports_from_the_child_count_for_nothing():
    verdicts = run_verifier(student_notebook(FORGED_REPORTS))
    # corr2d_multi_in_out is built on the input-wiping corr2d_multi_in: it fails too.
    assert passed(verdicts) == ["test_corr2d", "test_conv_flops", "test_conv2d_layer"]
    assert "运算次数" in verdicts["test_corr2d_multi_in_out_1x1"].message  # the real count, not "mm"
    assert "数值 (values) 不对" in verdicts["test_corr2d_multi_in"].message  # the book example's X was wiped
    assert "不是由参数算出来的数" in verdicts["test_corr2d_multi_in_out_fast"].message


INPLACE_AND_LOOPS = {
    "corr2d": """\
def corr2d(X, K):
    k_h, k_w = K.shape
    Y = X.new_zeros((X.shape[0] - k_h + 1, X.shape[1] - k_w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + k_h, j:j + k_w] * K).sum()
    X.mul_(1.5)  # the right answer, but the input is changed
    return Y
""",
    # Right values, but one product per output channel: no single matrix product.
    "corr2d_multi_in_out_1x1": """\
import torch
def corr2d_multi_in_out_1x1(X, K):
    return torch.stack([(k[:, :, None] * X).sum(0) for k in K[:, :, 0]])
""",
}


def test_inplace_changes_and_operator_counts_come_back_from_the_child():
    verdicts = run_verifier(student_notebook(INPLACE_AND_LOOPS))
    assert "修改了输入" in verdicts["test_corr2d"].message
    assert not verdicts["test_corr2d_multi_in_out_1x1"].passed
    assert "矩阵乘法" in verdicts["test_corr2d_multi_in_out_1x1"].message
    assert {"test_conv_flops", "test_conv2d_layer", "test_corr2d_multi_in_out_fast"} <= set(passed(verdicts))


HOSTILE_CHILD = {
    "sleeps": ("import time\n", "    while True:\n        time.sleep(1)\n", "没有结束"),
    "exits": ("import os\n", "    os._exit(0)\n", "意外退出"),
    "forges replies": ("import os\n", "    for fd in range(3, 64):\n        try:\n"
                       "            os.write(fd, b'\\xff' * 64)\n        except OSError:\n            pass\n"
                       "    while True:\n        pass\n", "不合规范"),
    "floods stdout": ("", "    while True:\n        print('x' * 100_000)\n", "没有结束"),
}


@pytest.mark.parametrize("kind", HOSTILE_CHILD)
def test_a_hostile_child_fails_its_test_clearly_and_no_other(kind, monkeypatch):
    monkeypatch.setattr(verify, "CALL_TIMEOUT", 5)
    head, body, expected = HOSTILE_CHILD[kind]
    fast = f"{head}def corr2d_multi_in_out_fast(X, K):\n{body}"
    verdicts = run_verifier(student_notebook({"corr2d_multi_in_out_fast": fast}))
    assert passed(verdicts) == TESTS[:-1]
    assert expected in verdicts["test_corr2d_multi_in_out_fast"].message


def test_broken_cells_fail_only_what_they_define(monkeypatch):
    monkeypatch.setattr(verify, "CALL_TIMEOUT", 5)  # also each cell's time limit in the child
    nb = student_notebook({"conv2d_layer": "def conv2d_layer(K, b)\n    return None\n"},
                          own=["while True:\n    pass\n", "import sys\nsys.exit('bye')\n"])
    verdicts = run_verifier(nb)
    assert passed(verdicts) == [t for t in TESTS if t != "test_conv2d_layer"]
    message = verdicts["test_conv2d_layer"].message
    assert "NameError" in message and "SyntaxError" in message, message


def test_refuses_without_a_sandbox_unless_allowed(monkeypatch):
    monkeypatch.setattr(sandbox, "_STATUS", (False, "no bubblewrap in this test"))
    monkeypatch.delenv(sandbox.ALLOW_ENV, raising=False)
    with pytest.raises(RuntimeError, match="REFUSING TO GRADE"):
        verify.verify_notebook(ROOT, ASSIGNMENT, student_notebook())
    monkeypatch.setenv(sandbox.ALLOW_ENV, "1")
    assert passed(run_verifier(student_notebook({"corr2d": WRONG_CORR2D}), sandboxed=False)) == [
        "test_corr2d_multi_in_out_1x1", "test_conv_flops", "test_conv2d_layer", "test_corr2d_multi_in_out_fast"]


# --- The protocol and the plan, without a child -----------------------------------------------------

def round_trip(value):
    blobs = []
    obj = encode(value, blobs, torch)
    return decode(obj, blobs, torch)


def test_values_survive_the_round_trip():
    tensors = [torch.randn(2, 3, dtype=torch.float64), torch.randn(4).to(torch.bfloat16), torch.tensor(3.5),
               torch.zeros(0, 5), torch.arange(12).reshape(3, 4).t(), torch.tensor([True, False]),
               torch.randn(2, dtype=torch.complex64), torch.arange(6, dtype=torch.uint8)]
    for t in tensors:
        back = round_trip(t)
        assert back.dtype == t.dtype and back.shape == t.shape and torch.equal(back, t)
    assert round_trip((1, [2.5, None], {"a": "文字"}, True)) == (1, [2.5, None], {"a": "文字"}, True)
    layer = torch.nn.Conv2d(3, 4, (2, 3), stride=2, padding=1, dtype=torch.float64)
    back = round_trip(layer)
    assert type(back) is torch.nn.Conv2d and (back.kernel_size, back.stride, back.padding) == ((2, 3), (2, 2), (1, 1))
    assert torch.equal(back.weight, layer.weight) and torch.equal(back.bias, layer.bias)
    assert round_trip(torch.nn.Conv2d(1, 1, 1, bias=False)).bias is None


MALFORMED = {
    "dtype": {"t": "tensor", "dtype": "object", "shape": [1], "blob": 0},
    "size": {"t": "tensor", "dtype": "float32", "shape": [3], "blob": 0},
    "shape": {"t": "tensor", "dtype": "float32", "shape": [-1], "blob": 0},
    "blob": {"t": "tensor", "dtype": "float32", "shape": [1], "blob": 7},
    "type": {"t": "pickle", "data": "gASVAAAA"},
    "plain dict": {"a": 1},
    "deep": {"t": "list", "items": [{"t": "list", "items": []}]},
    "conv2d arguments": {"t": "conv2d", "config": {"t": "dict", "items": {"device": "cuda", "in_channels": 1}},
                         "weight": {"t": "tensor", "dtype": "float32", "shape": [1], "blob": 0}, "bias": None},
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_replies_are_rejected(case, monkeypatch):
    obj = MALFORMED[case]
    if case == "deep":
        monkeypatch.setattr("grading.verify_child.MAX_DEPTH", 0)
    with pytest.raises(ProtocolError):
        decode(obj, [b"\0" * 4], torch)


def test_plan_runs_answers_own_cells_and_the_instructors_imports_only():
    plan = verify.plan_from(nbformat.read(SOURCE, as_version=4))
    assert [test[0] for test in plan.tests] == TESTS
    assert {"corr2d", "conv_flops", "train_hours", "conv2d_layer"} <= set(plan.answers)
    nb = student_notebook(own=["x = 1"])
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ("imports", "test_corr2d"):
            cell.source = "import os; os.system('echo tampered')"
    cells = verify.student_cells(nb, plan)
    labels = [c["label"] for c in cells]
    assert labels[:2] == ["<cell imports>", "<your cell 3>"] and not any("test" in label for label in labels)
    assert cells[0]["source"] == plan.imports["imports"]
    assert len(cells) == 2 + len(plan.solution_ids)


def test_a_child_that_cannot_start_says_why(monkeypatch):
    need_bwrap()
    monkeypatch.setattr(verify, "CHILD", ROOT / "grading" / "missing.py")  # as if the install were broken
    verdicts = verify.verify_notebook(ROOT, ASSIGNMENT, student_notebook())
    assert not any(v.passed for v in verdicts.values())
    assert all("意外退出" in v.message and "missing.py" in v.message for v in verdicts.values())


def replay(nodes, constants=(), inputs=(), blobs=()):
    trace = {"nodes": nodes, "constants": list(constants), "inputs": len(inputs)}
    run = verify.Replay(trace, list(blobs), list(inputs), torch.device("cpu"), torch)
    run.run()
    return run


def test_replay_runs_a_recipe_on_trusted_tensors():
    X = torch.ones(2, 3)
    refs = {"t": "list", "items": [{"t": "ref", "v": 0}, {"t": "ref", "v": 1}]}
    run = replay([{"op": "aten.mm.default", "args": refs, "kwargs": {}, "out": [2]},
                  {"op": "aten.mul_.Scalar", "args": {"t": "list", "items": [{"t": "ref", "v": 0}, 0.0]},
                   "kwargs": {}, "out": [0]}], inputs=[X, torch.ones(3, 4)])
    assert torch.equal(run.value({"t": "ref", "v": 2}), torch.full((2, 4), 3.0))
    assert torch.equal(X, torch.zeros(2, 3))  # the in-place step reached the caller's tensor


FORGED = {
    "not aten": ({"op": "builtins.eval.default", "args": {"t": "list", "items": ["1"]}, "kwargs": {}, "out": [None]},
                 ProtocolError),
    "huge": ({"op": "aten.ones.default", "args": {"t": "list", "items": [{"t": "list", "items": [2**36]}]},
              "kwargs": {}, "out": [0]}, MemoryError),
    "unknown value": ({"op": "aten.neg.default", "args": {"t": "list", "items": [{"t": "ref", "v": 9}]}, "kwargs": {},
                       "out": [0]}, ProtocolError),
    "constant answer": ({"op": "aten.neg.default", "args": {"t": "list", "items": [{"t": "const", "i": 0, "v": 0}]},
                         "kwargs": {}, "out": [1]}, verify.ConstantResult),
}


@pytest.mark.parametrize("case", FORGED)
def test_replay_refuses_forged_recipes(case):
    node, error = FORGED[case]
    blobs = []
    constant = encode(torch.zeros(100), blobs, torch)  # more numbers than a function may bring in
    with pytest.raises(error):
        replay([node], constants=[constant], blobs=blobs)


def test_replay_keeps_the_childs_devices_only_when_it_computed_on_the_tests_device():
    """A child with the GPU records cpu/cuda as they were (torch.zeros without device= is on the CPU
    there too, and fails the device check); a child without it computed everything on the CPU."""
    import torch
    empty = {"nodes": [], "constants": [], "inputs": 0}
    gpu = torch.device("cuda:0")  # a device object only: no GPU needed
    replay = verify.Replay(empty, [], [], gpu, torch, keep_devices=True)
    assert replay._device("cpu") == torch.device("cpu") and replay._device("cuda:0") == gpu
    with pytest.raises(ProtocolError):
        replay._device("cuda:1")
    replay.keep_devices = False
    assert replay._device("cpu") == gpu

"""The assignment notebook source/channels/channels.ipynb, its checks.py and policy.py.

- the grade ids, points and cell layout follow the contract in the README; the bonus is
  extra credit (0 nbgrader points, its own points on top);
- graded by a plain `nbgrader autograde`, the solution scores every point (and the extra
  credit), the release scores nothing, the book's corr2d loses its own dtype and shape parts;
- each test cell, run on its own with only the answer functions in scope (as in the
  student's notebook), passes for the solution and fails for a typical wrong answer with a
  Chinese message naming the case; the book's code fails a VISIBLE test on the dtype;
- checks.call_checked catches every way to reach a convolution (policy.py), and only those.
"""
import json
import re
import sys

import pytest

from conftest import ASSIGNMENT, ROOT, nbgrader

SOURCE_DIR = ROOT / "source" / ASSIGNMENT
NOTEBOOK = SOURCE_DIR / f"{ASSIGNMENT}.ipynb"

#: The contract: autograded test cells and their points, the manual answer, the answer functions.
TEST_POINTS = {
    "test_corr2d": 3, "test_corr2d_multi_in": 3, "test_corr2d_multi_in_out": 3,
    "test_corr2d_multi_in_out_1x1": 3, "test_conv_flops": 2, "test_conv2d_layer": 3,
    "test_corr2d_multi_in_out_fast": 0,  # extra credit: 0 in nbgrader, EXTRA on top
}
EXTRA = {"test_corr2d_multi_in_out_fast": 2}
MANUAL_POINTS = {"written_1x1": 3}
FUNCTIONS = {  # solution cell grade_id -> the functions it defines
    "corr2d": ["corr2d"], "corr2d_multi_in": ["corr2d_multi_in"],
    "corr2d_multi_in_out": ["corr2d_multi_in_out"], "corr2d_multi_in_out_1x1": ["corr2d_multi_in_out_1x1"],
    "conv_flops": ["conv_flops", "train_hours"], "conv2d_layer": ["conv2d_layer"],
    "corr2d_multi_in_out_fast": ["corr2d_multi_in_out_fast"],
}
AUTO_TOTAL = sum(TEST_POINTS.values())


def load_cells():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return nb["cells"]


def by_grade_id():
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in load_cells()}


# --- layout ---------------------------------------------------------------------------------

@pytest.mark.fast
def test_every_cell_has_nbgrader_metadata_and_points_follow_the_contract():
    cells = load_cells()
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in cells]
    assert all(ids), "every cell of the source notebook needs an nbgrader grade_id (instructions: locked)"
    assert len(ids) == len(set(ids)), f"duplicate grade ids: {ids}"
    points = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"].get("points")
              for c in cells if c["metadata"]["nbgrader"]["grade"]}
    assert points == {**TEST_POINTS, **MANUAL_POINTS}
    for cell in cells:
        meta = cell["metadata"]["nbgrader"]
        assert meta["schema_version"] == 3
        kind = (meta["solution"], meta["grade"], meta["locked"])
        if meta["grade_id"] in TEST_POINTS:
            assert cell["cell_type"] == "code" and kind == (False, True, True), meta
        elif meta["grade_id"] in MANUAL_POINTS:
            assert cell["cell_type"] == "markdown" and kind == (True, True, False), meta
        elif meta["grade_id"] in FUNCTIONS:
            assert cell["cell_type"] == "code" and kind == (True, False, False), meta
        else:
            assert kind == (False, False, True), f"instruction cell {meta['grade_id']} must be locked"


@pytest.mark.fast
def test_each_answer_is_followed_by_its_test_cell_with_a_docstring():
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in load_cells()]
    source = by_grade_id()
    for answer in FUNCTIONS:
        test_id = f"test_{answer}"
        assert ids[ids.index(answer) + 1] == test_id, f"{test_id} must come right after {answer}"
        first = source[test_id].splitlines()[0]
        assert re.fullmatch(r'""".+"""', first), f"{test_id} must start with a one-line docstring"
        assert source[test_id].count("### BEGIN HIDDEN TESTS") == 1, test_id
        assert source[test_id].rstrip().endswith("### END HIDDEN TESTS"), test_id
        for name in FUNCTIONS[answer]:
            assert re.search(rf"^def {name}\(", source[answer], re.M), f"{answer} must define {name}"


@pytest.mark.fast
def test_headings_show_the_points_and_the_total():
    source = by_grade_id()
    assert "总分 20 分" in source["intro"]
    assert "自动评分 (autograded) 17 分" in source["intro"] and "不做也能拿满 20 分" in source["intro"]
    for section, points in [("sec_corr2d", "3"), ("sec_multi_in", "3"), ("sec_multi_in_out", "3"), ("sec_1x1", "3"),
                            ("sec_written_1x1", "3"), ("sec_flops", "2"), ("sec_layer", "3"), ("sec_fast", "+2")]:
        assert f"（{points} 分" in source[section].splitlines()[0], section


@pytest.mark.fast
def test_graded_notebook_does_not_import_d2l():
    assert "d2l import" not in by_grade_id()["imports"]
    for cell in load_cells():
        assert "import d2l" not in "".join(cell["source"]) and "from d2l" not in "".join(cell["source"])


# --- grading through nbgrader -----------------------------------------------------------------

BOOK_CORR2D = '''def corr2d(X, K):
    """The book's version: torch.zeros makes float32 on the CPU whatever X is."""
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y
'''


def submit(course, student, notebook):
    dest = course / "submitted" / student / ASSIGNMENT
    dest.mkdir(parents=True)
    (dest / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(notebook, ensure_ascii=False), encoding="utf-8")


def test_autograde_solution_full_release_zero_book_corr2d_loses_its_own_parts_once(course):
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    source = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    release = json.loads((course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text(encoding="utf-8"))
    book = json.loads(json.dumps(source))
    for cell in book["cells"]:
        if cell["metadata"]["nbgrader"]["grade_id"] == "corr2d":
            cell["source"] = BOOK_CORR2D
    submit(course, "solution", source)
    submit(course, "untouched", release)
    submit(course, "book", book)
    nbgrader(course, "autograde", ASSIGNMENT)

    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        def scores(student):  # extra credit included
            sub = gb.find_submission(ASSIGNMENT, student)
            return {g.name: g.score for nb in sub.notebooks for g in nb.grades if g.name in TEST_POINTS}
        solution, untouched, book_scores = (scores(s) for s in ("solution", "untouched", "book"))
        top = gb.find_assignment(ASSIGNMENT).max_score
    assert solution == {**TEST_POINTS, **EXTRA}, "the source notebook must score every autograded point"
    assert sum(solution.values()) == AUTO_TOTAL + sum(EXTRA.values()) and AUTO_TOTAL == 17 and top == 20
    assert untouched == dict.fromkeys(TEST_POINTS, 0), "the untouched release must score 0"
    # float32 out for float64 in, and no shape check: the dtype and shape parts of corr2d fail,
    # once: the functions built on it are graded with the instructor's corr2d.
    from expect import expected_scores
    assert book_scores == expected_scores({"test_corr2d:dtype", "test_corr2d:shapes"})

    # The feedback shows what scored: every part with ✓/✗ and its message, the score as the result.
    graded = json.loads((course / "autograded" / "book" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").read_text("utf-8"))
    test_cell = next(c for c in graded["cells"] if c["metadata"]["nbgrader"]["grade_id"] == "test_corr2d")
    shown = "".join(test_cell["outputs"][0]["data"]["text/plain"])
    assert "✗ float64" in shown and "✓ 书中例子" in shown and "✓ 不修改输入" in shown and "✗ 形状不对" in shown, shown
    assert "数据类型 (dtype) 不对：期望 torch.float64，得到 torch.float32" in shown
    assert "［用例 corr2d 书中例子，float64" in shown
    result = test_cell["outputs"][-1]
    assert result["output_type"] == "execute_result" and float("".join(result["data"]["text/plain"])) == \
        book_scores["test_corr2d"]
    assert "checks.py" not in json.dumps(test_cell["outputs"])  # no traceback, no helper frames


# --- each test cell on its own --------------------------------------------------------------

@pytest.fixture(scope="module")
def checks():
    sys.path.insert(0, str(SOURCE_DIR))
    write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # keep source/ free of __pycache__
    try:
        import checks
        yield checks
    finally:
        sys.path.remove(str(SOURCE_DIR))
        sys.dont_write_bytecode = write_bytecode


@pytest.fixture(scope="module")
def solution(checks):
    """The reference answer functions, defined as the notebook defines them."""
    source = by_grade_id()
    namespace = {}
    exec(source["imports"], namespace)
    for answer in FUNCTIONS:
        exec(source[answer], namespace)
    return {name: namespace[name] for names in FUNCTIONS.values() for name in names}


def run_test_cell(test_id, functions, visible_only=False):
    """Run a test cell with only the answer functions in scope (visible_only: as the student's notebook has it)."""
    source = by_grade_id()[test_id]
    if visible_only:
        source = source.split("### BEGIN HIDDEN TESTS")[0]
    exec(compile(source, test_id, "exec"), dict(functions))


@pytest.mark.fast
@pytest.mark.parametrize("test_id", TEST_POINTS)
def test_solution_passes_each_self_contained_test_cell(test_id, solution):
    run_test_cell(test_id, solution)


def wrong_answers(torch, solution):
    F = torch.nn.functional
    book = {"torch": torch}
    exec(BOOK_CORR2D, book)

    def corr2d_then_clears_X(X, K):  # right values, but the input is gone afterwards
        Y = solution["corr2d"](X, K)
        X.zero_()
        return Y

    def checked(fn):  # a wrong answer that does check its shapes: the failure is its own
        def answer(X, K):
            if X.dim() != K.dim() or any(k > x for x, k in zip(X.shape[-2:], K.shape[-2:])):
                raise ValueError("shape")
            return fn(X, K)
        return answer

    def conv2d_layer_without_bias(K, b):
        layer = torch.nn.Conv2d(K.shape[1], K.shape[0], tuple(K.shape[2:]), bias=False, dtype=K.dtype)
        with torch.no_grad():
            layer.weight.copy_(K)
        return layer

    def one_by_one(X, K):  # right values with the checks, but no matrix product
        if K.shape[1:] != (X.shape[0], 1, 1):
            raise ValueError("K is not (c_o, c_i, 1, 1)")
        return (K * X[None]).sum(dim=1)

    def fast_by_rows(X, K):  # a loop over output rows is still a loop over output pixels
        k_h, k_w = K.shape[2:]
        rows = [torch.tensordot(K, X[:, i:i + k_h].unfold(2, k_w, 1), dims=([1, 2, 3], [0, 1, 3]))
                for i in range(X.shape[1] - k_h + 1)]
        return torch.stack(rows, dim=1)

    # name: (test cell, replaced function, wrong version, words expected in the message)
    return {
        "book corr2d (float32 out)": ("test_corr2d", "corr2d", book["corr2d"], "数据类型 (dtype) 不对"),
        "corr2d via F.conv2d": ("test_corr2d", "corr2d",
                                checked(lambda X, K: F.conv2d(X[None, None], K[None, None])[0, 0]),
                                "卷积算子 (convolution operator) aten.convolution"),
        "corr2d changes X": ("test_corr2d", "corr2d", corr2d_then_clears_X, "修改了第 1 个参数（原地操作 in-place）"),
        "multi_in forgets to sum channels": ("test_corr2d_multi_in", "corr2d_multi_in",
                                             lambda X, K: solution["corr2d"](X[0], K[0]), "数值 (values) 不对"),
        "multi_in_out squeezes c_o": ("test_corr2d_multi_in_out", "corr2d_multi_in_out",
                                      lambda X, K: solution["corr2d_multi_in_out"](X, K).squeeze(0),
                                      "形状 (shape) 不对：期望 (1, 4, 4)，得到 (4, 4)"),
        "1x1 without matmul": ("test_corr2d_multi_in_out_1x1", "corr2d_multi_in_out_1x1",
                               one_by_one, "只做一次矩阵乘法 (matrix multiplication)，实际做了 0 次"),
        "conv_flops counts twice": ("test_conv_flops", "conv_flops", lambda *s: 2 * solution["conv_flops"](*s),
                                    "数值 (values) 不对：期望 1.024e+09，得到 2.048e+09"),
        "train_hours in seconds": ("test_conv_flops", "train_hours", lambda flop, tflops: flop / (tflops * 1e12),
                                   "数值 (values) 不对：期望 18.52，得到 66666.7"),
        "layer without bias": ("test_conv2d_layer", "conv2d_layer", conv2d_layer_without_bias, "没有 bias"),
        "fast loops over rows": ("test_corr2d_multi_in_out_fast", "corr2d_multi_in_out_fast", fast_by_rows,
                                 "Python 循环 (loop)"),
    }


WRONG = ["book corr2d (float32 out)", "corr2d via F.conv2d", "corr2d changes X", "multi_in forgets to sum channels",
         "multi_in_out squeezes c_o", "1x1 without matmul", "conv_flops counts twice", "train_hours in seconds",
         "layer without bias", "fast loops over rows"]


@pytest.mark.fast
@pytest.mark.parametrize("wrong", WRONG)
def test_typical_wrong_answer_fails_with_a_chinese_message(wrong, solution):
    import torch
    test_id, name, fn, words = wrong_answers(torch, solution)[wrong]
    with pytest.raises(AssertionError) as failure:
        run_test_cell(test_id, {**solution, name: fn})
    message = str(failure.value)
    assert words in message
    assert re.search(r"［用例 .+］$", message), f"the message must end with the case: {message}"
    assert message.count("\n") <= 1 and len(message) < 300, f"one or two short lines: {message}"


@pytest.mark.parametrize("wrong", ["book corr2d (float32 out)", "corr2d changes X", "1x1 without matmul",
                                   "layer without bias", "fast loops over rows"])
@pytest.mark.fast
def test_every_graded_rule_fails_a_visible_test(wrong, solution):
    """Hidden tests check more cases, never new rules: each rule has a visible test the student runs."""
    import torch
    test_id, name, fn, words = wrong_answers(torch, solution)[wrong]
    with pytest.raises(AssertionError) as failure:
        run_test_cell(test_id, {**solution, name: fn}, visible_only=True)
    assert words in str(failure.value)


@pytest.mark.fast
def test_the_books_code_fails_the_visible_dtype_test_and_says_what_to_change(solution):
    import torch
    book = {"torch": torch}
    exec(BOOK_CORR2D, book)
    with pytest.raises(AssertionError) as failure:
        run_test_cell("test_corr2d", {**solution, "corr2d": book["corr2d"]}, visible_only=True)
    assert "数据类型 (dtype) 不对" in str(failure.value) and "X.new_zeros" in str(failure.value)


# --- checks.py and the test-cell API ----------------------------------------------------------

@pytest.mark.fast
def test_call_checked_catches_every_route_to_a_convolution(checks):
    import torch
    import torch.nn.functional as F
    from torch.nn.functional import conv2d as imported_early  # an alias taken before the check starts
    X, K = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 2, 2)
    routes = {
        "F.conv2d": lambda X, K: F.conv2d(X, K),
        "torch.conv2d": lambda X, K: torch.conv2d(X, K),
        "nn.Conv2d": lambda X, K: torch.nn.Conv2d(2, 3, 2)(X),
        "alias": lambda X, K: imported_early(X, K),
        "aten": lambda X, K: torch.ops.aten.convolution(X, K, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
        "conv_transpose2d": lambda X, K: F.conv_transpose2d(X, K.transpose(0, 1)),
    }
    for route, fn in routes.items():
        with pytest.raises(AssertionError, match=r"卷积算子 \(convolution operator\) aten\.\w*conv"):
            checks.call_checked(fn, X, K, case=route)


@pytest.mark.fast
def test_the_convolution_rule_allows_matmul_unfold_and_views(checks):
    import testkit
    import torch
    import torch.nn.functional as F
    X, K = torch.randn(2, 6, 6), torch.randn(3, 2, 2, 2)

    def allowed(X, K):
        F.unfold(X[None], (2, 2))
        X.unfold(1, 2, 1).unfold(2, 2, 1)
        K.reshape(3, -1) @ torch.randn(8, 25)
        torch.einsum("oi,ihw->ohw", K[:, :, 0, 0], X)
        torch.tensordot(K, torch.randn(2, 2, 2, 4), dims=3)
        return torch.randn(3, 3).to(torch.float64)  # aten._to_copy: "to", not "conv"

    checks.call_checked(allowed, X, K, case="allowed")
    _, ops = testkit.record_ops(allowed, X, K)
    assert "im2col" in ops and "mm" in ops and not testkit.forbidden_ops(ops, checks.FORBIDDEN_OPS)


@pytest.mark.fast
def test_call_checked_returns_the_result_and_compares_inputs(checks):
    import torch
    X, K = torch.randn(4, 4), torch.randn(2, 2)
    assert torch.equal(checks.call_checked(lambda X, K: X + 0, X, K, case="ok"), X)
    with pytest.raises(AssertionError, match="修改了第 2 个参数"):
        checks.call_checked(lambda X, K: K.mul_(2), X, K, case="K changed")


@pytest.mark.fast
def test_assert_close_checks_type_shape_dtype_device_then_values(checks):
    import testkit
    import torch
    Y = torch.tensor([[56.0, 72.0], [104.0, 120.0]])
    testkit.assert_close(Y.clone(), Y, "same")
    testkit.assert_close(Y + 5e-5, Y, "within float32 tolerance")
    failures = {
        "函数返回了 None": None,
        "应返回张量 (torch.Tensor)，得到 list": Y.tolist(),
        "形状 (shape) 不对：期望 (2, 2)，得到 (3, 3)": torch.zeros(3, 3),
        "数据类型 (dtype) 不对：期望 torch.float32，得到 torch.float64": Y.double(),
        "位置 (1, 0)：期望 104，得到 101": Y - torch.tensor([[0.0, 0.0], [3.0, 0.0]]),
        "位置 (0, 1)：期望 72，得到 nan": Y * torch.tensor([[1.0, float("nan")], [1.0, 1.0]]),
    }
    for words, got in failures.items():
        with pytest.raises(AssertionError) as failure:
            testkit.assert_close(got, Y, "book")
        assert words in str(failure.value) and str(failure.value).endswith("［用例 book］")
    with pytest.raises(AssertionError, match="1/4 个元素超出容差"):
        testkit.assert_close(Y + torch.tensor([[0.0, 0.0], [0.0, 1e-3]]), Y, "exact", atol=0, rtol=0)


@pytest.mark.fast
def test_a_flipped_kernel_is_named(checks):
    import testkit
    X, K = checks.book_example(c_i=1)
    flipped = checks.reference_corr2d(X, K.flip(0, 1)).float()
    with pytest.raises(AssertionError, match="核被上下、左右翻转了"):
        testkit.assert_close(flipped, checks.BOOK_Y1, "flip", diagnose=checks.diagnose_corr2d(checks.reference_corr2d, X, K))


@pytest.mark.fast
def test_bonus_solution_is_much_faster_than_the_loop_baseline(checks, solution):
    """The timing check of the bonus question, on the reference answer (margin ~100x, asks 5x)."""
    import testkit
    X, K = testkit.random_tensors(120, (8, 50, 50), (8, 8, 3, 3))
    want = checks.expected(checks.reference_corr2d_multi_in_out, X, K)
    testkit.assert_faster(solution["corr2d_multi_in_out_fast"], checks.loop_corr2d_multi_in_out, (X, K), 5, "bonus",
                          check=lambda Y: testkit.assert_close(Y, want, "bonus"))


# --- the contract: points split into parts, read from the source notebook -----------------------

@pytest.mark.fast
def test_every_test_cell_splits_its_points_into_parts():
    from grading.contract import load_contract
    contract = load_contract(ROOT, ASSIGNMENT)  # raises ContractError if parts do not add up
    assert contract.max_scores == {**TEST_POINTS, **MANUAL_POINTS} and contract.max_total == 20
    assert contract.extra_credit == EXTRA
    for test in contract.tests:
        assert len(test.parts) >= 2, f"{test.grade_id}: partial credit needs parts"
        assert all(p.label and p.points > 0 for p in test.parts), test.grade_id


@pytest.mark.fast
def test_a_contract_whose_parts_do_not_add_up_is_refused():
    import nbformat
    from grading.contract import ContractError, parts_of
    cell = nbformat.v4.new_code_cell('with part("a", 1, "A"):\n    pass\nwith part("b", 1, "B"):\n    pass\n',
                                     metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "t",
                                                            "points": 3}})
    with pytest.raises(ContractError, match="add up to 2"):
        parts_of(cell)
    cell.metadata.nbgrader.points = 2
    assert [p.name for p in parts_of(cell)] == ["a", "b"]
    cell.source += 'with part("a", 2, "A"):\n    pass\n'
    with pytest.raises(ContractError, match="declared twice"):
        parts_of(cell)


@pytest.mark.fast
def test_the_policy_is_data_and_a_bad_one_is_refused(tmp_path):
    from grading.contract import ContractError, load_policy
    policy = load_policy(SOURCE_DIR)
    assert policy.forbidden_ops and policy.layers == ("Conv2d",) and policy.extra_credit == EXTRA
    assert policy.reference_earlier_answers and "dtype" in policy.hints
    assert load_policy(tmp_path).forbidden_ops is None  # no policy.py: plain nbgrader's rules
    for text, words in [("import os\n", "only NAME = literal"), ("FORBIDEN_OPS = 'x'\n", "unknown setting"),
                        ("FORBIDDEN_OPS = '('\n", "regular expression"), ("LAYERS = open('x')\n", "literal"),
                        ("EXTRA_CREDIT = {'t': -1}\n", "positive")]:
        (tmp_path / "policy.py").write_text(text)
        with pytest.raises(ContractError, match=words):
            load_policy(tmp_path)

"""The bundled sample class: each student's exact grade, and which test cells they lose.

The samples in samples/class/ are filled into the release notebook by grading/fill.py and
graded once as a batch (two workers), exactly as `make demo` does. The table below is the
specification: every total follows from the one mistake the student makes (see the
docstring of samples/class/<student>.py) and the hidden tests of source/channels/. The
feedback HTML and grades.csv of the demo are checked by tests/test_pipeline.py.
"""
import os
import re
import subprocess
import sys

import nbformat
import pytest

from conftest import ASSIGNMENT, ROOT, make_course, venv_env
from grading.fill import SampleError, fill_class, fill_notebook, load_sections, release_notebook

from expect import ALL, MAX_WITH_EXTRA, TESTS, T1, T2, T3, T4, T5, T7, expected_total, got_lost, normalise

#: student -> what the student loses: test cells (every part) or parts ("test_corr2d:dtype").
#: The points follow from the contract in the source notebook (tests/expect.py).
EXPECTED = {
    "ref_reference":  set(),
    "own_cells":      set(),                       # own cells (notes, a helper, an experiment) are kept
    "loop_fast":      {f"{T7}:no_loop", f"{T7}:speed"},  # per-pixel loop: right values, ops grow, slow
    # (m_h, m_w, c_o) instead of (c_o, m_h, m_w); the shape check passes through the reference corr2d_multi_in
    "stack_axis":     {f"{T3}:values", f"{T3}:dtype", f"{T3}:rules"},
    # reshape(c_i, c_o).T is not the (c_o, c_i) matrix: every part that needs the values
    "transposed_1x1": {f"{T4}:values", f"{T4}:dtype", f"{T4}:rules", f"{T4}:matmul"},
    "inplace_kernel": {f"{T4}:rules"},             # K.squeeze_() changes the caller's kernel; values are right
    # one mistake costs once: the later questions are graded with the instructor's earlier functions
    "mean_channels":  {f"{T2}:values", f"{T2}:dtype", f"{T2}:rules"},   # mean over channels
    "off_by_one":     {f"{T1}:values", f"{T1}:dtype", f"{T1}:rules"},   # (n_h - k_h, n_w - k_w)
    "flipped_kernel": {f"{T1}:values", f"{T1}:dtype", f"{T1}:rules"},   # true convolution
    # the book's code: torch.zeros is float32 (once), and no shape checks in corr2d, multi_in, 1x1
    "textbook":       {f"{T1}:dtype", f"{T1}:shapes", f"{T2}:shapes", f"{T4}:shapes"},
    "partial":        ALL - {T1, T2},              # only the first two questions done
    "uses_conv2d":    {T1, T2, T3, T4, T7},        # F.conv2d is blocked while grading: every call fails
    # visible answers pasted in: hidden random cases fail; the bonus calls corr2d_multi_in_out, graded
    # with the instructor's: its values part passes
    "hardcoded":      {T1, T2, T3, T4, T5, f"{T7}:no_loop", f"{T7}:speed"},
    "untouched":      ALL,
}
#: Students whose written answer (manual, 2 points) is the untouched stub: nbgrader scores it 0.
NO_WRITTEN_ANSWER = {"untouched", "partial"}


@pytest.mark.fast
def test_expected_table_is_consistent():
    """Every sample has a row, every row a sample, and every loss names a real test cell or part."""
    samples = {p.stem for p in (ROOT / "samples" / "class").glob("*.py")}
    assert samples == set(EXPECTED)
    assert len(samples) >= 10
    for student, lost in EXPECTED.items():
        assert 0 <= expected_total(lost) <= MAX_WITH_EXTRA, student  # raises on an unknown cell or part
    # partial credit: a dtype slip keeps most of a cell's points, wrong arithmetic little
    from expect import expected_scores
    full, kept, wrong = expected_scores(set()), expected_scores(EXPECTED["textbook"]), expected_scores(EXPECTED["off_by_one"])
    assert 0.5 * full[T1] < kept[T1] < full[T1] and wrong[T1] <= 0.5 * full[T1]
    # one mistake costs once: the book's float32 is charged in test_corr2d only
    assert [t for t in TESTS if f"{t}:dtype" in EXPECTED["textbook"]] == [T1]


@pytest.mark.fast
def test_every_sample_says_who_the_student_is():
    """A module docstring, then sections that all name cells of the release notebook."""
    release = nbformat.read(release_notebook(ROOT, ASSIGNMENT), as_version=4)
    for path in sorted((ROOT / "samples" / "class").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert text.startswith('"""') and path.stem in text.split('"""')[1], path.name
        fill_notebook(release, path)  # raises SampleError on an unknown grade_id


@pytest.mark.fast
def test_fill_rejects_unknown_and_locked_cells(tmp_path):
    release = nbformat.read(release_notebook(ROOT, ASSIGNMENT), as_version=4)
    bad = tmp_path / "bad.py"
    bad.write_text('"""x"""\n# %% corr2d_typo\ndef corr2d(X, K):\n    pass\n', encoding="utf-8")
    with pytest.raises(SampleError, match="corr2d_typo"):
        fill_notebook(release, bad)
    bad.write_text('"""x"""\n# %% test_corr2d\npass\n', encoding="utf-8")
    with pytest.raises(SampleError, match="not a solution cell"):
        fill_notebook(release, bad)


@pytest.mark.fast
def test_fill_keeps_stubs_and_places_own_cells():
    release = nbformat.read(release_notebook(ROOT, ASSIGNMENT), as_version=4)
    untouched = fill_notebook(release, ROOT / "samples" / "class" / "untouched.py")
    assert [c.source for c in untouched.cells] == [c.source for c in release.cells]
    own = fill_notebook(release, ROOT / "samples" / "class" / "own_cells.py")
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in own.cells]
    assert len(own.cells) == len(release.cells) + 3
    # the helper goes before the first answer, the experiment between the bonus and its test
    assert ids.index(None) < ids.index("corr2d")
    assert ids[ids.index("corr2d_multi_in_out_fast") + 1] is None
    assert ids[ids.index("corr2d_multi_in_out_fast") + 2] == T7
    # a sample based on another one changes only its own cell
    base = dict((g, s) for _, g, s in load_sections(ROOT / "samples" / "class" / "ref_reference.py"))
    mine = dict((g, s) for _, g, s in load_sections(ROOT / "samples" / "class" / "stack_axis.py"))
    assert {g for g in base if base[g] != mine[g]} == {"corr2d_multi_in_out"}


@pytest.mark.fast
def test_fill_class_is_repeatable(tmp_path):
    course = make_course(tmp_path / "course")
    first = fill_class(ROOT / "samples" / "class", course, ASSIGNMENT)
    snapshot = {p: p.read_bytes() for p in (course / "submitted").rglob("*") if p.is_file()}
    assert fill_class(ROOT / "samples" / "class", course, ASSIGNMENT) == first == sorted(EXPECTED)
    assert {p: p.read_bytes() for p in (course / "submitted").rglob("*") if p.is_file()} == snapshot
    assert (course / "submitted" / "untouched" / ASSIGNMENT / "timestamp.txt").is_file()


def test_fill_command_line(tmp_path):
    """`python -m grading.fill SAMPLES COURSE` fills the class; a bad sample exits 2 with the reason."""
    course = make_course(tmp_path / "course")
    run = [sys.executable, "-m", "grading.fill"]
    proc = subprocess.run(run + [str(ROOT / "samples" / "class"), str(course)], cwd=ROOT, env=venv_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(course / "submitted")) == sorted(EXPECTED)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "typo.py").write_text('"""typo"""\n# %% corr2d_multi\npass\n', encoding="utf-8")
    proc = subprocess.run(run + [str(bad), str(course)], cwd=ROOT, env=venv_env(), capture_output=True, text=True)
    assert proc.returncode == 2 and "corr2d_multi" in proc.stderr


def test_sample_class_grades(sample_class):
    """Grade the whole class in one batch: exact totals, exactly the lost test cells, no flags."""
    from grading.gradebook import scores as gradebook_scores
    course, results = sample_class
    students = sorted(EXPECTED)
    assert sorted(results) == students

    problems = []
    for student, lost in EXPECTED.items():
        r = results[student]
        total, lost = expected_total(lost), normalise(lost)
        written = r.scores["written_1x1"]
        auto = sum(r.scores[t] for t in r.tests)
        if (auto, got_lost(r), r.status, r.flags) != (total, lost, "graded", []):
            problems.append(f"{student}: expected {total:g} losing {sorted(lost)}, got {auto:g} losing "
                            f"{sorted(got_lost(r))} status={r.status} flags={r.flags} messages={r.messages}")
        if written != (0.0 if student in NO_WRITTEN_ANSWER else None):
            problems.append(f"{student}: written_1x1 scored {written!r}")
    assert not problems, "\n".join(problems)

    # the gradebook holds exactly what grade() reported
    book = gradebook_scores(course, ASSIGNMENT)
    for student, r in results.items():
        assert {g: auto for g, (auto, _, _) in book[student].items()} == r.scores, student
    # only the instructor's files and the students' submissions were touched
    assert not (course / "release" / ASSIGNMENT / "gradebook.db").exists()
    assert os.listdir(course / "submitted") and sorted(os.listdir(course / "submitted")) == students


def _failed(result, test):
    """{part name: message} of the parts of `test` that `result` failed."""
    return {p["name"]: p["message"] for p in result.verdicts[test]["parts"] if not p["passed"]}


def test_the_messages_a_student_reads(sample_class):
    """What a student reads for the mistakes of the sample class, word for word: true (speed as
    "N× slower" with both times), attributed to the function that raised, a hint that matches the
    rule that failed, and never a line number of a hidden test."""
    from grading.reports import analytics
    course, results = sample_class
    speed = _failed(results["loop_fast"], T7)["speed"]
    assert re.fullmatch(r"corr2d_multi_in_out_fast 不够快：用时 \d+\.\d\d ms，基准 \(baseline\) \d+\.\d\d ms，"
                        r"比基准慢 (\d+\.\d) 倍 \(\1x slower than the baseline\)，要求至少快 5 倍。"
                        r"［用例 corr2d_multi_in_out_fast 计时 X \(8, 50, 50\)、K \(8, 8, 3, 3\)］", speed), speed
    loop = _failed(results["loop_fast"], T7)["no_loop"]
    assert loop.startswith("corr2d_multi_in_out_fast 的计算运算 (compute operations) 次数随输出像素数变化或太多")
    assert "对核的位置 (a, b) 循环是允许的" in loop
    assert _failed(results["hardcoded"], T5) == {
        "conv_flops": "数值 (values) 不对：期望 30030，得到 1.024e+09。［用例 conv_flops c_i=3, c_o=7, k=2×5, m=11×13］",
        "train_hours": "train_hours 出错 (raised)：KeyError: '1'"}
    assert _failed(results["flipped_kernel"], T1)["values"] == (
        "数值 (values) 不对：你算的是卷积 (convolution)：核被上下、左右翻转了。深度学习里的“卷积层”做的是互相关 "
        "(cross-correlation)：Y[i, j] = Σ X[i+a, j+b]·K[a, b]，核不翻转（4/4 个元素超出容差 (tolerance)；"
        "位置 (0, 0)：期望 19，得到 5）［用例 corr2d 书中例子 (book example)］")
    assert _failed(results["textbook"], T1) == {
        "dtype": "数据类型 (dtype) 不对：期望 torch.float64，得到 torch.float32；结果应与输入的 dtype 相同：新建输出时写 "
                 "X.new_zeros(形状)，不要写 torch.zeros(形状)（它总是 CPU 上的 float32）。［用例 corr2d 书中例子，float64，cpu］",
        "shapes": "形状检查 (shape check)：核 (4, 4) 比输入 (3, 3) 还大，corr2d 应当 raise ValueError 或 AssertionError"
                  "（并说明原因），却正常返回了。［用例 corr2d 核比输入大］"}
    assert set(_failed(results["untouched"], T1).values()) == {
        "corr2d 还没有作答：删掉 raise NotImplementedError() 并完成代码 (not answered yet)"}
    everything = [m for r in results.values() for t in r.tests for m in _failed(r, t).values()]
    assert everything and not [m for m in everything if re.search(r"第 ?\d+ ?行|line \d+|File \"", m)]

    lines = analytics.collect(course, ASSIGNMENT)["lines"]
    # the KeyError is train_hours's; the bonus's loop hint is the bonus's rule, not the 1x1's
    assert "train_hours: error KeyError" in lines["hardcoded"] and "conv_flops: error" not in lines["hardcoded"]
    assert lines["loop_fast"] == (
        "loop_fast（18/20）：corr2d_multi_in_out_fast: pixel_loop — 附加题：去掉对输出像素的循环（对核的位置循环是允许的） "
        "(bonus: no loop over output pixels (a loop over kernel offsets is fine))；corr2d_multi_in_out_fast: too_slow — "
        "还不够快：去掉逐像素循环，整体用张量运算 (too slow: vectorize the pixel loop)")
    assert lines["textbook"].startswith("textbook（17/20）：corr2d: dtype — 用 X.new_zeros(...) 创建输出")

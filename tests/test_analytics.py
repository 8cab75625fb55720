"""The class report (grading/analytics.py, grading/plots.py): categories, numbers, the page in a browser.

Three layers:

1. the fallback classifier on the messages today's pipeline writes (results without categories);
2. `build` on a made-up class that has what the sample class lacks: verdicts with parts and
   carried categories, a late student, an unreadable notebook, a timeout, an error, manual
   grades done and to do, a student without a submission;
3. the bundled sample class, graded once in a scratch copy: the failure categories of every
   test cell (EXPECTED_CATEGORIES), the report's numbers against the gradebook, and the page
   in headless Chromium (every image loads, nothing from the network, readable screenshot).
"""
import json
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ASSIGNMENT, ROOT, make_course, require
from grading import analytics, plots
from grading.analytics import Submission, build, classify_message
from grading.categories import CATEGORIES
from test_slides_browser import ARTIFACTS, launch, require_browser


T1, T2, T3, T4 = "test_corr2d", "test_corr2d_multi_in", "test_corr2d_multi_in_out", "test_corr2d_multi_in_out_1x1"
T5, T6, T7 = "test_conv_flops", "test_conv2d_layer", "test_corr2d_multi_in_out_fast"
TESTS = [T1, T2, T3, T4, T5, T6, T7]

# --- EXPECTED FAILURE CATEGORIES OF THE SAMPLE CLASS ------------------------------------------------
# test cell -> category -> the students who lose points in that cell for that reason, as
# observed on the working tree of this commit: results with parts (partial credit) whose
# categories are carried by the verdicts. Each student's mistake: samples/README.md.
# The three entries marked [part] exist only with partial credit (a later part of the same
# cell fails too); with one verdict per cell (before the redesign, fallback classifier) the
# table is the same without them.
# TO UPDATE by the lead engineer when the contract changes; test_sample_class_categories
# prints the observed table on a mismatch.
EXPECTED_CATEGORIES = {
    T1: {
        "shape": {"off_by_one",        # output one row and one column too small
                  "hardcoded"},        # returns the visible tests' (2, 2) answer for random inputs
        "values": {"flipped_kernel"},  # true convolution: the flipped kernel
        "dtype": {"textbook"},         # the book's torch.zeros: float32 output for float64 input
        "conv_used": {"uses_conv2d"},  # calls F.conv2d
        "unanswered": {"untouched"},   # raise NotImplementedError() left in
    },
    T2: {  # corr2d_multi_in calls corr2d: every corr2d mistake again, plus mean_channels
        "shape": {"off_by_one", "hardcoded"},
        "values": {"flipped_kernel",
                   "mean_channels"},   # averages the input channels instead of summing
        "dtype": {"textbook"},
        "conv_used": {"uses_conv2d"},
        "unanswered": {"untouched"},
    },
    T3: {  # corr2d_multi_in_out calls corr2d_multi_in: its mistakes again, plus stack_axis
        "shape": {"off_by_one", "hardcoded",
                  "stack_axis"},       # output channels on the last axis: (m_h, m_w, c_o)
        "values": {"flipped_kernel", "mean_channels"},
        "dtype": {"textbook"},
        "conv_used": {"uses_conv2d"},
        "unanswered": {"untouched",
                       "partial"},     # stopped after question 2
    },
    T4: {
        "values": {"transposed_1x1"},  # kernel reshaped as (c_i, c_o) and transposed
        "input_modified": {"inplace_kernel"},  # K.squeeze_() changes the caller's kernel
        "shape": {"hardcoded"},
        "loop": {"hardcoded"},         # [part] "one matmul": its fixed answer runs no matrix product
        "conv_used": {"uses_conv2d"},
        "unanswered": {"untouched", "partial"},
    },
    T5: {
        "values": {"hardcoded"},       # the slides' number for every layer
        "error": {"hardcoded"},        # [part] train_hours looks up a table of the slides' values: KeyError
        "unanswered": {"untouched", "partial"},
    },
    T6: {
        "unanswered": {"untouched", "partial"},
    },
    T7: {
        "loop": {"loop_fast"},         # the bonus still loops over output pixels
        "too_slow": {"loop_fast"},     # [part] ... and so is not 5x faster than the loop baseline
        "shape": {"hardcoded"},
        "conv_used": {"uses_conv2d"},
        "unanswered": {"untouched", "partial"},
    },
}


# --- 1. the fallback classifier -------------------------------------------------------------

#: Messages exactly as today's verifier and checks.py write them (sample class, hostile corpus).
MESSAGES = [
    ("AssertionError: 形状 (shape) 不对：期望 (2, 2)，得到 (1, 1)。［用例 corr2d 书中例子 (book example)］", "shape"),
    ("AssertionError: 数据类型 (dtype) 不对：期望 torch.float64，得到 torch.float32；结果应与输入的 dtype 相同。"
     "［用例 corr2d 随机输入 X (7, 6)、K (3, 2)、torch.float64］", "dtype"),
    ("AssertionError: 设备 (device) 不对：期望 cuda:0，得到 cpu；结果应与输入在同一设备上。［用例 x］", "device"),
    ("AssertionError: 数值 (values) 不对：4/4 个元素超出容差 (tolerance)；位置 (0, 0) 误差 14：期望 19，得到 5。"
     "［用例 corr2d 书中例子 (book example)］", "values"),
    ("AssertionError: 数值不对：期望 30030，得到 1.024e+09。［用例 conv_flops c_i=3］", "values"),
    ("AssertionError: 应返回张量 (torch.Tensor)，得到 list。［用例 corr2d］", "type"),
    ("AssertionError: 函数返回了 None：是不是忘了 return？［用例 corr2d］", "type"),
    ("AssertionError: corr2d_multi_in_out_1x1 修改了输入 K（原地操作 in-place）：输入必须保持不变。［用例 1x1］",
     "input_modified"),
    ("ForbiddenOperator: corr2d 调用了卷积算子 (convolution operator) aten.conv2d，在独立校验中被拦截："
     "本题只能用张量运算自己实现。", "conv_used"),
    ("AssertionError: corr2d_multi_in_out_fast 的张量运算次数随输出像素数增长（29 → 1009 次）："
     "说明用了 Python 循环 (loop)，这里应当整体用张量运算。［用例 fast］", "loop"),
    ("AssertionError: corr2d_multi_in_out_fast 不够快：用时 3.10 ms，逐像素循环基准 (loop baseline) 50.0 ms，"
     "只快 1.6 倍，要求至少 5 倍。［用例 fast］", "too_slow"),
    ("corr2d 出错：NotImplementedError（测试单元格第 7 行）", "unanswered"),
    ("corr2d 出错：TypeError: unsupported operand type(s)", "error"),
    ("IndexError: index 3 is out of bounds", "error"),
    ("独立校验 (verification) 中调用 corr2d 超过 20 秒没有回应（死循环或太慢？）", "timeout"),
    ("独立校验 (verification) 进程在调用 corr2d 时意外退出（被信号 9 终止；内存超限、os._exit 或崩溃？）", "error"),
    ("AssertionError", analytics.OTHER),
    ("", analytics.OTHER),
]


@pytest.mark.parametrize("message, category", MESSAGES)
def test_fallback_classifier_sorts_todays_messages(message, category):
    assert classify_message(message) == category


def test_every_category_has_a_label_and_a_hint():
    for code in list(CATEGORIES) + [analytics.OTHER]:
        assert analytics.category_label(code) and code in analytics.HINTS, code
    assert {"shape", "values", "dtype", "device", "input_modified", "conv_used", "loop", "too_slow", "error",
            "timeout", "broken_notebook"} <= set(CATEGORIES)


def test_exception_type_of_an_error():
    assert analytics.exception_type("corr2d 出错：TypeError: bad") == "TypeError"
    assert analytics.exception_type("RuntimeError: shape '[2]' is invalid") == "RuntimeError"
    assert analytics.exception_type("形状不对") == ""


# --- 2. build on a made-up class --------------------------------------------------------------

POINTS = {T1: 3.0, T2: 3.0, T3: 3.0, T4: 3.0, "written_1x1": 2.0, T5: 2.0, T6: 2.0, T7: 2.0}
CELLS = analytics.Cells(TESTS, ["written_1x1"], POINTS)


def submission(student, scores, manual=None, penalty=0.0, seconds_late=0.0):
    """A gradebook row: `scores` for the test cells (default full), manual=None: to do."""
    grades = {g: (scores.get(g, POINTS[g]), POINTS[g], False) for g in TESTS}
    grades["written_1x1"] = (manual or 0.0, 2.0, manual is None)
    return Submission(student, "", "", True, sum(g[0] for g in grades.values()), penalty, 20.0,
                      seconds_late, "2025-03-03T09:00:00", grades)


def passed(gid):
    return {"passed": True, "message": ""}


@pytest.fixture
def made_up_class():
    dtype = "AssertionError: 数据类型 (dtype) 不对：期望 torch.float64，得到 torch.float32。［用例 x］"
    book = {
        "ana": submission("ana", {}, manual=2.0),
        "ben": submission("ben", {T1: 0.0, T2: 0.0, T3: 0.0}, penalty=1.0, seconds_late=7200),
        "cai": submission("cai", {T1: 1.5}),
        "dan": submission("dan", {g: 0.0 for g in TESTS}, manual=0.0),
        "eve": submission("eve", {T5: 0.0, T6: 0.0, T7: 0.0}),
        "fay": Submission("fay", "", "", False, 0.0, 0.0, 20.0, 0.0, "", {}),
    }
    results = {
        # today's format: {"passed", "message"} only -> the fallback classifier
        "ana": {"student": "ana", "status": "graded", "flags": [], "verdicts": {g: passed(g) for g in TESTS}},
        "ben": {"student": "ben", "status": "graded", "flags": ["late"],
                "verdicts": dict({g: passed(g) for g in TESTS},
                                 **{g: {"passed": False, "message": dtype} for g in (T1, T2, T3)})},
        # the redesigned format: parts with carried categories (the message would say "values")
        "cai": {"student": "cai", "status": "graded", "flags": ["verifier_disagrees"],
                "reasons": ["test_corr2d: 内核与验证不一致"],
                "verdicts": dict({g: passed(g) for g in TESTS}, **{T1: {
                    "score": 1.5, "max": 3.0, "passed": False, "message": "two parts failed", "category": "dtype",
                    "parts": [
                        {"name": "shape", "label": "形状", "points": 1.5, "score": 1.5, "passed": True,
                         "message": "", "category": None},
                        {"name": "dtype", "label": "dtype", "points": 0.75, "score": 0.0, "passed": False,
                         "message": "数值 (values) 不对 but carried", "category": "dtype"},
                        {"name": "device", "label": "device", "points": 0.75, "score": 0.0, "passed": False,
                         "message": "x", "category": "device"}]}})},
        # nothing readable: no verdicts at all
        "dan": {"student": "dan", "status": "unreadable", "flags": ["unreadable_notebook"], "verdicts": {},
                "reasons": ["notebook 无法读取 (unreadable notebook): not JSON"]},
        # a timeout without verdicts for the last two cells, an error with a verdict for the first
        "eve": {"student": "eve", "status": "failed", "flags": ["autograde_failed", "timeout"],
                "reasons": ["超时"], "messages": {T6: "cell timed out"},
                "verdicts": dict({g: passed(g) for g in TESTS[:4]},
                                 **{T5: {"passed": False, "message": "conv_flops 出错：ZeroDivisionError: x"}})},
    }
    return book, results


def test_build_groups_carried_and_fallback_categories(made_up_class):
    book, results = made_up_class
    data = build(ASSIGNMENT, CELLS, *made_up_class)
    groups = {cell: {code: set(g["students"]) for code, g in cats.items()} for cell, cats in data["categories"].items()}
    # ben: fallback classifier; cai: categories carried by the parts (not by their message text)
    assert groups[T1] == {"dtype": {"ben", "cai"}, "device": {"cai"}, "broken_notebook": {"dan"}}
    assert groups[T2] == groups[T3] == {"dtype": {"ben"}, "broken_notebook": {"dan"}}
    # eve: an error with its exception type; no verdict + timeout flag -> timeout
    assert groups[T5] == {"broken_notebook": {"dan"}, "error": {"eve"}}
    assert data["categories"][T5]["error"]["details"] == {"ZeroDivisionError": 1}
    assert groups[T6] == groups[T7] == {"broken_notebook": {"dan"}, "timeout": {"eve"}}
    assert data["categories"][T1]["dtype"]["example"].startswith("AssertionError: 数据类型 (dtype)")
    assert data["overall"]["broken_notebook"] == 7 and data["overall"]["dtype"] == 4


def test_build_counts_shares_late_attention_and_manual(made_up_class):
    data = build(ASSIGNMENT, CELLS, *made_up_class)
    assert data["students"] == 5  # fay has no submission: not in the distribution
    assert data["totals"] == {"ana": 20.0, "ben": 9.0, "cai": 16.5, "dan": 0.0, "eve": 12.0}
    assert {lo: n for lo, _, n in data["histogram"] if n} == {0.0: 1, 9.0: 1, 12.0: 1, 16.0: 1, 20.0: 1}
    assert data["cells"][T1] == {"full": 2, "partial": 1, "zero": 2, "points": 3.0}
    assert data["cells"][T5] == {"full": 3, "partial": 0, "zero": 2, "points": 2.0}
    # contract items appear once any result has parts
    assert data["parts"] == {"test_corr2d · shape": {"full": 1, "partial": 0, "zero": 0, "label": "形状"},
                             "test_corr2d · dtype": {"full": 0, "partial": 0, "zero": 1, "label": "dtype"},
                             "test_corr2d · device": {"full": 0, "partial": 0, "zero": 1, "label": "device"}}
    assert [x["student"] for x in data["late"]] == ["ben"]
    assert data["late"][0]["hours_late"] == 2.0 and data["late"][0]["penalty"] == 1.0
    assert [a["student"] for a in data["attention"]] == ["cai", "dan", "eve"]  # "late" alone is quiet
    assert any("unreadable" in w for w in data["attention"][1]["why"])
    assert data["manual"] == {"written_1x1": ["ben", "cai", "eve"]}


def test_a_line_for_each_student(made_up_class):
    data = build(ASSIGNMENT, CELLS, *made_up_class)
    lines = data["lines"]
    assert lines["ben"].startswith("ben（9/20）：corr2d, corr2d_multi_in, corr2d_multi_in_out: dtype — ")
    assert "X.new_zeros" in lines["ben"]
    assert "conv_flops: error ZeroDivisionError" in lines["eve"] and "timeout" in lines["eve"]
    assert "全部通过" in lines["ana"]


def test_the_page_is_self_contained_and_escapes_student_text(made_up_class):
    book, results = made_up_class
    results["ben"]["verdicts"][T1]["message"] = "数据类型 (dtype) <script>alert(1)</script></script>"
    page = analytics.render(build(ASSIGNMENT, CELLS, book, results))
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert page.count("<img ") == 4 and page.count('src="data:image/png;base64,') == 4
    assert "http://" not in page and "https://" not in page
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert data["totals"]["cai"] == 16.5


def test_charts_fall_back_to_english_without_a_cjk_font(monkeypatch):
    monkeypatch.setitem(plots._font_cache, "cjk", None)
    assert plots.text("形状不对 (wrong shape)") == "wrong shape"
    assert plots.text("corr2d") == "corr2d"
    uri = plots.counts_bar([("形状不对 (wrong shape)", 3)], "错误原因 (failure reasons)", "次数 (count)")
    assert uri.startswith("data:image/png;base64,")


def test_a_cjk_font_is_found_when_installed():
    require(any(Path("/usr/share/fonts").rglob("NotoSansCJK*")), "fonts-noto-cjk is not installed")
    assert plots.cjk_font() and "CJK" in plots.cjk_font()


# --- 3. the sample class ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_class(tmp_path_factory):
    """The bundled sample class graded once in a scratch copy (as `make demo` does), and its report."""
    from grading.batch import grade
    from grading.fill import fill_class
    from grading.sandbox import sandbox_status
    saved = os.environ.get("CHANNELS_ALLOW_UNSANDBOXED")
    if not sandbox_status()[0]:
        os.environ["CHANNELS_ALLOW_UNSANDBOXED"] = "1"  # trusted samples, as the demo does
    try:
        course = make_course(tmp_path_factory.mktemp("analytics") / "course")
        fill_class(ROOT / "samples" / "class", course, ASSIGNMENT)
        grade(course, ASSIGNMENT, jobs=2, progress=False)
    finally:
        if saved is None:
            os.environ.pop("CHANNELS_ALLOW_UNSANDBOXED", None)
        else:
            os.environ["CHANNELS_ALLOW_UNSANDBOXED"] = saved
    return course, analytics.write_report(course)


def gradebook_of(course):
    """{student: {grade_id: points}} read with the pipeline's own gradebook helper."""
    from grading.gradebook import scores as gradebook_scores
    return {s: {g: (manual if manual is not None else auto) or 0.0 for g, (auto, manual, _) in grades.items()}
            for s, grades in gradebook_scores(course, ASSIGNMENT).items()}


def observed(data):
    return {cell: {code: set(g["students"]) for code, g in cats.items()} for cell, cats in data["categories"].items()}


@pytest.mark.timeout(900)
def test_sample_class_categories(sample_class):
    course, _ = sample_class
    data = analytics.collect(course)
    got = observed(data)
    assert got == EXPECTED_CATEGORIES, "observed table:\n" + json.dumps(
        {c: {k: sorted(v) for k, v in cats.items()} for c, cats in got.items()}, indent=1)
    counts = {}
    for cats in EXPECTED_CATEGORIES.values():
        for code, students in cats.items():
            counts[code] = counts.get(code, 0) + len(students)
    assert data["overall"] == counts
    assert counts == {"unanswered": 12, "shape": 9, "values": 7, "conv_used": 5, "dtype": 3,
                      "loop": 2, "input_modified": 1, "too_slow": 1, "error": 1}
    # every group has an example message, which the fallback would have put in the same category
    for cats in data["categories"].values():
        for code, g in cats.items():
            assert g["example"] and classify_message(g["example"]) == code, (code, g["example"])
    assert data["categories"][T5]["error"]["details"] == {"KeyError": 1}
    assert data["attention"] == [] and data["late"] == [] and data["no_verdicts"] == []
    assert "X.new_zeros" in data["lines"]["textbook"]


@pytest.mark.timeout(900)
def test_sample_class_numbers_are_the_gradebooks(sample_class):
    course, _ = sample_class
    data = analytics.collect(course)
    book = gradebook_of(course)
    assert data["totals"] == {s: sum(g.values()) for s, g in book.items()}
    assert data["students"] == len(book) == len(list((ROOT / "samples" / "class").glob("*.py")))
    expected_bins = {}
    for total in data["totals"].values():
        expected_bins[int(total)] = expected_bins.get(int(total), 0) + 1
    assert {int(lo): n for lo, _, n in data["histogram"] if n} == expected_bins
    for gid, shares in data["cells"].items():
        top = shares["points"]
        assert shares["full"] == sum(1 for g in book.values() if g[gid] >= top), gid
        assert shares["zero"] == sum(1 for g in book.values() if g[gid] == 0), gid
        assert shares["full"] + shares["partial"] + shares["zero"] == len(book)
    # the written answer waits for the instructor, except the untouched stubs nbgrader scores 0
    assert set(data["manual"]["written_1x1"]) == set(book) - {"untouched", "partial"}


@pytest.mark.timeout(1200)
def test_demo_ends_with_the_report_and_writes_the_lms_files(tmp_path):
    """`python -m grading demo` (what `make demo` runs) on a fresh copy, three students: the
    last line it prints is the report's path; the LMS files are written from samples/roster.csv."""
    import subprocess
    import sys
    from conftest import venv_env
    course = make_course(tmp_path / "course")
    for path in (course / "samples" / "class").glob("*.py"):
        if path.stem not in {"ref_reference", "textbook", "untouched"}:  # the others build on ref_reference
            path.unlink()
    proc = subprocess.run([sys.executable, "-m", "grading", "--course", str(course), "demo", "-j", "2", "-q"],
                          cwd=course, env=venv_env(), capture_output=True, text=True, timeout=1100)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == f"班级报告 (class report): {course / analytics.REPORT_PATH}", last
    page = (course / analytics.REPORT_PATH).read_text(encoding="utf-8")
    assert "textbook" in page and page.count('src="data:image/png;base64,') >= 3
    for name in ("grades-canvas.csv", "grades-moodle.csv"):
        assert len((course / name).read_text(encoding="utf-8").splitlines()) >= 4, name


@pytest.mark.timeout(900)
def test_report_page_in_a_browser(sample_class):
    """Headless Chromium opens the page from disk: every image loads, nothing leaves the machine,
    and the numbers it shows are the gradebook's."""
    sync_playwright = require_browser()
    course, page_path = sample_class
    book = gradebook_of(course)
    ARTIFACTS.mkdir(exist_ok=True)
    outside, errors = [], []

    def guard(route):
        if urlparse(route.request.url).scheme in {"file", "data"}:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.route("**/*", guard)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
            assert len(images) >= 3 and all(ok and width > 0 for ok, width, _ in images), images
            data = json.loads(page.inner_text("#report-data"))
            assert data["totals"] == {s: sum(g.values()) for s, g in book.items()}
            # the distribution table as the teacher reads it: score -> students
            table = page.evaluate("""() => { const h = Array.from(document.querySelectorAll('h2')).find(
                h => h.textContent.startsWith('成绩分布'));
                let t = h.nextElementSibling; while (t.tagName !== 'TABLE') t = t.nextElementSibling;
                return Array.from(t.querySelectorAll('tr')).slice(1).map(r => Array.from(r.cells).map(c => c.innerText)); }""")
            shown = {int(score): int(n) for score, n in table}
            expected = {}
            for total in book.values():
                expected[int(sum(total.values()))] = expected.get(int(sum(total.values())), 0) + 1
            assert shown == expected
            text = page.inner_text("body")
            assert "数据类型不对 (wrong dtype)" in text and "textbook" in text
            page.screenshot(path=str(ARTIFACTS / "report-top.png"))
            page.locator("h2", has_text="错误原因").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "report-reasons.png"))
            page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
        finally:
            browser.close()
    assert errors == [] and outside == [], (errors, outside)
    assert (ARTIFACTS / "report-top.png").stat().st_size > 20_000

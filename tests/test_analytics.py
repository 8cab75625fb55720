"""The class report (grading/reports/analytics.py, grading/reports/plots.py): categories, numbers, the page in a browser.

Three layers:

1. categories and hints: every category has a teacher's label and a hint, the assignment's
   policy overrides the engine's hints;
2. `build` on a made-up class that has what the sample class lacks: verdicts with parts and
   their categories, a late student, an unreadable notebook, a timeout, an error, manual
   grades done and to do, extra credit, a student without a submission;
3. the bundled sample class, graded once (conftest's `sample_class`): the failure categories
   of every test cell (EXPECTED_CATEGORIES), the report's numbers against the gradebook, and
   the page in headless Chromium (every image loads, nothing from the network).
"""
import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import ASSIGNMENT, ROOT, require
from expect import T1, T2, T3, T4, T5, T6, T7
from grading.categories import CATEGORIES
from grading.contract import load_contract
from grading.gradebook import Submission
from grading.reports import analytics, plots
from grading.reports.analytics import build
from test_slides_browser import ARTIFACTS, launch, require_browser

# --- EXPECTED FAILURE CATEGORIES OF THE SAMPLE CLASS ------------------------------------------------
# test cell -> category -> the students who lose points in that cell for that reason. Each
# student's one mistake is in samples/README.md; one mistake costs once (later questions are
# graded with the instructor's earlier functions), so most mistakes appear in one cell only.
# test_sample_class_categories prints the observed table on a mismatch.
EXPECTED_CATEGORIES = {
    T1: {
        "shape": {"off_by_one",          # output one row and one column too small
                  "hardcoded"},          # returns the visible tests' answers for random inputs
        "values": {"flipped_kernel"},    # true convolution: the flipped kernel
        "dtype": {"textbook",            # the book's torch.zeros: float32 output for float64 input
                  "hardcoded"},
        "shape_check": {"textbook",      # the book's code checks no shapes
                        "hardcoded"},
        "forbidden_op": {"uses_conv2d"},  # F.conv2d is refused while graded
        "unanswered": {"untouched"},     # raise NotImplementedError() left in
    },
    T2: {  # one mistake costs once: corr2d's mistakes are not charged again here
        "shape": {"hardcoded"},
        "values": {"mean_channels"},     # averages the input channels instead of summing
        "dtype": {"hardcoded"},
        "shape_check": {"textbook", "hardcoded"},
        "forbidden_op": {"uses_conv2d"},
        "unanswered": {"untouched"},
    },
    T3: {
        "shape": {"hardcoded",
                  "stack_axis"},         # output channels on the last axis: (m_h, m_w, c_o)
        "dtype": {"hardcoded"},
        "shape_check": {"hardcoded"},    # (the book's version checks through corr2d_multi_in)
        "forbidden_op": {"uses_conv2d"},
        "unanswered": {"untouched",
                       "partial"},       # stopped after question 2
    },
    T4: {
        "values": {"transposed_1x1",     # kernel reshaped as (c_i, c_o) and transposed
                   "hardcoded"},         # numbers that are not computed from the arguments
        "input_modified": {"inplace_kernel"},  # K.squeeze_() changes the caller's kernel
        "shape_check": {"textbook"},
        "forbidden_op": {"uses_conv2d"},
        "unanswered": {"untouched", "partial"},
    },
    T5: {
        "values": {"hardcoded"},         # the slides' number for every layer
        "error": {"hardcoded"},          # train_hours looks up a table of the slides' values: KeyError
        "unanswered": {"untouched", "partial"},
    },
    T6: {
        "unanswered": {"untouched", "partial"},
    },
    T7: {  # extra credit
        "pixel_loop": {"loop_fast",      # the bonus still loops over output pixels
                       "hardcoded"},     # calls corr2d_multi_in_out (graded with the instructor's loop)
        "too_slow": {"loop_fast",        # ... and so is not 5x faster than the loop baseline
                     "hardcoded"},       # ... more operations on the timed layer than a call may run
        "forbidden_op": {"uses_conv2d"},
        "unanswered": {"untouched", "partial"},
    },
}


# --- 1. categories and hints -------------------------------------------------------------------

@pytest.mark.fast
def test_every_category_has_a_label_and_a_hint():
    for code in CATEGORIES:
        assert analytics.category_label(code) and code in analytics.hints(), code
    assert {"shape", "values", "dtype", "device", "input_modified", "forbidden_op", "loop", "pixel_loop",
            "too_slow", "shape_check", "error", "timeout", "broken_notebook"} <= set(CATEGORIES)


@pytest.mark.fast
def test_the_assignments_hints_come_first():
    policy = load_contract(ROOT, ASSIGNMENT).policy
    tips = analytics.hints(policy)
    assert "X.new_zeros" in tips["dtype"][0] and tips["error"] == analytics.hints()["error"]


@pytest.mark.fast
def test_exception_type_of_an_error():
    assert analytics.exception_type("corr2d 出错：TypeError: bad") == "TypeError"
    assert analytics.exception_type("RuntimeError: shape '[2]' is invalid") == "RuntimeError"
    assert analytics.exception_type("形状不对") == ""


# --- 2. build on a made-up class --------------------------------------------------------------

A, B, C, D = "test_a", "test_b", "test_c", "test_bonus"
POINTS = {A: 3.0, B: 3.0, C: 2.0, "written": 2.0, D: 2.0}
CELLS = analytics.Cells([A, B, C, D], ["written"], POINTS, [D])


def submission(student, scores, manual=None, penalty=0.0, seconds_late=0.0):
    """A gradebook row: `scores` for the test cells (default full), manual=None: to do."""
    grades = {g: (scores.get(g, POINTS[g]), POINTS[g] if g != D else 0.0, False) for g in CELLS.tests}
    grades["written"] = (manual or 0.0, 2.0, manual is None)
    return Submission(student, "", "", True, sum(g[0] for g in grades.values()), penalty, 10.0,
                      seconds_late, "2025-03-03T09:00:00", grades)


def part(name, points, passed=True, category=None, message=""):
    return {"name": name, "label": name, "points": points, "score": points if passed else 0.0, "passed": passed,
            "message": message, "category": None if passed else category}


def verdict(*parts):
    return {"score": sum(p["score"] for p in parts), "max": sum(p["points"] for p in parts),
            "passed": all(p["passed"] for p in parts), "message": "", "parts": list(parts)}


def full(gid):
    return verdict(part("values", POINTS[gid]))


@pytest.fixture
def made_up_class():
    dtype = "数据类型 (dtype) 不对：期望 torch.float64，得到 torch.float32。［用例 x］"
    book = {
        "ana": submission("ana", {}, manual=2.0),
        "ben": submission("ben", {A: 0.0, B: 0.0}, penalty=1.0, seconds_late=7200),
        "cai": submission("cai", {A: 1.5}),
        "dan": submission("dan", {g: 0.0 for g in CELLS.tests}, manual=0.0),
        "eve": submission("eve", {C: 0.0, D: 0.0}),
        "fay": Submission("fay", "", "", False, 0.0, 0.0, 10.0, 0.0, "", {}),
    }
    results = {
        "ana": {"student": "ana", "status": "graded", "flags": [], "verdicts": {g: full(g) for g in CELLS.tests}},
        "ben": {"student": "ben", "status": "graded", "flags": ["late"],
                "verdicts": dict({g: full(g) for g in CELLS.tests},
                                 **{g: verdict(part("values", 3.0, False, "dtype", dtype)) for g in (A, B)})},
        # the category is the part's, whatever its message says
        "cai": {"student": "cai", "status": "graded", "flags": ["verifier_disagrees"],
                "reasons": ["test_a: 内核与验证不一致"],
                "verdicts": dict({g: full(g) for g in CELLS.tests}, **{A: verdict(
                    part("shape", 1.5), part("dtype", 0.75, False, "dtype", "数值 (values) 不对 but carried"),
                    part("device", 0.75, False, "device", "x"))})},
        # nothing readable: no verdicts at all
        "dan": {"student": "dan", "status": "unreadable", "flags": ["unreadable_notebook"], "verdicts": {},
                "reasons": ["notebook 无法读取 (unreadable notebook): not JSON"]},
        # an error with a verdict; a timeout without one for the bonus
        "eve": {"student": "eve", "status": "failed", "flags": ["autograde_failed", "timeout"],
                "reasons": ["超时"], "messages": {D: "cell timed out"},
                "verdicts": dict({g: full(g) for g in (A, B)},
                                 **{C: verdict(part("values", 2.0, False, "error", "f 出错：ZeroDivisionError: x"))})},
    }
    return book, results


@pytest.mark.fast
def test_build_groups_failures_by_the_parts_categories(made_up_class):
    data = build(ASSIGNMENT, CELLS, *made_up_class)
    groups = {cell: {code: set(g["students"]) for code, g in cats.items()} for cell, cats in data["categories"].items()}
    assert groups[A] == {"dtype": {"ben", "cai"}, "device": {"cai"}, "broken_notebook": {"dan"}}
    assert groups[B] == {"dtype": {"ben"}, "broken_notebook": {"dan"}}
    # eve: an error with its exception type; no verdict + timeout flag -> timeout
    assert groups[C] == {"broken_notebook": {"dan"}, "error": {"eve"}}
    assert data["categories"][C]["error"]["details"] == {"ZeroDivisionError": 1}
    assert groups[D] == {"broken_notebook": {"dan"}, "timeout": {"eve"}}  # extra credit missed is a failure too
    assert data["categories"][A]["dtype"]["example"].startswith("数据类型 (dtype)")
    assert data["overall"]["broken_notebook"] == 4 and data["overall"]["dtype"] == 3


@pytest.mark.fast
def test_build_counts_shares_late_attention_and_manual(made_up_class):
    data = build(ASSIGNMENT, CELLS, *made_up_class)
    assert data["students"] == 5  # fay has no submission: not in the distribution
    assert data["totals"] == {"ana": 12.0, "ben": 4.0, "cai": 8.5, "dan": 0.0, "eve": 6.0}
    assert data["extra"] == [D]
    # ana's 12 of 10: extra credit lands in the top bin
    assert {lo: n for lo, _, n in data["histogram"] if n} == {0.0: 1, 4.0: 1, 6.0: 1, 8.0: 1, 10.0: 1}
    assert data["cells"][A] == {"full": 2, "partial": 1, "zero": 2, "points": 3.0}
    assert data["cells"][C] == {"full": 3, "partial": 0, "zero": 2, "points": 2.0}
    assert data["parts"]["test_a · dtype"] == {"full": 0, "partial": 0, "zero": 1, "label": "dtype"}
    assert [x["student"] for x in data["late"]] == ["ben"]
    assert data["late"][0]["hours_late"] == 2.0 and data["late"][0]["penalty"] == 1.0
    assert [a["student"] for a in data["attention"]] == ["cai", "dan", "eve"]  # "late" alone is quiet
    assert any("unreadable" in w for w in data["attention"][1]["why"])
    assert data["manual"] == {"written": ["ben", "cai", "eve"]}


@pytest.mark.fast
def test_a_line_for_each_student(made_up_class):
    policy = load_contract(ROOT, ASSIGNMENT).policy
    data = build(ASSIGNMENT, CELLS, *made_up_class, tips=analytics.hints(policy))
    lines = data["lines"]
    assert lines["ben"].startswith("ben（4/10）：a, b: dtype — ")
    assert "X.new_zeros" in lines["ben"]  # the assignment's hint, not the engine's
    assert "c: error ZeroDivisionError" in lines["eve"] and "timeout" in lines["eve"]
    assert "全部通过" in lines["ana"]


@pytest.mark.fast
def test_the_page_is_self_contained_and_escapes_student_text(made_up_class):
    book, results = made_up_class
    results["ben"]["verdicts"][A]["parts"][0]["message"] = "数据类型 (dtype) <script>alert(1)</script></script>"
    page = analytics.render(build(ASSIGNMENT, CELLS, book, results))
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert page.count("<img ") == 4 and page.count('src="data:image/png;base64,') == 4
    assert "http://" not in page and "https://" not in page
    data = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert data["totals"]["cai"] == 8.5


@pytest.mark.fast
def test_charts_fall_back_to_english_without_a_cjk_font(monkeypatch):
    monkeypatch.setitem(plots._font_cache, "cjk", None)
    assert plots.text("形状不对 (wrong shape)") == "wrong shape"
    assert plots.text("corr2d") == "corr2d"
    uri = plots.counts_bar([("形状不对 (wrong shape)", 3)], "错误原因 (failure reasons)", "次数 (count)")
    assert uri.startswith("data:image/png;base64,")


@pytest.mark.fast
def test_a_cjk_font_is_found_when_installed():
    require(any(Path("/usr/share/fonts").rglob("NotoSansCJK*")), "fonts-noto-cjk is not installed")
    assert plots.cjk_font() and "CJK" in plots.cjk_font()


@pytest.mark.fast
def test_a_cjk_font_installed_after_matplotlib_cached_its_list_is_found(monkeypatch):
    """`make demo` before `make test` on a fresh machine: matplotlib's font cache was written
    before fonts-noto-cjk was installed. The font files are found all the same."""
    require(any(Path("/usr/share/fonts").rglob("NotoSansCJK*")), "fonts-noto-cjk is not installed")
    from matplotlib import font_manager
    stale = [f for f in font_manager.fontManager.ttflist if "CJK" not in f.name and "CJK" not in f.fname]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", stale)
    monkeypatch.delitem(plots._font_cache, "cjk", raising=False)
    assert plots.cjk_font() and "CJK" in plots.cjk_font()


# --- 3. the sample class ----------------------------------------------------------------------

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
    data = analytics.collect(course, ASSIGNMENT)
    got = observed(data)
    assert got == EXPECTED_CATEGORIES, "observed table:\n" + json.dumps(
        {c: {k: sorted(v) for k, v in cats.items()} for c, cats in got.items()}, indent=1)
    counts = {}
    for cats in EXPECTED_CATEGORIES.values():
        for code, students in cats.items():
            counts[code] = counts.get(code, 0) + len(students)
    assert data["overall"] == counts
    # every group has an example message for the teacher to read
    assert all(g["example"] for cats in data["categories"].values() for g in cats.values())
    assert data["attention"] == [] and data["late"] == [] and data["no_verdicts"] == []
    assert "X.new_zeros" in data["lines"]["textbook"]


@pytest.mark.timeout(900)
def test_sample_class_numbers_are_the_gradebooks(sample_class):
    course, _ = sample_class
    data = analytics.collect(course, ASSIGNMENT)
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


@pytest.mark.timeout(900)
def test_report_page_in_a_browser(sample_class, tmp_path):
    """Headless Chromium opens the page from disk: every image loads, nothing leaves the machine,
    and the numbers it shows are the gradebook's."""
    sync_playwright = require_browser()
    course, _ = sample_class
    page_path = tmp_path / "index.html"  # the shared class is only read: the page goes elsewhere
    page_path.write_text(analytics.render(analytics.collect(course, ASSIGNMENT)), encoding="utf-8")
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

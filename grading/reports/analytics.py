"""What the class got wrong: the class report (`python -m grading report`, `make report`).

Writes, per assignment, `.grading/<assignment>/report/index.html`, one self-contained page
(no network: the charts are inline base64 PNGs, the CSS is inline) for the instructor or the
projector, and `.grading/report/index.html`, the course's page: every student's total per
assignment (a column each) and a link to each assignment's page. An assignment's page has:

- the score distribution of the class (100 % is the assignment's points; extra credit can
  take a student above it), and per test cell the share of students with full, partial and
  zero points (and per contract item, the parts of the test cells);
- the failure reasons of each test cell grouped into categories a teacher recognises
  (grading/categories.py), with counts, the students in each and one example message;
- who needs the instructor's attention, late submissions, manual grading still to do;
- one line per student to paste into a message ("f: dtype — <the assignment's hint>"), with
  the assignment's own hints (source/<assignment>/policy.py HINTS) over the engine's.

Where the numbers come from:

- scores: nbgrader's gradebook (`gradebook.db`, read by grading/gradebook.py), the one truth
  the LMS files and `grades.csv` are made from as well;
- why a test cell failed: `.grading/<assignment>/results/<student>.json`
  (StudentResult.to_dict()): every failed part carries its category; a cell without a
  verdict at all (timeout, crashed kernel, unreadable notebook) gets the category of the
  student's flags (FLAG_CATEGORIES).
"""
import dataclasses
import datetime
import html
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from grading.categories import CATEGORIES, HINTS, label as category_label
from grading.course import STATE_DIR, assignments
from grading.gradebook import read_gradebook
from grading.result import FLAGS, QUIET_FLAGS

#: The course's page and, per assignment, the assignment's (relative to the course folder).
COURSE_REPORT = Path(STATE_DIR) / "report" / "index.html"
_EXCEPTION = re.compile(r"\b([A-Z]\w*(?:Error|Exception|Interrupt|Exit))\b")


def report_path(assignment):
    return Path(STATE_DIR) / assignment / "report" / "index.html"


def messages_path(assignment):
    """The per-student lines as plain text, next to the page."""
    return Path(STATE_DIR) / assignment / "report" / "messages.txt"


#: Student-level flag -> category of a test cell that failed without a verdict of its own
#: (the first flag of this list that the student has wins: a timeout is why autograde failed).
FLAG_CATEGORIES = {
    "over_budget": "timeout",
    "timeout": "timeout",
    "unreadable_notebook": "broken_notebook",
    "missing_notebook": "broken_notebook",
    "metadata_missing": "broken_notebook",
    "answer_missing": "broken_notebook",
    "kernel_died": "error",
    "autograde_failed": "error",
    "verifier_failed": "verifier_failed",
}


def hints(policy=None):
    """{category: (中文, English)}: the engine's hints with the assignment's own over them."""
    return {**HINTS, **(policy.hints if policy is not None else {})}


def exception_type(message):
    """The exception's class name in a message ('TypeError: ...', 'f 出错 (raised)：IndexError'), or ''."""
    match = _EXCEPTION.search(message or "")
    return match.group(1) if match else ""


def _order(code):
    codes = list(CATEGORIES)
    return codes.index(code) if code in codes else len(codes)


@dataclasses.dataclass
class Failure:
    """One reason one student lost points in one test cell."""
    student: str
    cell: str           # grade_id of the test cell
    category: str       # code from grading/categories.py
    message: str
    part: str = ""      # the contract item (part label or name), when the verdict has parts
    function: str = ""  # the answer function that raised, when one did

    @property
    def detail(self):
        """For errors: the exception type, e.g. 'TypeError'."""
        return exception_type(self.message) if self.category == "error" else ""


def failures_of(result, tests, scores):
    """[Failure] for one student's result dict; `scores`: grade_id -> (score, max) from the gradebook."""
    out = []
    verdicts = result.get("verdicts") or {}
    flags = result.get("flags") or []
    student = result["student"]
    for gid in tests:
        verdict = verdicts.get(gid)
        if verdict is None:
            score, top = scores.get(gid, (0.0, 0.0))
            if score < top:  # no verdict: the pipeline knows why from its flags
                code = "broken_notebook" if result.get("status") == "unreadable" else next(
                    (code for flag, code in FLAG_CATEGORIES.items() if flag in flags), "error")
                message = (result.get("messages") or {}).get(gid) or next(iter(result.get("reasons") or []), "")
                out.append(Failure(student, gid, code, message))
            continue
        for part in verdict.get("parts") or []:
            if not part.get("passed", True):
                out.append(Failure(student, gid, part.get("category") or "error", part.get("message", ""),
                                   part.get("label") or part.get("name") or "", part.get("function") or ""))
    return out


# --- reading the course ---------------------------------------------------------------------

@dataclasses.dataclass
class Cells:
    """The graded cells of the assignment, in notebook order (from its contract)."""
    tests: list      # autograded test cells
    manual: list     # answers the instructor grades (the written answer)
    points: dict     # grade_id -> its points (for extra credit: the points above 100 %)
    extra: list = dataclasses.field(default_factory=list)  # test cells of extra credit


def read_cells(course_root, assignment):
    """The graded cells of the assignment, from its contract (grading/contract.py)."""
    from grading.contract import load_contract
    contract = load_contract(course_root, assignment)
    points = {**{t.grade_id: t.points for t in contract.tests}, **contract.manual}
    return Cells(contract.test_ids, list(contract.manual), points, list(contract.extra_credit)), contract.policy


def read_results(course_root, assignment):
    """{student: result dict} from .grading/<assignment>/results/*.json (unreadable files are skipped)."""
    out = {}
    for path in sorted((Path(course_root) / STATE_DIR / assignment / "results").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("student"):
            out[data["student"]] = data
    return out


# --- the report's data ----------------------------------------------------------------------

def _flag_label(code):
    """The instructor's words for a flag code."""
    return FLAGS.get(code, code)


def score_bins(max_score):
    """[(low, high)] bins of the histogram: one per whole point up to 30 points (the last one
    holds the full score), else 20 equal bins (the last one includes the full score)."""
    top = max(1.0, float(max_score))
    if top <= 30:
        return [(float(k), float(k + 1)) for k in range(int(top) + 1)]
    width = top / 20
    return [(k * width, (k + 1) * width) for k in range(20)]


def bin_label(low, high):
    """'9' for the bin of scores 9 ≤ s < 10, '40–45' for a wider one."""
    return f"{low:g}" if high - low == 1 else f"{low:g}–{high:g}"


def histogram(scores, max_score):
    """[(low, high, count)]: how many scores fall in [low, high) (the last bin includes max)."""
    bins = score_bins(max_score)
    counts = [0] * len(bins)
    for s in scores:
        i = next((k for k, (low, high) in enumerate(bins) if low <= s < high), None)
        counts[(len(bins) - 1) if i is None and s > 0 else (i or 0)] += 1
    return [(low, high, n) for (low, high), n in zip(bins, counts)]


def share_row(scores):
    """(full, partial, zero) counts of [(score, max)]."""
    full = sum(1 for s, m in scores if m > 0 and s >= m - 1e-9)
    zero = sum(1 for s, m in scores if s <= 1e-9 and not (m > 0 and s >= m - 1e-9))
    return full, len(scores) - full - zero, zero


def student_line(student, score, max_score, failures, tips=None):
    """The sentence a teacher pastes into a message to `student` (`tips`: hints(policy))."""
    tips = tips or hints()
    if not failures:
        return f"{student}（{score:g}/{max_score:g}）：自动评分的测试全部通过 (all autograded tests passed)。"
    by_category = defaultdict(list)
    for f in failures:
        key = (f.category, f.detail)
        name = f.function or f.cell.removeprefix("test_")  # who raised, not whose test cell it was
        if name not in by_category[key]:
            by_category[key].append(name)
    parts = []
    for (code, detail), names in sorted(by_category.items(), key=lambda kv: _order(kv[0][0])):
        zh, en = tips.get(code, ("请看反馈中的说明", "see the feedback"))
        what = f"{code} {detail}".strip()
        parts.append(f"{', '.join(names)}: {what} — {zh} ({en})")
    return f"{student}（{score:g}/{max_score:g}）：" + "；".join(parts)


def build(assignment, cells, book, results, tips=None):
    """The report's data (a JSON-able dict) from the gradebook and the results.

    cells: Cells; book: {student: Submission}; results: {student: result dict}; tips: hints().
    """
    submitted = {s: sub for s, sub in sorted(book.items()) if sub.submitted}
    max_score = next((sub.max_score for sub in book.values()), sum(cells.points.values()))
    totals = {s: sub.raw for s, sub in submitted.items()}

    def cell_scores(sub):
        # an extra-credit cell is worth 0 in nbgrader's gradebook (its points are extra credit):
        # measured against its extra points here, so that missing them counts as a failure
        out = {g: sub.grades.get(g, (0.0, cells.points.get(g, 0.0), False))[:2] for g in cells.tests}
        return {g: (s, cells.points.get(g, m)) if g in cells.extra else (s, m) for g, (s, m) in out.items()}

    failures, no_verdicts = [], []
    for student, sub in submitted.items():
        result = results.get(student)
        scores = cell_scores(sub)
        if result is None:
            if any(s < m for g, (s, m) in scores.items() if g not in cells.extra):  # (extra credit is no loss)
                no_verdicts.append(student)
            continue
        failures += failures_of(result, cells.tests, scores)

    groups = {}  # cell -> category -> {"students": [...], "example": str, "details": {type: n}}
    for f in failures:
        g = groups.setdefault(f.cell, {}).setdefault(f.category, {"students": [], "example": "", "details": {}})
        if f.student not in g["students"]:
            g["students"].append(f.student)
            if f.detail:
                g["details"][f.detail] = g["details"].get(f.detail, 0) + 1
        g["example"] = g["example"] or f.message
    groups = {cell: dict(sorted(cats.items(), key=lambda kv: (-len(kv[1]["students"]), _order(kv[0]))))
              for cell, cats in sorted(groups.items(), key=lambda kv: cells.tests.index(kv[0]))}
    overall = Counter()
    for cats in groups.values():
        for code, g in cats.items():
            overall[code] += len(g["students"])

    parts, part_labels = defaultdict(list), {}  # contract items: (cell, part name) -> [(score, points)]
    for student in submitted:
        verdicts = (results.get(student) or {}).get("verdicts") or {}
        for gid in cells.tests:
            for p in (verdicts.get(gid) or {}).get("parts") or []:
                if p.get("points"):
                    key = (gid, p.get("name") or p.get("label") or "?")
                    part_labels.setdefault(key, p.get("label") or key[1])
                    parts[key].append((float(p.get("score") or 0.0), float(p["points"])))

    attention = []
    for student in submitted:
        result = results.get(student) or {}
        flags = [f for f in result.get("flags") or [] if f not in QUIET_FLAGS]
        if flags:
            why = [_flag_label(f) for f in flags]
            attention.append({"student": student, "why": why + [r for r in result.get("reasons") or []
                                                                  if r not in why]})
    late = [{"student": s, "timestamp": sub.timestamp, "hours_late": round(sub.seconds_late / 3600, 2),
             "penalty": sub.penalty}
            for s, sub in submitted.items()
            if sub.seconds_late > 0 or sub.penalty > 0 or "late" in (results.get(s) or {}).get("flags", [])]
    manual = {g: [s for s, sub in submitted.items() if sub.grades.get(g, (0, 0, False))[2]]
              for g in cells.manual}

    by_student = defaultdict(list)
    for f in failures:
        by_student[f.student].append(f)
    return {
        "assignment": assignment,
        "generated": datetime.datetime.now().isoformat(timespec="seconds"),
        "max_score": max_score,
        "students": len(submitted),
        "totals": totals,
        "histogram": histogram(list(totals.values()), max_score),
        "cells": {g: dict(zip(("full", "partial", "zero"),
                              share_row([cell_scores(sub)[g] for sub in submitted.values()])),
                          points=cells.points.get(g, 0.0)) for g in cells.tests},
        "parts": {f"{g} · {name}": dict(zip(("full", "partial", "zero"), share_row(rows)),
                                        label=part_labels[(g, name)])
                  for (g, name), rows in sorted(parts.items(), key=lambda kv: cells.tests.index(kv[0][0]))},
        "categories": groups,
        "overall": dict(sorted(overall.items(), key=lambda kv: (-kv[1], _order(kv[0])))),
        "no_verdicts": no_verdicts,
        "attention": attention,
        "late": late,
        "manual": manual,
        "lines": {s: student_line(s, sub.raw, sub.max_score, by_student.get(s, []), tips)
                  for s, sub in submitted.items()},
        "extra": list(cells.extra),
    }


def collect(course_root, assignment):
    """The report's data of one assignment (reads the gradebook and .grading/<assignment>/results/)."""
    cells, policy = read_cells(course_root, assignment)
    return build(assignment, cells, read_gradebook(course_root, assignment), read_results(course_root, assignment),
                 hints(policy))


# --- the page -------------------------------------------------------------------------------

CSS = """
body { font-family: "Noto Sans CJK SC", "Noto Sans CJK JP", "PingFang SC", "Microsoft YaHei",
       "Source Han Sans SC", sans-serif; font-size: 20px; line-height: 1.5; margin: 2em auto;
       max-width: 1250px; padding: 0 1em; color: #212121; }
h1 { font-size: 2em; margin-bottom: 0.2em; } h2 { font-size: 1.5em; border-bottom: 3px solid #1565c0;
  margin-top: 2em; } h3 { font-size: 1.2em; margin-bottom: 0.3em; }
img { max-width: 100%; display: block; margin: 1em 0; }
table { border-collapse: collapse; width: 100%; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bdbdbd; padding: 0.35em 0.6em; text-align: left; vertical-align: top; }
th { background: #e3f2fd; } td.n { text-align: right; white-space: nowrap; }
.summary { display: flex; gap: 1em; flex-wrap: wrap; } .summary div { background: #f5f5f5;
  border-radius: 8px; padding: 0.5em 1em; } .summary b { font-size: 1.4em; display: block; }
.example { font-size: 0.85em; color: #455a64; } .none { color: #2e7d32; }
code { font-size: 0.9em; }
"""


def _e(text):
    return html.escape(str(text))


def _table(header, rows, numeric=()):
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="n">{_e(c)}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(uri, alt):
    return f'<img src="{uri}" alt="{_e(alt)}">'


def render(data):
    """The HTML page (a string) for `data` from `build`."""
    from grading.reports import plots
    totals = list(data["totals"].values())
    n = len(totals)
    mean = sum(totals) / n if n else 0.0
    median = sorted(totals)[n // 2] if n % 2 else (sum(sorted(totals)[n // 2 - 1:n // 2 + 1]) / 2 if n else 0.0)
    waiting = sum(len(v) for v in data["manual"].values())
    out = [f"<h1>{_e(data['assignment'])}：班级报告 (class report)</h1>",
           f"<p>生成于 (generated) {_e(data['generated'])} · 来自成绩簿 gradebook.db 与 .grading/results/</p>",
           '<div class="summary">'
           + "".join(f"<div>{_e(k)}<b>{_e(v)}</b></div>" for k, v in [
               ("学生 (students)", n), ("平均分 (mean)", f"{mean:.1f} / {data['max_score']:g}"),
               ("中位数 (median)", f"{median:g}"), ("需要处理 (attention)", len(data["attention"])),
               ("迟交 (late)", len(data["late"])), ("待人工评分 (manual to do)", waiting)])
           + "</div>"]

    out.append("<h2>成绩分布 (score distribution)</h2>")
    if n:
        out.append(_img(plots.histogram(data["histogram"], "成绩分布 (score distribution)",
                                        f"总分 (total score) / {data['max_score']:g}", "学生人数 (students)", bin_label),
                        "成绩分布 (score distribution)"))
    note = (f"<p>总分 = 自动评分 + 已完成的人工评分；{waiting} 份人工评分尚未完成，暂按 0 分计 "
            "(manual grades still to do count 0).</p>" if waiting else "")
    out.append(note + _table(["分数段 (score)", "学生人数 (students)"],
                             [[bin_label(lo, hi), c] for lo, hi, c in data["histogram"] if c], numeric=(1,)))

    out.append("<h2>各测试单元的得分 (points per test cell)</h2>")
    legend = ["满分 (full)", "部分得分 (partial)", "零分 (zero)"]
    rows = [(g.removeprefix("test_"), c["full"], c["partial"], c["zero"]) for g, c in data["cells"].items()]
    if n and rows:
        out.append(_img(plots.stacked_shares(rows, "各测试单元 (per test cell)", legend), "per test cell"))
    out.append(_table(["测试单元 (test cell)", "分值 (points)"] + legend,
                      [[f"<code>{_e(g)}</code>", f"{c['points']:g}", c["full"], c["partial"], c["zero"]]
                       for g, c in data["cells"].items()], numeric=(1, 2, 3, 4)))
    if data["parts"]:
        rows = [(k.removeprefix("test_"), c["full"], c["partial"], c["zero"]) for k, c in data["parts"].items()]
        out.append("<h3>各评分项 (per contract item)</h3>")
        out.append(_img(plots.stacked_shares(rows, "各评分项 (per contract item)", legend), "per contract item"))
        out.append(_table(["评分项 (contract item)", "说明 (what it checks)"] + legend,
                          [[f"<code>{_e(k)}</code>", _e(c["label"]), c["full"], c["partial"], c["zero"]]
                           for k, c in data["parts"].items()], numeric=(2, 3, 4)))

    out.append("<h2>错误原因 (why points were lost)</h2>")
    if data["overall"]:
        out.append(_img(plots.counts_bar([(category_label(c), k) for c, k in data["overall"].items()],
                                         "错误原因 (failure reasons)", "次数：学生 × 测试单元 (student × test cell)"),
                        "failure reasons"))
    else:
        out.append('<p class="none">没有失败的测试 (no failed tests)。</p>')
    for cell, cats in data["categories"].items():
        out.append(f"<h3><code>{_e(cell)}</code></h3>")
        rows = []
        for code, g in cats.items():
            detail = "、".join(f"{t} ×{k}" for t, k in g["details"].items())
            rows.append([_e(category_label(code)) + (f"<br><small>{_e(detail)}</small>" if detail else ""),
                         len(g["students"]), _e(", ".join(g["students"])),
                         f'<span class="example">{_e(g["example"][:300])}</span>'])
        out.append(_table(["类别 (category)", "人数 (count)", "学生 (students)", "示例 (example message)"],
                          rows, numeric=(1,)))
    if data["no_verdicts"]:
        out.append(f"<p>没有评分流程结果、无法归类 (no verdicts): {_e(', '.join(data['no_verdicts']))}</p>")

    out.append("<h2>需要教师处理 (needs the instructor's attention)</h2>")
    out.append(_table(["学生 (student)", "原因 (why)"],
                      [[_e(a["student"]), "<br>".join(_e(w) for w in a["why"])] for a in data["attention"]])
               if data["attention"] else '<p class="none">无 (nobody)。</p>')
    out.append("<h2>迟交 (late submissions)</h2>")
    out.append(_table(["学生 (student)", "提交时间 (timestamp)", "迟交小时 (hours late)", "扣分 (penalty)"],
                      [[_e(x["student"]), _e(x["timestamp"]), x["hours_late"], f"{x['penalty']:g}"]
                       for x in data["late"]], numeric=(2, 3))
               if data["late"] else '<p class="none">无 (none)。</p>')
    out.append("<h2>待人工评分 (manual grading to do)</h2>")
    todo = [[f"<code>{_e(g)}</code>", len(s), _e(", ".join(s))] for g, s in data["manual"].items() if s]
    out.append((_table(["答案 (answer)", "人数 (count)", "学生 (students)"], todo, numeric=(1,))
                + "<p>在 JupyterLab 的 Formgrader 中评分 (make lab → Nbgrader → Manage Assignments)。</p>")
               if todo else '<p class="none">无 (none)。</p>')
    out.append("<h2>给每位学生的一句话 (a line for each student)</h2>")
    out.append(_table(["学生 (student)", "可直接粘贴 (paste into a message)"],
                      [[_e(s), _e(line)] for s, line in data["lines"].items()]))

    # "<" never appears raw inside the <script> element, whatever a student's message contains
    blob = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    return ("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(data['assignment'])} 班级报告 (class report)</title><style>{CSS}</style></head><body>"
            + "\n".join(out)
            + f'\n<script type="application/json" id="report-data">{blob}</script>\n</body></html>\n')


def write_report(course_root, assignment):
    """Write .grading/<assignment>/report/index.html and messages.txt; return the page's path."""
    root = Path(course_root)
    data = collect(root, assignment)
    path = root / report_path(assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data), encoding="utf-8")
    (root / messages_path(assignment)).write_text("\n".join(data["lines"].values()) + "\n", encoding="utf-8")
    return path


def course_table(course_root, names):
    """{student: {assignment: score}} and {assignment: 100 % points}: what the course's page shows."""
    table, points = defaultdict(dict), {}
    for name in names:
        for student, sub in read_gradebook(course_root, name).items():
            points[name] = sub.max_score
            table[student][name] = sub.score if sub.submitted else None
    return dict(sorted(table.items())), points


def render_course(table, points, pages):
    """The course's page: a column per assignment, a link to each assignment's report."""
    names = list(points)
    head = "".join(f'<th><a href="{_e(pages[n])}">{_e(n)}</a> ({points[n]:g})</th>' for n in names)
    rows = "".join("<tr><td>" + _e(student) + "</td>" + "".join(
        '<td class="n">' + ("–" if scores.get(n) is None else f"{scores[n]:g}") + "</td>" for n in names) + "</tr>"
        for student, scores in table.items())
    return ("<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            f"<title>课程成绩 (course grades)</title><style>{CSS}</style></head><body>"
            "<h1>课程成绩 (course grades)</h1><p>每个作业一列；点作业名看它的班级报告 "
            "(a column per assignment; its name links to its class report). – = 未提交 (not handed in)。</p>"
            f"<table><tr><th>学生 (student)</th>{head}</tr>{rows}</table></body></html>\n")


def write_reports(course_root, names=None):
    """Every assignment's report (or `names`'), then the course's page; return their paths, course's last."""
    from grading.gradebook import gradebook_assignments
    root = Path(course_root)
    known = set(gradebook_assignments(root))
    names = [n for n in (names or assignments(root)) if n in known]
    paths = [write_report(root, name) for name in names]
    table, points = course_table(root, names)
    course_page = root / COURSE_REPORT
    course_page.parent.mkdir(parents=True, exist_ok=True)
    pages = {n: Path("..") / n / "report" / "index.html" for n in names}
    course_page.write_text(render_course(table, points, {n: p.as_posix() for n, p in pages.items()}), encoding="utf-8")
    return paths + [course_page]

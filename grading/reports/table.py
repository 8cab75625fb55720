"""What the instructor reads after a batch: the score table and who needs attention.

`format_table` gives one row per student: ✓/✗ (or the points of partial credit) per test
cell, +points of extra credit, the written answer's points (? while it awaits manual
grading), the total and a short reason. The
attention list names every student with a flag other than "late" and says why.
`write_reports` keeps both as `.grading/<assignment>/report.json` and `attention.md`.
"""
import json
import unicodedata
from pathlib import Path

from grading.course import STATE_DIR
from grading.result import FLAGS, QUIET_FLAGS

REASON_WIDTH = 48


def width(text):
    """Columns `text` takes in a terminal (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def clip(text, limit):
    """`text` cut to `limit` columns, with … when cut."""
    text = " ".join(str(text).split())
    if width(text) <= limit:
        return text
    out, used = "", 0
    for ch in text:
        if used + width(ch) > limit - 1:
            break
        out, used = out + ch, used + width(ch)
    return out + "…"


def pad(text, size, right=False):
    gap = " " * max(0, size - width(text))
    return gap + text if right else text + gap


def _is_extra(result, gid):
    """An extra-credit test cell: worth 0 in nbgrader's gradebook, its parts' points on top."""
    return gid in result.tests and result.max_scores.get(gid, 0) == 0 and result.verdicts[gid]["max"] > 0


def _mark(result, gid):
    score = result.scores.get(gid)
    if gid not in result.tests:  # a manually graded answer
        return "?" if score is None else f"{score:g}"
    if _is_extra(result, gid):  # extra credit earned, or none: not a failure
        return f"+{score:g}" if score else "–"
    if score is not None and score >= result.verdicts[gid]["max"]:
        return "✓"
    return "✗" if not score else f"{score:g}"  # partial credit shows its points


def format_table(results):
    """The score table as aligned plain text (header, legend of the test columns, rows)."""
    if not results:
        return "没有需要评分的提交 (no submissions)\n"
    tests = results[0].tests
    manual = [g for g in results[0].max_scores if g not in tests]
    header = ["学生 (student)"] + [f"T{i + 1}" for i in range(len(tests))] + manual + ["总分 (total)", "说明 (reason)"]
    rows = []
    for r in results:
        reason = clip(r.reason, REASON_WIDTH) + (" [未变，沿用上次结果 (unchanged)]" if r.skipped else "")
        rows.append([r.student] + [_mark(r, g) for g in tests + manual]
                    + [f"{r.total:g}/{r.max_total:g}", reason])
    sizes = [max(width(row[i]) for row in [header] + rows) for i in range(len(header))]
    total = len(header) - 2
    lines = ["  ".join(pad(cell, sizes[i], right=i == total) for i, cell in enumerate(row)).rstrip()
             for row in [header] + rows]
    lines.insert(1, "  ".join("-" * s for s in sizes))
    legend = "  ".join(f"T{i + 1}={g}" + (" (extra credit)" if _is_extra(results[0], g) else "")
                       for i, g in enumerate(tests))
    return "\n".join(lines + ["", legend]) + "\n"


def attention(results):
    """[(student, [why, ...])] for every student the instructor should look at."""
    out = []
    for r in results:
        if r.needs_attention:
            why = [FLAGS.get(f, f) for f in r.flags if f not in QUIET_FLAGS]
            out.append((r.student, why + [x for x in r.reasons if x not in why]))
    return out


def format_attention(results):
    items = attention(results)
    if not items:
        return "无需教师处理的提交 (nobody needs the instructor's attention)\n"
    lines = [f"需要教师处理 (needs the instructor's attention): {len(items)}"]
    for student, why in items:
        lines.append(f"- {student}: {why[0]}")
        lines += [f"    {w}" for w in why[1:]]
    return "\n".join(lines) + "\n"


def format_manual(results):
    """Which answers wait for the instructor's grading (formgrader), one line per cell."""
    waiting = {}
    for r in results:
        for gid, score in r.scores.items():
            if score is None:
                waiting.setdefault(gid, []).append(r.student)
    return "".join(f"待人工评分 (awaiting manual grading): {gid}，{len(names)} 名学生 (students)；"
                   "在 JupyterLab 的 Formgrader 中评分 (make lab)\n" for gid, names in waiting.items())


def write_reports(course_root, assignment, results):
    """Save `.grading/<assignment>/report.json` (every result) and `attention.md`; return both paths."""
    folder = Path(course_root) / STATE_DIR / assignment
    folder.mkdir(parents=True, exist_ok=True)
    data = [dict(r.to_dict(), needs_attention=r.needs_attention, reason=r.reason) for r in results]
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    md_path = folder / "attention.md"
    md_path.write_text("# 评分报告 (grading report)\n\n```\n" + format_table(results) + "```\n\n"
                       + format_manual(results) + format_attention(results), encoding="utf-8")
    return json_path, md_path

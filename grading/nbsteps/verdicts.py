"""The verdicts into the notebook: what each test cell shows, and what nbgrader records.

    ApplyVerdicts   write the verifier's verdict into every test cell: ✓/✗ per part, the
                    message, and the score as the cell's result, which nbgrader's
                    SaveAutoGrades then records (partial credit) — so the gradebook, the
                    feedback and the verdicts are one and the same. Without a verdict for a
                    cell (the verifier could not run or reach one) the cell gets 0 and says why.
    SaveGrades      SaveAutoGrades, then what extra-credit cells earned as their extra credit
"""
import html
import json
import os
import time
from pathlib import Path

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor, SaveAutoGrades
from traitlets import Unicode

from grading.categories import label as category_label
from grading.cells import grade_id, is_test
from grading.nbsteps.rebuild import coursedir_of


def put_verdicts(nb, contract, verdicts, why, category):
    """Each test cell's verdict into its outputs, or where there is none (`verdicts` None or
    without it) every part failed with `why` (grading fails closed); {grade_id: verdict put}."""
    from grading.result import Verdict
    placed = {}
    for cell in nb.cells:
        gid = grade_id(cell) if is_test(cell) else None
        test = next((t for t in contract.tests if t.grade_id == gid), None) if gid else None
        if test is None:
            continue
        verdict = (verdicts or {}).get(gid) or Verdict.failing(test, why, category).to_dict()
        cell.outputs = verdict_outputs(verdict, test.extra)
        placed[gid] = verdict
    return placed


def verdict_outputs(verdict, extra=False):
    """The outputs a test cell shows for its verdict (a Verdict.to_dict()).

    A ✓/✗ line per part, then the score: an `execute_result` nbgrader reads as partial
    credit, or, at 0 points, an error (nbgrader scores an error 0 and shows it in red).
    An extra-credit cell (`extra`) has 0 points in nbgrader: it shows what it earned above
    100 % and gives nbgrader nothing to score (SaveGrades records it as extra credit).
    """
    rows, lines = [], []
    for p in verdict["parts"]:
        mark = "✓" if p["passed"] else "✗"
        score = f"{p['points'] if p['passed'] else 0:g}/{p['points']:g}"
        why = "" if p["passed"] else f" — {p['message']}"
        lines.append(f"{mark} {p['label']}  {score}{why}")
        color = "#1a7f37" if p["passed"] else "#cf222e"
        cat = "" if p["passed"] or not p.get("category") else \
            f"<br><small>{html.escape(category_label(p['category']))}</small>"
        rows.append(f"<tr><td style='color:{color};font-weight:bold'>{mark}</td>"
                    f"<td style='text-align:left'>{html.escape(p['label'])}</td><td>{score}</td>"
                    f"<td style='text-align:left'>{html.escape(p['message'])}{cat}</td></tr>")
    total = f"{verdict['score']:g}/{verdict['max']:g}"
    what = "附加分 (extra credit)" if extra else "本题得分 (score)"
    table = ("<table class='grading-verdict'><thead><tr><th></th><th>分项 (part)</th><th>得分 (points)</th>"
             "<th>说明 (message)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
             f"<p><b>{what}: {total}</b></p>")
    outputs = [NotebookNode(output_type="display_data", metadata={},
                            data={"text/html": table, "text/plain": "\n".join(lines + [f"{what}: {total}"])})]
    if extra:
        return outputs
    if verdict["score"] > 0:
        outputs.append(NotebookNode(output_type="execute_result", execution_count=None, metadata={},
                                    data={"text/plain": f"{verdict['score']:g}"}))
    else:
        outputs.append(NotebookNode(output_type="error", ename="未得分 (0 points)", evalue=verdict["message"],
                                    traceback=[f"未得分 (0 points): {verdict['message']}"]))
    return outputs


class ApplyVerdicts(NbGraderPreprocessor):
    """Replace each test cell's outputs by the verifier's verdict (see verdict_outputs).

    `verdicts_file`: a JSON file {grade_id: verdict} written by the grading pipeline
    (grading/run/grade_one.py), or `null` when the verifier reached no verdict. Without one
    (a plain `nbgrader autograde`, the formgrader's button) the verifier runs here.
    """

    verdicts_file = Unicode("", help="JSON verdicts from the grading pipeline; empty: verify now").tag(config=True)

    def preprocess(self, nb, resources):
        from grading.contract import load_contract
        from grading.result import over_budget_reason
        info = resources["nbgrader"]
        root = Path(coursedir_of(self).root)
        contract = load_contract(root, info["assignment"])
        if info.get("over_budget"):
            verdicts, why, category = None, over_budget_reason(), "timeout"
        else:
            (verdicts, why), category = self._verdicts(nb, root, info, contract), "verifier_failed"
        placed = put_verdicts(nb, contract, verdicts, why or "没有独立验证的结果 (no verdict)", category)
        for test in contract.tests:
            if test.extra and test.grade_id in placed:  # for SaveGrades: nbgrader's scoring knows no extra credit
                info.setdefault("extra_credit", {})[test.grade_id] = float(placed[test.grade_id]["score"])
        return nb, resources

    def _verdicts(self, nb, root, info, contract):
        if self.verdicts_file:
            try:
                return json.loads(Path(self.verdicts_file).read_text(encoding="utf-8")), \
                    "独立验证没有得出结果 (the verifier reached no verdict)"
            except (OSError, ValueError) as e:
                return None, f"独立验证的结果无法读取 (verdicts unreadable): {e}"
        from grading.settings import Grading
        from grading.verify import verify_notebook
        left = info.get("deadline", time.monotonic() + 300) - time.monotonic()
        try:
            found, error, log = verify_notebook(root, info["assignment"], nb, Grading(config=self.config),
                                                seconds=max(1.0, left), contract=contract)
        except Exception as e:  # noqa: BLE001 (fail closed: every test cell scores 0 and says why)
            self.log.error("verifier failed for %s: %s", info.get("student"), e)
            return None, f"独立验证无法运行 (verifier failed): {type(e).__name__}: {e}"[:500]
        if error:
            self.log.warning("verification of %s incomplete: %s\n%s", info.get("student"), error, log)
        return {gid: v.to_dict() for gid, v in found.items()}, ""


class SaveGrades(SaveAutoGrades):
    """nbgrader's SaveAutoGrades, then what extra-credit cells earned as their extra credit."""

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        extra = resources["nbgrader"].get("extra_credit") or {}
        if extra:
            from nbgrader.api import Gradebook
            info = resources["nbgrader"]
            with Gradebook(info["db_url"]) as gb:
                for gid, score in extra.items():
                    grade = gb.find_grade(gid, info["notebook"], info["assignment"], info["student"])
                    grade.extra_credit = score
                gb.db.commit()
        return nb, resources


def write_verdicts(path, verdicts):
    """Write {grade_id: Verdict.to_dict()} (or None) where ApplyVerdicts.verdicts_file will read it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(verdicts, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)

"""The course's steps in nbgrader's autograde and feedback, one concern each.

Autograde (nbgrader_config.py lists them; `nbgrader autograde`, the formgrader's button and
`make grade` all run the same steps):

    RebuildFromRelease  (sanitize, first) the release cells with the student's answers put in
    GradedExecute       run the notebook in the sandboxed kernel, locked down first
                        (grading/guard.py), output capped; test cells are NOT run there
    ApplyVerdicts       write the verifier's verdict into every test cell: ✓/✗ per part, the
                        message, and the score as the cell's result, which nbgrader's
                        SaveAutoGrades then records (partial credit) — so the gradebook,
                        the feedback and the verdicts are one and the same
Feedback:
    HideHiddenTests     no hidden test code in the student's feedback

Without a verdict for a cell (the verifier could not run or reach one) the cell gets 0
points and says why: grading fails closed.
"""
import html
import json
import os
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from grading.categories import label as category_label
from grading.cells import is_test
from grading.feedback import HideHiddenTests  # noqa: F401 (one import place for nbgrader_config.py)
from grading.rebuild import RebuildFromRelease, coursedir_of  # noqa: F401

GUARD = Path(__file__).with_name("guard.py")


# --- Execute ------------------------------------------------------------------------------------

def _graded_execute():
    from grading.sandbox import capped_execute

    class GradedExecute(capped_execute()):
        """CappedExecute that locks the kernel down first and leaves test cells to the verifier.

        The lock-down (no convolutions, no new processes: grading/guard.py) is sent as the
        first cell, before any of the student's code; if it fails, the notebook is not run.
        The test cells are not run in the student's kernel: their outputs are the verdicts.
        """

        def preprocess(self, nb, resources, km=None):
            guard = nbformat.v4.new_code_cell(
                f"exec(compile({GUARD.read_text()!r}, '<guard>', 'exec'), {{'__name__': '__lockdown__'}})")
            guard["id"] = "grading-guard"
            nb.cells.insert(0, guard)
            try:
                nb, resources = super().preprocess(nb, resources, km=km)
            finally:
                first = nb.cells.pop(0)
            if any(o.get("output_type") == "error" for o in first.get("outputs", [])):
                raise RuntimeError(f"the kernel could not be locked down: {first.outputs[-1].get('evalue', '')}")
            return nb, resources

        def preprocess_cell(self, cell, resources, index):
            if is_test(cell):
                cell.outputs, cell.execution_count = [], None
                return cell, resources
            return super().preprocess_cell(cell, resources, index)

    return GradedExecute


_GRADED = None


def __getattr__(name):
    global _GRADED
    if name == "GradedExecute":  # built on first use (it subclasses sandbox's CappedExecute)
        if _GRADED is None:
            _GRADED = _graded_execute()
        return _GRADED
    raise AttributeError(name)


# --- Verdicts into test cells -----------------------------------------------------------------

def verdict_outputs(verdict):
    """The outputs a test cell shows for its verdict (a Verdict.to_dict()).

    A ✓/✗ line per part, then the score: an `execute_result` nbgrader reads as partial
    credit, or, at 0 points, an error (nbgrader scores an error 0 and shows it in red).
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
    table = ("<table class='grading-verdict'><thead><tr><th></th><th>分项 (part)</th><th>得分 (points)</th>"
             "<th>说明 (message)</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
             f"<p><b>本题得分 (score): {total}</b></p>")
    outputs = [NotebookNode(output_type="display_data", metadata={},
                            data={"text/html": table, "text/plain": "\n".join(lines + [f"本题得分 (score): {total}"])})]
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
    (grading/grade_one.py), or `null` when the verifier reached no verdict. Without one
    (a plain `nbgrader autograde`, the formgrader's button) the verifier runs here.
    """

    verdicts_file = Unicode("", help="JSON verdicts from the grading pipeline; empty: verify now").tag(config=True)

    def preprocess(self, nb, resources):
        from grading.contract import load_contract
        from grading.result import Verdict
        info = resources["nbgrader"]
        root = Path(coursedir_of(self).root)
        contract = load_contract(root, info["assignment"])
        verdicts, why = self._verdicts(nb, root, info)
        for cell in nb.cells:
            if not is_test(cell):
                continue
            gid = cell.metadata.nbgrader.get("grade_id")
            verdict = (verdicts or {}).get(gid)
            if verdict is None:
                test = next((t for t in contract.tests if t.grade_id == gid), None)
                if test is None:
                    continue
                verdict = Verdict.failing(test, why or "没有独立验证的结果 (no verdict)", "verifier_failed").to_dict()
            cell.outputs = verdict_outputs(verdict)
        return nb, resources

    def _verdicts(self, nb, root, info):
        if self.verdicts_file:
            try:
                return json.loads(Path(self.verdicts_file).read_text(encoding="utf-8")), \
                    "独立验证没有得出结果 (the verifier reached no verdict)"
            except (OSError, ValueError) as e:
                return None, f"独立验证的结果无法读取 (verdicts unreadable): {e}"
        from grading.verify import verify_notebook
        try:
            found = verify_notebook(root, info["assignment"], nb, info["notebook"])
        except Exception as e:  # noqa: BLE001 (fail closed: every test cell scores 0 and says why)
            self.log.error("verifier failed for %s: %s", info.get("student"), e)
            return None, f"独立验证无法运行 (verifier failed): {type(e).__name__}: {e}"[:500]
        return {gid: v.to_dict() for gid, v in found.items()}, ""


def autograde_steps():
    """nbgrader's autograde steps with Execute replaced and ApplyVerdicts after the output limit."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute, LimitOutput
    steps = []
    for step in Autograde.class_traits()["autograde_preprocessors"].default():
        steps.append(__getattr__("GradedExecute") if step is Execute else step)
        if step is LimitOutput:
            steps.append(ApplyVerdicts)
    return steps


def write_verdicts(path, verdicts):
    """Write {grade_id: Verdict.to_dict()} (or None) where ApplyVerdicts.verdicts_file will read it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(verdicts, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)

"""Running the student's notebook: capped, sanitized, locked down, within the budget.

    CappedExecute   nbgrader's Execute with output capped per cell and per notebook and every
                    output sanitized as it arrives (grading/jail/sanitize.py)
    GradedExecute   CappedExecute that locks the kernel down first (grading/jail/guard.py),
                    keeps the student's budget, and runs no test cell (the verifier does)
"""
import time
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import output_from_msg
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float, Integer

from grading.cells import is_test
from grading.jail.sanitize import sanitize_output
from grading.nbsteps.rebuild import coursedir_of

KiB, MiB = 2**10, 2**20
#: Bytes of output one cell may send before the rest is dropped.
MAX_OUTPUT_BYTES = 2 * MiB
#: Bytes of output the whole notebook may send; past them every cell keeps one notice only.
MAX_NOTEBOOK_OUTPUT_BYTES = 8 * MiB
GUARD = Path(__file__).resolve().parent.parent / "jail" / "guard.py"
#: What a cell that was not run because the student's budget was spent shows.
NOT_RUN = "[grader] 超过评分时间上限，没有运行 (over the grading time budget: not run)\n"


def _message_bytes(content):
    """Roughly the bytes an output message brings (its text, data, metadata and traceback)."""
    size = len(str(content.get("text", ""))) + len(str(content.get("ename", ""))) + len(str(content.get("evalue", "")))
    data = content.get("data")
    if isinstance(data, dict):
        size += sum(len(str(k)) + len(str(v)) for k, v in data.items())
    traceback = content.get("traceback")
    if isinstance(traceback, list):
        size += sum(len(str(line)) for line in traceback)
    metadata = content.get("metadata")
    if metadata:
        size += len(str(metadata))
    return size


class CappedExecute(Execute):
    """nbgrader's Execute, but output is capped per cell and per notebook, and sanitized.

        nbclient keeps every output message in memory: a `while True: print(...)` in a
        student's cell grows the grader by ~1 GB per 10 s until the cell times out, and
        LimitOutput only trims lines afterwards (one endless line passes it whole). Past
        max_output_bytes in a cell, or max_notebook_output_bytes in the whole notebook (many
        cells that each print just under the cell's limit), output is dropped (a stream keeps
        what still fits) and one notice is kept per cell: memory stays bounded, and a cell that
        goes on printing runs until its own timeout. Every output that is kept first goes
        through grading/jail/sanitize.py's `sanitize_output` (allowlisted types, clean HTML,
        checked images), also when a display is updated by its display_id, so nothing unsafe
        or oversized is ever stored; no widget state is stored either.
    """

    max_output_bytes = Integer(MAX_OUTPUT_BYTES, help="Bytes of output per cell; the rest is dropped.").tag(
        config=True)
    max_notebook_output_bytes = Integer(
        MAX_NOTEBOOK_OUTPUT_BYTES, help="Bytes of output per notebook; past them each cell keeps one notice.").tag(
        config=True)
    # Widget state goes into the notebook's metadata, unsanitized: not kept.
    store_widget_state = Bool(False).tag(config=True)
    # After a cell's reply, its output still queued must arrive within this (nbclient: 4 s), or
    # nbgrader gives up on the notebook, as it must for a kernel that ignores the interrupt. A
    # flooding cell, interrupted on a busy machine, can take longer than 4 s to drain.
    iopub_timeout = Integer(15).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._counting, self._bytes, self._notebook_bytes = None, 0, 0
        self._noticed = set()
        return super().preprocess(nb, resources, km=km)

    def output(self, outs, msg, display_id, cell_index):
        if getattr(self, "_counting", None) != cell_index:
            self._counting, self._bytes = cell_index, 0
        noticed = self.__dict__.setdefault("_noticed", set())
        # the cell's cap counts what the kernel sent, the notebook's what was kept
        cell_room = self.max_output_bytes - self._bytes
        notebook_room = self.max_notebook_output_bytes - getattr(self, "_notebook_bytes", 0)
        room = min(cell_room, notebook_room)
        size = _message_bytes(msg.get("content", {}))
        self._bytes += size
        if size <= room and cell_index not in noticed:
            clean = self._keep(outs, msg, display_id, cell_index)
            # what is stored (escaped HTML can be longer than what was sent)
            self._notebook_bytes = getattr(self, "_notebook_bytes", 0) + \
                max(size, _message_bytes(clean) if clean is not None else 0)
            return clean
        if cell_index not in noticed:
            # the first message past a cap: keep what still fits of a stream, then one notice
            noticed.add(cell_index)
            content = msg.get("content", {})
            if msg.get("msg_type") == "stream" and room > 0 and isinstance(content.get("text"), str):
                self._notebook_bytes = getattr(self, "_notebook_bytes", 0) + room
                self._keep(outs, dict(msg, content=dict(content, text=content["text"][:room])), None, cell_index)
            if notebook_room < cell_room:
                what = (f"整个 notebook 的输出超过 {self.max_notebook_output_bytes} 字节，本单元其余的输出被丢弃 "
                        "(notebook output limit: the rest of this cell's output was dropped)")
            else:
                what = (f"输出超过 {self.max_output_bytes} 字节，其余部分被丢弃 "
                        "(output limit: the rest was dropped)")
            outs.append(NotebookNode(output_type="stream", name="stderr", text=f"\n[grader] {what}\n"))
        # Past a cap the output is dropped, not kept: the grader's memory stays bounded, and a
        # cell that prints without end runs until its own timeout (an interrupt sent from here
        # could land in the next cell instead).
        return None

    def _keep(self, outs, msg, display_id, cell_index):
        """nbclient's output(), then the new output replaced by its sanitized copy."""
        out = super().output(outs, msg, display_id, cell_index)
        if out is None:
            return None
        clean = sanitize_output(out)
        where = next((i for i in range(len(outs) - 1, -1, -1) if outs[i] is out), None)
        if where is not None:
            if clean is None:
                outs.pop(where)
            else:
                outs[where] = clean
        return clean

    def _update_display_id(self, display_id, msg):
        """An update of an earlier display: sanitized like a new output, counted, capped."""
        if display_id not in self._display_id_map:
            return
        size = _message_bytes(msg.get("content", {}))
        if msg.get("msg_type", msg.get("header", {}).get("msg_type")) == "update_display_data":
            # (a new display with a known display_id is counted in output())
            self._notebook_bytes = getattr(self, "_notebook_bytes", 0) + size
        if self._notebook_bytes > self.max_notebook_output_bytes or size > self.max_output_bytes:
            return
        try:
            out = output_from_msg(dict(msg, header=dict(msg["header"], msg_type="display_data"),
                                       msg_type="display_data"))
        except (ValueError, KeyError):
            return
        clean = sanitize_output(out)
        if clean is None:
            return
        for cell_idx, output_indices in self._display_id_map[display_id].items():
            outputs = self.nb["cells"][cell_idx]["outputs"]
            for output_idx in output_indices:
                if output_idx < len(outputs) and outputs[output_idx].get("output_type") in (
                        "display_data", "execute_result"):
                    outputs[output_idx]["data"] = clean["data"]
                    outputs[output_idx]["metadata"] = clean["metadata"]


class GradedExecute(CappedExecute):
    """CappedExecute that locks the kernel down first, keeps the student's budget and leaves
    test cells to the verifier.

    The lock-down (the assignment's forbidden operators blocked, no new processes:
    grading/jail/guard.py) is sent as the first cell, before any of the student's code; if
    it fails, the notebook is not run. The test cells are not run in the student's kernel:
    their outputs are the verdicts. No cell runs past the student's deadline (each cell's
    timeout is cut to what is left); what is left unrun says so, and ApplyVerdicts then
    scores every test cell 0 (resources["nbgrader"]["over_budget"]).
    """

    deadline = Float(0, help="time.monotonic() deadline of this student's grading; 0: now + "
                             "Grading.student_seconds (set by grading/run/grade_one.py)").tag(config=True)

    def preprocess(self, nb, resources, km=None):
        from grading.contract import load_contract
        from grading.settings import Grading
        info = resources.setdefault("nbgrader", {})
        self._deadline = self.deadline or time.monotonic() + Grading(config=self.config).student_seconds
        self._cell_timeout = self.timeout
        info["deadline"] = self._deadline
        policy = load_contract(coursedir_of(self).root, info["assignment"]).policy
        guard = nbformat.v4.new_code_cell(
            f"_lock = {{'__name__': '__lockdown__'}}\n"
            f"exec(compile({GUARD.read_text()!r}, '<guard>', 'exec'), _lock)\n"
            f"_lock['lock_down_kernel']({policy.forbidden_ops!r}, {policy.forbidden_what!r})\n"
            "del _lock")
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
        left = self._deadline - time.monotonic()
        if left <= 0:
            resources["nbgrader"]["over_budget"] = True
            if cell.cell_type == "code":
                cell.outputs = [NotebookNode(output_type="stream", name="stderr", text=NOT_RUN)]
            return cell, resources
        self.timeout = max(1, min(self._cell_timeout or left, int(left) + 1))
        return super().preprocess_cell(cell, resources, index)

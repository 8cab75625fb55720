"""The corpus of hostile and broken submissions, each with the exact outcome grading must give it.

Every case is one student of one batch: a sample file of `samples/` here, filled into the
release notebook by grading/fill.py (most start from a sample of the class with
`# base: ...` and add an own cell that attacks the grading), optionally followed by a
change of the notebook or of the submission folder; or raw files. `build(course)` writes
them all under the course's submitted/; tests/test_hostile.py grades that batch once and
compares each StudentResult with `Case.expect`.

Expected outcomes are derived from the bug and the hidden tests (see each sample's
docstring), not copied from a run: what the submission loses (`lost`: test cells, or parts
such as "test_corr2d:dtype"; everything else must have full marks; the points come from the
contract, tests/expect.py), the pipeline's flags (grading.result.FLAGS) and status.
"""
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grading.fill import fill_notebook, load_sections, release_notebook, write_submission

HERE = Path(__file__).resolve().parent
SAMPLES = HERE / "samples"
CLASS = HERE.parent.parent / "samples" / "class"
NOTEBOOK = "channels.ipynb"

from expect import ALL as ALL_TESTS, T1, T2, T3, T4, T5, T6, T7, expected_total  # noqa: F401


@dataclass
class Outcome:
    lost: set = field(default_factory=set)    # test cells or "cell:part" lost (all others full marks)
    flags: set = field(default_factory=set)   # exactly these flags
    status: str = "graded"                    # graded | failed | unreadable

    @property
    def total(self):
        return expected_total(self.lost)


@dataclass
class Case:
    student: str
    expect: Outcome
    sample: str = None          # file in samples/ (or samples/class/ when class_sample=True)
    mutate: object = None       # mutate(nb, release_nb, context) -> nb, after filling
    files: object = None        # files(release_nb, context) -> {name: content} written instead of / besides
    class_sample: bool = False
    link: object = None         # link(course, student): the submission is a symbolic link made here

    def build(self, course, release_nb, context):
        if self.link:
            self.link(Path(course), self.student)
            return
        files = {}
        if self.sample:
            nb = fill_notebook(release_nb, (CLASS if self.class_sample else SAMPLES) / f"{self.sample}.py")
            if self.mutate:
                nb = self.mutate(nb, release_nb, context)
            files[NOTEBOOK] = nb
        if self.files:
            files.update(self.files(release_nb, context))
        write_submission(course, self.student, files, "channels")


# --- notebook and folder changes ------------------------------------------------------------------

def _cell(nb, gid):
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == gid)


def _index(nb, gid):
    return nb.cells.index(_cell(nb, gid))


def stub(*gids):
    """Put the release's stub back into answer cells (the student left them undone)."""
    def mutate(nb, release, context):
        for gid in gids:
            _cell(nb, gid).source = _cell(release, gid).source
        return nb
    return mutate


def _reference_nb(release):
    return fill_notebook(release, CLASS / "ref_reference.py")


def _code_of(sample, gid):
    return next(src for _, g, src in load_sections(CLASS / f"{sample}.py") if g == gid)


def course_target(nb, release, context):
    """recipe_writes_file aims at the grader's own package in this course."""
    cell = next(c for c in nb.cells if "/nonexistent/grading/pwned.py" in c.source)
    cell.source = cell.source.replace("/nonexistent/grading/pwned.py", str(pwned_path(context["course"])))
    return nb


def pwned_path(course):
    return Path(course) / "grading" / "pwned.py"


def repeat_own_cell(times):
    """Copy the student's first own cell `times` times (print_flood: forty cells that print)."""
    def mutate(nb, release, context):
        own = next(i for i, c in enumerate(nb.cells) if not c.get("metadata", {}).get("nbgrader"))
        for k in range(times - 1):
            cell = copy.deepcopy(nb.cells[own])
            cell["id"] = f"flood-{k}"
            nb.cells.insert(own + 1, cell)
        return nb
    return mutate


def link_to_source(course, student):
    """submitted/<student>/channels -> the instructor's source/channels (solutions, hidden tests)."""
    folder = course / "submitted" / student
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "channels").symlink_to(course / "source" / "channels", target_is_directory=True)


def link_to_classmate(course, student):
    """submitted/<student> -> a classmate's whole folder."""
    (course / "submitted").mkdir(exist_ok=True)
    (course / "submitted" / student).symlink_to(course / "submitted" / "correct_reference", target_is_directory=True)


def copied_source(release, context):
    """The instructor's source notebook itself, handed in (found on a shared drive, say)."""
    return {NOTEBOOK: (Path(context["course"]) / "source" / "channels" / "channels.ipynb").read_text(encoding="utf-8")}


def network_port(nb, release, context):
    cell = next(c for c in nb.cells if 'SERVER = ("127.0.0.1", 0)' in c.source)
    cell.source = cell.source.replace('("127.0.0.1", 0)', f'("127.0.0.1", {context["port"]})')
    return nb


def duplicate_cells(nb, release, context):
    """Copy-paste in Jupyter: test_corr2d twice; corr2d first written wrong, fixed in a copy below."""
    test = copy.deepcopy(_cell(nb, T1))
    test["id"] = "pasted-test"
    nb.cells.insert(_index(nb, T1) + 1, test)
    wrong = copy.deepcopy(_cell(nb, "corr2d"))
    wrong["id"] = "first-try"
    wrong.source = _code_of("off_by_one", "corr2d")
    nb.cells.insert(_index(nb, "corr2d"), wrong)  # the first cell with grade_id corr2d is the wrong one
    return nb


def delete_cells(nb, release, context):
    for gid in (T1, "sec_multi_in", "conv2d_layer"):
        nb.cells.remove(_cell(nb, gid))
    return nb


def edit_tests(nb, release, context):
    for gid in (T1, T2, T3):
        cell = _cell(nb, gid)
        cell.source = cell.source.splitlines()[0] + "\npass\n"  # keep the docstring, drop the asserts
    return nb


def change_points(nb, release, context):
    nb = stub("corr2d_multi_in_out_fast")(nb, release, context)
    _cell(nb, T1).metadata.nbgrader["points"] = 100
    meta = _cell(nb, T7).metadata.nbgrader
    meta["grade"] = False  # a failing bonus that no longer counts
    meta.pop("points", None)
    _cell(nb, T5).metadata.nbgrader.update(locked=False, solution=True)
    return nb


# --- raw files ---------------------------------------------------------------------------------------

SHADOW_TORCH = '''\
"""Imported instead of torch from the notebook's folder: loads the real torch, then makes comparisons lie."""
import importlib
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_path = list(sys.path)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
del sys.modules["torch"]
_torch = importlib.import_module("torch")
sys.path[:] = _path
_torch.allclose = lambda *args, **kwargs: True
_torch.equal = lambda *args, **kwargs: True
for _name in ("__eq__", "__ne__", "__gt__", "__lt__", "__ge__", "__le__"):
    setattr(_torch.Tensor, _name, lambda self, other, _eq=_name in ("__eq__", "__ge__", "__le__"): _torch.tensor(_eq))
sys.modules["torch"] = _torch
'''

TOOTHLESS_CHECKS = '''

# --- the student's additions: nothing can fail any more ---
def assert_close(*args, **kwargs):
    return None


def call_checked(fn, *args, case=None, **kwargs):
    return fn(*args)
'''


def shadow_torch(release, context):
    return {"torch.py": SHADOW_TORCH}


def shadow_checks(release, context):
    release_dir = Path(context["course"]) / "release" / "channels"
    return {name: (release_dir / name).read_text(encoding="utf-8") + TOOTHLESS_CHECKS
            for name in ("checks.py", "testkit.py")}


def corrupt_json(release, context):
    text = nbformat.writes(_reference_nb(release))
    return {NOTEBOOK: text[: len(text) // 2]}  # the upload broke off half-way


def old_nbformat(release, context):
    return {NOTEBOOK: nbformat.writes(nbformat.convert(_reference_nb(release), 3), version=3)}


def renamed_notebook(release, context):
    return {"channels (1).ipynb": _reference_nb(release)}


# --- the corpus ----------------------------------------------------------------------------------------

def _lost(*tests):
    return set(tests)


CASES = [
    # Correct code in the same batch: must keep full marks whatever the others do.
    Case("correct_reference", Outcome(), sample="ref_reference", class_sample=True),
    # Monkeypatching inside the kernel: the verifier's verdict wins and the disagreement is reported.
    Case("patch_compare", Outcome({f"{T4}:values", f"{T4}:dtype", f"{T4}:rules", f"{T4}:matmul"}), sample="patch_compare"),
    Case("patch_checks", Outcome({f"{T3}:values", f"{T3}:dtype", f"{T3}:rules"}), sample="patch_checks"),
    Case("builtins_import", Outcome({f"{T1}:values", f"{T1}:dtype", f"{T1}:rules"}), sample="builtins_import"),
    Case("ipython_transform", Outcome(ALL_TESTS), sample="ipython_transform"),
    Case("custom_exc", Outcome({f"{T2}:values", f"{T2}:dtype", f"{T2}:rules"}), sample="custom_exc"),
    # Reaching outside the notebook: nothing there to reach.
    Case("reads_source", Outcome(ALL_TESTS), sample="reads_source"),
    Case("network", Outcome(ALL_TESTS), sample="network", mutate=network_port),
    Case("shadow_torch", Outcome({f"{T4}:values", f"{T4}:dtype", f"{T4}:rules", f"{T4}:matmul"}), sample="shadow_torch", files=shadow_torch),
    Case("shadow_checks", Outcome({f"{T3}:values", f"{T3}:dtype", f"{T3}:rules"}), sample="shadow_checks", files=shadow_checks),
    Case("detached_writer", Outcome(_lost(T7)), sample="detached_writer", mutate=stub("corr2d_multi_in_out_fast")),
    # The convolution operator, however it is reached.
    Case("alias_conv", Outcome(_lost(T3)), sample="alias_conv"),
    Case("aten_conv", Outcome(_lost(T7)), sample="aten_conv"),
    Case("getattr_conv", Outcome(_lost(T1)), sample="getattr_conv"),
    Case("conv_tbc", Outcome(_lost(T4)), sample="conv_tbc"),
    Case("dispatch_escape", Outcome(_lost(T3)), sample="dispatch_escape"),
    # What the untrusted side reports about itself must not decide a test.
    Case("fake_op_log", Outcome({f"{T4}:matmul"}), sample="fake_op_log"),
    Case("hide_inplace", Outcome({f"{T4}:rules"}), sample="hide_inplace"),
    # Broken files.
    Case("corrupt_json", Outcome(ALL_TESTS, {"unreadable_notebook"}, "unreadable"), files=corrupt_json),
    Case("old_nbformat", Outcome(set(), {"old_nbformat"}), files=old_nbformat),
    Case("renamed_notebook", Outcome(set(), {"renamed_notebook"}), files=renamed_notebook),
    # only checks.py and the time stamp were handed in
    Case("missing_notebook", Outcome(ALL_TESTS, {"missing_notebook"}, "unreadable"), files=lambda r, c: {}),
    # Edited structure: graded as the release's cells with the student's answers.
    Case("duplicated_cells", Outcome(set(), {"cells_restored", "duplicate_answer"}),
         sample="ref_reference", class_sample=True, mutate=duplicate_cells),
    Case("deleted_cells", Outcome(_lost(T6), {"cells_restored", "answer_missing"}),
         sample="ref_reference", class_sample=True, mutate=delete_cells),
    Case("edited_tests", Outcome({f"{T1}:values", f"{T1}:dtype", f"{T1}:rules"}, {"cells_restored"}),
         sample="flipped_kernel", class_sample=True, mutate=edit_tests),
    Case("changed_points", Outcome(_lost(T7), {"cells_restored"}),
         sample="ref_reference", class_sample=True, mutate=change_points),
    # Kernels that hang, exit or run out of memory.
    Case("forever_loop", Outcome(set(), {"timeout"}), sample="forever_loop"),
    Case("ignores_interrupt", Outcome(set(), {"timeout", "autograde_failed"}, "failed"), sample="ignores_interrupt"),
    Case("os_exit_call", Outcome(_lost(T7)), sample="os_exit_call"),
    Case("out_of_memory", Outcome(), sample="out_of_memory"),
    # Work done where a recorder bound to the calling thread would not look: threads, processes,
    # custom operators. No thread or process may start while graded; only torch's operators run.
    Case("thread_conv", Outcome(_lost(T1)), sample="thread_conv"),
    Case("fork_conv", Outcome(_lost(T1)), sample="fork_conv"),
    Case("custom_op_conv", Outcome(_lost(T1)), sample="custom_op_conv"),
    Case("thread_loop_fast", Outcome(_lost(T7)), sample="thread_loop_fast"),
    # What the student does to IPython cannot change a verdict: no test cell runs in the kernel.
    Case("strip_asserts", Outcome(_lost(T1)), sample="strip_asserts"),
    # Unusual but correct: the verifier judges results and rules, not the way of writing.
    Case("unusual_correct", Outcome(), sample="unusual_correct"),
    # Forged recipes: the replay runs in the verifier's jail, with the child's own policy.
    Case("recipe_writes_file", Outcome(_lost(T7)), sample="recipe_writes_file", mutate=course_target),
    Case("recipe_conv", Outcome(_lost(T1)), sample="recipe_conv"),
    Case("stall_recipe", Outcome(_lost(T1)), sample="stall_recipe"),
    Case("scalar_smuggle", Outcome({f"{T1}:values", f"{T1}:dtype", f"{T1}:rules"}), sample="scalar_smuggle"),
    # Rules that padding or memoising cannot fool.
    Case("padded_loop_fast", Outcome({f"{T7}:no_loop", f"{T7}:speed"}), sample="padded_loop_fast"),
    Case("memo_fast", Outcome({f"{T7}:no_loop", f"{T7}:speed"}), sample="memo_fast"),
    Case("padded_1x1", Outcome({f"{T4}:matmul"}), sample="padded_1x1"),
    # What a student's outputs may make the instructor's browser or the grader do.
    Case("html_payloads", Outcome(), sample="html_payloads"),
    Case("print_flood", Outcome(), sample="print_flood", mutate=repeat_own_cell(40)),
    Case("absurd_padding", Outcome(_lost(T6)), sample="absurd_padding"),
    # Links and the instructor's own files at intake.
    Case("link_to_source", Outcome(ALL_TESTS, {"unreadable_notebook"}, "unreadable"), link=link_to_source),
    Case("copied_source", Outcome(set(), {"instructor_code", "cells_restored"}), files=copied_source),
]


def build(course, port=0, cases=CASES):
    """Write every case's submission into course/submitted/; return the student ids."""
    release = nbformat.read(release_notebook(course, "channels"), as_version=4)
    context = {"course": str(course), "port": port}
    for case in cases:
        case.build(course, release, context)
    return [case.student for case in cases]


def answers_served():
    """What the test's server hands to the `network` student: {grade_id: code} of the reference, as JSON."""
    return json.dumps({gid: src for kind, gid, src in load_sections(CLASS / "ref_reference.py")
                       if kind == "code" and gid}).encode()


def describe():
    """The corpus as a table (for the README and failure messages)."""
    rows = [f"{'student':20} {'total':>5}  {'status':10} {'flags':40} lost"]
    for case in CASES:
        e = case.expect
        lost = "all" if e.lost == ALL_TESTS else ",".join(sorted(e.lost)) or "-"
        rows.append(f"{case.student:20} {e.total:5g}  {e.status:10} {','.join(sorted(e.flags)) or '-':40} {lost}")
    return "\n".join(rows)


if __name__ == "__main__":  # python tests/hostile/corpus.py (from the repository root, venv active)
    print(describe())

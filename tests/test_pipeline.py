"""The grading pipeline: rebuild from the release, batch safety, parallel = sequential, feedback.

Submissions here are synthetic: the release notebook with its answer cells filled from
the source notebook's solutions, then damaged the way students damage notebooks.
"""
import copy
import json
import re
import time

import nbformat
import pytest

from conftest import ASSIGNMENT, add_config, nbgrader, require, sandbox_or_trusted
from expect import CONTRACT, MAX_WITH_EXTRA
from grading import gradebook
from grading.course import STATE_DIR, Course
from grading.nbsteps import feedback
from grading.reports import table as report
from grading.run import batch
from grading.result import Outcome, Verdict, reconcile
from grading.rebuild import (Note, SubmissionError, grade_id, is_answer,
                             load_submission, rebuild)

NB = "channels.ipynb"
STATE = STATE_DIR
TESTS = CONTRACT.test_ids
#: Full marks per test cell (extra credit included: what it earns when right).
FULL = {t.grade_id: t.points for t in CONTRACT.tests}
#: conv_flops's part of its test cell.
FLOPS = next(p.points for p in CONTRACT.test("test_conv_flops").parts if p.name == "conv_flops")
#: conv_flops right for the slides' numbers only: passes the visible test, fails a hidden one.
CHEAT_FLOPS = '''def conv_flops(c_i, c_o, k_h, k_w, m_h, m_w):
    """卷积层的乘法次数。"""
    return 1_024_000_000 if c_i == 100 else 0


def train_hours(flop, tflops):
    return flop / (tflops * 1e12) / 3600
'''
DIES = "import os\nos._exit(3)"
#: Ignores the interrupt, so nbclient can only give up on the kernel.
HANGS = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"


# --- building submissions ---------------------------------------------------------------

def release_nb(course):
    return nbformat.read(course / "release" / ASSIGNMENT / NB, as_version=4)


def solutions(course):
    """The source's solutions as a student who wrote the same code would hand them in: without
    nbgrader's markers and the instructor's comments (a copy of those is flagged: test_intake.py)."""
    source = nbformat.read(course / "source" / ASSIGNMENT / NB, as_version=4)
    return {grade_id(c): "\n".join(line for line in c.source.splitlines() if not line.strip().startswith("#"))
            for c in source.cells if is_answer(c) and c.cell_type == "code"}


def cell(nb, gid):
    return next(c for c in nb.cells if grade_id(c) == gid)


def solved(course, **answers):
    """The release notebook with every code answer filled from the source, then `answers` put in."""
    nb = release_nb(course)
    fill = dict(solutions(course), **answers)
    for c in nb.cells:
        if grade_id(c) in fill and is_answer(c):
            c.source = fill[grade_id(c)]
    return nb


def put(course, student, nb=None, raw=None, name=NB):
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        (folder / name).write_bytes(raw)
    elif nb is not None:
        nbformat.write(nb, folder / name)
    return folder


@pytest.fixture
def graders(course):
    """Grade in the sandbox when there is one; elsewhere (not in CI) allow unsandboxed runs."""
    sandbox_or_trusted(course)


def short_timeout(course, seconds=30):
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(f"\nc.Execute.timeout = {seconds}  # tests: loops give up sooner\n")


def codes(notes):
    return {n.code for n in notes}


# --- rebuild: what is graded is the release plus the student's answers -----------------

@pytest.mark.fast
def test_rebuild_of_the_release_is_the_release(course):
    release = release_nb(course)
    nb, notes = rebuild(copy.deepcopy(release), release)
    assert notes == []
    assert [(c.id, c.source) for c in nb.cells] == [(c.id, c.source) for c in release.cells]


@pytest.mark.fast
def test_rebuild_restores_edited_deleted_and_repointed_test_cells(course):
    release = release_nb(course)
    nb = solved(course)
    cell(nb, "test_corr2d").source = "pass  # all good"
    cell(nb, "test_conv_flops").metadata.nbgrader.points = 50
    nb.cells.remove(cell(nb, "test_conv2d_layer"))
    out, notes = rebuild(nb, release)
    for gid in ("test_corr2d", "test_conv_flops", "test_conv2d_layer"):
        assert cell(out, gid).source == cell(release, gid).source
        assert cell(out, gid).metadata == cell(release, gid).metadata
    assert cell(out, "corr2d").source == solutions(course)["corr2d"]
    assert codes(notes) == {"cells_restored"} and len(notes) == 3


@pytest.mark.fast
def test_rebuild_keeps_the_first_duplicate_id_and_the_students_later_copy(course):
    """nbgrader #1083: a duplicated grade id must not abort grading; the last version wins."""
    release = release_nb(course)
    nb = solved(course, corr2d="def corr2d(X, K):\n    return None  # first try")
    later = copy.deepcopy(cell(nb, "corr2d"))
    later.source, later.id = solutions(course)["corr2d"], "copy-1"
    nb.cells.append(later)  # pasted at the end of the notebook
    nb.cells.append(copy.deepcopy(cell(nb, "test_corr2d")))  # a copied test cell
    nb.cells[-1].id = "copy-2"
    out, notes = rebuild(nb, release)
    ids = [grade_id(c) for c in out.cells]
    assert len(ids) == len(release.cells) + 1 and ids.count("corr2d") == 1 and ids.count("test_corr2d") == 1
    k = ids.index("corr2d")
    assert "first try" in out.cells[k].source
    assert out.cells[k + 1].source == solutions(course)["corr2d"] and "nbgrader" not in out.cells[k + 1].metadata
    assert codes(notes) == {"duplicate_answer", "cells_restored"}


@pytest.mark.fast
def test_rebuild_keeps_own_cells_before_the_cell_that_followed_them(course):
    release = release_nb(course)
    nb = solved(course, corr2d_multi_in="def corr2d_multi_in(X, K):\n    return helper(X, K)")
    own = nbformat.v4.new_code_cell("def helper(X, K):\n    return sum(corr2d(x, k) for x, k in zip(X, K))")
    nb.cells.insert(nb.cells.index(cell(nb, "corr2d_multi_in")) + 1, own)
    out, notes = rebuild(nb, release)
    ids = [grade_id(c) for c in out.cells]
    k = ids.index("test_corr2d_multi_in")
    assert ids[k - 2:k + 1] == ["corr2d_multi_in", None, "test_corr2d_multi_in"]
    assert out.cells[k - 1].source == own.source and notes == []


@pytest.mark.fast
def test_rebuild_finds_answers_whose_metadata_was_stripped(course):
    release = release_nb(course)
    nb = solved(course)
    for c in nb.cells:
        c.metadata = {}
        c.id = "x" + c.id  # copied into a fresh notebook: new cell ids too
    out, notes = rebuild(nb, release)
    for gid, code in solutions(course).items():
        assert cell(out, gid).source == code
    assert [grade_id(c) for c in out.cells] == [grade_id(c) for c in release.cells]
    assert codes(notes) == {"metadata_missing"}


@pytest.mark.fast
def test_rebuild_turns_a_deleted_answer_into_an_empty_one(course):
    release = release_nb(course)
    nb = solved(course)
    nb.cells.remove(cell(nb, "corr2d"))
    nb.cells.insert(0, nbformat.v4.new_code_cell("import math  # my own cell"))
    out, notes = rebuild(nb, release)
    assert cell(out, "corr2d").source == "" and is_answer(cell(out, "corr2d"))
    assert codes(notes) == {"answer_missing"}
    assert out.cells[0].source == "import math  # my own cell"  # before 'intro', which followed it


@pytest.mark.fast
def test_an_untagged_cell_defining_a_deleted_answer_becomes_that_answer(course):
    nb = solved(course)
    nb.cells.remove(cell(nb, "corr2d"))
    nb.cells.append(nbformat.v4.new_code_cell(solutions(course)["corr2d"]))
    out, notes = rebuild(nb, release_nb(course))
    assert cell(out, "corr2d").source == solutions(course)["corr2d"]
    assert codes(notes) == {"metadata_missing"}


# --- load_submission: whatever the file is, a notebook or a reason -----------------------

def _reason(folder):
    with pytest.raises(SubmissionError) as info:
        load_submission(folder, NB)
    return info.value


@pytest.mark.parametrize("raw, words", [
    (b'{"cells": [', "JSON"),
    (b"", "empty"),
    (b"[1, 2, 3]", "not a notebook"),
    (b'{"nbformat": 9, "cells": []}', "too new"),
    (b"\xff\xfe\x00junk", "UTF-8"),
])
@pytest.mark.fast
def test_unreadable_files_give_a_reason(tmp_path, raw, words):
    (tmp_path / NB).write_bytes(raw)
    error = _reason(tmp_path)
    assert words in error.reason and error.code == "unreadable_notebook"


@pytest.mark.fast
def test_missing_and_ambiguous_notebooks(tmp_path):
    assert _reason(tmp_path / "nowhere").code == "missing_notebook"
    assert _reason(tmp_path).code == "missing_notebook"
    for name in ("a.ipynb", "b.ipynb"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / name)
    assert "a.ipynb, b.ipynb" in _reason(tmp_path).reason


@pytest.mark.fast
def test_a_renamed_notebook_is_graded_and_noted(course, tmp_path):
    nbformat.write(solved(course), tmp_path / "channels (1).ipynb")
    nb, notes = load_submission(tmp_path, NB)
    assert codes(notes) == {"renamed_notebook"} and "channels (1).ipynb" in notes[0]
    assert cell(nb, "corr2d").source == solutions(course)["corr2d"]


@pytest.mark.fast
def test_an_nbformat_v3_notebook_is_converted(course, tmp_path):
    v3 = nbformat.v3
    answer = v3.new_code_cell(input=solutions(course)["corr2d"],
                              metadata={"nbgrader": {"grade_id": "corr2d", "solution": True}})
    (tmp_path / NB).write_text(v3.writes_json(v3.new_notebook(worksheets=[v3.new_worksheet(cells=[answer])])))
    nb, notes = load_submission(tmp_path, NB)
    assert codes(notes) == {"old_nbformat"} and nb.nbformat == 4
    out, _ = rebuild(nb, release_nb(course))
    assert cell(out, "corr2d").source == solutions(course)["corr2d"]


@pytest.mark.fast
def test_notes_keep_their_code_across_processes():
    import pickle
    note = pickle.loads(pickle.dumps(Note("old_nbformat", "旧版")))
    assert note == "旧版" and note.code == "old_nbformat"


# --- reconcile: only the verifier's verdicts score, and grading fails closed ---------------

def _verdicts(contract, failing=()):
    """Verdicts where the parts named in `failing` ("test_corr2d:dtype") failed and all else passed."""
    out = {}
    for test in contract.tests:
        v = Verdict.failing(test, "假的 (fake)", "values")
        for p in v.parts:
            p.passed = f"{test.grade_id}:{p.name}" not in failing
        out[test.grade_id] = v.to_dict()
    return out


@pytest.mark.fast
def test_reconcile_scores_the_parts_that_passed(course):
    contract = Course(course, ASSIGNMENT).contract
    result = reconcile(contract, Outcome("s", verdicts=_verdicts(contract, {"test_corr2d:dtype"})))
    dtype = next(p.points for p in contract.test("test_corr2d").parts if p.name == "dtype")
    assert result.scores == dict(FULL, test_corr2d=FULL["test_corr2d"] - dtype, written_1x1=None)
    assert result.flags == [] and not result.needs_attention
    assert result.messages == {"test_corr2d": "假的 (fake)"}
    assert reconcile(contract, Outcome("s", verdicts=_verdicts(contract))).total == MAX_WITH_EXTRA


@pytest.mark.fast
def test_reconcile_fails_closed_without_verdicts(course):
    contract = Course(course, ASSIGNMENT).contract
    failed = Outcome("s", status="failed", flags=["kernel_died", "autograde_failed"], reasons=["died"])
    result = reconcile(contract, failed)
    assert result.total == 0 and "verifier_failed" in result.flags and result.needs_attention
    assert all(v["category"] == "verifier_failed" for v in result.verdicts.values())
    # a cell the verifier left out scores 0 too; the others keep what they earned
    some = _verdicts(contract)
    del some["test_corr2d"]
    result = reconcile(contract, Outcome("s", verdicts=some))
    assert result.scores["test_corr2d"] == 0 and result.total == MAX_WITH_EXTRA - FULL["test_corr2d"]
    unreadable = reconcile(contract, Outcome("s", status="unreadable", flags=["unreadable_notebook"]))
    assert unreadable.total == 0 and unreadable.scores["written_1x1"] == 0.0
    assert {v["category"] for v in unreadable.verdicts.values()} == {"broken_notebook"}


@pytest.mark.fast
def test_reconcile_is_pure_and_round_trips(course):
    from grading.result import StudentResult
    contract = Course(course, ASSIGNMENT).contract
    outcome = Outcome("s", verdicts=_verdicts(contract, {"test_corr2d_multi_in_out_fast:speed"}), late_penalty=1.0)
    one, two = reconcile(contract, outcome, "fp"), reconcile(contract, outcome, "fp")
    assert one == two and one.flags == ["late"] and not one.needs_attention
    assert StudentResult.from_dict(one.to_dict()) == one


# --- the gradebook: manual grading survives a regrade of an unchanged answer -----------------

def test_manual_grades_are_kept_for_unchanged_answers_only(course):
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    c = Course(course, ASSIGNMENT)
    gradebook.prepare(c, ["s"])
    contract = c.contract
    first = reconcile(contract, Outcome("s", verdicts=_verdicts(contract), answers={"written_1x1": "aaa"}))
    gradebook.write(c, first, {}, {}, {})
    with gradebook.open_gradebook(c) as gb:
        grade = gb.find_grade("written_1x1", c.notebook_id, ASSIGNMENT, "s")
        grade.manual_score = 1.5
        gb.db.commit()
    for answer, kept in (("aaa", 1.5), ("bbb", None)):
        keep = gradebook.forget(c, "s")
        assert keep == {"written_1x1": {"manual_score": 1.5, "extra_credit": None}}
        again = reconcile(contract, Outcome("s", verdicts=_verdicts(contract), answers={"written_1x1": answer}))
        gradebook.write(c, again, {}, keep, {"written_1x1": "aaa"})
        assert gradebook.scores(course, ASSIGNMENT)["s"]["written_1x1"][1] == kept
        if kept is None:
            break
        with gradebook.open_gradebook(c) as gb:  # put the instructor's grade back for the next round
            gb.find_grade("written_1x1", c.notebook_id, ASSIGNMENT, "s").manual_score = 1.5
            gb.db.commit()


# --- feedback: failure messages of hidden tests, never their code ------------------------

@pytest.mark.fast
def test_feedback_preprocessor_hides_code_and_tracebacks():
    test = nbformat.v4.new_code_cell(
        "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == 4, 'f(2) 错了'\n### END HIDDEN TESTS",
        metadata={"nbgrader": {"grade": True, "solution": False, "grade_id": "t", "points": 1}},
        outputs=[nbformat.v4.new_output("error", ename="AssertionError", evalue="f(2) 错了",
                                        traceback=["----> 3 assert f(2) == 4, 'f(2) 错了'"])])
    out, _ = feedback.HideHiddenTests().preprocess_cell(test, {}, 0)
    assert "f(2) == 4" not in out.source and "assert f(1) == 1" in out.source
    assert out.outputs[0].traceback == ["AssertionError: f(2) 错了"]


# --- the batch ------------------------------------------------------------------------------

def _hostile_class(course):
    """The broken notebooks of issue 4 next to a correct one; returns the expected auto totals."""
    put(course, "good", solved(course))
    written = solved(course)
    cell(written, "written_1x1").source = "1×1 卷积在每个像素上对 c_i 个通道做同一个线性变换。"
    put(course, "written", written)
    tampered = solved(course, conv_flops=CHEAT_FLOPS)
    cell(tampered, "test_conv_flops").source = "pass"  # 'fixing' the test that fails
    cell(tampered, "test_corr2d").metadata.nbgrader.points = 30
    put(course, "tampered", tampered)
    dup = solved(course)
    dup.cells += [copy.deepcopy(cell(dup, "corr2d")), copy.deepcopy(cell(dup, "test_corr2d"))]
    dup.cells[-2].id, dup.cells[-1].id = "copy-1", "copy-2"
    put(course, "duplicated", dup)
    put(course, "renamed", solved(course), name="Untitled.ipynb")
    put(course, "corrupt", raw=b'{"cells": [{"cell_type": "code", "sour')
    put(course, "missing")
    put(course, "dies", solved(course, corr2d_multi_in=DIES))
    put(course, "hangs", solved(course, corr2d=HANGS))
    # None: nbgrader fails, so the points are those the verifier could confirm
    full = MAX_WITH_EXTRA
    return {"good": full, "written": full, "tampered": full - FLOPS, "duplicated": full, "renamed": full,
            "corrupt": 0, "missing": 0, "dies": None, "hangs": None}


@pytest.mark.timeout(1200)
def test_a_batch_grades_everyone_despite_broken_notebooks(course, graders):
    short_timeout(course)
    expected = _hostile_class(course)
    results = {r.student: r for r in batch.grade(course, ASSIGNMENT, jobs=2, progress=False)}
    assert sorted(results) == sorted(expected)
    book = gradebook.scores(course, ASSIGNMENT)
    assert sorted(book) == sorted(expected)  # every student has a gradebook record
    for student, total in expected.items():
        r = results[student]
        auto = {g: book[student][g][0] for g in TESTS}
        if total is None:  # nbgrader failed: the verdicts score, as always
            assert r.status == "failed"
            total = sum(r.verdicts[g]["score"] for g in TESTS)
        assert sum(auto.values()) == total, (student, auto, r.reasons)
        assert auto == {g: r.scores[g] for g in TESTS}
    assert results["good"].flags == [] and not results["good"].needs_attention
    assert book["good"]["written_1x1"] == (0.0, None, False)  # untouched stub
    assert book["written"]["written_1x1"] == (None, None, True)  # waits for the instructor
    assert {"cells_restored"} <= set(results["tampered"].flags)
    assert results["tampered"].scores["test_conv_flops"] == FULL["test_conv_flops"] - FLOPS  # conv_flops cheats
    assert "duplicate_answer" in results["duplicated"].flags
    assert "renamed_notebook" in results["renamed"].flags
    assert results["corrupt"].status == "unreadable" and "JSON" in results["corrupt"].reason
    assert results["missing"].flags == ["missing_notebook"]
    assert {"kernel_died", "autograde_failed"} <= set(results["dies"].flags)
    assert {"timeout", "autograde_failed"} <= set(results["hangs"].flags)
    attention = dict(report.attention(list(results.values())))
    assert set(attention) == set(expected) - {"good", "written"}
    table = report.format_table(list(results.values()))
    # every test cell right, the bonus's extra credit as +points, the untouched written answer 0
    assert TESTS[-1] in CONTRACT.extra_credit
    assert re.search(rf"^good\s+(✓\s+){{{len(TESTS) - 1}}}\+2\s+0\s+{MAX_WITH_EXTRA:g}/20", table, re.M), table
    assert "(extra credit)" in table.splitlines()[-1]
    # ... and so in the gradebook: 0 of 0 points, what it earned as nbgrader's extra credit
    from nbgrader.api import Gradebook
    bonus = CONTRACT.tests[-1]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grade = gb.find_grade(bonus.grade_id, ASSIGNMENT, ASSIGNMENT, "good")
        assert (grade.max_score, grade.auto_score, grade.extra_credit) == (0.0, 0.0, bonus.points)

    # Every student, even the unreadable ones, gets feedback without hidden test code.
    nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    for student in expected:
        assert (course / "feedback" / student / ASSIGNMENT / "channels.html").exists(), student
    html = (course / "feedback" / "tampered" / ASSIGNMENT / "channels.html").read_text()
    assert "conv_flops c_i=3, c_o=7" in html  # the failed hidden test's message
    assert "BEGIN HIDDEN TESTS" not in html and "3 * 7 * 2 * 5 * 11 * 13" not in html
    assert "自动评分没有完成" in (course / "feedback" / "dies" / ASSIGNMENT / "channels.html").read_text()
    nbgrader(course, "export")
    assert len((course / "grades.csv").read_text().strip().splitlines()) == 1 + len(expected)

    # A regrade that fails leaves nothing of the earlier grade.
    put(course, "good", solved(course, **{gid: DIES for gid in solutions(course)}))
    again = batch.grade(course, ASSIGNMENT, students=["good"], jobs=1, progress=False)[0]
    assert again.status == "failed" and not again.skipped
    assert sum(gradebook.scores(course, ASSIGNMENT)["good"][g][0] for g in TESTS) == 0


@pytest.mark.timeout(1200)
def test_parallel_sequential_and_repeated_grading_agree(course, graders):
    put(course, "good", solved(course))
    put(course, "cheat", solved(course, conv_flops=CHEAT_FLOPS))
    put(course, "stub", release_nb(course))
    put(course, "corrupt", raw=b"not json")
    first = batch.grade(course, ASSIGNMENT, jobs=2, progress=False)
    book = gradebook.scores(course, ASSIGNMENT)
    assert {r.student: r.total for r in first} == {"cheat": MAX_WITH_EXTRA - FLOPS, "corrupt": 0, "good": MAX_WITH_EXTRA,
                                                   "stub": 0}

    again = batch.grade(course, ASSIGNMENT, jobs=1, regrade=True, progress=False)
    assert gradebook.scores(course, ASSIGNMENT) == book
    assert [(r.student, r.scores, r.flags, r.skipped) for r in again] == \
           [(r.student, r.scores, r.flags, False) for r in first]

    # The warm jails (grading/jail/zygote.py) grade exactly as one fresh jail per process.
    from grading.course import load_config
    from grading.settings import Grading
    cold = batch.grade(course, ASSIGNMENT, jobs=2, regrade=True, progress=False,
                       settings=Grading(config=load_config(course), warm_jails=False))
    assert not any(r.warm_jail for r in cold) and all(r.warm_jail for r in first if r.status == "graded")
    assert gradebook.scores(course, ASSIGNMENT) == book
    assert [(r.student, r.scores, r.flags) for r in cold] == [(r.student, r.scores, r.flags) for r in first]

    # Unchanged students are skipped; a changed one is graded again.
    put(course, "stub", solved(course))
    third = {r.student: r for r in batch.grade(course, ASSIGNMENT, jobs=2, progress=False)}
    assert [s for s, r in sorted(third.items()) if not r.skipped] == ["stub"]
    assert third["stub"].total == MAX_WITH_EXTRA and third["good"].scores == first[2].scores
    assert gradebook.scores(course, ASSIGNMENT) == dict(book, stub=gradebook.scores(course, ASSIGNMENT)["stub"])


@pytest.mark.timeout(600)
def test_plain_nbgrader_autograde_rebuilds_from_the_release(course, graders):
    tampered = solved(course, conv_flops=CHEAT_FLOPS)
    cell(tampered, "test_conv_flops").source = "pass"
    cell(tampered, "test_corr2d").metadata.nbgrader.points = 30
    tampered.cells.append(copy.deepcopy(cell(tampered, "corr2d")))  # nbgrader #1083
    tampered.cells[-1].id = "copy-1"
    put(course, "tampered", tampered)
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    nbgrader(course, "autograde", ASSIGNMENT, "--force")
    nbgrader(course, "export")
    rows = (course / "grades.csv").read_text().splitlines()
    # the verifier ran inside plain nbgrader too (ApplyVerdicts): conv_flops loses its part; the
    # bonus is extra credit on top of the 20 points (SaveGrades)
    total = f"{MAX_WITH_EXTRA - FLOPS:.1f}"
    assert rows[1].split(",")[7:] == [total, "0.0", total, "20.0"], rows


#: An own cell that would keep the grader for an hour.
SLEEPS = "import time\ntime.sleep(3600)"
#: The student's budget in these tests (c.Grading.student_seconds): enough for a reference
#: student on a busy machine, far less than SLEEPS.
BUDGET = 60


def _over_budget(course):
    """Every test cell of `course`'s gradebook row for "slow" scores 0."""
    return {g: auto for g, (auto, _, _) in gradebook.scores(course, ASSIGNMENT)["slow"].items() if g in TESTS}


@pytest.mark.timeout(900)
def test_a_student_over_budget_scores_0_and_the_next_is_graded(course, graders):
    """The batch (and run-one, which is a batch of one): past c.Grading.student_seconds every test
    cell of the student scores 0 with the reason, and the next student is graded as usual."""
    add_config(course, f"c.Grading.student_seconds = {BUDGET}")
    slow = solved(course)
    slow.cells.insert(3, nbformat.v4.new_code_cell(SLEEPS))
    put(course, "slow", slow)
    put(course, "good", solved(course))
    started = time.monotonic()
    results = {r.student: r for r in batch.grade(course, ASSIGNMENT, jobs=1, progress=False)}
    elapsed = time.monotonic() - started
    r = results["slow"]
    assert all(r.scores[t] == 0 for t in TESTS), r.scores
    assert "over_budget" in r.flags and any("时间上限" in why for why in r.reasons), (r.flags, r.reasons)
    assert _over_budget(course) == {t: 0.0 for t in TESTS}
    good = results["good"]
    assert good.status == "graded" and sum(good.scores[t] for t in TESTS) == MAX_WITH_EXTRA
    # the slow student cost its budget (and the kill's grace at most), not the hour it asked for
    assert elapsed < BUDGET + batch.BUDGET_GRACE + 120, elapsed


@pytest.mark.timeout(900)
def test_plain_nbgrader_autograde_has_the_same_budget(course, graders):
    """A plain `nbgrader autograde` (what the formgrader's button runs) keeps the same budget."""
    add_config(course, f"c.Grading.student_seconds = {BUDGET}")
    slow = solved(course)
    slow.cells.insert(3, nbformat.v4.new_code_cell(SLEEPS))
    put(course, "slow", slow)
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    started = time.monotonic()
    nbgrader(course, "autograde", ASSIGNMENT, "--force")
    assert time.monotonic() - started < BUDGET + 120
    assert _over_budget(course) == {t: 0.0 for t in TESTS}
    graded = nbformat.read(course / "autograded" / "slow" / ASSIGNMENT / NB, as_version=4)
    said = json.dumps([c.get("outputs", []) for c in graded.cells], ensure_ascii=False)
    assert "over the grading time budget" in said


LEAVES_TRACES = '''import os, subprocess
open("/tmp/trace", "w").write("a")  # scratch space
open("trace_here", "w").write("a")  # the working directory
try:
    subprocess.Popen(["sleep", "613"], start_new_session=True)  # would outlive the kernel
except OSError as e:
    print("process refused", e.errno)  # no process may start while graded (grading/jail/guard.py)
try:
    import torch
    torch.nn.functional.conv2d(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1))
except RuntimeError as e:
    print("convolution refused" if "forbidden while grading" in str(e) else e)
try:
    os.kill(1, 9)  # the jail's pid 1
except OSError:
    pass
'''
#: Fails to define corr2d (and so every test that uses it) if anything of the student before is there.
SEES_TRACES = '''import os
others = [p for p in os.listdir("/proc") if p.isdigit() and b"613" in open(f"/proc/{p}/cmdline", "rb").read()]
assert not (os.path.exists("/tmp/trace") or os.path.exists("trace_here") or others), "traces of another student"
'''


@pytest.mark.timeout(900)
def test_nothing_of_a_student_reaches_the_next_one(course, graders):
    """Students graded one after the other by one worker share its warm jail: it is emptied between them."""
    from grading.jail.sandbox import sandbox_status
    require(sandbox_status()[0], "no bubblewrap sandbox, so no warm jail to test")
    put(course, "a_leaves", solved(course, corr2d=LEAVES_TRACES + solutions(course)["corr2d"]))
    put(course, "b_looks", solved(course, corr2d=SEES_TRACES + solutions(course)["corr2d"]))
    results = {r.student: r for r in batch.grade(course, ASSIGNMENT, jobs=1, progress=False)}
    assert results["a_leaves"].total == MAX_WITH_EXTRA and results["a_leaves"].flags == []
    assert results["b_looks"].total == MAX_WITH_EXTRA and results["b_looks"].flags == [], results["b_looks"].reasons
    assert results["a_leaves"].warm_jail and results["b_looks"].warm_jail
    # The kernel itself was locked down before the student's first cell (grading/jail/guard.py).
    graded = nbformat.read(course / "autograded" / "a_leaves" / ASSIGNMENT / NB, as_version=4)
    printed = "".join(o.get("text", "") for o in cell(graded, "corr2d").outputs)
    assert "process refused 1" in printed and "convolution refused" in printed, printed


@pytest.mark.fast
def test_the_fingerprint_changes_with_the_submission_only(course):
    """The skip cache: a student is graded again when the submission (or the course) changes."""
    from grading.course import fingerprint
    put(course, "s", solved(course))
    first = fingerprint(course, ASSIGNMENT, "s")
    assert fingerprint(course, ASSIGNMENT, "s") == first
    put(course, "other", release_nb(course))
    assert fingerprint(course, ASSIGNMENT, "s") == first  # another student's change is not this one's
    put(course, "s", solved(course, corr2d=DIES))
    second = fingerprint(course, ASSIGNMENT, "s")
    assert second != first
    # a batch hashes the course once: the same fingerprints
    from grading.course import course_digest
    assert fingerprint(course, ASSIGNMENT, "s", course_digest(course, ASSIGNMENT)) == second
    with open(course / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write("\n# the course's settings changed\n")
    assert fingerprint(course, ASSIGNMENT, "s") != second


# --- the command line ---------------------------------------------------------------------

def grading_cli(course, *args, env=None, timeout=1500):
    import subprocess
    import sys
    from conftest import venv_env
    return subprocess.run([sys.executable, "-m", "grading", "--course", str(course), *args], cwd=course,
                          env=env or venv_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(1800)
def test_demo_grades_the_sample_class_and_writes_everything(course, graders):
    """`make demo` on a fresh copy: gradebook, release, submissions, grades, feedback, grades.csv, report."""
    samples = sorted((course / "samples" / "class").glob("*.py"))
    keep = {"textbook", "untouched", "ref_reference"} & {p.stem for p in samples}  # other samples build on it
    for path in samples:
        if path.stem not in keep:
            path.unlink()  # three students keep this test short; test_samples grades them all
    proc = grading_cli(course, "demo", "-j", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "总分 (total)" in out and "needs the instructor's attention" in out
    for student in keep:
        assert re.search(rf"^{student}\s", out, re.M), out
        assert (course / "feedback" / student / ASSIGNMENT / "channels.html").exists()
    assert len((course / "grades.csv").read_text().strip().splitlines()) == 1 + len(keep)
    saved = json.loads((course / STATE / ASSIGNMENT / "report.json").read_text())
    assert sorted(r["student"] for r in saved) == sorted(keep)
    # it ends with the class report's path; the LMS files are written from samples/roster.csv
    from grading.reports import analytics
    assert out.strip().splitlines()[-1] == f"班级报告 (class report): {course / analytics.COURSE_REPORT}", out[-500:]
    assert f"班级报告 (class report): {course / analytics.report_path(ASSIGNMENT)}" in out
    page = (course / analytics.report_path(ASSIGNMENT)).read_text(encoding="utf-8")
    assert "textbook" in page and page.count('src="data:image/png;base64,') >= 3
    for name in ("grades-canvas.csv", "grades-moodle.csv"):
        assert len((course / name).read_text(encoding="utf-8").splitlines()) >= 4, name
    assert sorted(gradebook.scores(course, ASSIGNMENT)) == sorted(keep)


def test_grade_refuses_loudly_without_a_sandbox(course, tmp_path):
    from conftest import venv_env
    env = venv_env(PATH=str(tmp_path))  # no bwrap on PATH: no sandbox
    put(course, "good", solved(course))
    proc = grading_cli(course, "grade", env=env, timeout=300)
    assert proc.returncode == 2 and "no sandbox" in proc.stderr and "bwrap" in proc.stderr
    assert not (course / "gradebook.db").exists() and not (course / "autograded").exists()
    # Allowed on the command line (as `make demo` does without bubblewrap), the grading workers,
    # which load nbgrader_config.py again, grade too.
    proc = grading_cli(course, "grade", "--allow-unsandboxed", "-j", "2", env=env, timeout=600)
    assert proc.returncode == 0 and "autograde failed" not in proc.stdout, proc.stdout + proc.stderr
    assert sum(gradebook.scores(course, ASSIGNMENT)["good"][t][0] for t in TESTS) == MAX_WITH_EXTRA


START_AND_WAIT = """import sys, time
from grading.jail.zygote import Zygote, reset
z = Zygote(sys.argv[1], "channels", sys.argv[2], sys.argv[3])
reset(z.path)  # up and running
print(z.dir, flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(300)
def test_a_warm_jail_ends_with_the_grader_that_started_it(course, tmp_path):
    """Even a grader killed with SIGKILL leaves no zygote (and no student process) behind."""
    import subprocess
    import sys
    import time
    import psutil
    from conftest import ROOT, venv_env
    from grading.jail.sandbox import sandbox_status
    require(sandbox_status()[0], "no bubblewrap sandbox, so no warm jail")
    grader = subprocess.Popen([sys.executable, "-c", START_AND_WAIT, str(course), str(tmp_path / "z.log"),
                               str(tmp_path / "jupyter")], cwd=ROOT, env=venv_env(), stdout=subprocess.PIPE, text=True)
    marker = grader.stdout.readline().strip()

    def jailed():
        return [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]

    assert marker and jailed()
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 20
    while jailed() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not jailed()

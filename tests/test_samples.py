"""The bundled sample class: each student's exact grade, and which test cells they lose.

The samples in samples/class/ are filled into the release notebook by grading/fill.py and
graded once as a batch (two workers), exactly as `make demo` does. The table below is the
specification: every total follows from the one mistake the student makes (see the
docstring of samples/class/<student>.py) and the hidden tests of source/channels/. The
feedback HTML and grades.csv of the demo are checked by tests/test_pipeline.py.
"""
import os
import subprocess
import sys

import nbformat
import pytest

from conftest import ASSIGNMENT, ROOT, make_course, venv_env
from grading.fill import SampleError, fill_class, fill_notebook, load_sections, release_notebook

from expect import ALL, T1, T2, T3, T4, T5, T6, T7, expected_total, got_lost, normalise

#: student -> what the student loses: test cells (every part) or parts ("test_corr2d:dtype").
#: The points follow from the contract in the source notebook (tests/expect.py).
EXPECTED = {
    "ref_reference":  set(),
    "own_cells":      set(),                       # own cells (notes, a helper, an experiment) are kept
    "loop_fast":      {f"{T7}:no_loop", f"{T7}:speed"},  # per-pixel loop: right values, op count grows, slow
    "stack_axis":     {T3},                        # (m_h, m_w, c_o) instead of (c_o, m_h, m_w): every part
    "transposed_1x1": {T4},                        # reshape(c_i, c_o).T is not the (c_o, c_i) matrix
    "inplace_kernel": {f"{T4}:rules"},             # K.squeeze_() changes the caller's kernel; values are right
    "mean_channels":  {T2, T3},                    # mean over channels; multi_in_out calls multi_in
    "off_by_one":     {T1, T2, T3},                # (n_h - k_h, n_w - k_w); the other two call corr2d
    "flipped_kernel": {T1, T2, T3},                # true convolution; a 1x1 kernel is its own flip
    "textbook":       {f"{T1}:dtype", f"{T2}:dtype", f"{T3}:dtype"},  # torch.zeros: float32 whatever X is
    "partial":        ALL - {T1, T2},              # only the first two questions done
    "uses_conv2d":    {T1, T2, T3, T4, T7},        # F.conv2d is blocked while grading: every call fails
    "hardcoded":      ALL - {T6},                  # visible answers pasted in: hidden random cases fail
    "untouched":      ALL,
}
#: Students whose written answer (manual, 2 points) is the untouched stub: nbgrader scores it 0.
NO_WRITTEN_ANSWER = {"untouched", "partial"}


def test_expected_table_is_consistent():
    """Every sample has a row, every row a sample, and every loss names a real test cell or part."""
    samples = {p.stem for p in (ROOT / "samples" / "class").glob("*.py")}
    assert samples == set(EXPECTED)
    assert len(samples) >= 10
    for student, lost in EXPECTED.items():
        assert 0 <= expected_total(lost) <= 18, student  # raises on an unknown cell or part
    # partial credit: a dtype slip keeps most of a cell's points, wrong arithmetic none
    from expect import expected_scores
    kept, wrong = expected_scores(EXPECTED["textbook"]), expected_scores(EXPECTED["off_by_one"])
    for test in (T1, T2, T3):
        assert 0.5 * expected_scores(set())[test] < kept[test] < expected_scores(set())[test] and wrong[test] == 0


def test_every_sample_says_who_the_student_is():
    """A module docstring, then sections that all name cells of the release notebook."""
    release = nbformat.read(release_notebook(ROOT, ASSIGNMENT), as_version=4)
    for path in sorted((ROOT / "samples" / "class").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert text.startswith('"""') and path.stem in text.split('"""')[1], path.name
        fill_notebook(release, path)  # raises SampleError on an unknown grade_id


def test_fill_rejects_unknown_and_locked_cells(tmp_path):
    release = nbformat.read(release_notebook(ROOT, ASSIGNMENT), as_version=4)
    bad = tmp_path / "bad.py"
    bad.write_text('"""x"""\n# %% corr2d_typo\ndef corr2d(X, K):\n    pass\n', encoding="utf-8")
    with pytest.raises(SampleError, match="corr2d_typo"):
        fill_notebook(release, bad)
    bad.write_text('"""x"""\n# %% test_corr2d\npass\n', encoding="utf-8")
    with pytest.raises(SampleError, match="not a solution cell"):
        fill_notebook(release, bad)


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


def test_sample_class_grades(tmp_path, monkeypatch):
    """Grade the whole class in one batch: exact totals, exactly the lost test cells, no flags."""
    from grading.batch import grade
    from grading.gradebook import scores as gradebook_scores
    from grading.sandbox import sandbox_status
    if not sandbox_status()[0]:
        # trusted code: the demo grades it without a sandbox too (test_hostile needs the real one)
        monkeypatch.setenv("CHANNELS_ALLOW_UNSANDBOXED", "1")
    course = make_course(tmp_path / "course")
    students = fill_class(ROOT / "samples" / "class", course, ASSIGNMENT)
    results = {r.student: r for r in grade(course, ASSIGNMENT, jobs=2, progress=False)}
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

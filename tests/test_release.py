"""The committed student version release/channels/ is what nbgrader makes from source/channels/.

If a test here fails after you edited source/channels/, regenerate the release with
`make release` (= `nbgrader generate_assignment channels --force`) and commit both folders.
"""
import json
import re

import pytest

from conftest import ASSIGNMENT, ROOT, nbgrader

SOURCE = ROOT / "source" / ASSIGNMENT
RELEASE = ROOT / "release" / ASSIGNMENT
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
STALE = "release/ is stale: run `make release` and commit release/channels/"


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def cells_by_id(nb):
    return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"]}


def region_lines(text, begin, end):
    """The meaningful lines between `### BEGIN X` and `### END X` markers."""
    lines, inside = [], False
    for line in text.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside and len(line.strip()) > 3:
            lines.append(line.strip())
    return lines


def test_committed_release_is_what_generate_assignment_makes(course):
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    fresh = read(course / "release" / ASSIGNMENT / NOTEBOOK)
    committed = read(RELEASE / NOTEBOOK)
    fresh_ids = [c["metadata"]["nbgrader"]["grade_id"] for c in fresh["cells"]]
    committed_ids = [c["metadata"]["nbgrader"]["grade_id"] for c in committed["cells"]]
    assert committed_ids == fresh_ids, f"{STALE} (cells differ: {committed_ids} vs {fresh_ids})"
    stale = [grade_id for grade_id, old, new in zip(fresh_ids, committed["cells"], fresh["cells"]) if old != new]
    assert not stale, f"{STALE} (changed cells: {', '.join(stale)})"
    assert committed == fresh, f"{STALE} (notebook metadata differ)"
    shipped = sorted(p.name for p in (course / "release" / ASSIGNMENT).iterdir())
    assert sorted(p.name for p in RELEASE.iterdir()) == shipped, f"{STALE} (files: {shipped})"
    for helper in sorted(SOURCE.glob("*.py")):  # checks.py, policy.py, testkit.py
        shipped = RELEASE / helper.name
        assert shipped.is_file() and not shipped.is_symlink(), f"{STALE} ({helper.name} missing)"
        assert shipped.read_bytes() == helper.read_bytes(), f"{STALE} ({helper.name} differs)"


@pytest.mark.fast
def test_release_holds_no_solution_and_no_hidden_test():
    source, release = read(SOURCE / NOTEBOOK), read(RELEASE / NOTEBOOK)
    text = json.dumps(release, ensure_ascii=False)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "参考答案", "评分要点"):
        assert marker not in text, f"release/ contains {marker!r}: {STALE}"
    released = cells_by_id(release)
    for grade_id, cell in cells_by_id(source).items():
        src, out = "".join(cell["source"]), "".join(released[grade_id]["source"])
        visible = set(line.strip() for line in src.split("### BEGIN HIDDEN TESTS")[0].splitlines())
        secret = region_lines(src, "### BEGIN SOLUTION", "### END SOLUTION")
        secret += [line for line in region_lines(src, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
                   if line not in visible]
        shown = set(line.strip() for line in out.splitlines())
        leaked = [line for line in secret if line in shown]
        assert not leaked, f"release cell {grade_id} leaks solution or hidden-test lines: {leaked[:3]}"


@pytest.mark.fast
def test_release_keeps_each_answer_signature_and_docstring():
    source, release = cells_by_id(read(SOURCE / NOTEBOOK)), cells_by_id(read(RELEASE / NOTEBOOK))
    for grade_id, cell in source.items():
        meta = cell["metadata"]["nbgrader"]
        if not meta["solution"]:
            continue
        out = "".join(release[grade_id]["source"])
        if cell["cell_type"] == "markdown":
            assert out == "YOUR ANSWER HERE", grade_id
            continue
        src = "".join(cell["source"])
        for signature in re.findall(r"^def \w+\(.*\):\n    \"\"\".*\"\"\"$", src, re.M):
            assert signature in out, f"release cell {grade_id} lost {signature.splitlines()[0]!r}"
        assert out.count("raise NotImplementedError()") == src.count("### BEGIN SOLUTION") >= 1, grade_id


@pytest.mark.fast
def test_committed_notebooks_have_no_outputs():
    for path in (SOURCE / NOTEBOOK, RELEASE / NOTEBOOK):
        for cell in read(path)["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, \
                    f"{path.relative_to(ROOT)} cell {cell['metadata']['nbgrader']['grade_id']} has outputs: clear them"


@pytest.mark.fast
def test_every_assignment_ships_the_engines_testkit():
    """source/<assignment>/testkit.py is the engine's grading/jail/testkit.py (`make release` copies it)."""
    engine = (ROOT / "grading" / "jail" / "testkit.py").read_bytes()
    copies = sorted((ROOT / "source").glob("*/testkit.py"))
    assert copies, "no assignment uses the engine's testkit.py"
    stale = [str(p.relative_to(ROOT)) for p in copies if p.is_symlink() or p.read_bytes() != engine]
    assert not stale, f"{stale} differ from grading/jail/testkit.py: run `make release` and commit"

"""Fill readable sample code into the student notebook: the bundled class and the test corpus.

A sample is a plain Python file, one per student (``samples/class/<student_id>.py``)::

    \"\"\"Who this student is and which mistake they make.\"\"\"

    # %% answer_cell_grade_id
    def f(X):
        ...

    # %% [markdown] written_answer_grade_id
    # 我的答案……

Each ``# %% <grade_id>`` section replaces the source of the release notebook's solution
cell with that grade_id; ``# %% [markdown] <grade_id>`` fills a markdown answer cell, its
lines written as comments (the leading ``# `` is dropped, as in jupytext's percent format).
A section header without a grade_id (``# %%`` or ``# %% [markdown]``) adds a cell of the
student's own right after the cell filled by the section before it (a leading one goes just
before the first solution cell). Cells that no section names keep the release stub, so an
untouched student is a file holding only its docstring. Text before the first header (the
docstring) is not copied.

A line ``# base: ref_reference`` before the first header starts from another sample (a name
in the same folder, or a path ending in ``.py`` relative to this file): its sections are
taken first, and this file's sections replace those with the same grade_id. So a sample with
one mistake shows just the cell that holds it.

Only nbformat is used here, never torch: filling a class must not need the grading stack.
"""
import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

from grading.cells import grade_id as grade_id_of

#: Every sample submission gets the same time stamp, so that refilling and regrading
#: a class gives the same gradebook.
TIMESTAMP = "2025-03-03 09:00:00.000000 UTC"

_HEADER = re.compile(r"^# %%(?:[ \t]+\[(?P<kind>code|markdown)\])?(?:[ \t]+(?P<grade_id>\S+))?[ \t]*$")
_BASE = re.compile(r"^# base:[ \t]*(?P<base>\S+)[ \t]*$")


class SampleError(ValueError):
    """A sample file that does not fit the release notebook."""


def parse_sample(text):
    """Split a sample file into (base or None, sections): sections are (kind, grade_id or None, source)."""
    base, sections, current = None, [], None
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            current = [match["kind"] or "code", match["grade_id"], []]
            sections.append(current)
        elif current is not None:
            current[2].append(line)
        elif _BASE.match(line):
            base = _BASE.match(line)["base"]
    return base, [(kind, grade_id, _body(kind, lines)) for kind, grade_id, lines in sections]


def load_sections(sample_path, _seen=()):
    """The sections of a sample with its base (if any) merged in, in notebook-filling order."""
    sample_path = Path(sample_path).resolve()
    if sample_path in _seen:
        raise SampleError(f"{sample_path.name}: its '# base:' chain comes back to itself")
    base, own = parse_sample(sample_path.read_text(encoding="utf-8"))
    if base is None:
        return own
    base_path = sample_path.parent / (base if base.endswith(".py") else f"{base}.py")
    if not base_path.is_file():
        raise SampleError(f"{sample_path.name}: base sample {base!r} not found ({base_path})")
    merged = load_sections(base_path, _seen + (sample_path,))
    where = 0  # own cells without a grade_id go after the section before them in this file
    for section in own:
        ids = [grade_id for _, grade_id, _ in merged]
        if section[1] is not None and section[1] in ids:
            where = ids.index(section[1])
            merged[where] = section
            where += 1
        else:
            merged.insert(where, section)
            where += 1
    return merged


def _body(kind, lines):
    if kind == "markdown":
        lines = [line[2:] if line.startswith("# ") else line[1:] if line.startswith("#") else line
                 for line in lines]
    return "\n".join(lines).strip("\n")


def fill_notebook(release_nb, sample_path):
    """Return a copy of the release notebook with the sample's sections filled in.

    `release_nb` is a NotebookNode or a path to one. Raises SampleError for a section that
    names an unknown grade_id, a cell that is not a solution cell, or the wrong cell type.
    """
    if not isinstance(release_nb, nbformat.NotebookNode):
        release_nb = nbformat.read(str(release_nb), as_version=4)
    nb = nbformat.from_dict(release_nb)  # deep copy: the release notebook stays as it was
    sample_path = Path(sample_path)
    by_id = {grade_id_of(cell): cell for cell in nb.cells if grade_id_of(cell)}
    solutions = [gid for gid, cell in by_id.items() if cell.metadata["nbgrader"].get("solution")]

    anchor = None  # the cell after which a student's own cell goes
    own = 0
    filled = set()
    for kind, grade_id, source in load_sections(sample_path):
        where = f"{sample_path.name}: section '# %% {grade_id or ''}'"
        if grade_id is None:
            make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
            own += 1
            new = make(source, id=f"own-cell-{own}")  # fixed ids: refilling gives the same file
            if anchor is None:
                first = next(i for i, cell in enumerate(nb.cells) if grade_id_of(cell) in solutions)
                nb.cells.insert(first, new)
            else:
                nb.cells.insert(next(i for i, cell in enumerate(nb.cells) if cell is anchor) + 1, new)
            anchor = new
            continue
        if grade_id not in by_id:
            raise SampleError(f"{where}: the release notebook has no cell with grade_id {grade_id!r} "
                              f"(solution cells: {', '.join(solutions)})")
        cell = by_id[grade_id]
        if grade_id not in solutions:
            raise SampleError(f"{where}: {grade_id!r} is not a solution cell (students cannot edit it)")
        if cell.cell_type != kind:
            raise SampleError(f"{where}: {grade_id!r} is a {cell.cell_type} cell, the section is {kind}")
        if grade_id in filled:
            raise SampleError(f"{where}: {grade_id!r} is filled twice")
        filled.add(grade_id)
        cell.source = source
        anchor = cell
    return nb


def release_notebook(course_root, assignment):
    """The one notebook of the assignment's release folder."""
    notebooks = sorted((Path(course_root) / "release" / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        raise SampleError(f"expected one notebook in release/{assignment}, found {len(notebooks)}: "
                          "run `nbgrader generate_assignment` first")
    return notebooks[0]


def write_submission(course_root, student, files, assignment, timestamp=TIMESTAMP):
    """Write submitted/<student>/<assignment>/ from scratch with the release's other files.

    `files` maps a file name in the submission folder to a NotebookNode, str or bytes.
    Returns the submission folder.
    """
    course_root = Path(course_root)
    folder = course_root / "submitted" / student / assignment
    if folder.exists():
        shutil.rmtree(folder)
    # what the student downloaded (checks.py...), as a real submission folder has it
    shutil.copytree(course_root / "release" / assignment, folder,
                    ignore=shutil.ignore_patterns("*.ipynb", "__pycache__", ".ipynb_checkpoints"))
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, nbformat.NotebookNode):
            nbformat.write(content, str(path), version=nbformat.NO_CONVERT)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    if timestamp is not None:
        (folder / "timestamp.txt").write_text(timestamp + "\n", encoding="utf-8")
    return folder


def sample_files(samples_dir):
    """The sample files of a class folder, sorted by student id (names starting with _ skipped)."""
    return sorted(p for p in Path(samples_dir).glob("*.py") if not p.name.startswith("_"))


def fill_class(samples_dir, course_root, assignment):
    """Fill every sample of `samples_dir` into submitted/ of `course_root`; return the student ids."""
    release = release_notebook(course_root, assignment)
    release_nb = nbformat.read(str(release), as_version=4)
    students = []
    for path in sample_files(samples_dir):
        nb = fill_notebook(release_nb, path)
        write_submission(course_root, path.stem, {release.name: nb}, assignment)
        students.append(path.stem)
    return students


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m grading.fill", description=__doc__.split("\n")[0])
    parser.add_argument("samples_dir", help="folder of <student_id>.py samples, e.g. samples/class")
    parser.add_argument("course_root", help="course folder holding release/ (submitted/ is written there)")
    parser.add_argument("--assignment", default=None, help="default: the course's only assignment")
    args = parser.parse_args(argv)
    from grading.course import AssignmentError, choose_assignment
    try:
        students = fill_class(args.samples_dir, args.course_root, choose_assignment(args.course_root, args.assignment))
    except (SampleError, AssignmentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"filled {len(students)} submissions into {Path(args.course_root) / 'submitted'}: {' '.join(students)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

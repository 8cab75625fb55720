"""What a notebook cell is to nbgrader, read defensively (a student's notebook may hold anything).

One place for the metadata questions the pipeline, the preprocessors and the tests ask:
the cell's nbgrader metadata, its grade_id, whether it is an answer or an autograded test.
"""


def nbgrader_meta(cell):
    """The cell's nbgrader metadata ({} when missing or not a dict)."""
    meta = cell.get("metadata")
    flags = meta.get("nbgrader") if isinstance(meta, dict) else None
    return flags if isinstance(flags, dict) else {}


def grade_id(cell):
    gid = nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def is_answer(cell):
    """A cell whose source is the student's to write (nbgrader solution cell)."""
    return bool(nbgrader_meta(cell).get("solution"))


def is_test(cell):
    """An autograded test cell: a graded code cell that is not an answer."""
    meta = nbgrader_meta(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src

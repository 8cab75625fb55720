"""Rebuild the notebook to grade from the release notebook and the student's answers.

A submission is trusted for nothing but its answers. The notebook that nbgrader executes
is the release notebook's cell sequence, with each solution cell replaced by the
student's cell of the same grade_id and the student's own (untagged) cells kept where
they were relative to the graded cells. So an edited, deleted or duplicated test cell,
changed points or stripped metadata cannot change what is graded, and a duplicated
grade_id cannot abort the batch (nbgrader #1083).

`load_submission` turns whatever file the student handed in into a v4 notebook or a
`SubmissionError` with a reason the instructor can act on.
"""
import copy
import json
import os
import re
from collections import defaultdict
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from grading import intake
from grading.cells import grade_id, is_answer, nbgrader_meta as _flags, source as _source

#: Files larger than this are not notebooks anyone meant to hand in (never read beyond it).
MAX_BYTES = intake.INTAKE_LIMITS["file_bytes"]


class SubmissionError(Exception):
    """The submission cannot be read as a notebook; `reason` says why (shown in reports).

    `code` is "missing_notebook" when there is no notebook at all, else "unreadable_notebook".
    """

    def __init__(self, reason, code="unreadable_notebook"):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Note(str):
    """A note on what the rebuild or the loader changed: readable text plus a stable `code`.

    Codes: metadata_missing, cells_restored, answer_missing, duplicate_answer,
    renamed_notebook, old_nbformat, cells_ignored, files_refused.
    """

    def __new__(cls, code, text):
        note = super().__new__(cls, text)
        note.code = code
        return note

    def __reduce__(self):  # keep the code when notes cross process boundaries
        return Note, (self.code, str(self))


# --- cell helpers ------------------------------------------------------------------

def _kind(cell):
    """How a release cell is named in notes: test / answer / instruction cell."""
    if is_answer(cell):
        return "答案单元 (answer cell)"
    if _flags(cell).get("grade"):
        return "测试单元 (test cell)"
    return "说明单元 (instruction cell)"


def _blank(cell):
    """`cell` as it is before execution: no outputs, no execution count."""
    cell = copy.deepcopy(cell)
    if cell.get("cell_type") == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    return cell


def _own(cell):
    """A student's own cell: no nbgrader metadata, so nbgrader never mistakes it for a graded cell."""
    cell = _blank(cell)
    cell.setdefault("metadata", NotebookNode())
    cell["metadata"].pop("nbgrader", None)
    return cell


def _answer(release_cell, student_cell):
    """The release's solution cell (metadata, points, id) holding the student's source."""
    cell = _blank(release_cell)
    cell["source"] = _source(student_cell) if student_cell is not None else ""
    if student_cell is not None and release_cell["cell_type"] == "markdown" and "attachments" in student_cell:
        cell["attachments"] = copy.deepcopy(student_cell["attachments"])
    return cell


# --- matching student cells to release cells --------------------------------------

def _defines(cell, name):
    return re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", _source(cell), re.M) is not None


def _match_untagged(student, release, candidates, taken, notes):
    """Find release cells for student cells whose nbgrader metadata was stripped or changed.

    Tried in order: the nbformat cell id, the exact source of a locked cell, for a code
    answer its `def NAME(` line (the contract keeps it in every answer cell), and for a
    markdown answer the position right after the cell that precedes it in the release.
    Returns {student index: grade_id} for the `candidates` (indices of untagged cells).
    """
    by_cell_id = {c.get("id"): grade_id(c) for c in release if c.get("id")}
    locked_by_source = {_source(c): grade_id(c) for c in release if not is_answer(c)}
    code_answers = [grade_id(c) for c in release if is_answer(c) and c["cell_type"] == "code"]
    found = {}

    def free(gid):
        return gid is not None and gid not in taken and gid not in found.values()

    for i in candidates:
        cell = student[i]
        tries = [
            by_cell_id.get(cell.get("id")),
            locked_by_source.get(_source(cell)),
            next((a for a in code_answers if free(a) and cell.get("cell_type") == "code"
                  and _defines(cell, a)), None),
        ]
        gid = next((g for g in tries if free(g)), None)
        if gid is not None:
            found[i] = gid
    where = {**{g: i for g, i in taken.items()}, **{g: i for i, g in found.items()}}
    for k, rcell in enumerate(release[1:], start=1):
        gid, prev = grade_id(rcell), grade_id(release[k - 1])
        nxt = where.get(prev, -2) + 1
        if (is_answer(rcell) and rcell["cell_type"] == "markdown" and free(gid) and nxt in candidates
                and nxt not in found and student[nxt].get("cell_type") == "markdown"):
            found[nxt] = gid
    if found:
        ids = ", ".join(found[i] for i in sorted(found))
        notes.append(Note("metadata_missing", f"{len(found)} 个单元的 nbgrader 元数据缺失，已按 id、内容、函数名或位置识别 "
                     f"(metadata missing, matched by id/content/name/position): {ids}"))
    return found


def _classify(student, release, notes):
    """Map each student cell to ('graded', gid), ('duplicate', gid), ('dropped', gid) or ('own', None)."""
    release_ids = {grade_id(c): c for c in release if grade_id(c)}
    taken = {}  # grade_id -> index of its (first) student cell
    kinds = []
    for i, cell in enumerate(student):
        gid = grade_id(cell)
        if gid in release_ids and gid not in taken:
            taken[gid] = i
            kinds.append(("graded", gid))
        elif gid in release_ids and is_answer(release_ids[gid]):
            kinds.append(("duplicate", gid))
        elif gid in release_ids:
            kinds.append(("dropped", gid))
        else:
            kinds.append(("own", None))
    untagged = [i for i, (kind, _) in enumerate(kinds) if kind == "own"]
    for i, gid in _match_untagged(student, release, untagged, taken, notes).items():
        kinds[i] = ("graded", gid)
        taken[gid] = i
    return kinds, taken


def _compare(release_cell, student_cell, notes):
    """Note what the student changed in a cell that the rebuild restores from the release."""
    gid, what = grade_id(release_cell), _kind(release_cell)
    if student_cell is None:
        verb = "缺失，按空答案评分 (missing, graded as empty)" if is_answer(release_cell) else "被删除，已恢复 (deleted, restored)"
        notes.append(Note("answer_missing" if is_answer(release_cell) else "cells_restored", f"{what} {gid} {verb}"))
        return
    theirs, ours = _flags(student_cell), _flags(release_cell)
    if not is_answer(release_cell) and _source(student_cell) != _source(release_cell):
        notes.append(Note("cells_restored", f"{what} {gid} 被修改，已恢复 (edited, restored)"))
    if theirs and theirs.get("points") != ours.get("points") and (ours.get("grade") or theirs.get("grade")):
        notes.append(Note("cells_restored", f"{what} {gid} 的分值被改为 {theirs.get('points')}，"
                                            f"已恢复为 {ours.get('points')} (points restored)"))
    elif theirs and any(theirs.get(k) != ours.get(k) for k in ("grade", "solution", "locked")):
        notes.append(Note("cells_restored", f"{what} {gid} 的 nbgrader 元数据被修改，已恢复 (metadata restored)"))
    if student_cell.get("cell_type") != release_cell["cell_type"]:
        notes.append(Note("cells_restored", f"{what} {gid} 的类型被改为 {student_cell.get('cell_type')}，"
                                            "已恢复 (cell type restored)"))


def _unique_ids(cells):
    """nbformat ≥ 4.5 needs unique cell ids; the student's own cells may clash with the release's."""
    seen = set()
    for k, cell in enumerate(cells):
        cid = cell.get("id")
        if not cid or cid in seen or not re.fullmatch(r"[a-zA-Z0-9-_]{1,64}", cid):
            cid = f"own-{k}"
            while cid in seen:
                cid += "x"
            cell["id"] = cid
        seen.add(cid)
    return cells


# --- the rebuild -------------------------------------------------------------------

def rebuild(student_nb, release_nb):
    """Return (notebook to grade, notes) built from the release cells and the student's answers.

    Every release cell comes from the release, except solution cells, which take the
    student's cell with that grade_id (a missing one becomes an empty answer). A solution
    cell duplicated by the student stays as the student's own cell right after it, so the
    last version they wrote is the one defined. The student's own cells go just before the
    release cell that followed them in their notebook. Duplicates of locked cells are dropped.
    """
    release = release_nb["cells"]
    student = student_nb.get("cells", [])
    notes = []
    by_id = {grade_id(c): c for c in release}
    kinds, taken = _classify(student, release, notes)

    before = defaultdict(list)      # grade_id of the next graded cell -> own cells in front of it
    after = defaultdict(list)       # grade_id of an answer -> the student's duplicates of it
    pending = []
    for i, (kind, gid) in enumerate(kinds):
        cell = student[i]
        if kind == "own":
            pending.append(_own(cell))
        elif kind == "graded":
            before[gid].extend(pending)
            pending = []
        elif kind == "duplicate":
            after[gid].append(_own(cell))
        else:
            notes.append(Note("cells_restored", f"{_kind(by_id[gid])} {gid} 被复制，多余的副本已删除 (duplicate removed)"))
    for gid, dups in after.items():
        notes.append(Note("duplicate_answer", f"答案单元 {gid} 出现 {len(dups) + 1} 次，后面的副本作为学生自己的单元保留 "
                                              "(duplicated answer kept as own cell)"))

    cells = []
    for rcell in release:
        gid = grade_id(rcell)
        if gid is None:  # not in the contract, but nothing to match it with either
            cells.append(_blank(rcell))
            continue
        scell = student[taken[gid]] if gid in taken else None
        _compare(rcell, scell, notes)
        cells.extend(before.get(gid, []))
        cells.append(_answer(rcell, scell) if is_answer(rcell) else _blank(rcell))
        cells.extend(after.get(gid, []))
    cells.extend(pending)

    nb = copy.deepcopy(release_nb)
    nb["cells"] = _unique_ids(cells)
    return nb, notes


# --- reading what the student handed in --------------------------------------------

def _refused_entries(entries):
    """A note on the entries of the submission folder that are not regular files (links, fifos, devices)."""
    odd = sorted((name, kind) for name, kind in entries.items() if kind not in ("file", "dir"))
    if not odd:
        return []
    listed = ", ".join(f"{name} ({intake.KINDS[kind][0]} {intake.KINDS[kind][1]})" for name, kind in odd[:10])
    more = f" … (+{len(odd) - 10})" if len(odd) > 10 else ""
    return [Note("files_refused", f"{len(odd)} 个文件不是普通文件，已忽略 "
                                  f"({len(odd)} entries are not regular files, ignored): {listed}{more}")]


def _not_regular(name, kind):
    zh, en = intake.KINDS.get(kind, intake.KINDS["other"])
    return SubmissionError(f"notebook {name} 是{zh}，拒绝读取 (the notebook is a {en}: refused)")


def _find_notebook(folder, name, dir_fd=None):
    """The submitted notebook's path, accepting one renamed copy; (path, notes).

    Only regular files are considered: links, fifos and devices are never opened (they are
    noted); a notebook of the expected name that is not a regular file is refused.
    """
    folder = Path(folder)
    own_fd = dir_fd is None
    if own_fd:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        entries = intake.list_folder(dir_fd)
    finally:
        if own_fd:
            os.close(dir_fd)
    notes = _refused_entries(entries)
    kind = entries.get(name)
    if kind == "file":
        return folder / name, notes
    if kind not in (None, "dir"):
        raise _not_regular(name, kind)
    others = sorted(n for n, k in entries.items() if k == "file" and n.endswith(".ipynb") and not n.startswith("."))
    stem = Path(name).stem
    if len(others) > 1:
        # "hw (1).ipynb" or "hw-Copy1.ipynb" next to an "Untitled.ipynb"
        others = [n for n in others if n.startswith(stem)] or others
    if len(others) == 1:
        return folder / others[0], notes + [Note("renamed_notebook", f"notebook 被改名为 {others[0]}，已按 {name} 评分 "
                                                                     "(renamed notebook graded)")]
    if not others:
        raise SubmissionError("未找到 notebook (notebook missing)", "missing_notebook")
    raise SubmissionError(f"找到多个 notebook，无法确定评哪一个 (several notebooks, none named {name}): "
                          f"{', '.join(others)}")


def _parse(path, dir_fd=None):
    """Parse the file as a notebook of any nbformat version; raises SubmissionError.

    The file is read without following a link, only when lstat says it is a regular file of at
    most MAX_BYTES, and never more than MAX_BYTES + 1 bytes (grading/intake.py read_regular).
    """
    path = Path(path)
    own_fd = dir_fd is None
    try:
        if own_fd:
            dir_fd = intake.open_folder(path.parent, path.parent)
        data = intake.read_regular(dir_fd, path.name, MAX_BYTES)
    except intake.Refused as e:
        if e.kind in intake.KINDS:
            raise _not_regular(path.name, e.kind) from None
        raise SubmissionError(e.reason) from None
    except FileNotFoundError:
        raise SubmissionError("未找到 notebook (notebook missing)", "missing_notebook") from None
    except OSError as e:
        raise SubmissionError(f"notebook 无法读取 (unreadable notebook): {e.strerror}") from None
    finally:
        if own_fd and isinstance(dir_fd, int):
            os.close(dir_fd)
    if not data.strip():
        raise SubmissionError("文件为空 (empty file)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SubmissionError("文件不是 UTF-8 文本 (not UTF-8 text)") from None
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        reason = getattr(e, "msg", "too deeply nested")
        where = f" line {e.lineno} col {e.colno}" if hasattr(e, "lineno") else ""
        raise SubmissionError(f"JSON 损坏 (corrupt JSON): {reason}{where}") from None
    if not isinstance(raw, dict) or not ("cells" in raw or "worksheets" in raw):
        raise SubmissionError("不是 notebook (not a notebook)")
    return raw


def _repair(raw):
    """Fill keys that editors sometimes drop, so a v4 notebook validates; returns notes."""
    notes = []
    cells = raw.get("cells")
    if not isinstance(cells, list):
        raise SubmissionError("不是 notebook (not a notebook): cells is not a list")
    kept = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            notes.append(Note("cells_ignored", "一个无法识别的单元已忽略 (unreadable cell ignored)"))
            continue
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = {}
        if not isinstance(cell["metadata"].get("nbgrader", {}), dict):
            del cell["metadata"]["nbgrader"]
        src = cell.get("source", "")
        cell["source"] = "".join(map(str, src)) if isinstance(src, list) else str(src)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        else:
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        kept.append(cell)
    raw["cells"] = kept
    if not isinstance(raw.get("metadata"), dict):
        raw["metadata"] = {}
    raw.setdefault("nbformat_minor", 0)
    return notes


def load_submission(folder, notebook_name, trusted=None):
    """Read the student's notebook from `folder` as nbformat v4: (nb, notes).

    `notebook_name` is e.g. "hw.ipynb" (".ipynb" is added when missing). Raises
    SubmissionError(reason) for a missing, corrupt or non-notebook file. An old nbformat is
    converted, a single renamed notebook is accepted; both are noted.

    Nothing is read through a link: every folder below `trusted` (default: two levels up,
    submitted/ for submitted/<student>/<assignment>) is opened without following links, so a
    student or submission folder that is a symbolic link (to source/, to a classmate's folder)
    is refused with the reason; only regular files are considered inside it (links, fifos
    and devices are noted, never opened).
    """
    folder = Path(folder)
    if not notebook_name.endswith(".ipynb"):
        notebook_name += ".ipynb"
    try:
        dir_fd = intake.open_folder(folder, trusted)
    except intake.Refused as e:
        raise SubmissionError(e.reason) from None
    except (FileNotFoundError, NotADirectoryError, ValueError):
        raise SubmissionError("未找到 notebook (notebook missing)", "missing_notebook") from None
    except OSError as e:
        raise SubmissionError(f"提交的文件夹无法读取 (unreadable submission folder): {e.strerror}") from None
    try:
        path, notes = _find_notebook(folder, notebook_name, dir_fd)
        raw = _parse(path, dir_fd)
    finally:
        os.close(dir_fd)
    major = raw.get("nbformat")
    if not isinstance(major, int) or major < 1:
        raise SubmissionError("不是 notebook (not a notebook): no nbformat version")
    if major > 4:
        raise SubmissionError(f"nbformat v{major} 太新，无法读取 (nbformat too new)")
    try:
        if major < 4:
            nb = nbformat.convert(nbformat.from_dict(raw), 4)
            notes.append(Note("old_nbformat", f"旧版 nbformat v{major}，已转换为 v4 (old nbformat converted)"))
            raw = json.loads(json.dumps(nb))  # plain dicts for _repair
        notes += _repair(raw)
        nb = nbformat.from_dict(raw)
        nbformat.validate(nb, version=4)
    except SubmissionError:
        raise
    except Exception as e:
        raise SubmissionError(f"notebook 结构无效 (invalid notebook): {type(e).__name__}: {str(e)[:200]}") from None
    return nb, notes

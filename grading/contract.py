"""The assignment's contract, read once from the instructor's notebook in source/.

Which cells are graded, their points, how each test cell's points are split into parts
(`with part("dtype", 0.5, "..."):` blocks, checks.part), and which names the answers define.
Everything else (the verifier, the pipeline, the reports, the tests) asks this module, so
changing a test cell's points means editing the source notebook and nothing else.
"""
import ast
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grading.cells import grade_id, is_answer, is_test, nbgrader_meta

#: The one part of a test cell that declares none: the whole cell, all or nothing.
ALL_TESTS = "all"


class ContractError(ValueError):
    """The source notebook's parts do not add up (a mistake of the instructor's)."""


@dataclass(frozen=True)
class Part:
    name: str
    points: float
    label: str


@dataclass
class TestCell:
    grade_id: str
    points: float
    parts: list
    code: str


@dataclass
class Contract:
    notebook: str                               # file name, e.g. channels.ipynb
    tests: list = field(default_factory=list)   # [TestCell], in notebook order
    manual: dict = field(default_factory=dict)  # grade_id -> points of manually graded answers
    answers: list = field(default_factory=list)  # names the solution cells define

    @property
    def max_scores(self):
        return {**{t.grade_id: t.points for t in self.tests}, **self.manual}

    @property
    def test_ids(self):
        return [t.grade_id for t in self.tests]

    @property
    def max_total(self):
        return sum(self.max_scores.values())

    def test(self, gid):
        return next(t for t in self.tests if t.grade_id == gid)


def _part_call(node):
    """The `part(...)` call of a `with` statement, or None."""
    if not isinstance(node, ast.With) or len(node.items) != 1:
        return None
    call = node.items[0].context_expr
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "part":
        return call
    return None


def parts_of(cell):
    """The parts of a test cell, from its top-level `with part(name, points, label):` blocks.

    A part's first block names its points and label; later blocks (`with part(name):`) add
    checks to it. The points must add up to the cell's. A cell without parts is one part.
    """
    points = float(nbgrader_meta(cell).get("points", 0))
    gid = grade_id(cell)
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as e:
        raise ContractError(f"{gid}: the test cell is not valid Python ({e})") from None
    parts = {}
    for node in tree.body:
        call = _part_call(node)
        if call is None:
            continue
        try:
            args = [ast.literal_eval(a) for a in call.args]
        except ValueError:
            raise ContractError(f"{gid}, line {node.lineno}: part(...) takes literal arguments") from None
        name, rest = args[0], args[1:]
        if name not in parts:
            if len(rest) != 2:
                raise ContractError(f"{gid}: the first block of part {name!r} must give its points and label")
            parts[name] = Part(name, float(rest[0]), str(rest[1]))
        elif rest and (float(rest[0]), *rest[1:]) != (parts[name].points, parts[name].label)[:len(rest)]:
            raise ContractError(f"{gid}: part {name!r} is declared twice with different points or label")
    if not parts:
        return [Part(ALL_TESTS, points, "全部测试 (all tests)")]
    total = sum(p.points for p in parts.values())
    if abs(total - points) > 1e-9:
        raise ContractError(f"{gid}: its parts add up to {total:g} points, the cell has {points:g}")
    return list(parts.values())


def defined_names(source):
    """The names a cell defines at its top level (functions, classes, assignments)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def contract_from(notebook, name):
    """The contract of a source notebook (a NotebookNode)."""
    contract = Contract(name)
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if is_test(cell):
            contract.tests.append(TestCell(grade_id(cell), float(meta["points"]), parts_of(cell), cell.source))
        elif meta.get("grade") and is_answer(cell):
            contract.manual[grade_id(cell)] = float(meta["points"])
        if cell.cell_type == "code" and meta.get("solution"):
            contract.answers += [n for n in defined_names(cell.source) if n not in contract.answers]
    return contract


def load_contract(course_root, assignment):
    """The contract of source/<assignment>/ (its one notebook)."""
    folder = Path(course_root) / "source" / assignment
    notebooks = sorted(folder.glob("*.ipynb"))
    if len(notebooks) != 1:
        raise ContractError(f"expected one notebook in source/{assignment}, found {len(notebooks)}")
    return contract_from(nbformat.read(notebooks[0], as_version=4), notebooks[0].name)

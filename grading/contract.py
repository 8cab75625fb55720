"""An assignment's contract, read once from the instructor's files in source/<assignment>/.

From the notebook: which cells are graded, their points, how each test cell's points are
split into parts (`with part("dtype", 0.5, "..."):` blocks, testkit.part), which names the
answers define, and for each test cell the solution cells of the questions before it.
From policy.py (optional, data only): what the assignment forbids and allows, which test
cells are extra credit, whether earlier answers are replaced by the instructor's while a
later one is graded, and the report's hints. Everything else (the verifier, the pipeline,
the reports, the tests) asks this module, so changing a rule or a test cell's points means
editing source/<assignment>/ and nothing else.
"""
import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grading.cells import grade_id, is_answer, is_test, nbgrader_meta

#: The one part of a test cell that declares none: the whole cell, all or nothing.
ALL_TESTS = "all"
POLICY_FILE = "policy.py"


class ContractError(ValueError):
    """The instructor's files do not make a valid contract (parts that do not add up, a bad policy)."""


@dataclass(frozen=True)
class Part:
    name: str
    points: float
    label: str


@dataclass(frozen=True)
class Policy:
    """An assignment's rules (source/<assignment>/policy.py); the defaults are plain nbgrader's."""
    forbidden_ops: str = None               # regular expression over aten operator names
    forbidden_what: str = "禁止的算子 (forbidden operator)"
    layers: tuple = ()                      # torch.nn classes an answer may return
    extra_credit: dict = field(default_factory=dict)   # test cell -> its points, above 100 %
    reference_earlier_answers: bool = False
    hints: dict = field(default_factory=dict)           # category -> (中文, English)
    bench: dict = None


_POLICY_NAMES = {"FORBIDDEN_OPS": "forbidden_ops", "FORBIDDEN_WHAT": "forbidden_what", "LAYERS": "layers",
                 "EXTRA_CREDIT": "extra_credit", "REFERENCE_EARLIER_ANSWERS": "reference_earlier_answers",
                 "HINTS": "hints", "BENCH": "bench"}


def load_policy(folder):
    """The Policy of an assignment folder: policy.py read as data (never executed), or the defaults."""
    path = Path(folder) / POLICY_FILE
    if not path.is_file():
        return Policy()
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError as e:
        raise ContractError(f"{path}: not valid Python ({e})") from None
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ContractError(f"{path}, line {node.lineno}: policy.py holds only NAME = literal assignments")
        name = node.targets[0].id
        if name not in _POLICY_NAMES:
            raise ContractError(f"{path}, line {node.lineno}: unknown setting {name} (known: {', '.join(_POLICY_NAMES)})")
        try:
            values[_POLICY_NAMES[name]] = ast.literal_eval(node.value)
        except ValueError:
            raise ContractError(f"{path}, line {node.lineno}: {name} must be a literal") from None
    if values.get("forbidden_ops"):
        try:
            re.compile(values["forbidden_ops"])
        except re.error as e:
            raise ContractError(f"{path}: FORBIDDEN_OPS is not a regular expression ({e})") from None
    values["layers"] = tuple(values.get("layers", ()))
    extra = values.get("extra_credit", {})
    if not (isinstance(extra, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) and v > 0
                                            for k, v in extra.items())):
        raise ContractError(f"{path}: EXTRA_CREDIT maps test cells to positive points")
    values["extra_credit"] = {k: float(v) for k, v in extra.items()}
    return Policy(**values)


@dataclass
class TestCell:
    grade_id: str
    points: float          # what its parts add up to (for extra credit: points above 100 %)
    parts: list
    code: str
    extra: bool = False    # extra credit: nbgrader's points are 0, the parts' points come on top
    earlier: list = field(default_factory=list)   # [(grade_id, source)] solution cells of earlier questions


@dataclass
class Contract:
    notebook: str                               # file name of the source notebook
    tests: list = field(default_factory=list)   # [TestCell], in notebook order
    manual: dict = field(default_factory=dict)  # grade_id -> points of manually graded answers
    answers: list = field(default_factory=list)  # names the solution cells define
    policy: Policy = field(default_factory=Policy)

    @property
    def max_scores(self):
        """What nbgrader counts as each graded cell's points (0 for extra credit)."""
        return {**{t.grade_id: 0.0 if t.extra else t.points for t in self.tests}, **self.manual}

    @property
    def extra_credit(self):
        return {t.grade_id: t.points for t in self.tests if t.extra}

    @property
    def test_ids(self):
        return [t.grade_id for t in self.tests]

    @property
    def max_total(self):
        """100 % of the assignment (extra credit comes on top)."""
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


def parts_of(cell, points=None):
    """The parts of a test cell, from its top-level `with part(name, points, label):` blocks.

    A part's first block names its points and label; later blocks (`with part(name):`) add
    checks to it. The points must add up to the cell's (`points`, default its nbgrader
    points). A cell without parts is one part.
    """
    points = float(nbgrader_meta(cell).get("points", 0)) if points is None else points
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


def contract_from(notebook, name, policy=None):
    """The contract of a source notebook (a NotebookNode) under `policy`."""
    policy = policy or Policy()
    contract = Contract(name, policy=policy)
    earlier, current = [], []  # solution code cells of earlier questions, and of the question now
    for cell in notebook.cells:
        meta = nbgrader_meta(cell)
        if is_test(cell):
            gid = grade_id(cell)
            extra = gid in policy.extra_credit
            if extra and float(meta.get("points", 0)) != 0:
                raise ContractError(f"{gid}: an extra-credit test cell has 0 nbgrader points (policy.py gives its own)")
            points = policy.extra_credit[gid] if extra else float(meta["points"])
            contract.tests.append(TestCell(gid, points, parts_of(cell, points), cell.source, extra, list(earlier)))
            earlier += current
            current = []
        elif meta.get("grade") and is_answer(cell):
            contract.manual[grade_id(cell)] = float(meta["points"])
        if cell.cell_type == "code" and meta.get("solution"):
            contract.answers += [n for n in defined_names(cell.source) if n not in contract.answers]
            current.append((grade_id(cell), cell.source))
    unknown = set(policy.extra_credit) - set(contract.test_ids)
    if unknown:
        raise ContractError(f"EXTRA_CREDIT names cells that are not test cells: {', '.join(sorted(unknown))}")
    return contract


def load_contract(course_root, assignment):
    """The contract of source/<assignment>/ (its one notebook and its policy.py)."""
    folder = Path(course_root) / "source" / assignment
    notebooks = sorted(folder.glob("*.ipynb"))
    if len(notebooks) != 1:
        raise ContractError(f"expected one notebook in source/{assignment}, found {len(notebooks)}")
    return contract_from(nbformat.read(notebooks[0], as_version=4), notebooks[0].name, load_policy(folder))

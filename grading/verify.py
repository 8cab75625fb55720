"""Verification, the grader's side: what the jails run, and the verdicts that come back.

    verify_notebook(course_root, assignment, notebook, settings, zygotes=None, seconds=None)
        -> (verdicts {grade_id: Verdict} for every test cell, error or None, log for the instructor)

The plan is made here from trusted files only: the instructor's test cells and their parts
(the contract), the solution cells of earlier questions (when the policy grades each
function with them), and from the student's notebook only the code the child runs (their
answers and own cells; the instructor's import cells come from the source). The verifier
runs it in its own jail (grading/jail/host.py); its verdicts are parsed against the
contract (grading/jail/verdicts.py). No test cell runs in this process, and nothing the
student wrote either.
"""
import ast
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grading.cells import grade_id, is_answer, is_test, source
from grading.contract import defined_names, load_contract
from grading.jail import host
from grading.jail.verdicts import verdicts_of


@dataclass
class Source:
    """What the instructor's notebook says about the cells the child may run."""
    solution_ids: set = field(default_factory=set)
    imports: dict = field(default_factory=dict)      # grade_id -> code of read-only cells that only import
    instructor_ids: set = field(default_factory=set)


def read_source(source_nb):
    src = Source()
    for cell in source_nb.cells:
        gid = grade_id(cell)
        if gid:
            src.instructor_ids.add(gid)
        if cell.cell_type != "code" or not gid:
            continue
        if is_answer(cell):
            src.solution_ids.add(gid)
        elif not is_test(cell) and _only_imports(cell.source):
            src.imports[gid] = cell.source
    return src


def _only_imports(text):
    try:
        body = ast.parse(text).body
    except SyntaxError:
        return False
    return bool(body) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body)


def student_cells(notebook, src):
    """[{"label", "source", "instructor"}]: what the child runs, in the notebook's order.

    The student's answers and own cells, and the instructor's import cells (their source
    from the instructor's notebook); never test cells or other instruction cells.
    """
    cells = []
    for index, cell in enumerate(notebook.cells):
        if cell.get("cell_type") != "code":
            continue
        gid = grade_id(cell)
        if gid in src.solution_ids:
            cells.append({"label": f"<answer cell {gid}>", "source": source(cell), "instructor": False})
        elif gid in src.imports:
            cells.append({"label": f"<cell {gid}>", "source": src.imports[gid], "instructor": True})
        elif gid not in src.instructor_ids:
            cells.append({"label": f"<your cell {index + 1}>", "source": source(cell), "instructor": False})
    return cells


def plan_for(contract, src, notebook, settings):
    """The verifier's plan (plain data): tests, answer names, the child's cells, rules, limits."""
    policy = contract.policy
    tests = []
    for test in contract.tests:
        references = {}
        if policy.reference_earlier_answers and test.earlier:
            references = {"names": [n for _, code in test.earlier for n in defined_names(code)],
                          "cells": [{"label": f"<reference {gid}>", "source": code} for gid, code in test.earlier]}
        tests.append({"grade_id": test.grade_id, "code": test.code, "parts": [p.name for p in test.parts],
                      "references": references})
    return {"tests": tests, "answers": list(contract.answers), "cells": student_cells(notebook, src),
            "forbidden": policy.forbidden_ops, "forbidden_what": policy.forbidden_what,
            "layers": list(policy.layers), "limits": settings.limits()}


def verify_notebook(course_root, assignment, notebook, settings, zygotes=None, seconds=None, contract=None):
    """Verify every test cell of `notebook` (the student's rebuilt NotebookNode) in the jails.

    `zygotes`: {role: socket} of this worker's warm jails; `seconds`: the time left of the
    student's budget (default settings.verify_seconds). Raises RuntimeError when students'
    code would run unjailed and the settings do not allow it.
    """
    from grading.jail import sandbox
    ok, reason = sandbox.sandbox_status()
    if not ok and not settings.allow_unsandboxed:
        raise RuntimeError(sandbox.refusal(reason))
    contract = contract or load_contract(course_root, assignment)
    folder = Path(course_root) / "source" / assignment
    src = read_source(nbformat.read(folder / contract.notebook, as_version=4))
    plan = plan_for(contract, src, notebook, settings)
    launcher = host.Launcher(course_root, assignment, zygotes, unsandboxed=not ok)
    seconds = settings.verify_seconds if seconds is None else min(seconds, settings.verify_seconds)
    try:
        messages, error, log = host.run_verifier(launcher, plan, max(seconds, 1))
    finally:
        launcher.close()
    return verdicts_of(messages, contract, error), error, log

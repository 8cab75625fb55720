"""Expected grades, written as what a submission loses; the points come from the contract.

A loss is a test cell ("test_corr2d": every part) or one part of it ("test_corr2d:dtype").
The points of each part are read from the instructor's notebook (grading/contract.py), so
changing a test cell's points changes the source notebook and nothing here. Totals count
extra credit as earned points (up to MAX_WITH_EXTRA; 100 % is CONTRACT.max_total).
"""
from conftest import ASSIGNMENT, ROOT
from grading.contract import load_contract

CONTRACT = load_contract(ROOT, ASSIGNMENT)
TESTS = CONTRACT.test_ids
T1, T2, T3, T4, T5, T6, T7 = TESTS
ALL = frozenset(TESTS)
#: The autograded points of full marks plus every extra-credit point.
MAX_WITH_EXTRA = sum(t.points for t in CONTRACT.tests)


def part_names(test):
    return [p.name for p in CONTRACT.test(test).parts]


def lost_parts(lost):
    """{test: set of lost part names} for a set of losses."""
    out = {}
    for item in lost:
        test, _, name = item.partition(":")
        if test not in TESTS:
            raise KeyError(f"unknown test cell {test!r}")
        if name and name not in part_names(test):
            raise KeyError(f"{test} has no part {name!r}: {part_names(test)}")
        out.setdefault(test, set()).update([name] if name else part_names(test))
    return out


def expected_scores(lost):
    """{test: points} of a submission that loses exactly `lost`."""
    gone = lost_parts(lost)
    return {t.grade_id: sum(p.points for p in t.parts if p.name not in gone.get(t.grade_id, ()))
            for t in CONTRACT.tests}


def expected_total(lost):
    return sum(expected_scores(lost).values())


def got_lost(result):
    """The losses of a StudentResult, in the same notation (whole cells where every part failed)."""
    lost = set()
    for test in result.tests:
        failed = [p["name"] for p in result.verdicts[test]["parts"] if not p["passed"]]
        if failed and len(failed) == len(result.verdicts[test]["parts"]):
            lost.add(test)
        else:
            lost.update(f"{test}:{name}" for name in failed)
    return lost


def normalise(lost):
    """`lost` with a cell written whole where all its parts are listed (for comparisons)."""
    out = set()
    for test, names in lost_parts(lost).items():
        out.update({test} if set(names) == set(part_names(test)) else {f"{test}:{n}" for n in names})
    return out

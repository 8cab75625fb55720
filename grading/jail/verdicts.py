"""The one parser of what comes out of the verifier's jail: raw messages in, typed verdicts out.

The verifier is trusted code running on hostile data, so what it sends is treated as
hostile too: a verdict message is accepted only for a test cell of the contract, with
exactly that cell's parts, a boolean per part, a bounded message, a known category and
the name of the function that raised (an identifier), if any.
Points and labels never come from the jail: they are the contract's (grading/contract.py).
A test cell without an acceptable verdict fails closed, with the reason.
"""
import re

from grading.categories import CATEGORIES
from grading.result import PartVerdict, Verdict

MAX_MESSAGE = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,60}$")


class VerdictError(ValueError):
    """A verdict message that does not fit the contract."""


def _text(value):
    return _CONTROL.sub("", str(value))[:MAX_MESSAGE]


def parse(message, test):
    """The Verdict of `test` (a contract.TestCell) from the verifier's raw `message`."""
    if not isinstance(message, dict) or message.get("grade_id") != test.grade_id:
        raise VerdictError("verdict for another test cell")
    parts = message.get("parts")
    if not isinstance(parts, list) or len(parts) != len(test.parts):
        raise VerdictError(f"{test.grade_id}: expected {len(test.parts)} parts")
    by_name = {}
    for item in parts:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("passed"), bool):
            raise VerdictError(f"{test.grade_id}: malformed part")
        if item["name"] in by_name:
            raise VerdictError(f"{test.grade_id}: part {item['name'][:40]!r} twice")
        by_name[item["name"]] = item
    verdicts = []
    for part in test.parts:
        item = by_name.get(part.name)
        if item is None:
            raise VerdictError(f"{test.grade_id}: no verdict for part {part.name!r}")
        if item["passed"]:
            verdicts.append(PartVerdict(part.name, part.label, part.points, True))
        else:
            category = item.get("category")
            category = category if isinstance(category, str) and category in CATEGORIES else "error"
            function = item.get("function")
            function = function if isinstance(function, str) and _NAME.match(function) else ""
            verdicts.append(PartVerdict(part.name, part.label, part.points, False,
                                        _text(item.get("message") or "未通过 (failed)"), category, function))
    return Verdict(test.grade_id, verdicts)


def verdicts_of(messages, contract, error=None):
    """{grade_id: Verdict} for every test cell of the contract: the accepted messages, and for every
    other cell a failing verdict that says why (`error`, or that the message was not acceptable)."""
    out = {}
    for message in messages:
        gid = message.get("grade_id") if isinstance(message, dict) else None
        test = next((t for t in contract.tests if t.grade_id == gid), None)
        if test is None or gid in out:
            continue
        try:
            out[gid] = parse(message, test)
        except VerdictError as e:
            out[gid] = Verdict.failing(test, f"独立验证的结果不合规范，记 0 分 (malformed verdict: {e})", "verifier_failed")
    for test in contract.tests:
        if test.grade_id not in out:
            why = error or "没有独立验证的结果，记 0 分 (no verdict)"
            out[test.grade_id] = Verdict.failing(test, why, "verifier_failed")
    return {t.grade_id: out[t.grade_id] for t in contract.tests}

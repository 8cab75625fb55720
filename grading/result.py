"""What grading produced: typed verdicts, one student's result, and the pure `reconcile`.

    PartVerdict   one part of a test cell (checks.part): passed or not, why, its category
    Verdict       one test cell: its parts; the score is the points of the parts that passed
    Outcome       what grading one submission brought back (grade_one.py → the parent)
    StudentResult what the gradebook, the reports and the tests see (reconcile(contract, outcome))

The verifier's verdicts are the only source of a test cell's score. Where there is no
verdict (the verifier could not run, the notebook could not be read), the cell scores 0
with the reason: grading fails closed, never open.
"""
import dataclasses
from dataclasses import dataclass, field


#: Stable flag codes (reports and tests use them) and what they mean.
FLAGS = {
    "missing_notebook": "未找到 notebook (notebook missing)",
    "unreadable_notebook": "notebook 无法读取 (unreadable notebook)",
    "instructor_code": "提交中含有教师的隐藏测试或参考答案 (the instructor's hidden tests or solutions in the submission)",
    "files_refused": "提交中有被拒绝的文件：链接、特殊文件或过大的文件 (files refused: links, special or oversized files)",
    "renamed_notebook": "notebook 被改名 (renamed notebook)",
    "old_nbformat": "旧版 nbformat (old nbformat)",
    "cells_restored": "测试或说明单元被修改、删除或复制 (edited/deleted/duplicated locked cells restored)",
    "answer_missing": "答案单元缺失 (answer cell missing)",
    "duplicate_answer": "答案单元重复 (duplicated answer cell)",
    "metadata_missing": "nbgrader 元数据缺失 (nbgrader metadata missing)",
    "cells_ignored": "有无法识别的单元 (unreadable cells ignored)",
    "timeout": "运行超时 (timeout)",
    "over_budget": "超过每位学生的评分时间上限，测试记 0 分 (over the grading budget: tests score 0)",
    "kernel_died": "内核退出或内存不足 (kernel died or ran out of memory)",
    "autograde_failed": "nbgrader 自动评分失败 (autograde failed)",
    "verifier_failed": "独立验证无法运行 (verifier failed)",
    "late": "迟交 (late submission)",
}
#: Flags that only inform; every other flag puts the student on the attention list.
QUIET_FLAGS = {"late"}


@dataclass
class PartVerdict:
    name: str
    label: str
    points: float
    passed: bool
    message: str = ""
    category: str = None
    function: str = ""     # the answer function that raised, when one did (for the report's line)

    @property
    def score(self):
        return self.points if self.passed else 0.0


@dataclass
class Verdict:
    """The verifier's verdict on one test cell."""
    grade_id: str
    parts: list

    @property
    def score(self):
        return sum(p.score for p in self.parts)

    @property
    def max(self):
        return sum(p.points for p in self.parts)

    @property
    def passed(self):
        return all(p.passed for p in self.parts)

    @property
    def failed(self):
        return [p for p in self.parts if not p.passed]

    @property
    def message(self):
        """The first failure's message ('' when everything passed)."""
        return self.failed[0].message if self.failed else ""

    @property
    def category(self):
        return self.failed[0].category if self.failed else None

    def to_dict(self):
        return {"grade_id": self.grade_id, "score": self.score, "max": self.max, "passed": self.passed,
                "message": self.message, "category": self.category,
                "parts": [dict(dataclasses.asdict(p), score=p.score) for p in self.parts]}

    @classmethod
    def from_dict(cls, data):
        fields = {f.name for f in dataclasses.fields(PartVerdict)}
        return cls(data["grade_id"], [PartVerdict(**{k: v for k, v in p.items() if k in fields})
                                      for p in data["parts"]])

    @classmethod
    def failing(cls, test, message, category):
        """Every part of a test cell failed for one reason (no verdict could be reached)."""
        return cls(test.grade_id, [PartVerdict(p.name, p.label, p.points, False, message, category)
                                   for p in test.parts])


def all_failing(contract, message, category):
    """{grade_id: verdict dict} with every test cell of `contract` failed for one reason."""
    return {t.grade_id: Verdict.failing(t, message, category).to_dict() for t in contract.tests}


def over_budget_reason(seconds=None):
    """Why every test cell scores 0 when a student's grading ran past the budget of `seconds` (the rule)."""
    limit = f" {seconds:g} 秒的" if seconds else "的"
    return f"超过每位学生{limit}评分时间上限，所有测试记 0 分 (over the grading time budget: every test scores 0)"


@dataclass
class Outcome:
    """What grading one submission brought back to the parent process (data only)."""
    student: str
    status: str = "graded"      # graded | failed (nbgrader failed) | unreadable (nothing to grade)
    verdicts: dict = None       # grade_id -> Verdict.to_dict(); None: the verifier reached none
    manual: dict = field(default_factory=dict)   # grade_id -> nbgrader's score of a manual answer (0: untouched)
    comments: dict = field(default_factory=dict)  # grade_id -> nbgrader's auto comment
    answers: dict = field(default_factory=dict)   # grade_id -> hash of the answer text
    flags: list = field(default_factory=list)
    reasons: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    timestamp: str = None
    late_penalty: float = None
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    warm_jail: bool = False


@dataclass
class StudentResult:
    """One student's grade; `scores` is exactly what the gradebook holds."""
    student: str
    status: str
    scores: dict                # grade_id -> points (None: awaits manual grading)
    max_scores: dict
    tests: list                 # grade_ids of the test cells, in notebook order
    verdicts: dict              # grade_id -> Verdict.to_dict()
    reasons: list               # what the instructor should know, most important first
    flags: list                 # sorted codes from FLAGS
    notes: list                 # what the loader and the rebuild changed
    answers: dict = field(default_factory=dict)
    fingerprint: str = ""
    seconds: float = 0.0
    skipped: bool = False       # unchanged since the last run: this is the stored result
    timestamp: str = None
    late_penalty: float = None
    timings: dict = field(default_factory=dict)
    warm_jail: bool = False

    @property
    def total(self):
        """Points before any late penalty (manual answers not yet graded count 0)."""
        return sum(s or 0.0 for s in self.scores.values())

    @property
    def max_total(self):
        return sum(self.max_scores.values())

    @property
    def messages(self):
        """grade_id -> the first failure's message, for every test cell short of full marks."""
        return {g: v["message"] for g, v in self.verdicts.items() if not v["passed"]}

    @property
    def needs_attention(self):
        return any(f not in QUIET_FLAGS for f in self.flags)

    @property
    def reason(self):
        """One short line for tables: the main reason, else the first failed test's message."""
        if self.reasons:
            return self.reasons[0]
        for gid in self.tests:
            if self.messages.get(gid):
                return f"{gid}: {self.messages[gid]}"
        return ""

    def to_dict(self):
        return dict(dataclasses.asdict(self), total=self.total, max_total=self.max_total, messages=self.messages)

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def reconcile(contract, outcome, fingerprint=""):
    """The student's final result: the verifier's verdicts score the tests, nothing else does.

    Pure: the same contract and outcome always give the same result.
    """
    flags, reasons = set(outcome.flags), list(outcome.reasons)
    verdicts = {}
    for test in contract.tests:
        data = (outcome.verdicts or {}).get(test.grade_id)
        if data is None:
            why = ("没有独立验证的结果，记 0 分 (no verdict: the cell scores 0)" if outcome.status != "unreadable"
                   else "notebook 无法读取，记 0 分 (unreadable notebook)")
            category = "broken_notebook" if outcome.status == "unreadable" else "verifier_failed"
            data = Verdict.failing(test, why, category).to_dict()
        verdicts[test.grade_id] = data
    if outcome.verdicts is None and outcome.status != "unreadable":
        flags.add("verifier_failed")
        reasons.append("没有独立验证的结果，测试记 0 分 (no verdicts: tests score 0)")
    scores = {gid: float(v["score"]) for gid, v in verdicts.items()}
    for gid in contract.manual:
        # nbgrader gives 0 to an untouched answer; otherwise it waits for the instructor
        score = outcome.manual.get(gid)
        if score is None and outcome.status == "unreadable":
            score = 0.0  # nothing to read: no need to wait for the instructor
        scores[gid] = None if score is None else float(score)
    if outcome.late_penalty:
        flags.add("late")
    return StudentResult(
        student=outcome.student, status=outcome.status, scores=scores, max_scores=dict(contract.max_scores),
        tests=list(contract.test_ids), verdicts=verdicts, reasons=reasons,
        flags=[f for f in FLAGS if f in flags] + sorted(flags - FLAGS.keys()), notes=list(outcome.notes),
        answers=dict(outcome.answers), fingerprint=fingerprint, seconds=round(outcome.seconds, 3),
        timestamp=outcome.timestamp, late_penalty=outcome.late_penalty,
        timings={k: round(v, 3) for k, v in outcome.timings.items()}, warm_jail=outcome.warm_jail)

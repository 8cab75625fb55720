"""Why a check failed, as a code the whole pipeline carries (verdicts, results, report).

checks.py raises `CheckFailure(message, category)`; the verifier stores the category with
each failed part of a test cell; the analytics report groups failures by it. A failure
that is not a CheckFailure (the student's code raised, timed out, the notebook was broken,
the verifier could not answer) gets its category from the pipeline that saw it.
"""

#: code -> (what a teacher calls it, in Chinese with the English term)
CATEGORIES = {
    "shape": "形状不对 (wrong shape)",
    "values": "数值不对 (wrong values)",
    "dtype": "数据类型不对 (wrong dtype)",
    "device": "设备不对 (wrong device)",
    "type": "返回类型不对 (wrong return type)",
    "input_modified": "修改了输入 (input modified)",
    "conv_used": "用了卷积算子 (convolution operator used)",
    "loop": "有循环 (loop in the 1×1 or bonus)",
    "too_slow": "太慢 (too slow)",
    "unanswered": "没有作答 (not answered)",
    "error": "运行出错 (error raised)",
    "timeout": "超时 (timeout)",
    "broken_notebook": "notebook 损坏 (broken notebook)",
    "verifier_failed": "无法独立验证 (verifier could not decide)",
}


def label(code):
    """The teacher's name of a category code (the code itself when unknown)."""
    return CATEGORIES.get(code, code or "")

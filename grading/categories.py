"""Why a check failed, as a code the whole pipeline carries (verdicts, results, report).

testkit raises `CheckFailure(message, category)`; the verifier sends the category with each
failed part of a test cell; grading/jail/verdicts.py accepts only the codes below; the class
report groups failures by them. A failure that is not a CheckFailure (the student's code
raised, timed out, the notebook was broken, the verifier could not answer) gets its category
from the part of the pipeline that saw it. An assignment's policy.py may give a hint per code.
"""

#: code -> (what a teacher calls it, in Chinese with the English term)
CATEGORIES = {
    "shape": "形状不对 (wrong shape)",
    "values": "数值不对 (wrong values)",
    "dtype": "数据类型不对 (wrong dtype)",
    "device": "设备不对 (wrong device)",
    "type": "返回类型不对 (wrong return type)",
    "shape_check": "没有检查输入的形状 (no shape check)",
    "input_modified": "修改了输入 (input modified)",
    "forbidden_op": "用了禁止的算子 (forbidden operator used)",
    "loop": "循环或不止一次矩阵乘法 (loop, not one matrix product)",
    "pixel_loop": "对输出像素循环 (loop over output pixels)",
    "too_slow": "太慢 (too slow)",
    "unanswered": "没有作答 (not answered)",
    "error": "运行出错 (error raised)",
    "timeout": "超时或运算量太大 (timeout, too much work)",
    "broken_notebook": "notebook 损坏 (broken notebook)",
    "verifier_failed": "无法独立验证 (verifier could not decide)",
}

#: What to tell a student per category when the assignment's policy says nothing: (中文, English).
HINTS = {
    "shape": ("检查输出的形状", "check the output's shape"),
    "values": ("数值不对：用题目中的例子逐步对照你的计算", "compare your computation with the worked example"),
    "dtype": ("结果的 dtype 应与输入相同", "keep the input's dtype"),
    "device": ("在输入所在的设备上创建张量", "create tensors on the input's device"),
    "type": ("返回题目要求的类型（别忘了 return）", "return what the question asks for"),
    "shape_check": ("形状不对的输入要 raise ValueError 并说明原因", "raise ValueError for inputs of the wrong shape"),
    "input_modified": ("不要原地修改输入", "do not change the inputs in place"),
    "forbidden_op": ("本题禁止的算子不能用，用张量运算自己实现", "write it without the forbidden operator"),
    "loop": ("去掉 Python 循环", "no Python loop"),
    "pixel_loop": ("去掉随输入大小增长的 Python 循环", "no loop that grows with the input"),
    "too_slow": ("还不够快：整体用张量运算", "too slow: vectorize"),
    "unanswered": ("还没有作答：删掉 raise NotImplementedError() 并完成代码", "not answered yet"),
    "error": ("运行出错：先在 notebook 里运行可见测试", "your code raised: run the visible tests"),
    "timeout": ("运行超时：检查死循环，或者运算量太大", "timed out: look for an endless loop"),
    "broken_notebook": ("notebook 损坏：提交下载的原 notebook，不要删改单元格", "submit the original notebook"),
    "verifier_failed": ("无法自动判定，老师会人工检查", "the instructor will check by hand"),
}


def label(code):
    """The teacher's name of a category code (the code itself when unknown)."""
    return CATEGORIES.get(code, code or "")

"""untouched — a student who downloaded the notebook and handed it in without answering.

没有作答：每个答案单元格仍是 `raise NotImplementedError()`。Expected: 0/17, every test cell lost.
"""

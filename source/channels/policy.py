"""The rules of the assignment 多输入多输出通道 that the grading engine applies (data only).

The engine reads this file as data (`ast.literal_eval` of each assignment, never executed),
and checks.py imports it for the visible tests, so each rule is written once. An assignment
without a policy.py is graded by its test cells' asserts alone, one cell all or nothing.
"""

#: aten operators a student's function may not run, as a regular expression over their names:
#: every convolution (convolution, conv2d, _conv_depthwise2d, mkldnn_convolution, ...) but
#: not _convert_*, whose name only contains the letters "conv". Refused at torch's dispatcher
#: while graded, in the kernel and in the verifier's child, and in every replayed recipe.
FORBIDDEN_OPS = r"conv(olution|\d|_)"
#: What those operators are called in the students' messages.
FORBIDDEN_WHAT = "卷积算子 (convolution operator)"

#: torch.nn layer classes an answer may return (conv2d_layer returns an nn.Conv2d).
LAYERS = ["Conv2d"]

#: Test cells whose points are extra credit: full marks without them are 100 % of the
#: assignment; with them a student can score up to their points above that.
EXTRA_CREDIT = {"test_corr2d_multi_in_out_fast": 2}

#: One mistake costs once: each function is graded with the instructor's versions of the
#: functions of EARLIER questions that it calls (never of later ones, never of itself).
REFERENCE_EARLIER_ANSWERS = True

#: What to tell a student, per failure category, in the class report: (中文, English).
HINTS = {
    "shape": ("检查输出形状：(n_h-k_h+1, n_w-k_w+1)，输出通道在第 0 维", "check the output shape; output channels first"),
    "values": ("数值不对：用书中的例子逐步对照你的计算", "compare your computation with the book's example"),
    "dtype": ("用 X.new_zeros(...) 创建输出，别用 torch.zeros", "use X.new_zeros, not torch.zeros"),
    "device": ("在 X.device 上创建张量（X.new_zeros）", "create tensors on X.device"),
    "type": ("返回 torch.Tensor（别忘了 return）", "return a tensor"),
    "shape_check": ("形状不对的输入要 raise ValueError 并说明原因", "raise ValueError for inputs of the wrong shape"),
    "input_modified": ("不要原地修改 X 和 K（squeeze_、+= 等）", "do not change X or K in place"),
    "forbidden_op": ("不能用 F.conv2d / nn.Conv2d，用张量运算自己实现", "no F.conv2d: write it with tensor ops"),
    "loop": ("1×1 卷积：把 X 变形为 (c_i, n_h·n_w)、K 变形为 (c_o, c_i)，只做一次矩阵乘法",
             "1×1: reshape, then one matrix product"),
    "pixel_loop": ("附加题：去掉对输出像素的循环（对核的位置循环是允许的）",
                   "bonus: no loop over output pixels (a loop over kernel offsets is fine)"),
    "too_slow": ("还不够快：去掉逐像素循环，整体用张量运算", "too slow: vectorize the pixel loop"),
}

#: `make bench`: the assignment's layer (the deck's: 100 channels in and out, a 5×5 kernel,
#: a 64×64 output), the answer timed on it and the loop it is compared with.
BENCH = {"layer": {"c_i": 100, "c_o": 100, "k": 5, "m": 64}, "answer": "corr2d_multi_in_out_fast",
         "loop": "corr2d_multi_in_out", "baseline": "loop_corr2d_multi_in_out"}

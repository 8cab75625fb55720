"""hardcoded — returns the visible tests' expected values instead of computing them.

把可见测试 (visible tests) 的期望结果直接抄进函数里：在自己的笔记本里每个测试都“通过”了，
but any other input gets the same constant. Only conv2d_layer is a real answer.
Hidden tests use random inputs and other numbers, so the student loses every hard-coded
answer: test_corr2d, test_corr2d_multi_in, test_corr2d_multi_in_out, test_corr2d_multi_in_out_1x1
and test_conv_flops (14 points; train_hours's KeyError is named as train_hours's), and the
bonus's no-loop and speed parts. conv2d_layer is right (3/17), and the bonus, which calls
corr2d_multi_in_out, is graded with the instructor's version of it: its values part passes (+1).
"""
# base: ref_reference

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    return torch.tensor([[19.0, 25.0], [37.0, 43.0]])

# %% corr2d_multi_in
def corr2d_multi_in(X, K):
    """多输入通道的互相关。X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w)"""
    return torch.tensor([[56.0, 72.0], [104.0, 120.0]])

# %% corr2d_multi_in_out
def corr2d_multi_in_out(X, K):
    """多输入多输出通道的互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    return torch.tensor([[[56.0, 72.0], [104.0, 120.0]],
                         [[76.0, 100.0], [148.0, 172.0]],
                         [[96.0, 128.0], [192.0, 224.0]]])

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    # printed from the reference in the visible test, pasted here
    return torch.tensor([[[-2.1648, 1.0211, -0.0046],
                          [0.9460, 2.7934, 2.0757],
                          [-0.0773, -1.8424, 0.3228]],
                         [[-3.2978, -1.4512, -0.1924],
                          [-0.4243, 2.6119, 1.3721],
                          [-0.6325, -4.3399, 0.6158]]])

# %% conv_flops
def conv_flops(c_i, c_o, k_h, k_w, m_h, m_w):
    """卷积层的乘法次数：c_o·m_h·m_w 个输出元素，每个 c_i·k_h·k_w 次乘法。"""
    return 1_024_000_000


def train_hours(flop, tflops):
    """以每秒 tflops × 10**12 次浮点运算的速度，完成 flop 次运算所需的小时数。"""
    return {0.15: 18.52, 12: 13.89 / 60}[tflops]

# %% corr2d_multi_in_out_fast
def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    return corr2d_multi_in_out(X, K)

"""uses_conv2d — calls PyTorch's convolution instead of implementing the cross-correlation.

直接调用 `F.conv2d`：结果全对，但违反约定 4（四个 corr2d* 函数和附加题不能用卷积算子）。
The convolution operators are blocked while grading, so every call fails: the student loses
test_corr2d, test_corr2d_multi_in, test_corr2d_multi_in_out, test_corr2d_multi_in_out_1x1 and
the bonus (12 points + 2); conv_flops and conv2d_layer (where nn.Conv2d is the point) still
pass: 5/17.
"""
# base: ref_reference

# %% corr2d
import torch.nn.functional as F


def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    return F.conv2d(X[None, None], K[None, None])[0, 0]  # add batch and channel axes

# %% corr2d_multi_in
def corr2d_multi_in(X, K):
    """多输入通道的互相关。X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w)"""
    return F.conv2d(X[None], K[None])[0, 0]

# %% corr2d_multi_in_out
def corr2d_multi_in_out(X, K):
    """多输入多输出通道的互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    return F.conv2d(X[None], K)[0]

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    return F.conv2d(X[None], K)[0]

# %% corr2d_multi_in_out_fast
def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    return F.conv2d(X[None], K)[0]

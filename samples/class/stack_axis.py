"""stack_axis — stacks the output channels on the last axis.

把 c_o 个输出通道叠在了最后一维：输出形状是 (m_h, m_w, c_o)，应为 (c_o, m_h, m_w)。
Loses the values, float64 and rules parts of test_corr2d_multi_in_out (2.5 points): the shape
check passes, because the instructor's corr2d_multi_in it calls refuses a kernel of the wrong
shape (one mistake costs once works both ways).
"""
# base: ref_reference

# %% corr2d_multi_in_out
def corr2d_multi_in_out(X, K):
    """多输入多输出通道的互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    return torch.stack([corr2d_multi_in(X, k) for k in K], dim=-1)

"""mean_channels — averages the input channels instead of summing them.

对各输入通道的互相关结果取了平均 (mean)，而不是相加：书中例子得到 28, 36, ... 而不是 56, 72, ...
Loses the values, float64 and rules parts of test_corr2d_multi_in (2.5 points). corr2d_multi_in_out
calls it, but is graded with the instructor's corr2d_multi_in (one mistake costs once).
"""
# base: ref_reference

# %% corr2d_multi_in
def corr2d_multi_in(X, K):
    """多输入通道的互相关。X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w)"""
    if X.dim() != 3 or K.dim() != 3 or len(X) != len(K):
        raise ValueError(f"X 和 K 的通道数要相同：X {tuple(X.shape)}，K {tuple(K.shape)}")
    per_channel = torch.stack([corr2d(x, k) for x, k in zip(X, K)])
    return per_channel.mean(dim=0)

"""off_by_one — the output is one row and one column too small.

输出形状少算了一行一列：写成了 (n_h - k_h, n_w - k_w)，忘了 “+1”。
Only corr2d is wrong: it loses the values, float64 and rules parts of test_corr2d (2.5 points;
the shape check still refuses a kernel larger than the input). corr2d_multi_in and
corr2d_multi_in_out call corr2d, but are graded with the instructor's (one mistake costs once).
"""
# base: ref_reference

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"X 和 K 都要是二维的：X {tuple(X.shape)}，K {tuple(K.shape)}")
    k_h, k_w = K.shape
    m_h, m_w = X.shape[0] - k_h, X.shape[1] - k_w
    if m_h < 0 or m_w < 0:
        raise ValueError(f"核 {tuple(K.shape)} 比输入 {tuple(X.shape)} 大")
    Y = X.new_zeros((m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            Y[i, j] = (X[i:i + k_h, j:j + k_w] * K).sum()
    return Y

"""off_by_one — the output is one row and one column too small.

输出形状少算了一行一列：写成了 (n_h - k_h, n_w - k_w)，忘了 “+1”。
Only corr2d is wrong, but corr2d_multi_in and corr2d_multi_in_out call it, so the
student loses test_corr2d, test_corr2d_multi_in and test_corr2d_multi_in_out (9 points);
the 1×1 and the fast version do not use corr2d and pass.
"""
# base: ref_reference

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    k_h, k_w = K.shape
    m_h, m_w = X.shape[0] - k_h, X.shape[1] - k_w
    Y = X.new_zeros((m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            Y[i, j] = (X[i:i + k_h, j:j + k_w] * K).sum()
    return Y

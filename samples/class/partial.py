"""partial — ran out of time after the first two questions.

只做了前两题（单通道和多输入通道，写法与参考答案不同但都正确），其余单元格保持原样。
Gets test_corr2d and test_corr2d_multi_in (6 points); every other test cell fails on
NotImplementedError: 6/17, and the written answer is the untouched stub (0).
"""

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    if X.dim() != 2 or K.dim() != 2 or K.shape[0] > X.shape[0] or K.shape[1] > X.shape[1]:
        raise ValueError(f"需要二维的 X 和不比它大的 K：X {tuple(X.shape)}，K {tuple(K.shape)}")
    k_h, k_w = K.shape
    Y = torch.zeros((X.shape[0] - k_h + 1, X.shape[1] - k_w + 1), dtype=X.dtype, device=X.device)
    # one term per kernel entry instead of one per output pixel
    for a in range(k_h):
        for b in range(k_w):
            Y += K[a, b] * X[a:a + Y.shape[0], b:b + Y.shape[1]]
    return Y

# %% corr2d_multi_in
def corr2d_multi_in(X, K):
    """多输入通道的互相关。X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w)"""
    if X.dim() != 3 or K.dim() != 3 or X.shape[0] != K.shape[0]:
        raise ValueError(f"X 和 K 的通道数要相同：X {tuple(X.shape)}，K {tuple(K.shape)}")
    Y = corr2d(X[0], K[0])
    for c in range(1, X.shape[0]):
        Y = Y + corr2d(X[c], K[c])
    return Y

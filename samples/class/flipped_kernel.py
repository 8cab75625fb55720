"""flipped_kernel — computes a true convolution: the kernel is flipped before sliding.

把核上下、左右翻转后再滑动——这是数学上的卷积 (convolution)，不是深度学习里的互相关
(cross-correlation)。On the book's example it gives 43, 37, ... instead of 19, 25, ...
Loses test_corr2d and, through corr2d, test_corr2d_multi_in and test_corr2d_multi_in_out
(9 points). A 1×1 kernel is its own flip, and the fast version does not use corr2d.
"""
# base: ref_reference

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    k_h, k_w = K.shape
    K = torch.flip(K, dims=(0, 1))  # “卷积要先把核翻转”
    m_h, m_w = X.shape[0] - k_h + 1, X.shape[1] - k_w + 1
    Y = X.new_zeros((m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            Y[i, j] = (X[i:i + k_h, j:j + k_w] * K).sum()
    return Y

"""flipped_kernel — computes a true convolution: the kernel is flipped before sliding.

把核上下、左右翻转后再滑动——这是数学上的卷积 (convolution)，不是深度学习里的互相关
(cross-correlation)。On the book's example it gives 5, 11, ... instead of 19, 25, ...
Loses the values, float64 and rules parts of test_corr2d (2.5 points; its shape check is right)
and nothing else: corr2d_multi_in and corr2d_multi_in_out are graded with the instructor's
corr2d (one mistake costs once). The message names the mistake: a flipped kernel.
"""
# base: ref_reference

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"X 和 K 都要是二维的：X {tuple(X.shape)}，K {tuple(K.shape)}")
    k_h, k_w = K.shape
    if X.shape[0] < k_h or X.shape[1] < k_w:
        raise ValueError(f"核 {tuple(K.shape)} 比输入 {tuple(X.shape)} 大")
    K = torch.flip(K, dims=(0, 1))  # “卷积要先把核翻转”
    m_h, m_w = X.shape[0] - k_h + 1, X.shape[1] - k_w + 1
    Y = X.new_zeros((m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            Y[i, j] = (X[i:i + k_h, j:j + k_w] * K).sum()
    return Y

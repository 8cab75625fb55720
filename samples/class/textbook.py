"""textbook — a student who copied the book's code for the four cross-correlations.

照抄书上的代码：书中的 corr2d 用 `torch.zeros((m_h, m_w))` 新建输出，所以无论输入是什么，
结果总是 CPU 上的 float32（违反约定 1）；书上的代码也不检查形状（约定 2）。The rest of the
notebook is their own, correct work. Expected loss, 2 points: the float64 part of test_corr2d
(once: corr2d_multi_in and corr2d_multi_in_out are graded with the instructor's corr2d), and the
shape checks of corr2d (a kernel larger than the input gives an empty result), corr2d_multi_in
(`zip` silently drops the extra channels) and the 1×1 (reshape raises RuntimeError, not
ValueError). corr2d_multi_in_out passes its shape check through the instructor's
corr2d_multi_in, which refuses the wrong kernel.
"""
# base: ref_reference

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y

# %% corr2d_multi_in
def corr2d_multi_in(X, K):
    """多输入通道的互相关。X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w)"""
    # 先遍历“X”和“K”的第0个维度（通道维度），再把它们加在一起
    return sum(corr2d(x, k) for x, k in zip(X, K))

# %% corr2d_multi_in_out
def corr2d_multi_in_out(X, K):
    """多输入多输出通道的互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    # 迭代“K”的第0个维度，每次都对输入“X”执行互相关运算。
    # 最后将所有结果都叠加在一起
    return torch.stack([corr2d_multi_in(X, k) for k in K], 0)

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    c_i, h, w = X.shape
    c_o = K.shape[0]
    X = X.reshape((c_i, h * w))
    K = K.reshape((c_o, c_i))
    # 全连接层中的矩阵乘法
    Y = torch.matmul(K, X)
    return Y.reshape((c_o, h, w))

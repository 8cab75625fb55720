"""loop_fast — the bonus answer still loops over the output pixels.

附加题只把通道向量化了，仍然对每个输出像素做一次 Python 循环：结果对，但张量运算的次数随
输出大小增长，也不比逐像素循环的基准快。
Loses the no-loop and speed parts of the bonus (1 of its 2 extra points): 17/17 + 1.
"""
# base: ref_reference

# %% corr2d_multi_in_out_fast
def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    c_o, c_i, k_h, k_w = K.shape
    m_h, m_w = X.shape[1] - k_h + 1, X.shape[2] - k_w + 1
    Y = X.new_zeros((c_o, m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            window = X[:, i:i + k_h, j:j + k_w]  # (c_i, k_h, k_w), shared by all c_o kernels
            Y[:, i, j] = (K * window).sum(dim=(1, 2, 3))
    return Y

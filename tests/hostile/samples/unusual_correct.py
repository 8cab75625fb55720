"""unusual_correct — right answers written in unusual ways: every one keeps full marks (17/17 + 2 extra credit).

Their shape checks are `assert`s (an AssertionError counts like a ValueError). corr2d builds
the output from a list comprehension of `.item()` values; corr2d_multi_in uses index
arithmetic and einsum; corr2d_multi_in_out uses `unfold` windows; the 1×1 convolution
is one einsum-free matrix product on an `as_strided` view; the bonus uses `as_strided`
windows and one tensordot. The verifier replays what each one computed, so the way of
writing does not matter, only the result and the rules.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    assert X.dim() == 2 and K.dim() == 2 and K.shape[0] <= X.shape[0] and K.shape[1] <= X.shape[1], \
        f"X {tuple(X.shape)} 与 K {tuple(K.shape)} 的形状不对"
    k_h, k_w = K.shape
    m_h, m_w = X.shape[0] - k_h + 1, X.shape[1] - k_w + 1
    values = [[(X[i:i + k_h, j:j + k_w] * K).sum().item() for j in range(m_w)] for i in range(m_h)]
    return torch.tensor(values, dtype=X.dtype, device=X.device).reshape(m_h, m_w)

# %% corr2d_multi_in
def corr2d_multi_in(X, K):
    """多输入通道的互相关。X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w)"""
    assert X.dim() == 3 and K.dim() == 3 and X.shape[0] == K.shape[0], "X 和 K 的通道数不同"
    c_i, k_h, k_w = K.shape
    m_h, m_w = X.shape[1] - k_h + 1, X.shape[2] - k_w + 1
    rows = torch.arange(m_h, device=X.device)[:, None] + torch.arange(k_h, device=X.device)[None, :]
    cols = torch.arange(m_w, device=X.device)[:, None] + torch.arange(k_w, device=X.device)[None, :]
    windows = X[:, rows[:, None, :, None], cols[None, :, None, :]]  # (c_i, m_h, m_w, k_h, k_w)
    return torch.einsum("cijab,cab->ij", windows, K)

# %% corr2d_multi_in_out
def corr2d_multi_in_out(X, K):
    """多输入多输出通道的互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    assert X.dim() == 3 and K.dim() == 4 and K.shape[1] == X.shape[0], "X 和 K 的通道数不同"
    c_o, c_i, k_h, k_w = K.shape
    windows = X.unfold(1, k_h, 1).unfold(2, k_w, 1)  # (c_i, m_h, m_w, k_h, k_w)
    return (windows[None] * K[:, :, None, None]).sum(dim=(1, 4, 5))

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    assert X.dim() == 3 and tuple(K.shape[1:]) == (X.shape[0], 1, 1), "K 应是 (c_o, c_i, 1, 1)"
    c_i, n_h, n_w = X.shape
    c_o = K.shape[0]
    W = K.as_strided((c_o, c_i), (K.stride(0), K.stride(1)))
    return (W @ X.reshape(c_i, n_h * n_w)).reshape(c_o, n_h, n_w)

# %% corr2d_multi_in_out_fast
def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    c_o, c_i, k_h, k_w = K.shape
    X = X.contiguous()
    m_h, m_w = X.shape[1] - k_h + 1, X.shape[2] - k_w + 1
    s_c, s_h, s_w = X.stride()
    windows = X.as_strided((c_i, k_h, k_w, m_h, m_w), (s_c, s_h, s_w, s_h, s_w))
    return torch.tensordot(K, windows, dims=([1, 2, 3], [0, 1, 2]))

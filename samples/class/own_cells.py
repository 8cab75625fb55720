"""own_cells — a correct student who added cells of their own: notes, a helper, an experiment.

在笔记本里新建了自己的单元格：一段笔记、附加题用到的辅助函数 `windows`（定义在自己的单元格里），
以及一个打印对比结果的实验单元格。Grading must keep a student's own cells and run them in
order, so this student gets full marks like ref_reference: 17/17 and the 2 extra points.
"""
# base: ref_reference

# %% [markdown]
# 我的笔记：im2col 把每个 k_h×k_w 的窗口摊平成一列，卷积就变成一次矩阵乘法。

# %%
def windows(X, k_h, k_w):
    """im2col by hand. X: (c_i, n_h, n_w) -> (c_i·k_h·k_w, m_h, m_w), one column per window."""
    w = X.unfold(1, k_h, 1).unfold(2, k_w, 1)  # (c_i, m_h, m_w, k_h, k_w)
    return w.permute(0, 3, 4, 1, 2).reshape(-1, w.shape[1], w.shape[2])

# %% corr2d_multi_in_out_fast
def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    cols = windows(X, *K.shape[2:])
    return torch.tensordot(K.reshape(K.shape[0], -1), cols, dims=1)

# %%
# 实验：与逐像素的版本对比，差应为 0（或接近 0）
X, K = torch.randn(3, 6, 5), torch.randn(2, 3, 2, 2)
print((corr2d_multi_in_out_fast(X, K) - corr2d_multi_in_out(X, K)).abs().max())

"""inplace_kernel — squeezes the caller's kernel in place "to save memory".

用原地操作 `K.squeeze_()` 去掉核的两个长度为 1 的维度：结果本身是对的，但调用者手里的 K
从 (c_o, c_i, 1, 1) 变成了 (c_o, c_i)（违反约定 3：不修改输入）。
Loses test_corr2d_multi_in_out_1x1 only (3 points): already the visible test breaks, because it
passes the same K on to the reference after the call.
"""
# base: ref_reference

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    c_i, n_h, n_w = X.shape
    c_o = K.shape[0]
    K.squeeze_(3).squeeze_(2)  # (c_o, c_i)
    Y = torch.matmul(K, X.reshape(c_i, n_h * n_w))
    return Y.reshape(c_o, n_h, n_w)

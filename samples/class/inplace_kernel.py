"""inplace_kernel — squeezes the caller's kernel in place "to save memory".

用原地操作 `K.squeeze_()` 去掉核的两个长度为 1 的维度：结果本身是对的，但调用者手里的 K
从 (c_o, c_i, 1, 1) 变成了 (c_o, c_i)（违反约定 3：不修改输入）。
Loses the rules part of test_corr2d_multi_in_out_1x1 only (0.5 points): its visible test checks
that the inputs are unchanged after the call.
"""
# base: ref_reference

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    if X.dim() != 3 or K.dim() != 4 or tuple(K.shape[1:]) != (X.shape[0], 1, 1):
        raise ValueError(f"需要 X (c_i, n_h, n_w) 和 K (c_o, c_i, 1, 1)：X {tuple(X.shape)}，K {tuple(K.shape)}")
    c_i, n_h, n_w = X.shape
    c_o = K.shape[0]
    K.squeeze_(3).squeeze_(2)  # (c_o, c_i)
    Y = torch.matmul(K, X.reshape(c_i, n_h * n_w))
    return Y.reshape(c_o, n_h, n_w)

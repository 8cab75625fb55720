"""transposed_1x1 — reshapes the 1×1 kernel as (c_i, c_o) and transposes it.

把形状为 (c_o, c_i, 1, 1) 的核 reshape 成了 (c_i, c_o) 再转置。reshape 只是按内存顺序重新切分，
不是转置，所以当 c_i > 1 且 c_o > 1 时权重被打乱（形状却对得上）。
Loses every part of test_corr2d_multi_in_out_1x1 that needs the right values (values, float64,
rules, one matmul: 2.5 points); its shape check is right. The visible test (c_i=3, c_o=2) shows it.
"""
# base: ref_reference

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    if X.dim() != 3 or K.dim() != 4 or tuple(K.shape[1:]) != (X.shape[0], 1, 1):
        raise ValueError(f"需要 X (c_i, n_h, n_w) 和 K (c_o, c_i, 1, 1)：X {tuple(X.shape)}，K {tuple(K.shape)}")
    c_i, n_h, n_w = X.shape
    c_o = K.shape[0]
    W = K.reshape(c_i, c_o).T  # (c_o, c_i)
    Y = torch.matmul(W, X.reshape(c_i, n_h * n_w))
    return Y.reshape(c_o, n_h, n_w)

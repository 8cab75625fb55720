"""conv_tbc — the 1×1 answer uses torch.conv_tbc, an obscure convolution operator.

conv_tbc (time, batch, channel) is a 1-D convolution kernel of its own, not routed through
aten.convolution; with every pixel as a time step and width 1 it computes the 1×1 layer.
Still a convolution operator: test_corr2d_multi_in_out_1x1 is lost (15/18), no flag.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    c_i, n_h, n_w = X.shape
    c_o = K.shape[0]
    pixels = X.reshape(c_i, n_h * n_w).T[:, None, :]  # (time = pixels, batch 1, c_i)
    weight = K.reshape(c_o, c_i).T[None]  # (width 1, c_i, c_o)
    Y = torch.conv_tbc(pixels, weight, X.new_zeros(c_o), 0)  # (pixels, 1, c_o)
    return Y[:, 0, :].T.reshape(c_o, n_h, n_w)

"""aten_conv — the bonus calls torch.ops.aten.convolution directly.

No F.conv2d in sight, but the aten operator is the convolution itself: test_corr2d_multi_in_out_fast
is lost (16/18), no flag.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d_multi_in_out_fast
def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    op = torch.ops.aten.convolution
    return op(X[None], K, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)[0]

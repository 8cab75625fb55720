"""getattr_conv — corr2d reaches F.conv2d through getattr and a split name.

`getattr(torch.nn.functional, "con" + "v2d")` hides the name from any text search. corr2d is
used by corr2d_multi_in and corr2d_multi_in_out, so test_corr2d, test_corr2d_multi_in and
test_corr2d_multi_in_out are lost (9/18), no flag.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    slide = getattr(torch.nn.functional, "con" + "v2d")
    return slide(X[None, None], K[None, None])[0, 0]

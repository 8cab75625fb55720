"""recipe_conv — a forged recipe that names a convolution the child itself refuses.

corr2d answers every call with a recipe of one `aten.convolution` on its two arguments. The
child blocks convolutions at torch's dispatcher, so an honest F.conv2d fails there; a forged
recipe never ran in the child. It once scored 11 of 14 on the corr2d cells. The replay now
checks the assignment's forbidden operators as the child does: every part of test_corr2d
scores 0 (the shape check too: the call never refuses anything). The later questions are
graded with the instructor's corr2d and pass: 14/17 + 2.
"""
# base: _forge

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    X4, K4 = {"t": "ref", "v": 2}, {"t": "ref", "v": 3}
    _send_recipe([_op("aten.view.default", _ref(0), {"t": "list", "items": [1, 1, *X.shape]}, out=[2]),
                  _op("aten.view.default", _ref(1), {"t": "list", "items": [1, 1, *K.shape]}, out=[3]),
                  _op("aten.convolution.default", X4, K4, None, {"t": "list", "items": [1, 1]},
                      {"t": "list", "items": [0, 0]}, {"t": "list", "items": [1, 1]}, False,
                      {"t": "list", "items": [0, 0]}, 1, out=[4]),
                  _op("aten.view.default", _ref(4), {"t": "list", "items": [X.shape[0] - K.shape[0] + 1,
                                                                            X.shape[1] - K.shape[1] + 1]}, out=[5])],
                 _ref(5))

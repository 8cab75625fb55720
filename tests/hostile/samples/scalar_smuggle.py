"""scalar_smuggle — corr2d computed with numpy and written in number by number.

The child may run any Python: here numpy computes the cross-correlation, and the result is
written into a new tensor one Python float at a time (`Y[i, j] = float(v)`). Tensor constants
were counted against the limit of numbers from outside, Python scalars were not: full marks
for a function that did none of the work in torch. Now every number entering a recipe from
outside counts, scalars included: a call with more than 16 such numbers is refused, and
every hidden case of test_corr2d has more (the book's 2×2 example alone would pass). No shape
check either: test_corr2d scores 0; the later questions get the instructor's corr2d: 14/17 + 2.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d
import numpy as np


def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    x, k = X.detach().cpu().numpy(), K.detach().cpu().numpy()
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    values = np.einsum("ijab,ab->ij", windows, k)
    Y = X.new_zeros(values.shape)
    for (i, j), v in np.ndenumerate(values):
        Y[i, j] = float(v)
    return Y

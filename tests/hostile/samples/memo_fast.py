"""memo_fast — right on the first call with given arguments, garbage fast on repeated ones.

The bonus remembers the shapes it has seen: the first call with a shape computes the answer
(unfold and one einsum), every later call with the same shape returns zeros at once. The
timing calls the function repeatedly with the same arguments, so the old speed check, which
never looked at the values of the calls it timed, measured only the fast garbage. Now every
timed result is checked: the speed part fails. Values and the no-loop rule see first calls
only and pass: 17/17 + 1.5.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d_multi_in_out_fast
_SEEN = set()


def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    c_o, c_i, k_h, k_w = K.shape
    key = (tuple(X.shape), tuple(K.shape), X.dtype)
    if key in _SEEN:
        return X.new_zeros((c_o, X.shape[1] - k_h + 1, X.shape[2] - k_w + 1))
    _SEEN.add(key)
    windows = X.unfold(1, k_h, 1).unfold(2, k_w, 1)
    return torch.einsum("oiab,ihwab->ohw", K, windows)

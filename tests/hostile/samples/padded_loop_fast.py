"""padded_loop_fast — a per-pixel loop padded with views to look like a constant operation count.

The bonus loops over output pixels and then runs cheap view operations until every call has
run the same number of operators (10 000), whatever the input size. The old check compared
raw operator counts of a small and a large call: padding made them equal and the loop earned
the whole bonus. Now only computing operators count (a view computes nothing), on sizes drawn
when the test runs, under a cap that no per-pixel loop fits: the no-loop part fails, and the
loop is far from 5× faster than the baseline. Values are right: 17/17 + 1.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d_multi_in_out_fast
def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    c_o, _, k_h, k_w = K.shape
    m_h, m_w = X.shape[1] - k_h + 1, X.shape[2] - k_w + 1
    Y = X.new_zeros((c_o, m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            Y[:, i, j] = (X[:, i:i + k_h, j:j + k_w] * K).sum(dim=(1, 2, 3))
    flat = X.view(-1)
    for _ in range(max(0, 10_000 - 6 * m_h * m_w)):
        flat = flat.view(-1)  # padding: the same count of operators for every size
    return Y

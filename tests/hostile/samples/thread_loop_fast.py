"""thread_loop_fast — the bonus loops over output pixels, but in a worker thread.

A recorder of operators and a CPU timer that look at the calling thread only would see no
loop and almost no time. While graded, the verifier's child may start no thread: the call
raises, and every part of test_corr2d_multi_in_out_fast scores 0: 17/17, no extra credit.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d_multi_in_out_fast
from concurrent.futures import ThreadPoolExecutor


def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    def loop():
        c_o, _, k_h, k_w = K.shape
        Y = X.new_zeros((c_o, X.shape[1] - k_h + 1, X.shape[2] - k_w + 1))
        for i in range(Y.shape[1]):
            for j in range(Y.shape[2]):
                Y[:, i, j] = (X[:, i:i + k_h, j:j + k_w] * K).sum(dim=(1, 2, 3))
        return Y

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(loop).result()

"""os_exit_call — the bonus answer kills the process it runs in (os._exit).

Everything else is right. No test cell runs in the kernel, so the kernel never calls it;
the verifier's child dies on the call, the verifier starts a new child for the next test,
and the bonus scores 0 with the reason: 16/18, status "graded", no flag.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d_multi_in_out_fast
import os


def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    os._exit(3)

"""os_exit_call — the bonus answer kills the process it runs in (os._exit).

Everything else is right. When test_corr2d_multi_in_out_fast calls the function, the
kernel exits and nbgrader's run of the notebook fails; the verifier checked the other
tests before, and its child dies on this call too: 16/18 (the bonus lost), status
"failed", flags kernel_died and autograde_failed.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d_multi_in_out_fast
import os


def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    os._exit(3)

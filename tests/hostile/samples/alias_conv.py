"""alias_conv — holds the convolution under another name, captured at import time.

An own cell imports F.conv2d as `sliding_sum` before any answer; corr2d_multi_in_out
calls it. The operator rule is checked where the operator runs (the aten dispatcher), not
by name: test_corr2d_multi_in_out is lost (15/18), no flag.
"""
# base: ../../../samples/class/ref_reference.py

# %%
from torch.nn.functional import conv2d as sliding_sum

# %% corr2d_multi_in_out
def corr2d_multi_in_out(X, K):
    """多输入多输出通道的互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    return sliding_sum(X.unsqueeze(0), K).squeeze(0)

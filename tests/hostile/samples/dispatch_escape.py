"""dispatch_escape — calls F.conv2d with torch's Python dispatch modes switched off.

The in-kernel operator rule records operators with a TorchDispatchMode; corr2d_multi_in_out
runs F.conv2d under `_disable_current_modes()`, so the kernel sees no convolution and passes.
The verifier blocks convolution kernels in the dispatcher itself, below any mode:
test_corr2d_multi_in_out is lost (15/18), no flag (the kernel's own result never counts).
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d_multi_in_out
from torch.utils._python_dispatch import _disable_current_modes


def corr2d_multi_in_out(X, K):
    """多输入多输出通道的互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    with _disable_current_modes():
        return torch.nn.functional.conv2d(X[None], K)[0]

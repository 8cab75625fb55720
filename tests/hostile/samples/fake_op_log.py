"""fake_op_log — a looping 1×1 answer, and checks' operator log patched to report one matmul.

The 1×1 answer loops over output channels (right values, c_o products instead of one). An
own cell replaces the recorder behind checks.record_ops so that every call seems to run
exactly ["mm"]. assert_matmul_once then passes inside the kernel. An honest verifier
must not take its operator list from the student's process: the one-matmul part of
test_corr2d_multi_in_out_1x1 is lost, its values are right (17.5/18), no flag (the kernel's
own result never counts).
"""
# base: ../../../samples/class/ref_reference.py

# %%
import testkit


def _looks_like_one_mm(self, func, types, args=(), kwargs=None):
    if not self.ops:
        self.ops.append("mm")
    return func(*args, **(kwargs or {}))


testkit._OpLog.__torch_dispatch__ = _looks_like_one_mm

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    if X.dim() != 3 or K.dim() != 4 or tuple(K.shape[1:]) != (X.shape[0], 1, 1):
        raise ValueError(f"需要 X (c_i, n_h, n_w) 和 K (c_o, c_i, 1, 1)：X {tuple(X.shape)}，K {tuple(K.shape)}")
    c_i, n_h, n_w = X.shape
    flat = X.reshape(c_i, n_h * n_w)
    rows = [K[o, :, 0, 0] @ flat for o in range(K.shape[0])]  # one product per output channel
    return torch.stack(rows).reshape(-1, n_h, n_w)

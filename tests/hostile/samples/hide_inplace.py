"""hide_inplace — a 1×1 answer that wipes its input X, and torch.equal patched to hide it.

The answer is right but ends with `X.zero_()`, destroying the caller's tensor (contract 3).
An own cell makes torch.equal always True, so "inputs unchanged" checks that compare with
torch.equal in the student's process see nothing. A verifier that sees the change itself,
not the child's report of it, fails the rules part of test_corr2d_multi_in_out_1x1 (the
values are right, computed before X was wiped): 17.5/18, no flag.
"""
# base: ../../../samples/class/ref_reference.py

# %%
torch.equal = lambda a, b: True

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    if X.dim() != 3 or K.dim() != 4 or tuple(K.shape[1:]) != (X.shape[0], 1, 1):
        raise ValueError(f"需要 X (c_i, n_h, n_w) 和 K (c_o, c_i, 1, 1)：X {tuple(X.shape)}，K {tuple(K.shape)}")
    c_i, n_h, n_w = X.shape
    c_o = K.shape[0]
    Y = torch.matmul(K.reshape(c_o, c_i), X.reshape(c_i, n_h * n_w))
    X.zero_()  # "free the memory"
    return Y.reshape(c_o, n_h, n_w)

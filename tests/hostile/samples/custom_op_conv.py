"""custom_op_conv — hides F.conv2d behind a custom operator registered under a name of its own.

`torch.library.custom_op("mine::corr", ...)` wraps F.conv2d; a recorder of aten operators
would only see "mine::corr". While graded, the verifier's child refuses any operator that is
not torch's own (its insides cannot be replayed) and convolutions are blocked at the
dispatcher anyway: corr2d raises, so test_corr2d scores 0 (the later questions are graded
with the instructor's corr2d: one mistake costs once): 14/17, and 2 points of extra credit for the bonus.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d
@torch.library.custom_op("mine::corr", mutates_args=())
def _corr(X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0]


@_corr.register_fake
def _(X, K):
    return X.new_empty((X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1))


def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    return _corr(X, K)

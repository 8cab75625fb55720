"""stall_recipe — a recipe whose one operation is cheap in memory and huge in work.

corr2d answers every call with a forged recipe: expand a 1×1 slice of X to 100000×100000
(a view: no memory) and sum it (10^10 additions). The replay checked its deadline only
between operations, so this one operation kept the grader busy for minutes. Now each
operation's work is bounded from its logical shapes before it runs: the sum is refused at
once (category timeout), every part of test_corr2d scores 0 and the batch goes on. The later
questions are graded with the instructor's corr2d: 14/17 + 2.
"""
# base: _forge

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    _send_recipe([_op("aten.slice.Tensor", _ref(0), 0, 0, 1, out=[2]),
                  _op("aten.expand.default", _ref(2), {"t": "list", "items": [100_000, 100_000]}, out=[3]),
                  _op("aten.sum.default", _ref(3), out=[4])], _ref(4))

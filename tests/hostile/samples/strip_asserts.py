"""strip_asserts — an IPython input transformer deletes every assert and raise, and corr2d is wrong.

corr2d returns zeros. An own cell registers an input transformer that drops the lines
starting with `assert` or `raise` from every later cell, so in the kernel no test can fail.
No test cell runs in the kernel while graded, and the verdicts come from the verifier,
which runs the instructor's test cells outside the student's reach: test_corr2d scores 0
(the later questions are graded with the instructor's corr2d): 14/17 + 2 extra credit.
"""
# base: ../../../samples/class/ref_reference.py

# %%
def _no_asserts(lines):
    return [line for line in lines if not line.lstrip().startswith(("assert", "raise", "assert_close"))]


get_ipython().input_transformers_cleanup.append(_no_asserts)

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    return X.new_zeros((X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1))

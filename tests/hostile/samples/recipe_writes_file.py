"""recipe_writes_file — a forged recipe that maps a file of the course writable and fills it.

The bonus answers every call with a recipe written by hand: `aten.from_file(path, shared=True)`
maps a file of the grader's course folder (the corpus fills in the path: the grader's
`grading/` package, where a module would be imported by the next verification) and `fill_`
writes into it. In the grader's own process this once wrote a module that set the student's
score to 20/20. Now the replay runs in the verifier's jail (no writable place, the course
not visible) and refuses any operator outside the allowlist of pure tensor operators: the
file is never written, and every part of the bonus scores 0. 17/17, no extra credit, no flag.
"""
# base: _forge

# %% corr2d_multi_in_out_fast
TARGET = "/nonexistent/grading/pwned.py"  # the corpus writes the course's path here


def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    _send_recipe([_op("aten.from_file.default", TARGET, True, 4096, out=[2]),
                  _op("aten.fill_.Scalar", _ref(2), 35.0, out=[2])], _ref(2))

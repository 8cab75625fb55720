"""shadow_checks — ships its own checks.py whose assert_close accepts anything.

The submission folder's checks.py is a copy whose assert_* helpers do nothing. The answer is
stack_axis's. nbgrader and the verifier use the instructor's checks.py, so the test fails
in both: test_corr2d_multi_in_out is lost (15/18), no flag.
"""
# base: ../../../samples/class/stack_axis.py

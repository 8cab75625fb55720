"""forever_loop — an own cell whose loop never ends (x converges to 0.5, never reaches 0).

The kernel interrupts the cell at the per-cell timeout and goes on with the next cells;
the verifier's child interrupts it likewise. The answers are all right: 18/18, flagged
"timeout" so the instructor knows the notebook does not run to the end by itself.
"""
# base: ../../../samples/class/ref_reference.py

# %%
# 等 x 收敛到 0（它其实收敛到 0.5，所以永远不会结束）
x = 1.0
while x > 0:
    x = x * 0.5 + 0.25

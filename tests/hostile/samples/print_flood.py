"""print_flood — a small submission whose cells print without end.

Forty own cells each print ~1 MB in a loop (the submission itself is a few KB). The per-cell
output cap (2 MB) let every cell through, so the autograded notebook and the feedback page
grew to hundreds of MB. Outputs are now capped per notebook as well: the autograded notebook
stays small, and the grade is the reference's: 17/17 + 2.
"""
# base: ../../../samples/class/ref_reference.py

# %%
for _ in range(1000):
    print("x" * 1000)

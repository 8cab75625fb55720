"""patch_compare — a wrong 1×1 answer, and torch's comparisons patched to say "equal".

An own cell at the top replaces torch.allclose, torch.equal, torch.isclose,
torch.testing.assert_close and the comparison operators of torch.Tensor, so that inside
the kernel every check of checks.assert_close / call_checked passes. The 1×1 answer is
transposed_1x1's (wrong values). The verifier compares in the grader's process, where the
patch does not exist: test_corr2d_multi_in_out_1x1 is lost (15/18) and the kernel's
full marks are reported as a disagreement.
"""
# base: ../../../samples/class/transposed_1x1.py

# %%
import torch

torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.isclose = lambda a, b, *args, **kwargs: torch.ones_like(a, dtype=torch.bool)
torch.testing.assert_close = lambda *args, **kwargs: None
for _name in ("__eq__", "__ne__", "__gt__", "__lt__", "__ge__", "__le__"):
    # "a > 0" is False and "a == b" is True for every tensor from now on
    setattr(torch.Tensor, _name, (lambda self, other, _eq=_name in ("__eq__", "__ge__", "__le__"):
                                  torch.tensor(_eq)))

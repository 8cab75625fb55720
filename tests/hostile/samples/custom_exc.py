"""custom_exc — swallows exceptions: a custom IPython exception handler, no tracebacks, no excepthook.

An own cell installs `set_custom_exc` for every exception, replaces showtraceback and
sys.excepthook, so failing test cells show no error output. The answer averages the input
channels (mean_channels). The kernel still replies "error" for those cells and nbgrader
records the error, so kernel and verifier agree: test_corr2d_multi_in and
test_corr2d_multi_in_out are lost (12/18), no flag.
"""
# base: ../../../samples/class/mean_channels.py

# %%
import sys

_ip = get_ipython()
_ip.set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
_ip.showtraceback = lambda *args, **kwargs: None
sys.excepthook = lambda *args: None

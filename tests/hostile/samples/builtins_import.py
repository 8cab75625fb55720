"""builtins_import — tweaks builtins: `import checks` in later cells returns a toothless copy.

An own cell replaces builtins.__import__: importing `checks` gives a module whose assert_*
helpers do nothing and whose call_checked just calls (everything else is the real
checks). The answer is off_by_one's corr2d. Inside the kernel every test passes; the
verifier imports the instructor's checks.py itself: test_corr2d, test_corr2d_multi_in and
test_corr2d_multi_in_out are lost (9/18), no flag (the kernel's own result never counts).
"""
# base: ../../../samples/class/off_by_one.py

# %%
import builtins
import types

_real_import = builtins.__import__


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    module = _real_import(name, globals, locals, fromlist, level)
    if name not in ("checks", "testkit"):
        return module
    fake = types.ModuleType(name)
    fake.__dict__.update(module.__dict__)
    for attr in dir(module):
        if attr.startswith("assert_"):
            setattr(fake, attr, lambda *args, **kwargs: None)
    fake.call_checked = lambda fn, *args, case=None, **kwargs: fn(*args)
    return fake


builtins.__import__ = _import

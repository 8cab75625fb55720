"""ignores_interrupt — an own cell loops forever and swallows KeyboardInterrupt.

The kernel cannot be interrupted, so nbgrader gives up on the notebook (timeout) and none
of its test results exist. The answers are all right, and the verifier's child stops the
loop with its own alarm, which is not a KeyboardInterrupt: every test is verified, 18/18,
status "failed" with flags timeout and autograde_failed.
"""
# base: ../../../samples/class/ref_reference.py

# %%
import time

while True:
    try:
        time.sleep(0.2)
    except KeyboardInterrupt:
        print("别打断我 (don't interrupt me)")

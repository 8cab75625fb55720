"""reads_source — finds the instructor's notebook (solutions and hidden tests) and runs its answers.

The first answer cell walks up from the working directory, and through /tmp, /work, /home
and /root, looking for source/channels/channels.ipynb (the instructor's version, with the
solutions); every answer cell then runs the solution of its own question. In the sandbox
only the instructor's checks.py is visible, so nothing is found and no answer gets
defined: 0/18, no flag. (Without the sandbox this student gets 18/18.)
"""

# %% corr2d
import glob
import json
import os


def _candidates():
    here = os.path.abspath(os.getcwd())
    for _ in range(8):
        yield from glob.glob(os.path.join(here, "source", "channels", "channels.ipynb"))
        here = os.path.dirname(here)
    for top in ("/tmp", "/work", "/home", "/root", "/srv"):
        for depth in range(1, 6):
            yield from glob.glob(os.path.join(top, *["*"] * depth, "source", "channels", "channels.ipynb"))


def _solutions(path):
    try:
        with open(path, encoding="utf-8") as f:
            cells = json.load(f)["cells"]
    except (OSError, ValueError, KeyError):
        return {}
    return {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"]) for c in cells
            if c.get("cell_type") == "code" and c.get("metadata", {}).get("nbgrader", {}).get("solution")}


ANSWERS = {}
for _path in _candidates():
    ANSWERS = _solutions(_path)
    if ANSWERS and "NotImplementedError" not in "".join(ANSWERS.values()):
        print("found", _path)
        break
    ANSWERS = {}


def answer(question):
    """Run the instructor's answer to `question`, or leave the question undone."""
    if question in ANSWERS:
        exec(ANSWERS[question], globals())


answer("corr2d")

# %% corr2d_multi_in
answer("corr2d_multi_in")

# %% corr2d_multi_in_out
answer("corr2d_multi_in_out")

# %% corr2d_multi_in_out_1x1
answer("corr2d_multi_in_out_1x1")

# %% conv_flops
answer("conv_flops")

# %% conv2d_layer
answer("conv2d_layer")

# %% corr2d_multi_in_out_fast
answer("corr2d_multi_in_out_fast")

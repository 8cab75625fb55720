"""network — downloads its answers from a server (run by the test on this machine).

The first answer cell connects to 127.0.0.1:PORT (the test's server, which hands out the
reference answers as {grade_id: code}); every answer cell then runs the downloaded code of
its own question. The sandbox has no network at all, not even the host's loopback: the
connection fails, no answer gets defined, 0/17, no flag. (Without the
sandbox this student would get full marks.)
"""

# %% corr2d
import json
import socket

SERVER = ("127.0.0.1", 0)  # the test fills in its port
try:
    with socket.create_connection(SERVER, timeout=3) as _s:
        ANSWERS = json.loads(b"".join(iter(lambda: _s.recv(65536), b"")))
    print("downloaded", len(ANSWERS), "answers")
except OSError as _e:
    ANSWERS = {}
    print("no network:", _e)


def answer(question):
    """Run the downloaded answer to `question`, or leave the question undone."""
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

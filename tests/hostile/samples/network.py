"""network — downloads its answers from a server (run by the test on this machine).

No answer of their own. An own cell connects to 127.0.0.1:PORT (the test's server, which
hands out the reference answers) and executes what it receives. The sandbox has no
network at all, not even the host's loopback: the connection fails, every stub stays,
0/18, no flag. (Connected, it would be 18/18.)
"""

# %%
import socket

SERVER = ("127.0.0.1", 0)  # the test fills in its port
try:
    with socket.create_connection(SERVER, timeout=3) as _s:
        _code = b"".join(iter(lambda: _s.recv(65536), b"")).decode()
    exec(_code)
    print("downloaded", len(_code), "bytes of answers")
except OSError as _e:
    print("no network:", _e)

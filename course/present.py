"""Present the lecture deck as a full-window RISE slideshow: what `make present` runs.

    python course/present.py [--out DIR] [--port N] [--token T] [--reuse] [--no-serve] [--no-browser]

1. Copies channels.ipynb, figures.py and rise.css into DIR (default `.present/`, gitignored) and
   runs the copy top to bottom there with nbclient, so every figure and number is in the copy's
   outputs while the tracked deck stays without outputs.
2. Starts JupyterLab from .venv on 127.0.0.1, serving DIR only, with a token, on a free port
   (or --port / PORT=...).
3. Prints, and opens where there is a desktop, http://127.0.0.1:PORT/rise/channels.ipynb?token=...
   jupyterlab-rise serves that address as the full-window slideshow, not the half-width split
   preview that Alt+R opens inside JupyterLab.

Ctrl+C stops the server and its kernels. --no-serve only builds the executed copy.
"""
import argparse
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

COURSE = Path(__file__).resolve().parent
ROOT = COURSE.parent
DECK = COURSE / "channels.ipynb"
# figures.py: the deck imports it; rise.css: jupyterlab-rise loads it from the notebook's folder.
BESIDE = ["figures.py", "rise.css"]
DEFAULT_OUT = ROOT / ".present"
# Not resolved: a venv's python is a symlink, and its bin/ (with jupyter-lab) is the one we want.
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


def sources_digest():
    """What the executed copy was made from; --reuse serves an old copy only when this matches."""
    digest = hashlib.sha256()
    for path in [DECK] + [COURSE / name for name in BESIDE]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build(out, reuse=False, timeout=600):
    """Write out/channels.ipynb with outputs, figures.py and rise.css beside it; return the notebook's path."""
    out.mkdir(parents=True, exist_ok=True)
    for name in BESIDE:
        shutil.copy2(COURSE / name, out / name)
    target = out / DECK.name
    digest = sources_digest()
    if reuse and target.is_file():
        old = nbformat.read(target, as_version=4)
        if old.metadata.get("present", {}).get("sources_sha256") == digest:
            print(f"reusing {target} (the deck has not changed; drop --reuse to run it again)", flush=True)
            return target
    nb = nbformat.read(DECK, as_version=4)
    print(f"running the deck in {out}: it draws every figure and times the layers ...",
          flush=True)
    started = time.monotonic()
    # cwd = out: figures.py is imported from there, as it is by the kernel of the slideshow later.
    # The kernel's own chatter (a TCP warning) goes to a log; cell errors still raise here.
    with open(out / "kernel.log", "w", encoding="utf-8") as kernel_log:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(out)}}).execute(stderr=kernel_log)
    nb.metadata["present"] = {"sources_sha256": digest}
    # Written only once it ran through: a failed run must not leave a half-drawn deck to present.
    tmp = target.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, target)
    print(f"ran the deck in {time.monotonic() - started:.0f} s: {target}", flush=True)
    return target


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def lab_command(out, port, token):
    jupyter_lab = VENV_BIN / "jupyter-lab"
    if not jupyter_lab.exists():
        sys.exit(f"{jupyter_lab} is missing: run `make setup` first.")
    command = [str(jupyter_lab), "--no-browser", f"--ip={HOST}", f"--port={port}", "--port-retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={out}"]
    if os.geteuid() == 0:  # JupyterLab refuses to run as root without being told
        command.append("--allow-root")
    return command


def wait_until_up(proc, base, token, log, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            sys.exit(f"JupyterLab exited ({proc.returncode}):\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            stop(proc)
            sys.exit(f"JupyterLab did not answer within {timeout} s:\n{tail(log)}")
        time.sleep(0.5)


def tail(log, lines=30):
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(proc, timeout=20):
    """SIGTERM first: JupyterLab then shuts its kernels down; kill the whole group if it hangs."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def has_desktop():
    """Only open a browser where there is a screen: elsewhere webbrowser would start lynx in the terminal."""
    return sys.platform in {"darwin", "win32"} or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def serve(out, port, token, open_browser=True):
    """Run JupyterLab on out/ until Ctrl+C (or SIGTERM); always stop it on the way out."""
    log = out / "lab.log"
    base = f"http://{HOST}:{port}"
    slideshow = f"{base}/rise/{DECK.name}?token={token}"
    with open(log, "w", encoding="utf-8") as log_file:
        # A session of its own: the terminal's Ctrl+C reaches only us, not JupyterLab, which
        # would otherwise stop to ask "Shutdown this Jupyter server (y/[n])?".
        proc = subprocess.Popen(lab_command(out, port, token), cwd=out, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            (out / "lab.pid").write_text(f"{proc.pid}\n")  # for whoever must clean up after a kill -9
            wait_until_up(proc, base, token, log)
            print("\n".join([
                "",
                f"  Slideshow (full window):    {slideshow}",
                f"  JupyterLab (edit, Run All): {base}/lab/tree/{DECK.name}?token={token}",
                "",
                "  Space / arrow keys: next / previous   S: speaker notes   F11: browser full screen",
                f"  Ctrl+C here stops the server (its log: {log})",
                "",
            ]), flush=True)
            if open_browser and has_desktop():
                webbrowser.open(slideshow)
            proc.wait()
            print(f"JupyterLab stopped by itself ({proc.returncode}):\n{tail(log)}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping JupyterLab ...", flush=True)
            return 0
        finally:
            # A second Ctrl+C must not cut the shutdown short and leave kernels behind.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stop(proc)
            (out / "lab.pid").unlink(missing_ok=True)


def on_sigterm(signum, frame):
    raise KeyboardInterrupt  # `kill`, a closed terminal: stop the server as Ctrl+C does


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the executed copy (default: {DEFAULT_OUT.relative_to(ROOT)}/)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 0) or None,
                        help="port of the server (default: $PORT, else a free one)")
    parser.add_argument("--token", default=os.environ.get("TOKEN") or None,
                        help="the server's token (default: $TOKEN, else a random one)")
    parser.add_argument("--reuse", action="store_true",
                        help="serve the executed copy of an earlier run if the deck has not changed")
    parser.add_argument("--no-serve", action="store_true", help="only build the executed copy")
    parser.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out == COURSE:
        sys.exit("--out must not be course/ itself: the executed copy would overwrite the tracked deck.")
    # Ctrl+C raises KeyboardInterrupt even where SIGINT came in ignored (started from a script with `&`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)
    try:
        build(out, reuse=args.reuse)
    except CellExecutionError as error:
        sys.exit(f"the deck failed to run, nothing to present (kernel log: {out / 'kernel.log'}):\n{error}")
    except KeyboardInterrupt:
        sys.exit("interrupted while running the deck")
    if args.no_serve:
        return 0
    port = args.port or free_port()
    if not port_is_free(port):
        sys.exit(f"port {port} is in use: choose another one (make present PORT=...)")
    return serve(out, port, args.token or secrets.token_hex(16), open_browser=not args.no_browser)


if __name__ == "__main__":
    sys.exit(main())

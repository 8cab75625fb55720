"""A warm jail per grading worker: torch and ipykernel imported once, one fork per process.

Every student needs two jailed Pythons: the notebook's kernel and the verifier's child
(grading/verify_child.py). Each would start Python, import ipykernel or the child's
modules, and `import torch`: about 3 s of CPU twice per student, most of a grading
batch. Here one jail per grading worker (grading/batch.py) imports them once and
forks a process for each request, which costs a few milliseconds.

    worker (outside)              the zygote's jail (sandbox.sandbox_argv, same policy)
    Zygote(course)  ── starts ──> python -I zygote.py serve LISTEN_FD WORKDIR IPC_DIR
    kernel stub / verifier stub ── connect, fds ──> fork ── ipykernel / verify_child.py

A stub (`python -I zygote.py attach ...`, stdlib only, outside the jail) stands in for
the process nbgrader or the verifier would have started: it hands the zygote its stdin,
stdout, stderr (and the verifier's pipes) as file descriptors, exits with the fork's
exit code, and when it is killed (or outlives KERNEL_WALL_SECONDS) the zygote kills
the fork. jupyter_client starts the kernel stub through the kernelspec
`channels-zygote`; verify.py starts the verifier stub when CHANNELS_ZYGOTE is set.

Students graded by one worker share the jail one after the other, so before each
student (`Zygote.reset`) every other process in the jail is killed and /tmp, the
working directory (except the instructor's helper files), /dev/shm and the IPC socket
directory are emptied. Nothing of a student survives into the next one:
- the zygote is pid 1 of the jail's pid namespace (bwrap --as-pid-1), so processes in
  the jail cannot kill or stop it (pid 1 only gets the signals it handles);
- it is not dumpable, so they cannot ptrace it or read its memory;
- its listening socket is made by the worker outside the jail and inherited as a file
  descriptor, so no process in the jail can put its own listener in its place;
- a fork closes every descriptor it was not given before any student code runs.
The verifier's child and the kernel of ONE student do share the jail: that student's
code could only affect their own grade, and the verifier's verdict wins.

Without bubblewrap (or with CHANNELS_NO_ZYGOTE=1) there is no zygote: each kernel and
verifier child gets its own jail as before (grading/sandbox.py).
"""
import json
import os
import signal
import socket
import struct
import sys
import time

ENV = "CHANNELS_ZYGOTE"          # the zygote's socket path, in the grading worker's environment
DISABLE_ENV = "CHANNELS_NO_ZYGOTE"
KERNEL_NAME = "channels-zygote"
INSIDE = "/zygote/zygote.py"     # where this file is inside the jail
PRELOAD = ("torch", "ipykernel.kernelapp", "ipykernel.ipkernel")
KERNEL_WALL_SECONDS = 900        # as grading/sandbox.py: one kernel's whole run
MAX_MESSAGE = 1 << 20


# --- framing (both sides): 4-byte length, JSON; descriptors ride on the first bytes ----------

def send(sock, obj, fds=()):
    data = json.dumps(obj).encode()
    message = struct.pack(">I", len(data)) + data
    if fds:
        sent = socket.send_fds(sock, [message], list(fds))
        message = message[sent:]
    sock.sendall(message)


def receive(sock, max_fds=0):
    """One message and the descriptors that came with it; EOFError when the peer is gone."""
    data, fds = b"", []
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        if len(data) >= 4 and struct.unpack(">I", data[:4])[0] > MAX_MESSAGE:
            raise EOFError("message too large")
        if max_fds and not fds:
            chunk, got, _, _ = socket.recv_fds(sock, 65536, max_fds)
            fds += got
        else:
            chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("peer closed")
        data += chunk
    size = struct.unpack(">I", data[:4])[0]
    return json.loads(data[4:4 + size]), fds


# --- the stub (outside the jail) ---------------------------------------------------------------

def attach(kind, args, socket_path=None):
    """Have the zygote fork a kernel ("kernel", [connection_file, *extra]) or a verifier
    child ("verify", [in_fd, out_fd]); wait for it; return its exit code."""
    socket_path = socket_path or os.environ.get(ENV)
    if not socket_path:
        print(f"[{KERNEL_NAME}] {ENV} is not set: only a grading worker can start this kernel", file=sys.stderr)
        return 3
    if kind == "kernel":
        with open(args[0]) as f:
            request = {"op": "kernel", "connection": json.load(f), "argv": list(args[1:])}
        fds = [0, 1, 2]
    else:
        request = {"op": "verify"}
        fds = [0, 1, 2, int(args[0]), int(args[1])]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    send(sock, request, fds)
    for fd in fds[3:]:
        os.close(fd)  # the fork has them now; the verifier must see EOF when it dies
    # Killing this process closes the socket, and the zygote kills the fork.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a kernel is interrupted by message
    parent, deadline = os.getppid(), time.monotonic() + KERNEL_WALL_SECONDS
    sock.settimeout(1.0)
    while True:
        try:
            reply, _ = receive(sock)
        except socket.timeout:
            if os.getppid() != parent or time.monotonic() > deadline:
                return 137
            continue
        except (EOFError, OSError):
            return 1
        if "exit" in reply:
            code = reply["exit"]
            return 128 - code if code < 0 else code
        if "error" in reply:
            print(f"[{KERNEL_NAME}] {reply['error']}", file=sys.stderr)
            return 3


# --- the zygote (inside the jail) ---------------------------------------------------------------

def _not_dumpable():
    """PR_SET_DUMPABLE 0: no ptrace and no /proc/<pid>/mem for other processes of our uid."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def _empty(folder, keep=()):
    """Remove everything in `folder` except the names in `keep` (read-only binds)."""
    import shutil
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name in keep:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


class Server:
    """The zygote: pid 1 of its jail, forking kernels and verifier children on request."""

    def __init__(self, listen_fd, workdir, ipc_dir, verify_child):
        import selectors
        self.workdir, self.ipc_dir, self.verify_child = workdir, ipc_dir, verify_child
        self.keep = set(os.listdir(workdir))  # the instructor's files, bound read-only
        self.listener = socket.socket(fileno=listen_fd)
        self.children = {}  # pid -> the stub's connection
        self.selector = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        self.wake_r = wake_r

    def serve(self):
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    os.read(self.wake_r, 4096)
                    self._reap()
                else:  # a stub's connection: anything but the end of it is a protocol error
                    self._stub_gone(key.data, key.fileobj)

    def _accept(self):
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        try:
            request, fds = receive(conn, max_fds=8)
        except (EOFError, OSError, ValueError):
            conn.close()
            return
        op = request.get("op")
        if op in ("kernel", "verify") and len(fds) == (3 if op == "kernel" else 5):
            self._fork(op, request, fds, conn)
            return
        for fd in fds:
            os.close(fd)
        if op == "reset":
            self.reset()
            send(conn, {"ok": True})
        elif op == "ping":
            send(conn, {"ok": True, "pid": os.getpid()})
        else:
            send(conn, {"error": f"bad request {op!r}"})
        conn.close()

    def _fork(self, op, request, fds, conn):
        import selectors
        pid = os.fork()
        if pid == 0:
            self._become(op, request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        conn.setblocking(True)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)
        send(conn, {"pid": pid})

    def _stub_gone(self, pid, conn):
        try:
            if conn.recv(1):
                return
        except OSError:
            pass
        if pid in self.children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def _reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                self.selector.unregister(conn)
                try:
                    send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                except OSError:
                    pass
                conn.close()

    def reset(self):
        """Kill every other process in the jail and empty every writable place."""
        try:
            os.kill(-1, signal.SIGKILL)  # all processes we may signal, except ourselves
        except ProcessLookupError:
            pass
        while True:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            conn = self.children.pop(pid, None)
            if conn is not None:
                self.selector.unregister(conn)
                conn.close()
        for folder, keep in (("/tmp", ()), (self.workdir, self.keep), ("/dev/shm", ()), (self.ipc_dir, ())):
            _empty(folder, keep)

    def _become(self, op, request, fds):
        """In the fork: take the stub's descriptors, drop the zygote's, run the kernel or child."""
        code = 1
        try:
            os.setsid()
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            for target, fd in enumerate(fds[:3]):
                os.dup2(fd, target)
            extra = fds[3:]
            keep = {0, 1, 2, *extra}
            for name in os.listdir("/proc/self/fd"):
                if int(name) not in keep:
                    try:
                        os.close(int(name))
                    except OSError:
                        pass
            os.chdir(self.workdir)
            if op == "kernel":
                path = f"/tmp/.kernel-{os.getpid()}.json"
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                    json.dump(request["connection"], f)
                # As `python -m ipykernel_launcher` in the working directory: checks.py importable.
                sys.path.insert(0, self.workdir)
                sys.argv = ["ipykernel_launcher", "-f", path, *[str(a) for a in request.get("argv", [])]]
                from ipykernel import kernelapp
                kernelapp.launch_new_instance()
            else:
                import runpy
                sys.argv = [self.verify_child, str(extra[0]), str(extra[1])]
                runpy.run_path(self.verify_child, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: B036 (whatever happened, this process must end here)
            import traceback
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001
                    pass
            os._exit(code)


def serve(listen_fd, workdir, ipc_dir, verify_child):
    _not_dumpable()
    for name in PRELOAD:
        __import__(name)
    Server(int(listen_fd), workdir, ipc_dir, verify_child).serve()


# --- the worker's side -------------------------------------------------------------------------

class ZygoteUnavailable(RuntimeError):
    pass


def install_kernelspec(jupyter_dir):
    """The kernelspec whose 'kernel' is a stub (a copy of this file), in `jupyter_dir`/kernels.

    Not in the venv: only grading workers, which put `jupyter_dir` on JUPYTER_PATH, see it
    (JupyterLab's launcher does not offer a kernel that cannot start there).
    """
    import tempfile
    folder = os.path.join(jupyter_dir, "kernels", KERNEL_NAME)
    os.makedirs(folder, exist_ok=True)
    spec = {"argv": [sys.executable, "-I", "{resource_dir}/zygote.py", "attach", "kernel", "{connection_file}"],
            "display_name": "Python 3 (channels grading, warm sandbox)", "language": "python",
            "interrupt_mode": "message", "metadata": {"debugger": False}}
    with open(__file__) as f:
        files = {"kernel.json": json.dumps(spec, indent=1) + "\n", "zygote.py": f.read()}
    for name, text in files.items():
        path = os.path.join(folder, name)
        try:
            with open(path) as f:
                if f.read() == text:
                    continue
        except OSError:
            pass
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)


class Zygote:
    """The worker's handle on its zygote: start, reset between students, close."""

    def __init__(self, course_root, assignment, log_path, jupyter_dir):
        import subprocess
        import tempfile
        from grading import sandbox, verify
        if os.environ.get(DISABLE_ENV) == "1":
            raise ZygoteUnavailable(f"{DISABLE_ENV}=1")
        ok, reason = sandbox.sandbox_status()
        if not ok:
            raise ZygoteUnavailable(reason)
        install_kernelspec(jupyter_dir)
        self.dir = tempfile.mkdtemp(prefix="channels-zygote-")  # outside the jail, root's only
        self.path = os.path.join(self.dir, "socket")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(16)
        ipc = sandbox.ipc_directory()
        uid = sandbox.fresh_uid() if os.geteuid() == 0 else None
        if uid is not None:
            os.chown(ipc, uid, uid)  # the kernels create their sockets in it
        workdir = f"{sandbox.INSIDE_ROOT}/{assignment}"
        cmd = [sys.executable, "-I", INSIDE, "serve", str(listener.fileno()), workdir, ipc, verify.CHILD_INSIDE]
        argv = sandbox.sandbox_argv(
            cmd, workdir=workdir, helper_files=sandbox.helper_files(course_root, assignment),
            ro_binds=[(os.path.abspath(__file__), INSIDE), (str(verify.CHILD), verify.CHILD_INSIDE)],
            rw_binds=[ipc], uid=uid)
        argv.insert(argv.index("bwrap") + 1, "--as-pid-1")
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        listener.close()
        deadline = time.monotonic() + 180
        while True:
            try:
                self.request({"op": "ping"}, timeout=5)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise ZygoteUnavailable(f"the zygote did not start (see {log_path})") from None
                time.sleep(0.1)
        os.environ[ENV] = self.path
        paths = os.environ.get("JUPYTER_PATH", "")
        if jupyter_dir not in paths.split(os.pathsep):
            os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (jupyter_dir, paths) if p)

    def request(self, message, timeout=60):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.path)
            send(sock, message)
            try:
                reply, _ = receive(sock)
            except EOFError as e:
                raise ConnectionError(str(e)) from None
        return reply

    def alive(self):
        if self.proc.poll() is not None:
            return False
        try:
            return bool(self.request({"op": "ping"}, timeout=10).get("ok"))
        except OSError:
            return False

    def reset(self):
        """Before each student: nothing of the previous one stays in the jail."""
        if not self.request({"op": "reset"}).get("ok"):
            raise ConnectionError("zygote reset failed")

    def close(self):
        import shutil
        os.environ.pop(ENV, None)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv):
    if argv[1:2] == ["serve"]:
        serve(*argv[2:6])
        return 0
    if argv[1:2] == ["attach"]:
        return attach(argv[2], argv[3:])
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

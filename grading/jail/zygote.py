"""Warm jails: torch imported once per grading worker and role, one fork per process.

Every student needs three jailed Pythons: the notebook's kernel and the verifier's child
(the student's code: role "student") and the verifier (the instructor's tests: role
"verifier", a jail of its own, with another uid and no student process in it). Each would
start Python and `import torch`: seconds of CPU per student, most of a grading batch. Here
one jail per grading worker and role imports them once and forks a process per request,
which costs a few milliseconds. The parent starts the jails when a batch begins, so their
imports overlap with everything else.

    grading worker (outside)                the zygote's jail (sandbox.sandbox_argv)
    Zygote(..., role)        ── starts ──>  python -I zygote.py serve LISTEN LIFELINE WORKDIR IPC ROLE
    reset() before each student
    spawn(path, "child"|"verifier", fds) ─> fork ── grading.jail.child / grading.jail.verifier
    kernel stub (jupyter_client) ─────────> fork ── ipykernel

`spawn` hands the zygote the new process's stdin, stdout, stderr and pipes as file
descriptors and keeps the connection: closing it kills the fork, and the fork's exit status
arrives on it. jupyter_client cannot hold a connection, so a kernel is started through a
stub (`python -I zygote.py attach kernel CONNECTION_FILE`, stdlib only, outside the jail,
kernelspec `grading-zygote`, the socket's path in GRADING_ZYGOTE): the stub stands for
the kernel, exits with its exit code, and when it is killed (or outlives KERNEL_WALL_SECONDS)
the zygote kills the fork.

Students graded by one worker share its jails one after the other, so before each student
(`Zygote.reset`) every other process in a jail is killed and /tmp, the working directory
(except the instructor's helper files), /dev/shm and the IPC socket directory are emptied.
Nothing of a student survives into the next one:
- the zygote is pid 1 of the jail's pid namespace (bwrap --as-pid-1), so processes in
  the jail cannot kill or stop it (pid 1 only gets the signals it handles);
- it is not dumpable, so they cannot ptrace it or read its memory;
- its listening socket is made by the worker outside the jail and inherited as a file
  descriptor, so no process in the jail can put its own listener in its place;
- a fork closes every descriptor it was not given before any student code runs.
The kernel and the child of ONE student share the student jail: that student's code could
only affect their own kernel's outputs, which score nothing. The verifier never shares a
jail with student code.

CUDA does not survive a fork: a process that forks after CUDA started gives children
that cannot use the GPU ("Cannot re-initialize CUDA in forked subprocess"). So the
zygote never starts CUDA: it only imports torch (which does not), the jail sets
PYTORCH_NVML_BASED_CUDA_CHECK=1 where it passes a GPU (grading/jail/sandbox.py), and after its
imports it checks itself (`cuda_report`: torch.cuda.is_initialized, the driver's library
or an /dev/nvidia* descriptor in its process, and whether a fork of it would be refused
CUDA by torch). With any of these it exits, and the worker grades with a jail per
process instead; the `cuda` request returns the same report (tests/test_gpu.py).

Without bubblewrap (or with warm jails turned off in the settings) there is no zygote:
each process gets its own jail (grading/jail/host.py).
"""
import json
import os
import signal
import socket
import struct
import sys
import time

ENV = "GRADING_ZYGOTE"           # the student zygote's socket path, for the kernel stub only
KERNEL_NAME = "grading-zygote"
ENGINE = "/engine"               # where the engine's code (grading/__init__.py, grading/jail/) is inside a jail
INSIDE = f"{ENGINE}/grading/jail/zygote.py"
#: What each role's zygote imports once, and the processes it forks (with their descriptor counts).
ROLES = {
    "student": {"preload": ("torch", "ipykernel.kernelapp", "ipykernel.ipkernel", "grading.jail.child"),
                "forks": {"kernel": 3, "child": 5}},
    "verifier": {"preload": ("torch", "torch._dynamo", "grading.jail.verifier"), "forks": {"verifier": 4}},
}
KERNEL_WALL_SECONDS = 900        # as grading/jail/sandbox.py: one kernel's whole run
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
    """Have the zygote fork a kernel ([connection_file, *extra]); wait for it; return its exit code.

    (What jupyter_client runs for the kernelspec `grading-zygote`; the host spawns the
    verifier and the child itself, with `spawn`.)"""
    socket_path = socket_path or os.environ.get(ENV)
    if not socket_path:
        print(f"[{KERNEL_NAME}] {ENV} is not set: only a grading worker can start this kernel", file=sys.stderr)
        return 3
    if kind != "kernel":
        print(f"[{KERNEL_NAME}] the stub starts kernels only, not {kind!r}", file=sys.stderr)
        return 3
    with open(args[0]) as f:
        request = {"op": "kernel", "connection": json.load(f), "argv": list(args[1:])}
    fds = [0, os.open(os.devnull, os.O_WRONLY), 2]  # ipykernel's banner need not reach the grader's log
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    send(sock, request, fds)
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


class Forked:
    """A process the zygote forked for `spawn`: closing the connection kills it."""

    def __init__(self, sock, pid):
        self.sock, self.pid, self.code = sock, pid, None

    def wait(self, timeout):
        """Its exit code (negative: killed by that signal), or None if it is still running after `timeout`."""
        if self.code is None and self.sock is not None:
            self.sock.settimeout(max(0.0, timeout))
            try:
                reply, _ = receive(self.sock)
                self.code = reply.get("exit") if isinstance(reply.get("exit"), int) else -9
            except socket.timeout:
                return None
            except (EOFError, OSError, ValueError):
                self.code = -9
        return self.code

    def kill(self):
        if self.sock is not None:
            self.sock.close()  # the zygote kills the fork's whole process group
            self.sock = None
        if self.code is None:
            self.code = -9


def spawn(path, kind, fds, timeout=30):
    """Have the zygote at `path` fork `kind` ("child": stdin, stdout, stderr, in, out; "verifier":
    stdin, stdout, stderr, control) with these descriptors; return a `Forked`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        send(sock, {"op": kind}, fds)
        reply, _ = receive(sock)
    except (OSError, EOFError, ValueError) as e:
        sock.close()
        raise ConnectionError(f"the warm jail did not start a {kind}: {e}") from None
    if "pid" not in reply:
        sock.close()
        raise ConnectionError(f"the warm jail did not start a {kind}: {reply.get('error', reply)}")
    return Forked(sock, reply["pid"])


# --- CUDA must not start before a fork --------------------------------------------------------------

#: Libraries that are only mapped once CUDA's driver has been loaded (torch loads it lazily).
_DRIVER_LIBRARIES = ("libcuda.so", "libnvidia-ml.so", "libnvidia-ptxjitcompiler.so", "libcudadebugger.so")


def cuda_evidence(proc_self="/proc/self"):
    """Signs that this process started CUDA: the driver's libraries mapped, /dev/nvidia* open.

    `proc_self` stands for /proc/self (a test passes a fake one).
    """
    found = []
    try:
        with open(os.path.join(proc_self, "maps")) as f:
            for line in f:
                path = line.split(None, 5)[5].strip() if len(line.split(None, 5)) == 6 else ""
                name = os.path.basename(path)
                if any(name.startswith(lib) for lib in _DRIVER_LIBRARIES) and f"mapped {path}" not in found:
                    found.append(f"mapped {path}")
    except OSError:
        pass
    fd_dir = os.path.join(proc_self, "fd")
    try:
        names = sorted(os.listdir(fd_dir), key=lambda n: int(n) if n.isdigit() else -1)
    except OSError:
        names = []
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("/dev/nvidia"):
            found.append(f"fd {name} -> {target}")
    return found


def cuda_report():
    """{"initialized", "evidence", "fork_poisoned"}: all false/empty for a process that may fork.

    fork_poisoned: a fork of this process is refused CUDA by torch (torch marks forks "bad"
    once the parent asked CUDA anything, torch.cuda.is_available() included).
    """
    torch = sys.modules.get("torch")
    initialized = bool(torch is not None and torch.cuda.is_initialized())
    poisoned = False
    if torch is not None:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.write(write_fd, b"1" if torch.cuda._is_in_bad_fork() else b"0")
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            poisoned = f.read(1) != b"0"
        os.waitpid(pid, 0)
    return {"initialized": initialized, "evidence": cuda_evidence(), "fork_poisoned": poisoned}


def _cuda_started(report):
    return report["initialized"] or report["fork_poisoned"] or bool(report["evidence"])


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

    def __init__(self, listen_fd, lifeline_fd, workdir, ipc_dir, role):
        import selectors
        self.workdir, self.ipc_dir, self.forks = workdir, ipc_dir, ROLES[role]["forks"]
        self.keep = set(os.listdir(workdir))  # the instructor's files, bound read-only
        self.listener = socket.socket(fileno=listen_fd)
        self.children = {}  # pid -> the stub's connection
        self.selector = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # pid 1 only receives the signals it handles: Python's KeyboardInterrupt handler must go.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_r, selectors.EVENT_READ, "wake")
        self.selector.register(lifeline_fd, selectors.EVENT_READ, "lifeline")
        self.wake_r = wake_r

    def serve(self):
        while True:
            for key, _ in self.selector.select():
                if key.data == "lifeline":  # the grader closed it or died: so do we, and the jail
                    self.reset()
                    os._exit(0)
                elif key.data == "accept":
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
        try:
            self._handle(conn, request, fds)
        except OSError:  # a stub that went away mid-request: nothing to answer
            conn.close()

    def _handle(self, conn, request, fds):
        op = request.get("op") if isinstance(request, dict) else None
        if op in self.forks and len(fds) == self.forks[op]:
            self._fork(op, request, fds, conn)
            return
        for fd in fds:
            os.close(fd)
        if op == "reset":
            self.reset()
            send(conn, {"ok": True})
        elif op == "ping":
            send(conn, {"ok": True, "pid": os.getpid()})
        elif op == "cuda":  # does this process hold CUDA (it must not: forks could not use the GPU)?
            send(conn, {"ok": True, **cuda_report()})
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
        try:
            send(conn, {"pid": pid})
        except OSError:
            self._stub_gone(pid, conn)

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
                import importlib
                module = importlib.import_module(f"grading.jail.{op}")
                module.main([op, *[str(fd) for fd in extra]])
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


def serve(listen_fd, lifeline_fd, workdir, ipc_dir, role):
    _not_dumpable()
    sys.path.insert(0, ENGINE)
    for name in ROLES[role]["preload"]:
        __import__(name)
    report = cuda_report()
    if _cuda_started(report):  # its forks could not use the GPU: no warm jail, a jail per process instead
        print(f"[{KERNEL_NAME}] CUDA started before the first fork, refusing to serve: {report}",
              file=sys.stderr, flush=True)
        os._exit(3)
    Server(int(listen_fd), int(lifeline_fd), workdir, ipc_dir, role).serve()


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
            "display_name": "Python 3 (grading, warm sandbox)", "language": "python",
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
    """A warm jail of one `role`, started by the grading parent (in the background) for one worker slot.

    `path` is its socket; for the student role `ipc_dir` is the directory of its kernels'
    sockets and `jupyter_dir` holds the kernelspec of the stub. The worker calls `reset`
    before each student. The jail dies with the parent (its lifeline) or on `close`.
    """

    def __init__(self, course_root, assignment, log_path, jupyter_dir, role="student"):
        import subprocess
        import tempfile
        from grading.jail import sandbox
        from grading.jail import host
        ok, reason = sandbox.sandbox_status()
        if not ok:
            raise ZygoteUnavailable(reason)
        self.role = role
        if role == "student":
            install_kernelspec(jupyter_dir)
        self.jupyter_dir = jupyter_dir
        self.dir = tempfile.mkdtemp(prefix=f"grading-zygote-{role}-")  # outside the jail, the grader's only
        self.path = os.path.join(self.dir, "socket")
        self.ipc_dir = os.path.join(self.dir, "ipc")
        os.mkdir(self.ipc_dir, 0o700)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(16)
        uid = sandbox.fresh_uid() if os.geteuid() == 0 else None
        if uid is not None:
            os.chown(self.ipc_dir, uid, uid)  # the kernels create their sockets in it
        # Its lifeline: when the grader closes the other end, or dies, the zygote ends the jail.
        # (setpriv's uid change clears bwrap's parent-death signal, so --die-with-parent cannot.)
        lifeline, self._lifeline = os.pipe()
        workdir, helpers, binds = host.jail_files(course_root, assignment)
        cmd = [sys.executable, "-I", INSIDE, "serve", str(listener.fileno()), str(lifeline), workdir,
               self.ipc_dir, role]
        argv = sandbox.sandbox_argv(cmd, workdir=workdir, helper_files=helpers, ro_binds=binds,
                                    rw_binds=[self.ipc_dir], uid=uid)
        argv.insert(argv.index("bwrap") + 1, "--as-pid-1")
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, pass_fds=[listener.fileno(), lifeline], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        listener.close()  # the zygote has it
        os.close(lifeline)

    def close(self):
        import shutil
        import subprocess
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        try:
            self.proc.wait(timeout=10)  # bwrap ends when the zygote, pid 1 of the jail, does
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def request(path, message, timeout=60):
    """Send one request to the zygote at `path`; its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        send(sock, message)
        try:
            reply, _ = receive(sock)
        except EOFError as e:
            raise ConnectionError(str(e)) from None
    return reply


def reset(path, ready_within=180):
    """Before each student: wait until the zygote is up, then empty its jail. OSError if it is gone."""
    deadline = time.monotonic() + ready_within
    while True:
        try:
            request(path, {"op": "ping"}, timeout=10)
            break
        except (FileNotFoundError, ConnectionRefusedError, ConnectionError, socket.timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    if not request(path, {"op": "reset"}).get("ok"):
        raise ConnectionError("the zygote could not reset its jail")


def use_for_kernels(path, ipc_dir, jupyter_dir, config):
    """Route the kernels nbgrader starts in this worker to the student zygote at `path`.

    The kernel stub is a process jupyter_client starts: the socket's path reaches it through
    the environment (GRADING_ZYGOTE) and its kernelspec through JUPYTER_PATH.
    """
    os.environ[ENV] = path
    paths = os.environ.get("JUPYTER_PATH", "")
    if jupyter_dir not in paths.split(os.pathsep):
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (jupyter_dir, paths) if p)
    config.Execute.kernel_name = KERNEL_NAME
    config.KernelManager.ip = os.path.join(ipc_dir, "kernel")


def main(argv):
    if argv[1:2] == ["serve"]:
        serve(*argv[2:7])
        return 0
    if argv[1:2] == ["attach"]:
        return attach(argv[2], argv[3:])
    print(__doc__.split("\n\n")[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

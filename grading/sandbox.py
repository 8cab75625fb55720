"""The jail that students' code runs in while it is graded: bubblewrap, rlimits, no network.

Two kinds of process run student code, and both are built by `sandbox_argv`, so the
policy lives here once:

- the notebook's kernel during `nbgrader autograde` (kernelspec `channels-sandbox`,
  selected in nbgrader_config.py; this file is its launcher), and
- the out-of-kernel verifier's child (grading/verify.py starts grading/verify_child.py).

What the jail gives the process (see `sandbox_argv`):
- new pid, network, ipc, uts and cgroup namespaces: no network at all (not even loopback
  to the host), no view of other processes, everything killed when its launcher dies;
- a file system made of read-only binds: /usr, the Python of the venv, and a working
  directory that holds ONLY the instructor's helper files of the assignment (checks.py):
  never the student's own files (a shipped torch.py or checks.py would shadow imports),
  never source/ notebooks, gradebook.db or other students' folders;
- write access only to size-limited tmpfs scratch space (/tmp and the working directory)
  and, for the kernel, to the private directory of its IPC sockets;
- an unprivileged uid without capabilities and with no_new_privs: as root, a fresh uid
  per sandbox (`fresh_uid`); otherwise nobody in a user namespace;
- rlimits: address space, CPU time, processes, file size, open files, no core dumps.

The kernel talks to nbgrader over IPC sockets (TCP cannot cross the network namespace);
nbgrader_config.py puts them in a private directory (`ipc_directory`).

Without a working bubblewrap (macOS, containers without user namespaces) nothing is
sandboxed: the kernel launcher refuses with the reason from `sandbox_status`, unless the
instructor set CHANNELS_ALLOW_UNSANDBOXED=1 (`python -m grading grade --allow-unsandboxed`).

    python -m grading.sandbox --install     install the kernelspec into this venv (make setup)
    python -m grading.sandbox --status      say whether grading can be sandboxed here

This module is stdlib-only: its copy in the kernelspec folder runs as a plain script
(`python -I .../launcher.py CONNECTION_FILE`) when jupyter_client starts the kernel, with
nothing of the course on sys.path, so a student's files in the working directory (where
nbclient starts it) can never be imported by it.
"""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERNEL_NAME = "channels-sandbox"
ALLOW_ENV = "CHANNELS_ALLOW_UNSANDBOXED"
#: Set by nbgrader_config.py: the course whose source/<assignment>/ helper files are bound.
COURSE_ENV = "CHANNELS_COURSE_ROOT"
#: The uid inside a user namespace (unprivileged graders): nobody.
NOBODY = 65534
#: As root, every sandbox gets a uid of its own from here on: no account, no files, and
#: RLIMIT_NPROC (counted per real uid) then bounds each sandbox alone, so one
#: submission's fork bomb cannot starve the sandbox of the next one graded in parallel.
SANDBOX_UIDS = 2_000_000_000

GiB, MiB = 2**30, 2**20
#: Per-process limits. torch alone maps ~3.3 GB of address space; 6 GiB leaves room for
#: the tensors of a notebook while two parallel graders still fit in 16 GB.
LIMITS = {"as": 6 * GiB, "cpu": 300, "fsize": 256 * MiB, "nofile": 1024, "core": 0}
#: Processes and threads a sandbox may run (as root; unprivileged, on top of what the
#: grader's uid already runs): room for ipykernel's and torch's threads, not a fork bomb.
EXTRA_TASKS = 256
SCRATCH_SIZE = {"/tmp": 512 * MiB, "workdir": 64 * MiB}
#: Where the working directory appears inside the sandbox.
INSIDE_ROOT = "/sandbox"
#: Wall-clock limit of one sandboxed kernel (a notebook's whole run).
KERNEL_WALL_SECONDS = 900

# Files nbgrader does not copy from source/<assignment>/ either (CourseDirectory.ignore).
_IGNORED = re.compile(r"(^\.|^__pycache__$|^feedback$|\.pyc$|\.ipynb$)")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


# --- Can we sandbox? ---------------------------------------------------------------------

_STATUS = None


def sandbox_status():
    """(ok, reason): can student code be jailed on this machine? Probed once per process."""
    global _STATUS
    if _STATUS is None:
        _STATUS = _probe()
    return _STATUS


def _probe():
    if not sys.platform.startswith("linux"):
        return False, f"bubblewrap sandboxes need Linux; this is {sys.platform}"
    tools = ["bwrap", "prlimit"] + (["setpriv"] if _as_root() else [])
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        return False, f"{', '.join(missing)} not found on PATH (Debian/Ubuntu: apt-get install bubblewrap util-linux)"
    try:
        proc = subprocess.run(sandbox_argv(["true"]), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bubblewrap could not be started: {e}"
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        if gpu_policy():  # the GPU's binds broke the jail: grade on the CPU instead, and say so
            _gpu_off(f"bubblewrap could not pass the GPU through ({detail})")
            return _probe()
        return False, f"bubblewrap does not work here ({detail}); are user namespaces disabled?"
    how = "as a fresh unprivileged uid" if _as_root() else "in a user namespace"
    return True, f"bubblewrap {how}, no network, read-only system, rlimits; {gpu_summary()}"


def unsandboxed_allowed():
    """True when the instructor explicitly allowed grading without a sandbox."""
    return os.environ.get(ALLOW_ENV, "") == "1"


def refusal(reason):
    """The message printed when grading would run student code unjailed."""
    return (f"REFUSING TO GRADE: no sandbox for students' code ({reason}). Their code would run with "
            f"your permissions. Install bubblewrap (apt-get install bubblewrap), or for code you "
            f"trust only, set {ALLOW_ENV}=1 (python -m grading grade --allow-unsandboxed).")


def refuse_unless_sandboxed():
    """Stop a grading command here when it would run students' code unjailed (exit status 1).

    With CHANNELS_ALLOW_UNSANDBOXED=1 it only warns, loudly.
    """
    ok, reason = sandbox_status()
    if ok:
        return
    if unsandboxed_allowed():
        print(f"WARNING: GRADING WITHOUT A SANDBOX ({reason}): students' code runs with your permissions.",
              file=sys.stderr, flush=True)
        return
    print(refusal(reason), file=sys.stderr, flush=True)
    raise SystemExit(1)


def _as_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


# --- The one policy ---------------------------------------------------------------------------

def sandbox_argv(cmd, *, workdir=None, helper_files=(), ro_binds=(), rw_binds=(), data_binds=(), env=None,
                 uid=None, gpu="auto"):
    """The argv that runs `cmd` jailed: prlimit, bwrap, and (as root) setpriv to a fresh uid.

    workdir      the directory `cmd` starts in, inside the sandbox (a fresh small tmpfs)
    helper_files [(host file, name)]: bound read-only into workdir (the assignment's checks.py)
    ro_binds     [(host path, path inside)], read-only
    rw_binds     [host directory], writable, same path inside (the kernel's IPC sockets)
    data_binds   [(fd, path inside)]: a read-only file with the contents read from fd
                 (the caller passes these fds to the child, e.g. Popen(pass_fds=...))
    env          extra environment variables; everything else is cleared
    uid          as root: the uid to run as (default: `fresh_uid()`)
    gpu          a `GpuPolicy` to pass the GPU through, None for none; "auto": `gpu_policy()`
                 (this machine's NVIDIA GPU unless the instructor turned it off)
    """
    gpu = gpu_policy() if isinstance(gpu, str) else gpu  # "auto"
    root = _as_root()
    if root:
        uid = uid or fresh_uid()
        limits = dict(process_limits(gpu), nproc=EXTRA_TASKS)
    else:
        limits = dict(process_limits(gpu), nproc=_tasks_of(os.getuid()) + EXTRA_TASKS)
    argv = ["prlimit", *(f"--{k}={v}" for k, v in limits.items()), "--", "bwrap"]
    argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if root:
        # bwrap runs privileged (it may have to: here the venv's base Python lives under
        # /root, mode 700), then setpriv drops to a fresh unprivileged uid with no
        # capabilities. A user namespace would instead map the sandbox's uid back to root
        # outside, where RLIMIT_NPROC is not enforced; this way it is, per sandbox, and
        # whatever escapes the namespaces is still a uid that owns nothing.
        argv += ["--cap-drop", "ALL", *(a for cap in ("SETUID", "SETGID", "SETPCAP")
                                         for a in ("--cap-add", f"CAP_{cap}"))]
    else:
        # Unprivileged: a user namespace is the only way in; nested ones are refused.
        argv += ["--unshare-user", *_if_supported("--disable-userns"), "--uid", str(NOBODY), "--gid", str(NOBODY)]

    home = "/tmp"
    base_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "USER": "nobody", "LOGNAME": "nobody",
        "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/matplotlib",
        "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "CUDA_VISIBLE_DEVICES": "",
        # One thread each: graders run in parallel, and timing checks want a quiet core.
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
    }
    if gpu:  # the GPU's environment replaces CUDA_VISIBLE_DEVICES="" (see gpu_policy)
        base_env.pop("CUDA_VISIBLE_DEVICES")
        base_env.update(gpu.env)
    argv.append("--clearenv")
    for key, value in {**base_env, **(env or {})}.items():
        argv += ["--setenv", key, str(value)]

    made = {"/", "/tmp", "/usr", "/proc", "/dev"}
    argv += _system_binds(made)
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += gpu_argv(gpu, made)  # nothing without a GPU
    argv += ["--perms", "1777", *_if_supported("--size", SCRATCH_SIZE["/tmp"]), "--tmpfs", "/tmp"]
    binds = [(src, dest, "--ro-bind") for src, dest in [*_python_binds(), *ro_binds, *(gpu.ro_binds if gpu else ())]]
    binds += [(path, path, "--bind") for path in rw_binds]
    for src, dest, how in sorted(binds, key=lambda b: b[1].count("/")):
        argv += _parents(dest, made) + [how, src, dest]
    for fd, dest in data_binds:
        argv += _parents(dest, made) + ["--perms", "0444", "--ro-bind-data", str(fd), dest]
    if workdir:
        argv += _parents(workdir, made)
        made.add(workdir)
        argv += ["--perms", "1777", *_if_supported("--size", SCRATCH_SIZE["workdir"]), "--tmpfs", workdir]
        for src, name in helper_files:
            argv += _parents(f"{workdir}/{name}", made) + ["--ro-bind", str(src), f"{workdir}/{name}"]
        argv += ["--chdir", workdir]
    if root:
        argv += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                 "--inh-caps=-all", "--bounding-set=-all", "--"]
    return argv + list(cmd)


_BWRAP_HELP = None


def _if_supported(flag, *values):
    """[flag, *values] if this bubblewrap knows the flag (--disable-userns and --size came in 0.7-0.8)."""
    global _BWRAP_HELP
    if _BWRAP_HELP is None:
        try:
            _BWRAP_HELP = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            _BWRAP_HELP = ""
    return [flag, *map(str, values)] if re.search(rf"^\s*{flag}\b", _BWRAP_HELP, re.M) else []


def _system_binds(made):
    """Read-only /usr plus the /bin, /lib* of merged-/usr or classic layouts, and ld.so's cache."""
    argv = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(path):
            argv += _parents(path, made) + ["--ro-bind", path, path]
    return argv


def _python_binds():
    """The venv and the interpreter it was made from, wherever they live (outside /usr)."""
    paths = {os.path.abspath(sys.prefix), os.path.abspath(sys.base_prefix),
             os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    keep = sorted(p for p in paths if not (p + "/").startswith("/usr/"))
    # A prefix inside another one is already visible.
    keep = [p for p in keep if not any(p != q and p.startswith(q + "/") for q in keep)]
    return [(p, p) for p in keep]


def _parents(path, made):
    """bwrap --dir for each missing parent of `path`, world-traversable (as root, bwrap
    would create them 0700 and the sandbox's uid could not reach the bind below)."""
    argv = []
    parts = Path(path).parent.parts
    for i in range(2, len(parts) + 1):
        parent = "/" + "/".join(parts[1:i])
        if parent not in made:
            made.add(parent)
            argv += ["--perms", "0755", "--dir", parent]
    made.add(path)
    return argv


_UIDS_TAKEN = 0


def fresh_uid():
    """A uid no other live sandbox has: from this process's pid and a counter of its own."""
    global _UIDS_TAKEN
    _UIDS_TAKEN += 1
    return SANDBOX_UIDS + (os.getpid() << 6) + _UIDS_TAKEN % 64


def _tasks_of(uid):
    """How many tasks (threads included) the real uid runs now: RLIMIT_NPROC counts them."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid:
            total += int(fields.get("Threads", "1"))
    return total


# --- The GPU: passed through when the grading machine has one -----------------------------------
#
# Without a GPU (or with USE_GPU = False in nbgrader_config.py) nothing here changes the
# jail: CUDA_VISIBLE_DEVICES="", a fresh /dev without NVIDIA nodes, RLIMIT_AS. With one,
# the jail also gets, and nothing more:
# - the NVIDIA device nodes (/dev/nvidiactl, /dev/nvidia<N>, /dev/nvidia-uvm[-tools],
#   /dev/nvidia-caps/* for MIG), bound into its otherwise fresh /dev: no other device;
# - /proc/driver/nvidia, read-only; the driver's libraries (libcuda.so.1, ...) read-only
#   where they do not already lie under the bound /usr or /lib (LD_LIBRARY_PATH then
#   points there, inside);
# - the grader's CUDA_VISIBLE_DEVICES, if it has one;
# - RLIMIT_DATA instead of RLIMIT_AS: CUDA reserves far more address space than 6 GiB
#   when it starts, so RLIMIT_AS would break it. RLIMIT_DATA bounds the private writable
#   memory (malloc, every CPU tensor) by the same 6 GiB; shared mappings (mmap of
#   /dev/nvidia*, but also an anonymous MAP_SHARED mapping) are not counted;
# - a bound on GPU memory per process: PyTorch's caching allocator refuses allocations
#   beyond a fraction of the GPU (PYTORCH_CUDA_ALLOC_CONF per_process_memory_fraction),
#   by default 0.9 / CPU cores, since parallel grading runs one grader per core. It bounds
#   honest and careless code; a student's code could raise its own fraction (it cannot
#   reach other jails' memory, the driver keeps processes apart);
# - PYTORCH_NVML_BASED_CUDA_CHECK=1: torch.cuda.is_available() asks NVML where it can
#   (CUDA itself where NVML is missing), so that such a check does not start CUDA in a
#   process that forks later (grading/zygote.py checks that its process never does).
# Still no network, no other file of the machine and the same uid, namespaces and limits.

#: The instructor's switch (nbgrader_config.py sets it from USE_GPU): "0" keeps grading on the CPU.
GPU_ENV = "CHANNELS_USE_GPU"
#: Optional: the fraction of the GPU's memory one jailed process may allocate.
GPU_MEMORY_ENV = "CHANNELS_GPU_MEMORY_FRACTION"
_NVIDIA_NODE = re.compile(r"^nvidia(ctl|\d+|-uvm|-uvm-tools)$")
#: The driver's user-space library CUDA needs; the driver's other libraries lie beside it.
DRIVER_LIBRARY = "libcuda.so.1"
#: Where drivers put their libraries when ld.so's cache does not know them (containers, WSL).
DRIVER_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/nvidia/lib64",
               "/usr/local/nvidia/lib", "/usr/lib/wsl/lib", "/run/nvidia/driver/usr/lib/x86_64-linux-gnu")
#: What the jail already sees of the machine (see _system_binds): no bind needed below these.
_SYSTEM_TOPS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class GpuPolicy:
    """What a jail gets of the GPU: `nodes` [(host path, path inside)] bound as devices,
    `proc` [(host path, path inside)] bound read-only over the jail's /proc, `ro_binds` [(host, inside)] of
    driver libraries, `env` for the jailed process, `summary` for people."""

    def __init__(self, nodes, proc, ro_binds, env, summary):
        self.nodes, self.proc, self.ro_binds, self.env, self.summary = nodes, proc, ro_binds, env, summary

    def __repr__(self):
        return f"GpuPolicy({self.summary})"


_GPU = {}       # setting -> this machine's policy
_GPU_OFF = None  # why the GPU was turned off in this process


def gpu_enabled(environ=None):
    """The instructor's setting: True unless CHANNELS_USE_GPU is 0/false/no/off."""
    value = (os.environ if environ is None else environ).get(GPU_ENV, "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def gpu_policy(dev_root="/dev", proc_root="/proc", ldconfig=None, environ=None, driver_dirs=DRIVER_DIRS,
               cpu_count=None):
    """This machine's NVIDIA GPU as a `GpuPolicy`, or None: no device nodes, no driver, or turned off.

    Called without arguments it looks at the real machine once per process. The arguments
    let tests describe another machine: `dev_root` and `proc_root` stand for /dev and
    /proc, `ldconfig` for the output of `ldconfig -p`, `environ` for os.environ.
    """
    real = (dev_root, proc_root, ldconfig, environ, driver_dirs, cpu_count) == \
        ("/dev", "/proc", None, None, DRIVER_DIRS, None)
    environ = os.environ if environ is None else environ
    enabled = gpu_enabled(environ)
    if real and enabled in _GPU:  # per setting: nbgrader_config.py may set it after a first look
        return _GPU[enabled]
    policy = None
    if enabled and not (real and _GPU_OFF):
        nodes = nvidia_device_nodes(dev_root)
        if any(_NVIDIA_NODE.match(os.path.basename(inside)) and inside[-1].isdigit() for _, inside in nodes):
            library = driver_library(ldconfig, environ, driver_dirs)
            if library:
                policy = _policy(nodes, library, dev_root, proc_root, ldconfig, environ, cpu_count)
    if real:
        _GPU[enabled] = policy
    return policy


def _policy(nodes, library, dev_root, proc_root, ldconfig, environ, cpu_count):
    proc = [(os.path.join(proc_root, rel), f"/proc/{rel}") for rel in ("driver/nvidia",)
            if os.path.isdir(os.path.join(proc_root, rel))]
    folder = os.path.dirname(library)
    ro_binds, env = [], {"PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    real_folder = os.path.dirname(os.path.realpath(library))
    for path in sorted({folder, real_folder}):
        if not any(path == top or path.startswith(top + "/") for top in _SYSTEM_TOPS):
            ro_binds.append((path, path))
    if library not in _ldconfig_paths(ldconfig).get(DRIVER_LIBRARY, []):
        env["LD_LIBRARY_PATH"] = folder  # ld.so's cache (bound into the jail) does not know it
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        env["CUDA_VISIBLE_DEVICES"] = visible
    fraction = gpu_memory_fraction(environ, cpu_count)
    env["PYTORCH_CUDA_ALLOC_CONF"] = f"per_process_memory_fraction:{fraction:.4f}"
    gpus = [inside for _, inside in nodes if inside[len("/dev/nvidia"):].isdigit()]
    summary = (f"GPU passed through ({', '.join(gpus)}; driver {folder}; "
               f"at most {fraction:.1%} of its memory per process; RLIMIT_DATA instead of RLIMIT_AS)")
    return GpuPolicy(nodes, proc, ro_binds, env, summary)


def gpu_memory_fraction(environ=None, cpu_count=None):
    """The fraction of the GPU's memory one jailed process may allocate (0.9 / CPU cores by default)."""
    environ = os.environ if environ is None else environ
    try:
        value = float(environ.get(GPU_MEMORY_ENV, ""))
    except ValueError:
        value = 0.9 / max(1, cpu_count or os.cpu_count() or 1)
    return min(1.0, max(0.001, value))


def nvidia_device_nodes(dev_root="/dev"):
    """[(host path, path inside)]: the NVIDIA device nodes under `dev_root` CUDA needs."""
    nodes = []
    try:
        names = sorted(os.listdir(dev_root))
    except OSError:
        return []
    for name in names:
        path = os.path.join(dev_root, name)
        if _NVIDIA_NODE.match(name) and os.path.exists(path) and not os.path.isdir(path):
            nodes.append((path, f"/dev/{name}"))
    caps = os.path.join(dev_root, "nvidia-caps")  # MIG: the capabilities of GPU and compute instances
    if os.path.isdir(caps) and not os.path.islink(caps):
        for name in sorted(os.listdir(caps)):
            path = os.path.join(caps, name)
            if re.match(r"^nvidia-cap\d+$", name) and not os.path.isdir(path):
                nodes.append((path, f"/dev/nvidia-caps/{name}"))
    return nodes


def _ldconfig_paths(text=None):
    """{library name: [paths]} from `ldconfig -p` (or the given text of it)."""
    if text is None:
        text = ""
        for tool in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
            try:
                text = subprocess.run([tool, "-p"], capture_output=True, text=True, timeout=10).stdout
                break
            except (OSError, subprocess.TimeoutExpired):
                continue
    found = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$", line)
        if m and ("64" in m.group(2)) == (sys.maxsize > 2**32):  # (libc6,x86-64), (libc6,AArch64)
            found.setdefault(m.group(1), []).append(m.group(3))
    return found


def driver_library(ldconfig=None, environ=None, driver_dirs=DRIVER_DIRS):
    """The path of the driver's libcuda.so.1: from ld.so's cache, LD_LIBRARY_PATH or the usual places."""
    environ = os.environ if environ is None else environ
    for path in _ldconfig_paths(ldconfig).get(DRIVER_LIBRARY, []):
        if os.path.exists(path):
            return path
    folders = [d for d in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d] + list(driver_dirs)
    for folder in folders:
        path = os.path.join(folder, DRIVER_LIBRARY)
        if os.path.isabs(path) and os.path.exists(path):
            return path
    return None


def gpu_argv(gpu, made):
    """The bwrap arguments that pass `gpu`'s devices through (after --proc and --dev); [] for None.
    (Its driver folders are bound with the other read-only binds, after /tmp's tmpfs.)"""
    if not gpu:
        return []
    argv = []
    for src, dest in gpu.nodes:
        argv += _parents(dest, made) + ["--dev-bind", src, dest]
    for src, dest in gpu.proc:  # inside the fresh /proc: its parents exist there already
        made.add(dest)
        argv += ["--ro-bind", src, dest]
    return argv


def process_limits(gpu=None):
    """The rlimits of a jailed process: LIMITS, with RLIMIT_DATA for RLIMIT_AS when the GPU is passed."""
    limits = dict(LIMITS)
    if gpu:
        limits["data"] = limits.pop("as")
    return limits


def gpu_summary():
    """One line for people: is the GPU passed through, and if not, why not."""
    gpu = gpu_policy()
    if gpu:
        return gpu.summary
    if _GPU_OFF:
        return f"GPU not used: {_GPU_OFF}"
    if not gpu_enabled():
        return f"GPU not used: turned off ({GPU_ENV}=0, USE_GPU = False in nbgrader_config.py)"
    if not nvidia_device_nodes():
        return "no GPU (no /dev/nvidia* device nodes): CPU only"
    return f"no GPU driver ({DRIVER_LIBRARY} not found): CPU only"


def _gpu_off(reason):
    """Grade on the CPU from now on in this process (the GPU's binds could not be made).

    The verifier, outside the jail, then stays on the CPU too (in this process's workers,
    which start after this and read CUDA_VISIBLE_DEVICES when CUDA starts).
    """
    global _GPU_OFF
    _GPU.clear()
    _GPU_OFF = reason
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    print(f"[{KERNEL_NAME}] WARNING: {reason}; grading on the CPU", file=sys.stderr, flush=True)


def helper_files(course_root, assignment):
    """[(path, name)]: the instructor's non-notebook files of source/<assignment>/ (checks.py).

    These, and nothing of the student's, make up the sandbox's working directory: the
    same files nbgrader copies over the submission before grading.
    """
    if not (assignment and _NAME.match(assignment) and course_root and os.path.isabs(course_root)):
        return []  # never a path relative to the kernel's directory: that holds the student's files
    folder = Path(course_root) / "source" / assignment
    if not folder.is_dir():
        return []
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(_IGNORED.search(part) for part in rel.parts):
            files.append((path, rel.as_posix()))
    return files


def apply_limits():
    """Set LIMITS on this process (the unsandboxed fallback; prlimit does it otherwise)."""
    import resource
    names = {"as": "RLIMIT_AS", "cpu": "RLIMIT_CPU", "fsize": "RLIMIT_FSIZE", "nofile": "RLIMIT_NOFILE",
             "core": "RLIMIT_CORE", "data": "RLIMIT_DATA"}
    for key, value in process_limits(gpu_policy()).items():
        which = getattr(resource, names[key], None)
        if which is not None:
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError):
                pass  # macOS refuses some of them


# --- nbgrader's side: the kernelspec and the IPC directory --------------------------------------

def kernelspec():
    """The kernel.json of the sandboxed kernel: a copy of this file, run isolated (-I) by the venv's Python.

    A copy in the kernelspec folder, not a path into a course: the kernel must not start
    whatever version of this file some other copy of the course holds.
    """
    return {
        "argv": [sys.executable, "-I", "{resource_dir}/launcher.py", "{connection_file}"],
        "display_name": "Python 3 (channels grading sandbox)",
        "language": "python",
        # bwrap puts the kernel in its own session: a SIGINT to the process group would not
        # reach it, an interrupt_request message does.
        "interrupt_mode": "message",
        "metadata": {"debugger": False},
    }


def _kernelspec_files():
    return {"kernel.json": json.dumps(kernelspec(), indent=1) + "\n", "launcher.py": Path(__file__).read_text()}


def install_kernelspec(prefix=sys.prefix):
    """Write <prefix>/share/jupyter/kernels/channels-sandbox/ (each file atomically); return kernel.json's path."""
    return _write_kernelspec(Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME)


def _write_kernelspec(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in _kernelspec_files().items():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / name)
    return folder / "kernel.json"


def ensure_kernelspec(prefix=sys.prefix):
    """Make the kernelspec current: in the venv (`prefix`), and in the user's Jupyter data
    folder if a copy is there (Jupyter looks there first) or the venv is read-only.
    Return the path of a current kernel.json.
    """
    folders = [Path(prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME]
    try:
        from jupyter_core.paths import jupyter_data_dir
        folders.append(Path(jupyter_data_dir()) / "kernels" / KERNEL_NAME)
    except ImportError:
        pass
    wanted, current, failure = _kernelspec_files(), [], None
    for i, folder in enumerate(folders):
        if i and current and not (folder / "kernel.json").exists():
            continue  # no user copy to shadow the venv's
        try:
            if not all((folder / name).is_file() and (folder / name).read_text() == text
                       for name, text in wanted.items()):
                _write_kernelspec(folder)
            current.append(folder / "kernel.json")
        except OSError as error:
            failure = error
    if not current:
        raise failure
    return current[0]


_IPC_DIR = None


def ipc_directory():
    """A private directory for this process's kernel IPC sockets (made once, removed at exit).

    It must be absolute (jupyter_client would otherwise make socket paths relative to the
    kernel's working directory) and private to this grader: parallel graders never
    collide, and no other kernel's connection file is exposed. As root, the launcher
    hands it to each kernel's uid in turn (the kernel creates its sockets in it).
    """
    global _IPC_DIR
    if _IPC_DIR is None:
        import atexit
        _IPC_DIR = tempfile.mkdtemp(prefix="channels-ipc-")
        atexit.register(shutil.rmtree, _IPC_DIR, True)
    return _IPC_DIR


# --- nbgrader's side: output that cannot flood the grader ---------------------------------------

#: Bytes of output one cell may send before the rest is dropped and the cell interrupted.
MAX_OUTPUT_BYTES = 2 * MiB


def autograde_preprocessors():
    """nbgrader's autograde steps with Execute replaced by CappedExecute."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute
    steps = Autograde.class_traits()["autograde_preprocessors"].default()
    return [capped_execute() if step is Execute else step for step in steps]


_CAPPED = None


def capped_execute():
    """The class `CappedExecute` (also importable under that name from this module)."""
    global _CAPPED
    if _CAPPED is None:
        _CAPPED = _capped_execute()
    return _CAPPED


def _capped_execute():
    """nbgrader's Execute, but a cell's output stops at max_output_bytes.

    nbclient keeps every output message in memory: a `while True: print(...)` in a
    student's cell grows the grader by ~1 GB per 10 s until the cell times out, and
    LimitOutput only trims lines afterwards (one endless line passes it whole). Past the
    limit, output is dropped, one notice is kept, and the kernel is interrupted.
    """
    import asyncio

    from nbformat import NotebookNode
    from nbgrader.preprocessors import Execute
    from traitlets import Integer

    class CappedExecute(Execute):
        max_output_bytes = Integer(MAX_OUTPUT_BYTES, help="Bytes of output per cell; the rest is dropped.").tag(
            config=True)

        def output(self, outs, msg, display_id, cell_index):
            if getattr(self, "_counting", None) != cell_index:
                self._counting, self._bytes = cell_index, 0
                self.iopub_timeout = getattr(self, "_iopub_timeout", self.iopub_timeout)
            content = msg.get("content", {})
            self._bytes += len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values()) \
                + sum(len(line) for line in content.get("traceback", []))
            if self._bytes <= self.max_output_bytes:
                return super().output(outs, msg, display_id, cell_index)
            if not any(o.get("name") == "stderr" and "[grader]" in o.get("text", "") for o in outs):
                outs.append(NotebookNode(output_type="stream", name="stderr", text=(
                    f"\n[grader] 输出超过 {self.max_output_bytes} 字节，其余部分被丢弃，单元格被中断 "
                    "(output limit: the rest was dropped and the cell interrupted)\n")))
                self._interrupt = asyncio.ensure_future(self.km.interrupt_kernel())
                # What the kernel sent before the interrupt is still queued (up to ~1 GB):
                # give nbclient time to drain it rather than fail the whole notebook.
                self._iopub_timeout, self.iopub_timeout = self.iopub_timeout, max(self.iopub_timeout, 120)
            return None

    return CappedExecute


def __getattr__(name):
    # Built on first use: the launcher's copy of this file must not import nbgrader.
    if name == "CappedExecute":
        return capped_execute()
    raise AttributeError(name)


# --- The kernel launcher (what the kernelspec runs) ------------------------------------------

def _fail(message, code=3):
    print(f"[{KERNEL_NAME}] {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _kernel_argv(connection_file, extra):
    return [sys.executable, "-m", "ipykernel_launcher", "-f", connection_file, *extra]


def launch_kernel(connection_file, extra):
    """Run ipykernel jailed for the notebook in the current directory; return its exit code."""
    ok, reason = sandbox_status()
    if not ok:
        if not unsandboxed_allowed():
            _fail(refusal(reason))
        print(f"[{KERNEL_NAME}] WARNING: NOT SANDBOXED ({reason}); {ALLOW_ENV}=1 allows it.",
              file=sys.stderr, flush=True)
        apply_limits()
        os.execv(sys.executable, _kernel_argv(connection_file, extra))

    with open(connection_file) as f:
        info = json.load(f)
    if info.get("transport") != "ipc" or not os.path.isabs(info.get("ip", "")):
        _fail("this kernel needs c.KernelManager.transport = 'ipc' and an absolute c.KernelManager.ip "
              "(TCP cannot leave the sandbox's network namespace): see nbgrader_config.py")
    sockets = os.path.dirname(info["ip"])
    uid = fresh_uid() if _as_root() else None
    _prepare_ipc_directory(sockets, uid)

    course_root = os.environ.get(COURSE_ENV, "")  # without it: no helper files, nothing else changes
    assignment = os.path.basename(os.getcwd())  # nbclient starts us in autograded/<student>/<assignment>
    workdir = f"{INSIDE_ROOT}/{assignment if _NAME.match(assignment) else 'notebook'}"
    inside_connection = "/run/kernel/connection.json"
    read_fd, write_fd = os.pipe()
    os.write(write_fd, json.dumps(info).encode())  # a few hundred bytes: fits the pipe buffer
    os.close(write_fd)
    argv = sandbox_argv(_kernel_argv(inside_connection, extra), workdir=workdir,
                        helper_files=helper_files(course_root, assignment),
                        rw_binds=[sockets], data_binds=[(read_fd, inside_connection)], uid=uid)
    # ipykernel's banner would land in the grader's log; its stderr stays for crashes.
    return _supervise(subprocess.Popen(argv, pass_fds=[read_fd], stdout=subprocess.DEVNULL), read_fd)


def _prepare_ipc_directory(path, uid):
    """The socket directory is bound writable into the jail: it must be a private one.

    Whatever an earlier kernel left in it besides sockets goes (a symlink named like the
    next kernel's socket, say); as root the directory then belongs to this kernel's uid.
    """
    st = os.lstat(path)
    if _as_root():
        ours = st.st_uid == 0 or SANDBOX_UIDS <= st.st_uid < 2**31
    else:
        ours = st.st_uid == os.getuid()
    if not (os.path.isdir(path) and not os.path.islink(path) and ours and not st.st_mode & 0o077):
        _fail(f"the IPC directory {path} must be a private directory (mode 700) of the grader: "
              "use grading.sandbox.ipc_directory() as nbgrader_config.py does")
    for entry in os.scandir(path):
        mode = entry.stat(follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif not stat.S_ISSOCK(mode):
            os.unlink(entry.path)
    if uid is not None:
        os.chown(path, uid, uid)


def _supervise(proc, read_fd):
    """Wait for the jailed kernel; kill it on SIGTERM, when our parent dies or after the wall limit."""
    os.close(read_fd)

    def stop(*_):
        proc.kill()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts arrive as messages
    parent = os.getppid()
    deadline = time.monotonic() + KERNEL_WALL_SECONDS
    while True:
        try:
            return proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent or time.monotonic() > deadline:
            stop()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--install"]:
        print(install_kernelspec())
    elif argv[:1] == ["--status"]:
        ok, reason = sandbox_status()
        print(("sandbox: " if ok else "NO SANDBOX: ") + reason)
        return 0 if ok else 1
    elif argv and not argv[0].startswith("-"):
        return launch_kernel(argv[0], argv[1:])
    else:
        print(__doc__.split("\n\n")[-2], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

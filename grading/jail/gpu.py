"""The GPU: passed through into the jails when the grading machine has one.

Without a GPU (or with USE_GPU = False in nbgrader_config.py) nothing here changes the
jail: CUDA_VISIBLE_DEVICES="", a fresh /dev without NVIDIA nodes, RLIMIT_AS. With one,
the jail also gets, and nothing more:
- the NVIDIA device nodes (/dev/nvidiactl, /dev/nvidia<N>, /dev/nvidia-uvm[-tools],
  /dev/nvidia-caps/* for MIG), bound into its otherwise fresh /dev: no other device;
- /proc/driver/nvidia, read-only; the driver's libraries (libcuda.so.1, ...) read-only
  where they do not already lie under the bound /usr or /lib (LD_LIBRARY_PATH then
  points there, inside);
- the grader's CUDA_VISIBLE_DEVICES, if it has one;
- RLIMIT_DATA instead of RLIMIT_AS: CUDA reserves far more address space than 6 GiB
  when it starts, so RLIMIT_AS would break it. RLIMIT_DATA bounds the private writable
  memory (malloc, every CPU tensor) by the same 6 GiB; shared mappings (mmap of
  /dev/nvidia*, but also an anonymous MAP_SHARED mapping) are not counted;
- a bound on GPU memory per process: PyTorch's caching allocator refuses allocations
  beyond a fraction of the GPU (PYTORCH_CUDA_ALLOC_CONF per_process_memory_fraction),
  by default 0.9 / CPU cores, since parallel grading runs one grader per core. It bounds
  honest and careless code; a student's code could raise its own fraction (it cannot
  reach other jails' memory, the driver keeps processes apart);
- PYTORCH_NVML_BASED_CUDA_CHECK=1: torch.cuda.is_available() asks NVML where it can
  (CUDA itself where NVML is missing), so that such a check does not start CUDA in a
  process that forks later (grading/jail/zygote.py checks that its process never does).
Still no network, no other file of the machine and the same uid, namespaces and limits.
"""
import os
import re
import subprocess
import sys

try:
    from grading.jail.env import jail_settings
except ImportError:  # the kernelspec's copy of the launcher: its folder holds env.py
    from env import jail_settings


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
    """The instructor's setting (c.Grading.use_gpu in nbgrader_config.py), through the jail's settings."""
    return jail_settings(environ)["use_gpu"]


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
    value = jail_settings(environ)["gpu_memory_fraction"] or 0.9 / max(1, cpu_count or os.cpu_count() or 1)
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






def gpu_summary():
    """One line for people: is the GPU passed through, and if not, why not."""
    gpu = gpu_policy()
    if gpu:
        return gpu.summary
    if _GPU_OFF:
        return f"GPU not used: {_GPU_OFF}"
    if not gpu_enabled():
        return "GPU not used: turned off (c.Grading.use_gpu = False in nbgrader_config.py)"
    if not nvidia_device_nodes():
        return "no GPU (no /dev/nvidia* device nodes): CPU only"
    return f"no GPU driver ({DRIVER_LIBRARY} not found): CPU only"


def _gpu_off(reason):
    """Grade on the CPU from now on in this process (the GPU's binds could not be made).

    The verifier's jail then stays on the CPU too (in this process's workers,
    which start after this and read CUDA_VISIBLE_DEVICES when CUDA starts).
    """
    global _GPU_OFF
    _GPU.clear()
    _GPU_OFF = reason
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    print(f"[grading-sandbox] WARNING: {reason}; grading on the CPU", file=sys.stderr, flush=True)

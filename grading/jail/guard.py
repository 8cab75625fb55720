"""What a jailed process locks before any student code runs: no new processes, no forbidden operators.

Used inside the jail by the verifier's child (grading/jail/child.py), by the graded kernel
(its first cell, grading/nbsteps/) and by the verifier (processes only).
Standalone: stdlib, and torch where it is loaded.

- `forbid_processes(threads)`: a seccomp filter for every thread of the process (TSYNC)
  and everything it could start: fork, vfork, execve and execveat fail with EPERM; clone
  fails unless it makes a thread (and `threads` allows threads); clone3 answers ENOSYS so
  that the C library falls back to clone, whose flags the filter can read. Syscalls of
  another ABI (x32, i386 on x86-64) kill the process. The verifier's child allows no
  thread at all: every operation of a student's function then runs where the operation
  recorder sees it. The kernel keeps its threads (ZeroMQ, heartbeat) but cannot fork.
- `block_operators(torch, pattern)`: every kernel of torch's dispatcher whose operator name
  matches the assignment's forbidden pattern (its policy.py, e.g. every convolution) raises,
  for every dispatch key that computes, so for every thread and every route (F.conv2d, an
  alias, torch.ops, a custom operator or TorchScript that calls one). The library handles
  are leaked on purpose, so nothing in the process can undo the registrations.
"""
import ctypes
import os
import platform
import re
import struct

#: Dispatch keys whose kernels compute: overriding these reaches every caller.
COMPUTE_KEYS = ("CPU", "CUDA", "MkldnnCPU", "QuantizedCPU", "QuantizedCUDA", "CompositeExplicitAutograd",
                "CompositeExplicitAutogradNonFunctional", "CompositeImplicitAutograd")

# --- seccomp ------------------------------------------------------------------------------------

#: arch -> (AUDIT_ARCH value, syscall numbers, first number of a foreign ABI or None)
_ARCH = {
    "x86_64": (0xC000003E, {"clone": 56, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone3": 435},
               0x40000000),
    "aarch64": (0xC00000B7, {"clone": 220, "execve": 221, "execveat": 281, "clone3": 435}, None),
}
_CLONE_THREAD = 0x00010000
_EPERM, _ENOSYS = 1, 38
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_PR_SET_NO_NEW_PRIVS, _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 38, 1, 1
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}


class GuardError(RuntimeError):
    """The guard could not be put in place: the caller must not run student code."""


def _program(threads):
    """The BPF program, as a list of (code, jt, jf, k)."""
    arch = platform.machine()
    if arch not in _ARCH:
        raise GuardError(f"no seccomp policy for {arch}")
    audit_arch, nr, foreign = _ARCH[arch]
    deny, nosys = _RET_ERRNO | _EPERM, _RET_ERRNO | _ENOSYS
    denied = [nr[name] for name in ("fork", "vfork", "execve", "execveat") if name in nr]
    # Straight-line: each check jumps over the next instruction when it does not match.
    prog = [(_LD_W_ABS, 0, 0, 4), (_JEQ_K, 1, 0, audit_arch), (_RET_K, 0, 0, _RET_KILL_PROCESS),
            (_LD_W_ABS, 0, 0, 0)]
    if foreign is not None:
        prog += [(_JGE_K, 0, 1, foreign), (_RET_K, 0, 0, _RET_KILL_PROCESS)]
    prog += [(_JEQ_K, 0, 1, nr["clone3"]), (_RET_K, 0, 0, nosys)]
    for number in denied:
        prog += [(_JEQ_K, 0, 1, number), (_RET_K, 0, 0, deny)]
    if threads:  # clone: a thread (CLONE_THREAD in the low word of the first argument) only
        prog += [(_JEQ_K, 0, 4, nr["clone"]), (_LD_W_ABS, 0, 0, 16), (_JSET_K, 1, 0, _CLONE_THREAD),
                 (_RET_K, 0, 0, deny), (_RET_K, 0, 0, _RET_ALLOW)]
    else:
        prog += [(_JEQ_K, 0, 1, nr["clone"]), (_RET_K, 0, 0, deny)]
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    return prog


def forbid_processes(threads):
    """Install the filter for every thread of this process; raise GuardError if it cannot be."""
    prog = _program(threads)
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise GuardError(f"prctl(NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
    libc.syscall.restype = ctypes.c_long
    done = libc.syscall(ctypes.c_long(_SYS_SECCOMP[platform.machine()]), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                        ctypes.c_long(_SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(fprog))
    if done != 0:
        raise GuardError(f"seccomp: {os.strerror(ctypes.get_errno()) if done < 0 else f'thread {done} differs'}")


# --- forbidden operators ----------------------------------------------------------------------

def block_operators(torch, pattern, what="禁止的算子 (forbidden operator)"):
    """Make every kernel of an operator matching `pattern` raise, for good; return the list the
    blocked calls append to (their names). Nothing is blocked without a pattern."""
    hits = []
    if not pattern:
        return hits
    forbidden = re.compile(pattern)

    def blocker(name):
        def kernel(*args, **kwargs):
            hits.append(name)
            raise RuntimeError(f"{name}：评分时禁止使用{what} (forbidden while grading)")
        return kernel

    libraries = {}
    for qualified in torch._C._dispatch_get_all_op_names():
        namespace, op = qualified.split("::", 1)
        if not forbidden.search(op.split(".")[0]):
            continue
        keys = [line.split(":")[0].split("[")[0] for line in torch._C._dispatch_dump(qualified).splitlines()
                if ": registered at" in line]
        for key in keys:
            if key in COMPUTE_KEYS:
                if namespace not in libraries:
                    libraries[namespace] = torch._C._dispatch_library("IMPL", namespace, "")
                libraries[namespace].impl(op, key, blocker(f"{namespace}.{op.split('.')[0]}"), False)
    for handle in libraries.values():
        # Leak the handles: with no reference left, nothing can unregister the kernels.
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(handle))
    return hits


def lock_down_kernel(pattern=None, what="禁止的算子 (forbidden operator)"):
    """The graded kernel: the assignment's forbidden operators blocked, threads allowed, no new processes."""
    if pattern:
        import torch
        block_operators(torch, pattern, what)
    forbid_processes(threads=True)

"""`scripts/gpu-check`: does grading really use the GPU of a grading machine? One run, a few minutes.

On a machine with an NVIDIA GPU and PyTorch, in a scratch copy of the course:

1. the jail: a probe runs inside the sandbox (grading/jail/sandbox.py, the same argv as every
   kernel) and reports what it sees: torch.cuda.is_available(), the device testkit.DEVICE
   resolves to, a matmul there, /dev, its rlimits and memory, and whether allocating more
   GPU memory than one jail's share is refused;
2. grading: three sample students (samples/class/) are graded with the sandbox, all in
   parallel and then one at a time, and the two runs must give identical scores and
   verdicts. For each test cell it prints the devices the test's tensors were on, as
   MEASURED: the scratch copy's testkit.py (never the course's) gets a few lines appended
   that print `expected.device` of the assert_close calls, in the jailed kernel (into the
   test cell's output) and in the jailed verifier (into the student's grading log);
3. TF32: the reference answers pass the test cells in a student's own session with TF32
   turned on, before and after `import checks`;
4. the bench's GPU rows (tools/bench.py: F.conv2d, the reference fast answer, matmul).

    python -m tools.gpu_check [--dry-run] [-j N]

--dry-run (or GPU_CHECK_DRY_RUN=1) does all of it on a machine without a GPU,
on the CPU, and expects device=cpu everywhere: tests/test_gpu.py runs it so it cannot rot.
Exit status 0 when every check holds, 1 otherwise.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grading.cells import is_test, nbgrader_meta
from grading.course import venv_first_on_path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "channels"
DRY_ENV = "GPU_CHECK_DRY_RUN"
#: A correct student, one whose code makes tensors on the CPU whatever X is (torch.zeros: on a GPU
#: this loses the device cases too), and one who gets the 1x1 equivalence wrong.
STUDENTS = ("ref_reference", "textbook", "transposed_1x1")
MARK = "[gpu-check]"

INSTRUMENT = r'''

# --- Appended by tools/gpu_check.py to a SCRATCH copy of the course: never graded with. ----------
# Says on stderr, once per test cell and device, where the test's tensors (assert_close's
# `expected`) were: in the jailed kernel into the test cell's output, in the jailed verifier
# into the student's log (.grading/<assignment>/logs/<student>.log).
def _gpu_check_wrap(original):
    import functools as _functools
    import sys as _sys
    seen = set()

    def _cell():
        frame = _sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<test ") and name.endswith(">"):
                return name[len("<test "):-1]
            frame = frame.f_back
        return "-"

    @_functools.wraps(original)
    def assert_close(got, expected, *args, **kwargs):
        __tracebackhide__ = True
        if isinstance(expected, torch.Tensor):
            key = (_cell(), str(expected.device))
            if key not in seen:
                seen.add(key)
                print(%(mark)r, "cell=%%s device=%%s" %% key, file=_sys.stderr, flush=True)
        return original(got, expected, *args, **kwargs)
    return assert_close


assert_close = _gpu_check_wrap(assert_close)
''' % {"mark": MARK}

PROBE = r'''
import json, os, resource, socket, sys
sys.path.insert(0, os.getcwd())
info = {}
import torch
info["cuda_available"] = torch.cuda.is_available()
import checks, testkit
info["testkit_DEVICE"] = str(testkit.DEVICE)
info["dev"] = sorted(os.listdir("/dev"))
info["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
info["PYTORCH_CUDA_ALLOC_CONF"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
info["rlimit_as"] = resource.getrlimit(resource.RLIMIT_AS)[0]
info["rlimit_data"] = resource.getrlimit(resource.RLIMIT_DATA)[0]
try:
    x = torch.randn(512, 512, device=testkit.DEVICE)
    info["matmul"] = f"{(x @ x).sum().item():.3g} on {x.device}"
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        info["gpu"] = torch.cuda.get_device_name(0)
        total = torch.cuda.get_device_properties(0).total_memory
        info["gpu_memory_GiB"] = round(total / 2**30, 1)
        try:
            torch.empty(int(0.5 * total), dtype=torch.uint8, device="cuda")
            info["half_the_gpu"] = "allocated: NOT bounded"
        except torch.OutOfMemoryError:
            info["half_the_gpu"] = "refused: bounded"
except Exception as e:
    info["error"] = f"{type(e).__name__}: {e}"[:500]
status = open("/proc/self/status").read()
for key in ("VmPeak", "VmSize", "VmData", "VmRSS"):
    m = __import__("re").search(key + r":\s+(\d+) kB", status)
    info[key + "_GiB"] = round(int(m.group(1)) / 2**20, 2) if m else None
if os.path.isdir("/proc/driver/nvidia"):
    try:
        open("/proc/driver/nvidia/params", "a").close()
        info["proc_driver_nvidia"] = "WRITABLE"
    except OSError:
        info["proc_driver_nvidia"] = "read-only"
else:
    info["proc_driver_nvidia"] = "absent"
s = socket.socket()
s.settimeout(2)
try:
    s.connect(("1.1.1.1", 53))
    info["network"] = "REACHABLE"
except OSError:
    info["network"] = "none"
print("PROBE " + json.dumps(info))
'''


def say(text=""):
    print(text, flush=True)


def make_course(dest):
    """The instructor's side of the course in `dest`."""
    from grading.course import copy_course
    return copy_course(ROOT, dest)


def instrument(course):
    """Append the device recorder to the scratch course's source testkit.py (the graded copy)."""
    path = course / "source" / ASSIGNMENT / "testkit.py"
    path.write_text(path.read_text() + INSTRUMENT)


# --- 1. the jail ------------------------------------------------------------------------------------

def jail_probe(course):
    """Run PROBE in the sandbox, as a kernel would be; return its report (a dict)."""
    from grading.jail import sandbox
    workdir = f"{sandbox.INSIDE_ROOT}/{ASSIGNMENT}"
    argv = sandbox.sandbox_argv([sys.executable, "-I", "-c", PROBE], workdir=workdir,
                                helper_files=sandbox.helper_files(str(course), ASSIGNMENT))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")), None)
    if line is None:
        return {"error": f"the probe failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"}
    return json.loads(line[len("PROBE "):])


# --- 2. grading ---------------------------------------------------------------------------------------

def fill(course, students=STUDENTS):
    import nbformat
    from grading.fill import fill_notebook, release_notebook, write_submission
    release = release_notebook(course, ASSIGNMENT)
    release_nb = nbformat.read(str(release), as_version=4)
    for student in students:
        nb = fill_notebook(release_nb, course / "samples" / "class" / f"{student}.py")
        write_submission(course, student, {release.name: nb}, ASSIGNMENT)


def grade_run(course, students, jobs, settings):
    """Grade with grading.run.batch.grade (regrading everything); {student: outcome}, seconds."""
    from grading.run.batch import grade
    start = time.perf_counter()
    results = grade(course, ASSIGNMENT, students=list(students), jobs=jobs, regrade=True, progress=False,
                    settings=settings)
    seconds = time.perf_counter() - start
    outcome = {}
    for r in results:
        outcome[r.student] = {
            "status": r.status, "total": r.total, "scores": dict(r.scores),
            "verified": {g: bool(v.get("passed")) for g, v in (r.verdicts or {}).items()},
            "warm_jail": r.warm_jail,
        }
    return outcome, seconds


def test_cells(course):
    from grading.contract import load_contract
    return load_contract(course, ASSIGNMENT).test_ids


def kernel_devices(course):
    """{grade_id: sorted devices}: the instructor's notebook (reference answers, hidden tests
    included) executed in the sandboxed kernel, the jail autograde uses, read from the
    marks in its test cells' output. (The autograded notebooks hold the verifier's verdict
    tables instead of the kernel's output, so the kernel is asked directly.)"""
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    from grading.jail import sandbox
    from tools.bench import answer
    nb = nbformat.read(str(course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = answer(cell)
    cwd = course / "gpu-check-kernel" / ASSIGNMENT  # its name is the assignment's: checks.py is bound there
    cwd.mkdir(parents=True)
    sandbox.ensure_kernelspec()  # (the jail's settings: exported by main, Grading.export)
    km = KernelManager(kernel_name=sandbox.KERNEL_NAME, transport="ipc",
                       ip=os.path.join(sandbox.ipc_directory(), "kernel"))
    NotebookClient(nb, km=km, timeout=300, allow_errors=True, resources={"metadata": {"path": str(cwd)}}).execute()
    found = {}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            for m in re.finditer(re.escape(MARK) + r" cell=\S+ device=(\S+)", out.get("text", "") or ""):
                found.setdefault(gid, set()).add(m.group(1))
    return {g: sorted(d) for g, d in found.items()}


def verifier_devices(course, students):
    """{grade_id: sorted devices}: what the jailed verifier printed into the students' grading logs."""
    found = {}
    for student in students:
        log = course / ".grading" / ASSIGNMENT / "logs" / f"{student}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        for m in re.finditer(re.escape(MARK) + r" cell=(\S+) device=(\S+)", text):
            found.setdefault(m.group(1), set()).add(m.group(2))
    return {g: sorted(d) for g, d in found.items()}


def compare(first, second):
    """The differences between two grading runs (scores and verdicts), as readable lines."""
    diffs = []
    for student in sorted(set(first) | set(second)):
        a, b = first.get(student), second.get(student)
        if a is None or b is None:
            diffs.append(f"{student}: graded in one run only")
            continue
        for key in ("status", "total", "scores", "verified"):
            if a[key] != b[key]:
                diffs.append(f"{student} {key}: parallel {a[key]} != one at a time {b[key]}")
    return diffs


# --- 3. TF32 in the student's own session -----------------------------------------------------------

def tf32_round(t):
    """float32 `t` rounded to TF32 (10 mantissa bits), as a GPU's tensor cores read it."""
    import torch
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def emulate_tf32(fn):
    """fn as a GPU would run it when torch.backends.cuda.matmul.allow_tf32 is on (for CPU tests)."""
    import functools

    import torch

    @functools.wraps(fn)
    def run(*args):
        if torch.backends.cuda.matmul.allow_tf32:
            args = [tf32_round(a) if isinstance(a, torch.Tensor) and a.dtype == torch.float32 else a for a in args]
        return fn(*args)
    return run


def tf32_session(course, order, emulate=False, cells=None):
    """Run the test cells with the reference answers in a fresh 'student session' in which the
    student turns TF32 on `order` ("before" or "after") `import checks`. {grade_id: error or ""}.

    emulate: wrap the matmul answers with `emulate_tf32` (a CPU stands in for a GPU).
    """
    import importlib

    import nbformat
    import torch

    from tools.bench import answer, reference_functions
    folder = str(course / "source" / ASSIGNMENT)
    source_nb = nbformat.read(str(Path(folder) / f"{ASSIGNMENT}.ipynb"), as_version=4)
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    old_checks = sys.modules.pop("checks", None)
    sys.path.insert(0, folder)
    outcome = {}

    def tf32_on():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    try:
        if order == "before":
            tf32_on()
        importlib.import_module("checks")  # the notebook's first `from checks import ...`
        if order == "after":
            tf32_on()
        namespace = reference_functions(source_nb)
        if emulate:
            for name in ("corr2d_multi_in_out_1x1", "corr2d_multi_in_out_fast"):
                namespace[name] = emulate_tf32(namespace[name])
        for cell in source_nb.cells:
            meta = nbgrader_meta(cell)
            if not is_test(cell) or (cells and meta["grade_id"] not in cells):
                continue
            try:
                exec(compile(answer(cell), f"<tf32 {meta['grade_id']}>", "exec"), namespace)
                outcome[meta["grade_id"]] = ""
            except Exception as e:  # noqa: BLE001 (the test's verdict)
                outcome[meta["grade_id"]] = f"{type(e).__name__}: {e}"[:300]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        sys.path.remove(folder)
        sys.modules.pop("checks", None)
        if old_checks is not None:
            sys.modules["checks"] = old_checks
    return outcome


# --- the whole check ----------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", default=os.environ.get(DRY_ENV) == "1",
                        help=f"no GPU needed: everything on the CPU, expecting device=cpu ({DRY_ENV}=1)")
    parser.add_argument("-j", "--jobs", type=int, default=len(STUDENTS), help="parallel graders (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch course (its path is printed)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    venv_first_on_path()  # nbgrader shells out to `alembic`
    started = time.perf_counter()
    if args.dry_run:  # before CUDA is first asked: the grader's process too stays on the CPU
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    from grading.course import load_config
    from grading.jail import gpu as jail_gpu
    from grading.jail import sandbox
    from grading.settings import Grading
    from tools import bench
    gpu = torch.cuda.is_available()
    problems = []
    say(f"== gpu-check: python {sys.version.split()[0]}, torch {torch.__version__} (CUDA build {torch.version.cuda})")
    if not gpu and not args.dry_run:
        say(f"no GPU here (torch.cuda.is_available() is False): nothing to check. "
            f"--dry-run ({DRY_ENV}=1) runs everything on the CPU.")
        return 1
    expect = "cuda" if gpu and not args.dry_run else "cpu"
    if args.dry_run:
        say("DRY RUN: everything on the CPU (the GPU, if any, is not passed to the jail); expecting device=cpu")
    else:
        say(f"GPU: {torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s)")
    ok, reason = sandbox.sandbox_status()
    say(f"sandbox: {'ok' if ok else 'NOT AVAILABLE'}: {reason}")
    if not ok:
        say("the sandbox is what this checks: install bubblewrap (scripts/gpu-check --deb bubblewrap_*.deb)")
        return 1

    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        course = make_course(tmp / "course")
        instrument(course)
        # the course's settings; a dry run grades on the CPU even where a GPU is
        settings = Grading(config=load_config(course))
        settings.use_gpu = settings.use_gpu and not args.dry_run
        settings.export(course)  # for the kernel launcher (and the probe's argv)
        if expect == "cuda" and not jail_gpu.gpu_policy():
            problems.append(f"the jail gets no GPU: {jail_gpu.gpu_summary()}")

        say(f"\n[{time.perf_counter() - started:3.0f} s] == 1. inside the jail (the sandbox's argv, as a kernel "
            "gets it)")
        probe = jail_probe(course)
        for key, value in probe.items():
            say(f"  {key:24s} {value}")
        if probe.get("error"):
            problems.append(f"jail probe: {probe['error']}")
        if not str(probe.get("testkit_DEVICE", "")).startswith(expect):
            problems.append(f"testkit.DEVICE in the jail is {probe.get('testkit_DEVICE')}, expected {expect}")
        if probe.get("network") != "none":
            problems.append("the jail reaches the network")
        if expect == "cuda" and probe.get("half_the_gpu", "").startswith("allocated"):
            problems.append("a jailed process could allocate half the GPU's memory")

        say(f"\n[{time.perf_counter() - started:3.0f} s] == 2. grading {len(STUDENTS)} sample students with the "
            f"sandbox: {args.jobs} in parallel, then one at a time")
        fill(course)
        parallel, t_par = grade_run(course, STUDENTS, args.jobs, settings)
        t_kernel = time.perf_counter()
        kernel = kernel_devices(course)
        t_kernel = time.perf_counter() - t_kernel
        verifier = verifier_devices(course, STUDENTS)
        sequential, t_seq = grade_run(course, STUDENTS, 1, settings)
        say(f"  parallel (-j {args.jobs}): {t_par:.1f} s; one at a time (-j 1): {t_seq:.1f} s; "
            f"the instructor's notebook in the sandboxed kernel: {t_kernel:.1f} s")
        cells = test_cells(course)
        say("  devices of the test's tensors (expected of each assert_close), measured per test cell:")
        say(f"    {'test cell':32s} {'kernel, in the jail':24s} verifier, outside the jail (all 3 students)")
        for gid in cells:
            in_kernel, in_verifier = kernel.get(gid, []), verifier.get(gid, [])
            k, v = ",".join(in_kernel) or "-", ",".join(in_verifier) or "-"
            say(f"    {gid:32s} {k:24s} {v}")
            if not in_kernel and not in_verifier:
                continue  # no tensor compared (numbers only: conv_flops)
            for side, seen in (("kernel", in_kernel), ("verifier", in_verifier)):
                if not any(d.startswith(expect) for d in seen):
                    problems.append(f"{gid}: no test tensors on {expect} in the {side} (seen: {seen or 'none'})")
        say("  scores (parallel run):")
        for student in STUDENTS:
            o = parallel.get(student, {})
            per_cell = " ".join(f"{gid.removeprefix('test_')}={o.get('scores', {}).get(gid)}" for gid in cells)
            say(f"    {student:16s} {o.get('status')} total {o.get('total')}  warm jail {o.get('warm_jail')}  "
                f"{per_cell}")
        ref = parallel.get("ref_reference", {})
        if ref.get("status") != "graded" or any(
                ref.get("scores", {}).get(g) in (None, 0) for g in cells):
            problems.append(f"the reference student did not get full marks: {ref}")
        diffs = compare(parallel, sequential)
        say("  parallel vs one at a time: " + ("identical scores and verdicts" if not diffs else "DIFFERENT"))
        for line in diffs:
            say(f"    {line}")
        problems += diffs

        say(f"\n[{time.perf_counter() - started:3.0f} s] == 3. TF32 on in the student's own session: the reference "
            f"answers against the test cells on {'cuda' if expect == 'cuda' else 'cpu (TF32 matmul emulated)'}")
        for order in ("before", "after"):
            outcome = tf32_session(ROOT, order, emulate=expect != "cuda")  # the course's own checks.py
            failed = {g: e for g, e in outcome.items() if e}
            say(f"  TF32 turned on {order} `import checks`: "
                + ("all test cells pass" if not failed else f"{len(failed)} test cell(s) FAIL"))
            for gid, error in failed.items():
                say(f"    {gid}: {error[:200]}")
            if failed and order == "before":
                problems.append(f"TF32 on before import checks: {sorted(failed)} fail")
            # "after": reported, not (yet) a failure of the check: see the suggested change to checks.py

        say(f"\n[{time.perf_counter() - started:3.0f} s] == 4. the bench's "
            + ("GPU rows" if expect == "cuda" else "rows (dry run: CPU, small sizes)"))
        fns = bench.reference_functions(bench.source_notebook(course))
        bench.print_operators(bench.operator_rows(fns, quick=expect != "cuda", devices=[expect]))
    finally:
        if args.keep:
            say(f"scratch course kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    say(f"\n== gpu-check {'(dry run) ' if args.dry_run else ''}took {time.perf_counter() - started:.0f} s: "
        + ("PASS" if not problems else f"FAIL ({len(problems)} problem(s))"))
    for p in problems:
        say(f"  - {p}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

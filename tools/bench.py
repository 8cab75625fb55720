"""`make bench`: how fast grading is, how long the student notebook runs, how fast each operator is.

Absolute times on a shared 2-core machine are noisy, so every section prints ratios to a
yardstick measured in the same run:

- grading is compared to the *import floor*, the time of a bare ``python -c "import torch"``
  (no grader can check a torch notebook faster than torch imports). The goal: a batch of 8
  reference submissions costs at most 1.5x the import floor per submission (aim: 1.0x);
  and privilege separation (the jailed verifier, docs/security.md) may cost at most 1.5x
  the per-submission time measured before it (BEFORE_JAIL, in the same units).
- the operators of the assignment are compared to a plain matrix product with the same
  number of floating-point operations, the machine's practical ceiling. They are timed by
  the wall clock (the best of a few runs, after a warm-up; on a GPU between two
  torch.cuda.synchronize()), with as many threads as torch uses here, which is printed:
  the CPU time of the calling thread would miss the work of F.conv2d's and matmul's other
  threads. With a GPU (torch.cuda.is_available()) F.conv2d, the reference fast answer and
  matmul are timed on it too.

The operators are the reference solutions of source/<assignment>/<assignment>.ipynb (its
solution cells are executed here), timed on the layer of its policy.py (BENCH), so the bench
follows the assignment as it changes.
GFLOP/s count a multiply and an add as two operations.

    python -m tools.bench            # the full run, a few minutes
    python -m tools.bench --quick    # smaller sizes and batches: a smoke test
    python -m tools.bench --operators-only [--quick]   # only the operators (scripts/gpu-check)
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from grading.cells import nbgrader_meta
from grading.course import venv_first_on_path

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "channels"
GOAL, AIM = 1.5, 1.0  # seconds per graded submission, in units of the import floor
#: Before the verifier ran in a jail of its own (commit a2c36f1, this 2-core machine, jobs=2):
#: 0.84 x import floor per submission; the jail may cost at most JAIL_BUDGET times that.
BEFORE_JAIL, JAIL_BUDGET = 0.84, 1.5
# nbgrader's solution delimiters, removed to turn a source cell into a student's answer.
_SOLUTION_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.M)


def bench_layer(root=ROOT, assignment=ASSIGNMENT):
    """The layer of the assignment's policy.py (BENCH["layer"]: c_i, c_o, k, m)."""
    from grading.contract import load_contract
    return dict(load_contract(root, assignment).policy.bench["layer"])


def source_notebook(root=ROOT, assignment=ASSIGNMENT):
    return nbformat.read(str(Path(root) / "source" / assignment / f"{assignment}.ipynb"), as_version=4)


def answer(cell):
    """A source solution cell's text as a student who wrote the reference would hand it in."""
    return _SOLUTION_MARKER.sub("", cell.source)


def reference_functions(source_nb):
    """Execute the source notebook's code cells except the tests; return the names they define."""
    namespace = {}
    for cell in source_nb.cells:
        if cell.cell_type == "code" and not nbgrader_meta(cell).get("grade"):
            exec(compile(answer(cell), f"<{nbgrader_meta(cell).get('grade_id', 'cell')}>", "exec"), namespace)
    return namespace


def reference_submission(source_nb, release_nb):
    """The release notebook with every answer cell holding the reference solution."""
    solutions = {nbgrader_meta(c)["grade_id"]: answer(c) for c in source_nb.cells if nbgrader_meta(c).get("solution")}
    nb = nbformat.from_dict(release_nb)
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in solutions:
            cell.source = solutions[grade_id]
    return nb


# --- the yardstick ----------------------------------------------------------------

def import_floor(repeats):
    """Wall times of `repeats` fresh `python -c "import torch"` (the least any torch process costs)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - start)
    return times


# --- operators ----------------------------------------------------------------------

def wall_time(fn, args, repeats=5, device="cpu", budget=0.25):
    """The shortest wall-clock time of fn(*args), in seconds, after one warm-up: `repeats`
    calls, and more (up to 100) while they take less than `budget` seconds in all, so that
    a fast operator is not judged by a call that lost its core to another process.

    On a GPU, kernels run asynchronously: the device is synchronised before the clock starts
    and before it stops, so the time is the computation's, not the launch's.
    """
    import torch
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    fn(*args)
    sync()
    times = []
    while len(times) < repeats or (sum(times) < budget and len(times) < 100):
        sync()
        start = time.perf_counter()
        fn(*args)
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def operator_devices():
    """The devices the operators are timed on: the CPU, and the GPU when there is one."""
    import torch
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def operator_rows(fns, quick, devices=None):
    """(name, device, layer, seconds, GFLOP/s) for each way to compute the deck's layer."""
    import torch
    import torch.nn.functional as F
    sys.path.insert(0, str(ROOT / "source" / ASSIGNMENT))
    from checks import loop_corr2d_multi_in_out

    full = bench_layer() if not quick else dict(c_i=32, c_o=32, k=5, m=32)
    # The Python loops would take minutes on the full layer: they run on a smaller one and
    # are compared by rate, which does not depend on the size once the loop dominates.
    per_pixel = dict(full, m=16 if not quick else 8)
    per_pair = dict(c_i=4, c_o=4, k=5, m=16 if not quick else 8)

    def layer_inputs(c_i, c_o, k, m, device):
        g = torch.Generator().manual_seed(0)
        X = torch.randn(c_i, m + k - 1, m + k - 1, generator=g)
        K = torch.randn(c_o, c_i, k, k, generator=g)
        return X.to(device), K.to(device)

    def matmul_inputs(c_i, c_o, k, m, device):  # (c_o, c_i k k) @ (c_i k k, m m): the layer's FLOPs
        g = torch.Generator().manual_seed(0)
        return (torch.randn(c_o, c_i * k * k, generator=g).to(device),
                torch.randn(c_i * k * k, m * m, generator=g).to(device))

    def row(name, fn, layer, device, repeats, inputs=layer_inputs):
        seconds = wall_time(fn, inputs(**layer, device=device), repeats, device)
        flop = 2 * fns["conv_flops"](layer["c_i"], layer["c_o"], layer["k"], layer["k"], layer["m"], layer["m"])
        size = f"{layer['c_i']}x{layer['c_o']}x{layer['k']}x{layer['k']} m={layer['m']}"
        return name, device, size, seconds, flop / seconds / 1e9

    repeats = 5 if not quick else 2
    rows = []
    for device in devices or operator_devices():
        rows += [
            row("matmul, same FLOPs (ceiling)", torch.matmul, full, device, repeats, matmul_inputs),
            row("F.conv2d", lambda X, K: F.conv2d(X[None], K)[0], full, device, repeats),
            row("corr2d_multi_in_out_fast (solution)", fns["corr2d_multi_in_out_fast"], full, device, repeats),
        ]
        if device == "cpu":  # on a GPU these tiny per-pixel steps would only measure kernel launches
            rows += [row("loop over output pixels (checks.py)", loop_corr2d_multi_in_out, per_pixel, device, 1),
                     row("loops per channel pair (solution)", fns["corr2d_multi_in_out"], per_pair, device, 1)]
    return rows


def threads_line():
    """How many threads the CPU rows ran with (the GFLOP/s of matmul and F.conv2d scale with it)."""
    import torch
    omp = os.environ.get("OMP_NUM_THREADS")
    return (f"threads: torch.get_num_threads() = {torch.get_num_threads()} on {os.cpu_count()} CPU cores"
            + (f" (OMP_NUM_THREADS={omp})" if omp else ""))


def gpu_line():
    import torch
    if not torch.cuda.is_available():
        return "GPU: none (torch.cuda.is_available() is False): CPU rows only"
    return (f"GPU: {torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda}; "
            f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}: "
            "float32 as graded, checks.py turns TF32 off)")


def print_operators(rows):
    print("operators: wall-clock GFLOP/s (best of a few runs; GPU synchronised) on the layer c_i x c_o x k x k"
          " with an m x m output (the deck's: 100x100x5x5 m=64; the loops on a smaller one), and as a fraction"
          " of a matmul of the same FLOPs on the same device")
    print(f"  {threads_line()}")
    print(f"  {gpu_line()}")
    ceiling = {device: gflops for name, device, _, _, gflops in rows if name.startswith("matmul")}
    for name, device, what, seconds, gflops in rows:
        print(f"  {name:37s} {device:4s} {what:17s} {seconds * 1e3:9.2f} ms {gflops:9.3f} GFLOP/s "
              f"{gflops / ceiling[device]:8.4f} x matmul")


# --- the student notebook ---------------------------------------------------------------

def run_student_notebook(nb, release_dir):
    """Execute nb end to end in a fresh kernel, in a copy of the release folder; return seconds."""
    from nbclient import NotebookClient
    with tempfile.TemporaryDirectory(prefix="bench-nb-") as tmp:
        shutil.copytree(release_dir, tmp, dirs_exist_ok=True)
        start = time.perf_counter()
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp}})
        client.execute(stderr=subprocess.DEVNULL)  # the kernel's start-up chatter; errors still raise
        return time.perf_counter() - start


# --- grading ------------------------------------------------------------------------

def grading_time(nb, n, jobs, release_name):
    """Grade n copies of nb with grading.run.batch.grade in a scratch copy of the course.

    Returns (seconds, results); the clock covers what `make grade` does for n students.
    """
    from grading.course import copy_course
    from grading.fill import write_submission
    from grading.run.batch import grade
    with tempfile.TemporaryDirectory(prefix="bench-course-") as tmp:
        course = copy_course(ROOT, Path(tmp) / "course")
        students = [f"bench{i:02d}" for i in range(n)]
        for student in students:
            write_submission(course, student, {release_name: nb}, ASSIGNMENT)
        start = time.perf_counter()
        results = grade(course, ASSIGNMENT, students=students, jobs=jobs, progress=False)
        return time.perf_counter() - start, results


def check_full_marks(results, n):
    """A bench of failing submissions would time the wrong thing: say so loudly; True when all is well."""
    totals = sorted({(r.status, r.total, r.max_total) for r in results})
    if len(results) != n or len(totals) != 1 or totals[0][0] != "graded":
        print(f"  WARNING: the reference submissions were not all graded alike: {totals}")
        for r in results:
            if r.reason:
                print(f"    {r.student}: {r.status} {r.total:g}/{r.max_total:g} {r.reason}")
        return False
    _, total, max_total = totals[0]
    print(f"  every reference submission scored {total:g}/{max_total:g} (extra credit included; the written "
          "answer awaits the formgrader)")
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and batches (a smoke test, ~1 min)")
    parser.add_argument("-n", type=int, default=None, help="submissions per grading batch (default 8, quick 2)")
    parser.add_argument("-j", "--jobs", type=int, default=None, help="parallel grading jobs (default: grade's)")
    parser.add_argument("--operators-only", action="store_true", help="only time the operators (no grading)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows while `make bench` runs
    if args.operators_only:
        print_operators(operator_rows(reference_functions(source_notebook()), args.quick))
        return 0
    venv_first_on_path()  # nbgrader shells out to `alembic`
    n = args.n or (2 if args.quick else 8)

    source_nb = source_notebook()
    release_dir = ROOT / "release" / ASSIGNMENT
    release_path = release_dir / f"{ASSIGNMENT}.ipynb"
    submission = reference_submission(source_nb, nbformat.read(str(release_path), as_version=4))

    # The yardstick is measured before and after the grading runs, so that both see the same machine.
    floors = import_floor(1 if args.quick else 3)

    runs = [("sequential", 1), ("parallel", args.jobs or os.cpu_count() or 1)]
    seconds, results, valid = {}, {}, True
    for label, jobs in runs:
        seconds[label], results[label] = grading_time(submission, n, jobs, release_path.name)
    floors += import_floor(1 if args.quick else 2)
    floor = statistics.median(floors)
    print(f'import floor: python -c "import torch" takes {floor:.2f} s '
          f"(median of {len(floors)}, before and after grading)")
    print(f"grading a batch of {n} reference submissions (grading.run.batch.grade, as `make grade`):")
    for label, jobs in runs:
        each = seconds[label] / n
        print(f"  {label + f', jobs={jobs}':22s} {seconds[label]:7.1f} s, {each:6.2f} s/submission "
              f"= {each / floor:5.2f} x import floor")
        valid = check_full_marks(results[label], n) and valid
    ratio = seconds["parallel"] / n / floor
    verdict = ("PASS" if ratio <= GOAL else "FAIL") if valid else "INVALID (grading went wrong, see above)"
    print(f"grading goal: {ratio:.2f} x import floor per submission in parallel "
          f"(goal <= {GOAL}, aim {AIM}): {verdict}")
    cost = ratio / BEFORE_JAIL
    verdict = ("PASS" if cost <= JAIL_BUDGET else "FAIL") if valid else "INVALID"
    print(f"privilege separation: {cost:.2f} x the time per submission before the jailed verifier "
          f"({BEFORE_JAIL} x import floor; budget <= {JAIL_BUDGET}): {verdict}")

    run = run_student_notebook(nbformat.from_dict(submission), release_dir)
    print(f"student notebook: the release notebook with the reference solutions, end to end: "
          f"{run:.1f} s = {run / floor:.2f} x import floor")

    print_operators(operator_rows(reference_functions(source_nb), args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())

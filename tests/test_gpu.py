"""The GPU: what the jail gets of one, the warm jail without CUDA, TF32, the bench, scripts/gpu-check.

This machine has no GPU, so the GPU policy of grading/jail/gpu.py is tested on a FAKE
machine: a folder standing for /dev with NVIDIA device nodes (plain files) and other
devices, one standing for /proc, and a driver library folder. The argv built for it is
checked flag by flag, and run for real in bubblewrap. What only a GPU can show (CUDA in
the jail, the GPU rows of the bench) is what scripts/gpu-check prints on a GPU machine;
its CPU dry run is the last test here, so the script cannot rot.
"""
import os
import re
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, add_config, make_course, require, venv_env
from grading.jail import gpu, sandbox, zygote
from expect import MAX_WITH_EXTRA
from grading.jail.env import jail_settings
from grading.settings import Grading
from tools import bench, gpu_check

pytestmark = pytest.mark.timeout(300)
#: The jail's memory limit (c.Grading.memory_bytes): RLIMIT_AS, or RLIMIT_DATA with a GPU.
MEMORY = Grading().memory_bytes
NODES = ["nvidia0", "nvidia1", "nvidia-uvm", "nvidia-uvm-tools", "nvidiactl"]
OTHER_DEVICES = ["nvidia-modeset", "nvidia-nvswitchctl", "sda", "kvm", "fuse", "mem"]


def fake_machine(tmp_path, proc=True, caps=True):
    """(dev_root, proc_root, driver folder): a GPU machine's /dev, /proc and libcuda.so.1."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in NODES + OTHER_DEVICES:
        (dev / name).write_text("")
    (dev / "dri").mkdir()
    (dev / "dri" / "card0").write_text("")
    if caps:
        (dev / "nvidia-caps").mkdir()
        (dev / "nvidia-caps" / "nvidia-cap1").write_text("")
    proc_root = tmp_path / "proc"
    if proc:
        (proc_root / "driver" / "nvidia").mkdir(parents=True)
        (proc_root / "driver" / "nvidia" / "params").write_text("ModifyDeviceFiles: 1\n")
    driver = tmp_path / "driver-libs"
    driver.mkdir()
    (driver / "libcuda.so.1").write_text("")
    return dev, proc_root, driver


def policy_for(tmp_path, environ=None, ldconfig="", **kwargs):
    dev, proc_root, driver = fake_machine(tmp_path, **kwargs)
    environ = {"LD_LIBRARY_PATH": str(driver), **(environ or {})}
    return gpu.gpu_policy(dev_root=str(dev), proc_root=str(proc_root), ldconfig=ldconfig, environ=environ,
                              driver_dirs=(), cpu_count=16), dev, proc_root, driver


def env_of(argv):
    return {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}


def prlimits(argv):
    return [a for a in argv[:argv.index("bwrap")] if a.startswith("--")]


# --- the policy: which argv a GPU machine gets ------------------------------------------------------

@pytest.mark.fast
def test_without_a_gpu_the_jail_is_unchanged(tmp_path):
    empty = tmp_path / "dev"
    empty.mkdir()
    (empty / "sda").write_text("")
    assert gpu.gpu_policy(dev_root=str(empty), proc_root=str(tmp_path), ldconfig="", environ={},
                              driver_dirs=()) is None
    argv = sandbox.sandbox_argv(["true"], gpu=None)
    assert f"--as={MEMORY}" in prlimits(argv) and not any(a.startswith("--data") for a in argv)
    assert env_of(argv)["CUDA_VISIBLE_DEVICES"] == ""
    assert "--dev-bind" not in argv and "/proc/driver/nvidia" not in argv
    assert not any(k.startswith("PYTORCH_") for k in env_of(argv))
    # This machine has no GPU: what every kernel gets ("auto") is exactly that.
    assert gpu.gpu_policy() is None
    assert sandbox.sandbox_argv(["true"], uid=1) == sandbox.sandbox_argv(["true"], uid=1, gpu=None)


@pytest.mark.fast
def test_nodes_without_a_driver_or_switched_off_mean_no_gpu(tmp_path):
    dev, proc_root, driver = fake_machine(tmp_path)
    no_driver = gpu.gpu_policy(dev_root=str(dev), proc_root=str(proc_root), ldconfig="", environ={},
                                   driver_dirs=())
    assert no_driver is None
    environ = {"LD_LIBRARY_PATH": str(driver), **Grading(use_gpu=False).environ("/course")}
    assert gpu.gpu_policy(dev_root=str(dev), proc_root=str(proc_root), ldconfig="", environ=environ,
                          driver_dirs=()) is None
    assert gpu.gpu_enabled({}) and gpu.gpu_enabled(Grading().environ("/course"))


@pytest.mark.fast
def test_the_gpu_policy_passes_the_nvidia_nodes_and_nothing_else(tmp_path):
    policy, dev, proc_root, driver = policy_for(tmp_path, environ={"CUDA_VISIBLE_DEVICES": "1"})
    assert policy is not None
    argv = sandbox.sandbox_argv(["python3", "-c", "pass"], workdir="/sandbox/channels", gpu=policy, uid=2_000_000_001)
    # Device nodes: the NVIDIA ones CUDA needs (and MIG's capabilities), bound into the fresh /dev.
    bound = [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == "--dev-bind"]
    assert bound == [(str(dev / n), f"/dev/{n}") for n in sorted(NODES)] + \
        [(str(dev / "nvidia-caps" / "nvidia-cap1"), "/dev/nvidia-caps/nvidia-cap1")]
    for name in OTHER_DEVICES + ["dri"]:
        assert not any(name in a for a in argv if a.startswith(str(dev))), name
    dev_index = argv.index("--dev")
    assert argv[dev_index + 1] == "/dev" and all(argv.index(src) > dev_index for src, _ in bound)
    assert argv[argv.index("/dev/nvidia-caps") - 1] == "--dir"  # world-traversable parent, made after --dev
    # /proc/driver/nvidia read-only, over the fresh /proc; the driver's folder read-only, found via LD_LIBRARY_PATH.
    i = argv.index(str(proc_root / "driver" / "nvidia"))
    assert argv[i - 1:i + 2] == ["--ro-bind", str(proc_root / "driver" / "nvidia"), "/proc/driver/nvidia"]
    assert i > argv.index("--proc")
    assert ["--ro-bind", str(driver), str(driver)] in [argv[k:k + 3] for k in range(len(argv))]
    env = env_of(argv)
    assert env["LD_LIBRARY_PATH"] == str(driver)
    # The grader's CUDA_VISIBLE_DEVICES instead of "", NVML for is_available, a share of the GPU's memory.
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == f"per_process_memory_fraction:{0.9 / 16:.4f}"
    # RLIMIT_AS would break CUDA: RLIMIT_DATA bounds the memory instead; the other limits stay.
    limits = prlimits(argv)
    assert f"--data={MEMORY}" in limits and not any(a.startswith("--as=") for a in limits)
    for key, value in dict(sandbox.LIMITS, cpu=jail_settings()["cpu"]).items():
        assert f"--{key}={value}" in limits
    # Still no network, no /sys, no other host path; the same uid change.
    assert "--unshare-net" in argv and "/sys" not in argv
    assert "setpriv" in argv and "--reuid=2000000001" in argv


@pytest.mark.fast
def test_driver_known_to_ld_so_needs_no_library_path(tmp_path):
    dev, proc_root, driver = fake_machine(tmp_path, proc=False, caps=False)
    ldconfig = f"\tlibcuda.so.1 (libc6,x86-64) => {driver}/libcuda.so.1\n\tlibc.so.6 (libc6,x86-64) => /x\n"
    policy = gpu.gpu_policy(dev_root=str(dev), proc_root=str(proc_root), ldconfig=ldconfig, environ={},
                             driver_dirs=(), cpu_count=4)
    assert policy is not None and policy.proc == []
    assert "LD_LIBRARY_PATH" not in policy.env and "CUDA_VISIBLE_DEVICES" not in policy.env
    assert policy.ro_binds == [(str(driver), str(driver))]  # outside /usr: bound (inside /usr it already is)
    assert policy.env["PYTORCH_CUDA_ALLOC_CONF"] == "per_process_memory_fraction:0.2250"
    assert gpu.gpu_memory_fraction(Grading(gpu_memory_fraction=0.5).environ("/course")) == 0.5
    argv = sandbox.sandbox_argv(["true"], gpu=policy, uid=2_000_000_001)
    assert "CUDA_VISIBLE_DEVICES" not in env_of(argv)  # neither "" nor a value: every passed GPU


@pytest.mark.fast
def test_the_gpu_jail_runs_in_bubblewrap(tmp_path):
    """The fake machine's argv, run for real: the nodes are there, nothing else, and the limits hold."""
    require(sandbox.sandbox_status()[0], "no working bubblewrap")
    policy, dev, proc_root, driver = policy_for(tmp_path, proc=False)
    script = ("import os, resource, json; print(json.dumps([sorted(os.listdir('/dev')), "
              "sorted(os.listdir('/dev/nvidia-caps')), os.listdir(os.environ['LD_LIBRARY_PATH']), "
              "resource.getrlimit(resource.RLIMIT_AS)[0], resource.getrlimit(resource.RLIMIT_DATA)[0], "
              "os.access('/dev/nvidia0', os.W_OK), os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')]))")
    proc = subprocess.run(sandbox.sandbox_argv([sys.executable, "-I", "-c", script], gpu=policy),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import json
    listing, caps, libs, address_space, data, _, visible = json.loads(proc.stdout)
    assert set(NODES) <= set(listing) and "nvidia-caps" in listing
    assert not set(OTHER_DEVICES + ["dri"]) & set(listing)
    assert caps == ["nvidia-cap1"] and libs == ["libcuda.so.1"]
    assert address_space == -1 and data == MEMORY  # RLIM_INFINITY and the 6 GiB
    assert visible == "unset"


@pytest.mark.fast
def test_a_broken_gpu_bind_falls_back_to_the_cpu(tmp_path, monkeypatch):
    """If bubblewrap cannot make the GPU's binds, grading goes on on the CPU, and says why."""
    require(sandbox.sandbox_status()[0], "no working bubblewrap")
    broken = gpu.GpuPolicy([(str(tmp_path / "missing-node"), "/dev/nvidia0")], [], [], {}, "fake")
    monkeypatch.setattr(gpu, "_GPU", {True: broken})
    monkeypatch.setattr(gpu, "_GPU_OFF", None)
    monkeypatch.setattr(sandbox, "_STATUS", None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    ok, reason = sandbox.sandbox_status()
    assert ok and "GPU not used: bubblewrap could not pass the GPU through" in reason
    assert gpu.gpu_policy() is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""  # the verifier, outside the jail, on the CPU too


def test_the_instructors_setting_in_nbgrader_config(tmp_path):
    """c.Grading.use_gpu is True by default; False keeps the jail and the verifier on the CPU.
    The config decides: a GRADING_JAIL already in the environment is overwritten."""
    course = make_course(tmp_path / "course")
    code = ("import os, sys, json; from traitlets.config.loader import PyFileConfigLoader; "
            "PyFileConfigLoader('nbgrader_config.py', path=sys.argv[1]).load_config(); "
            "print(json.loads(os.environ['GRADING_JAIL'])['use_gpu'], repr(os.environ.get('CUDA_VISIBLE_DEVICES')))")

    def setting(**env):
        clean = {k: v for k, v in venv_env(**env).items() if k not in ("GRADING_JAIL", "CUDA_VISIBLE_DEVICES")}
        clean.update(env)
        out = subprocess.run([sys.executable, "-c", code, str(course)], cwd=course, capture_output=True, text=True,
                             timeout=120, env=clean)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert setting() == ["True", "None"]
    assert setting(GRADING_JAIL='{"use_gpu": false}') == ["True", "None"]
    add_config(course, "c.Grading.use_gpu = False")
    assert setting() == ["False", "''"]
    assert setting(GRADING_JAIL='{"use_gpu": true}') == ["False", "''"]


# --- the warm jail never starts CUDA -----------------------------------------------------------------

@pytest.mark.fast
def test_cuda_evidence_sees_the_driver_and_its_device_files(tmp_path):
    fake = tmp_path / "self"
    (fake / "fd").mkdir(parents=True)
    (fake / "maps").write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /venv/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.13\n"
        "7f04-7f05 r-xp 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06\n"
        "7f06-7f07 rw-s 00000000 00:05 4 /dev/nvidia0\n")
    os.symlink("/dev/nvidiactl", fake / "fd" / "7")
    os.symlink("/dev/null", fake / "fd" / "0")
    evidence = zygote.cuda_evidence(str(fake))
    assert evidence == ["mapped /usr/lib/x86_64-linux-gnu/libcuda.so.580.65.06", "fd 7 -> /dev/nvidiactl"]
    (fake / "maps").write_text("7f02-7f03 r-xp 00000000 08:01 2 /x/libcudart.so.13\n")  # torch's import alone
    os.unlink(fake / "fd" / "7")
    assert zygote.cuda_evidence(str(fake)) == []


def test_asking_cuda_anything_before_a_fork_is_detected():
    """The negative control: torch.cuda.is_available() in the parent makes torch refuse CUDA in forks."""
    code = ("import json, torch; from grading.jail.zygote import cuda_report; before = cuda_report(); "
            "torch.cuda.is_available(); print(json.dumps([before, cuda_report()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=venv_env(PYTORCH_NVML_BASED_CUDA_CHECK="0"))
    import json
    before, after = json.loads(out.stdout)
    assert before == {"initialized": False, "evidence": [], "fork_poisoned": False}
    assert after["fork_poisoned"] and zygote._cuda_started(after)


def test_the_warm_jail_holds_no_cuda_context(tmp_path):
    """The zygote imported torch and ipykernel, and nothing of CUDA started: its forks can use a GPU."""
    require(sandbox.sandbox_status()[0], "no working bubblewrap")
    course = make_course(tmp_path / "course")
    warm = zygote.Zygote(str(course), "channels", str(tmp_path / "zygote.log"), str(tmp_path / "jupyter"))
    try:
        zygote.reset(warm.path)
        report = zygote.request(warm.path, {"op": "cuda"})
    finally:
        warm.close()
    assert report == {"ok": True, "initialized": False, "evidence": [], "fork_poisoned": False}, \
        (tmp_path / "zygote.log").read_text()


# --- TF32 in the student's own session --------------------------------------------------------------

ON_GPU = torch.cuda.is_available()


@pytest.mark.fast
def test_tf32_emulation_changes_a_float32_matmul():
    """The CPU stands in for a GPU: with TF32 on, the emulated answer misses float32's tolerance."""
    fns = bench.reference_functions(bench.source_notebook())
    g = torch.Generator().manual_seed(0)
    X, K = torch.randn(5, 7, 8, generator=g), torch.randn(6, 5, 1, 1, generator=g)
    exact = fns["corr2d_multi_in_out_1x1"](X.double(), K.double())
    emulated = gpu_check.emulate_tf32(fns["corr2d_multi_in_out_1x1"])
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        assert (emulated(X, K).double() - exact).abs().max() > 2e-4
        torch.backends.cuda.matmul.allow_tf32 = False
        assert (emulated(X, K).double() - exact).abs().max() < 1e-5
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.fast
def test_correct_answers_pass_with_tf32_turned_on_before_import_checks():
    """checks.py turns TF32 off when it is imported: a student who turned it on earlier loses nothing."""
    outcome = gpu_check.tf32_session(ROOT, "before", emulate=not ON_GPU)
    assert outcome and all(error == "" for error in outcome.values()), outcome


@pytest.mark.fast
def test_correct_answers_pass_with_tf32_turned_on_after_import_checks():
    """Every `part` of a test switches TF32 off while it runs: turning it on later loses nothing either."""
    outcome = gpu_check.tf32_session(ROOT, "after", emulate=not ON_GPU)
    assert outcome and all(error == "" for error in outcome.values()), outcome


# --- the bench ---------------------------------------------------------------------------------------

@pytest.mark.fast
def test_bench_times_the_wall_clock():
    """A call that waits (as for other threads or a GPU) counts in full; the CPU time of the caller would not."""
    assert bench.wall_time(time.sleep, (0.02,), repeats=2) >= 0.02
    assert f"torch.get_num_threads() = {torch.get_num_threads()}" in bench.threads_line()
    assert bench.operator_devices() == (["cpu", "cuda"] if ON_GPU else ["cpu"])


@pytest.mark.fast
def test_bench_operator_rows_print_gflops_and_threads(capsys):
    fns = bench.reference_functions(bench.source_notebook())
    rows = bench.operator_rows(fns, quick=True, devices=["cpu"])
    bench.print_operators(rows)
    out = capsys.readouterr().out
    assert "wall-clock GFLOP/s" in out and bench.threads_line() in out
    assert {name for name, *_ in rows} >= {"matmul, same FLOPs (ceiling)", "F.conv2d",
                                           "corr2d_multi_in_out_fast (solution)"}
    assert all(seconds > 0 and gflops > 0 for *_, seconds, gflops in rows)


# --- scripts/gpu-check, dry run ------------------------------------------------------------------------

@pytest.mark.timeout(240)
def test_gpu_check_dry_run_grades_three_students_on_the_cpu():
    """The whole script on the CPU: jail probe, 3 students in parallel and one at a time, devices, TF32, bench."""
    require(sandbox.sandbox_status()[0], "no working bubblewrap")
    proc = subprocess.run([str(ROOT / "scripts" / "gpu-check"), "--dry-run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=230, env=venv_env(GPU_CHECK_SECONDS="220"))
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "testkit_DEVICE           cpu" in out and "network                  none" in out
    rows = {m.group(1): [m.group(2), m.group(3)] for m in re.finditer(r"^    (test_\w+) +(\S+) +(\S+)$", out, re.M)}
    assert len(rows) >= 6
    for cell, devices in rows.items():  # kernel and verifier: every tensor compared was on the CPU
        assert devices in (["cpu", "cpu"], ["-", "-"]), (cell, devices)
    assert "parallel vs one at a time: identical scores and verdicts" in out
    for student in gpu_check.STUDENTS:
        assert f"    {student}" in out
    assert f"ref_reference    graded total {MAX_WITH_EXTRA}" in out  # (extra credit included)
    assert "F.conv2d" in out and "torch.get_num_threads()" in out
    assert re.search(r"^== gpu-check \(dry run\) took \d+ s: PASS$", out, re.M)

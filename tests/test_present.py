"""`make present`: course/present.py runs a copy of the deck and serves it as a full-window slideshow.

The real script runs, into a temporary folder (never the checkout's .present/): first with
--no-serve (the executed copy, figures.py and rise.css beside it, the tracked deck untouched),
then serving that copy with JupyterLab on a free port with a known token. Headless Chromium
opens the address it prints, /rise/channels.ipynb?token=..., and the first slide must show the
title and a drawn figure across the whole window (jupyterlab-rise's standalone slideshow, not
the half-width split preview of Alt+R). Ctrl+C (SIGINT) must stop the server and its kernel.
A screenshot goes to test-artifacts/present-01.png.
"""
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, VENV_BIN, free_port, require, venv_env
from test_slides_browser import ARTIFACTS, VIEWPORT, launch, require_browser

DECK = ROOT / "course" / "channels.ipynb"
PRESENT = ROOT / "course" / "present.py"
URL = re.compile(r"http://127\.0\.0\.1:\d+/rise/channels\.ipynb\?token=\w+")


def jupyter_env(base: Path):
    """Config, runtime and IPython folders of our own: nothing is written to the user's ~/.jupyter."""
    return venv_env(JUPYTER_CONFIG_DIR=str(base / "config"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
                    IPYTHONDIR=str(base / "ipython"))


def processes_in(folder: Path):
    """Processes whose working directory is `folder`: the server and the kernels it started there."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == folder:
                found.append(int(proc.name))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`present.py --no-serve` into a temporary folder; yields (folder, the tracked deck's bytes before)."""
    base = tmp_path_factory.mktemp("present")
    out = base / "out"
    before = DECK.read_bytes()
    proc = subprocess.run([sys.executable, str(PRESENT), "--no-serve", "--out", str(out)], cwd=ROOT,
                          env=jupyter_env(base), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return out, before


@pytest.mark.timeout(600)
def test_no_serve_builds_an_executed_copy(built):
    out, before = built
    assert sorted(p.name for p in out.iterdir() if p.suffix in {".ipynb", ".py", ".css"}) == [
        "channels.ipynb", "figures.py", "rise.css"]
    assert (out / "figures.py").read_bytes() == (ROOT / "course" / "figures.py").read_bytes()
    nb = nbformat.read(out / "channels.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "a cell did not run"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    # the title slide's figure: the first cell after the title draws a PNG
    title = next(i for i, c in enumerate(nb.cells) if c.metadata.slideshow.slide_type == "slide")
    assert "image/png" in nb.cells[title + 1].outputs[0].data
    # the tracked deck: not a byte changed, still without outputs
    assert DECK.read_bytes() == before
    assert all(c.outputs == [] for c in nbformat.read(DECK, as_version=4).cells if c.cell_type == "code")


@pytest.mark.fast
def test_make_present_runs_present_py():
    """`make present PORT=... TOKEN=...` passes both on (dry run: nothing is started)."""
    require(shutil.which("make"), "make is not installed")
    proc = subprocess.run(["make", "-n", "present", "PORT=8765", "TOKEN=abc"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "course/present.py --port 8765 --token abc" in proc.stdout


FIRST_SLIDE_JS = """() => {
  const slide = document.querySelector('.reveal .slides section.present:not(.stack)');
  const rect = (e) => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right,
                                                                     top: r.top, bottom: r.bottom, width: r.width}; };
  return {
    title: slide.querySelector('.deck-title h1').innerText,
    images: Array.from(slide.querySelectorAll('img')).map(i => ({
      src: i.src.slice(0, 22), natural: i.naturalWidth, complete: i.complete, rect: rect(i)})),
    reveal: rect(document.querySelector('.reveal')),
    slides: rect(document.querySelector('.reveal .slides')),
    viewport: {width: window.innerWidth, height: window.innerHeight},
    labShell: !!document.querySelector('.jp-LabShell'),
  };
}"""


@pytest.mark.timeout(600)
def test_present_serves_the_full_window_slideshow(built, tmp_path):
    sync_playwright = require_browser()
    require(shutil.which("jupyter-lab", path=str(VENV_BIN)), "jupyter-lab is not installed in .venv")
    out, before = built
    port, token = free_port(), secrets.token_hex(16)
    log_path = tmp_path / "present.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(PRESENT), "--reuse", "--no-browser", "--out", str(out),
                                 "--port", str(port), "--token", token],
                                cwd=ROOT, env=jupyter_env(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not URL.search(log_path.read_text()):
            assert proc.poll() is None, f"present.py exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no address printed:\n{log_path.read_text()}"
            time.sleep(0.5)
        printed = log_path.read_text()
        assert "reusing" in printed  # --reuse served the copy the fixture built
        url = URL.search(printed).group(0)
        assert url == f"http://127.0.0.1:{port}/rise/channels.ipynb?token={token}"

        with sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(url)
                page.wait_for_selector(".reveal .slides section.present .deck-title h1", timeout=120_000)
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.reveal .slides section.present img'))"
                    ".some(i => i.complete && i.naturalWidth > 0)", timeout=60_000)
                page.wait_for_timeout(1000)  # reveal's first layout
                page.screenshot(path=str(ARTIFACTS / "present-01.png"))
                first = page.evaluate(FIRST_SLIDE_JS)
            finally:
                browser.close()
        assert "多输入多输出通道" in first["title"]
        drawn = [i for i in first["images"] if i["complete"] and i["natural"] > 0]
        assert drawn and drawn[0]["src"].startswith("data:image/png"), first["images"]
        view = first["viewport"]
        # the figure is on screen, beside the title (right half), not below the fold
        figure = drawn[0]["rect"]
        assert figure["width"] > 200 and figure["left"] > view["width"] / 2, figure
        assert figure["right"] <= view["width"] + 1 and figure["bottom"] <= view["height"] + 1, figure
        # the full-window slideshow: no JupyterLab around it, reveal.js spans the whole width
        assert not first["labShell"]
        assert first["reveal"]["left"] <= 1 and first["reveal"]["width"] >= view["width"] - 2, first["reveal"]
        assert first["slides"]["width"] >= 0.85 * view["width"], first["slides"]

        # Ctrl+C: present.py stops the server, which shuts its kernel down
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log_path.read_text()
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "the server still answers"
        deadline = time.monotonic() + 20
        while processes_in(out):
            assert time.monotonic() < deadline, f"left running in {out}: {processes_in(out)}"
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pid_file = out / "lab.pid"  # present.py removes it when it stops the server itself
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    assert DECK.read_bytes() == before, "presenting changed the tracked deck"

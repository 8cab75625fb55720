"""The deck as a live RISE slideshow: JupyterLab from .venv, opened in headless Chromium.

JupyterLab runs on a free loopback port with a random token, its config, runtime and
workspace folders in a temporary directory, serving a copy of course/ (so nothing is
written next to the real deck). The slideshow must show the title slide, apply rise.css,
and advance to the next slide on Space. Screenshots go to test-artifacts/.
"""
import re
import shutil

import pytest

from conftest import ROOT, jupyter_server
from test_slides_browser import ARTIFACTS, VIEWPORT, launch, require_browser

DECK_FILES = ["channels.ipynb", "figures.py", "rise.css"]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server of its own; yields (base URL, token) and always stops it."""
    require_browser()  # no point starting a server nobody can look at
    root = tmp_path / "course"
    root.mkdir()
    for name in DECK_FILES:
        shutil.copy2(ROOT / "course" / name, root / name)
    with jupyter_server("jupyter-lab", root, tmp_path, f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}") as (
            base, token, _):
        yield base, token


PRESENT_TEXT_JS = """() => {
  const s = document.querySelector('.reveal .slides section.present:not(.stack)');
  return s ? s.innerText : '';
}"""


@pytest.mark.timeout(600)
def test_rise_slideshow_opens_and_advances(lab):
    sync_playwright = require_browser()
    base, token = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{base}/rise/channels.ipynb?token={token}")
            page.wait_for_selector(".reveal .slides section.present .deck-title h1", timeout=120_000)
            page.wait_for_timeout(1000)  # reveal's first layout
            assert "多输入多输出通道" in page.inner_text(".reveal .slides section.present .deck-title h1")
            styled = page.evaluate("getComputedStyle(document.querySelector('.deck-title')).borderBottomStyle")
            assert styled == "solid", "rise.css was not applied"
            # the notebook's "rise" metadata reached reveal.js: slide numbers as current/total
            assert re.fullmatch(r"1\s*/\s*\d+", page.inner_text(".reveal .slide-number").strip())
            page.screenshot(path=str(ARTIFACTS / "rise-live-01.png"))

            page.keyboard.press("Space")
            page.wait_for_function(f"({PRESENT_TEXT_JS})().includes('为什么要保留通道')", timeout=30_000)
            assert "多输入多输出通道" not in page.evaluate(PRESENT_TEXT_JS)
            page.wait_for_timeout(800)  # the transition
            page.screenshot(path=str(ARTIFACTS / "rise-live-02.png"))
        finally:
            browser.close()

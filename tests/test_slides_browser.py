"""The static slides of `make slides` in headless Chromium, opened from disk and from a web server.

Every slide (and every fragment step) is visited; the page must raise no JavaScript error,
request nothing outside the slides' folder, typeset all math with MathJax, load every figure,
and draw Chinese with a real CJK font. Screenshots of the first slides go to test-artifacts/.
"""
import functools
import os
import re
import shutil
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from conftest import ROOT, require

sys.path.insert(0, str(ROOT / "course"))
import build_slides  # noqa: E402  (course/ is not a package)

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Headless Debian Chromium, as root in a container, with nothing that phones home.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 720}
CJK_FONT = re.compile(r"CJK|Han|PingFang|YaHei|WenQuanYi|Hei|Song|Ming|Kai|Gothic|Mincho", re.I)
RAW_TEX = re.compile(r"\$|\\[A-Za-z]+")


def require_browser():
    """Playwright for Python drives the Debian Chromium (Playwright's own download is never used)."""
    require(Path(CHROMIUM).exists() or shutil.which(CHROMIUM), f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is pinned in requirements.txt
        require(False, "playwright is not installed in .venv")
    return sync_playwright


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def slides(tmp_path_factory, worker_id):
    """Build the slides once per test session (shared by the xdist workers through a file lock)."""
    require(shutil.which("npm") or (ROOT / "node_modules" / "reveal.js").is_dir(),
            "npm is missing and node_modules/ was never installed")
    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        base = base.parent  # one folder per session, shared by gw0, gw1, ...
    out = base / "deck-slides"
    from filelock import FileLock
    with FileLock(str(base / "deck-slides.lock")):
        if not (out / "channels.slides.html").exists():
            build_slides.build(out)
    return out / "channels.slides.html"


@pytest.fixture
def server(slides):
    """A static web server on a free loopback port, serving only the slides' folder."""
    handler = functools.partial(QuietHandler, directory=str(slides.parent))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def expected_slide_count():
    """Slides and subslides of the deck, counted from the notebook (the first visible cell opens one)."""
    deck = nbformat.read(build_slides.DECK, as_version=4)
    types = [c.metadata.slideshow.slide_type for c in deck.cells if c.metadata.slideshow.slide_type
             not in {"skip", "notes"}]
    return 1 + sum(t in {"slide", "subslide"} for t in types[1:])


# Text of rendered markdown that MathJax should have replaced: skip its own output, code and scripts.
RAW_TEXT_JS = """(root) => {
  const skip = 'script, style, code, pre, .MathJax_CHTML, .MathJax_Preview, .MJX_Assistive_MathML, .anchor-link';
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const parts = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.parentElement.closest(skip)) parts.push(node.textContent);
  }
  return parts.join(' ');
}"""
MATHJAX_IDLE_JS = "() => new Promise(done => MathJax.Hub.Queue(() => done(true)))"


def cjk_fonts_of(page, selector):
    """The platform fonts Chromium used for the text directly inside `selector` (via DevTools)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    assert node, f"{selector} not found"
    return cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("via", ["file", "http"])
def test_static_slides_offline(request, slides, via):
    sync_playwright = require_browser()
    if via == "file":
        url, own = slides.as_uri(), lambda u: u.scheme == "file"
    else:
        base = request.getfixturevalue("server")
        url, own = f"{base}/{slides.name}", lambda u: u.scheme == "http" and u.netloc == urlparse(base).netloc
    ARTIFACTS.mkdir(exist_ok=True)
    errors, outside = [], []

    def guard(route):
        """Let the slides load their own files and inline data; abort (and remember) anything else."""
        target = urlparse(route.request.url)
        if own(target) or target.scheme in {"data", "blob"}:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.route("**/*", guard)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
            page.goto(url)
            page.wait_for_function("window.Reveal && Reveal.isReady() && window.MathJax && MathJax.Hub")
            page.evaluate("Reveal.configure({transition: 'none'})")  # screenshots need no waiting
            page.evaluate(MATHJAX_IDLE_JS)

            visited, step = [], 0
            while True:
                page.evaluate(MATHJAX_IDLE_JS)
                where = page.evaluate("(() => { const i = Reveal.getIndices(); return [i.h, i.v || 0]; })()")
                if where not in visited:
                    visited.append(where)
                complete = not page.evaluate("Reveal.availableFragments().next")
                if complete and via == "file" and len(visited) <= 3:  # each slide with all its steps shown
                    page.wait_for_timeout(400)  # fragments fade in
                    page.screenshot(path=str(ARTIFACTS / f"slides-{len(visited):02d}.png"))
                slide = page.evaluate_handle("Reveal.getCurrentSlide()")
                leftover = RAW_TEX.findall(page.evaluate(RAW_TEXT_JS, slide))
                assert leftover == [], f"raw TeX {leftover} on slide {where}"
                broken = page.evaluate("(s) => Array.from(s.querySelectorAll('img'))"
                                       ".filter(i => !(i.complete && i.naturalWidth > 0)).length", slide)
                assert broken == 0, f"{broken} images did not load on slide {where}"
                if complete and page.evaluate("Reveal.isLastSlide()"):
                    break
                page.evaluate("Reveal.next()")
                step += 1
                assert step < 500, "Reveal.next() never reached the last slide"

            assert len(visited) == page.evaluate("Reveal.getTotalSlides()") == expected_slide_count()
            images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
            assert len(images) >= 6 and all(images)
            math = page.evaluate("document.querySelectorAll('script[type^=\"math/tex\"]').length")
            typeset = page.evaluate("document.querySelectorAll('.MathJax_CHTML').length")
            assert math >= 40 and typeset == math, f"{typeset} of {math} formulas typeset"
            assert page.evaluate("document.querySelectorAll('.MathJax_Error, .mjx-merror').length") == 0

            page.evaluate("Reveal.slide(0, 0)")
            fonts = cjk_fonts_of(page, ".deck-title h1")
            title = page.inner_text(".deck-title h1").strip()
            assert fonts and all(CJK_FONT.search(f["familyName"]) for f in fonts), fonts
            assert sum(f["glyphCount"] for f in fonts) == len(title)
        finally:
            browser.close()
    assert errors == []
    assert outside == [], f"the slides tried to reach the network: {outside}"
    assert step - (len(visited) - 1) >= 15  # the Reveal.next() calls that revealed a fragment
    if via == "file":
        assert all((ARTIFACTS / f"slides-{n:02d}.png").stat().st_size > 10_000 for n in (1, 2, 3))

"""Build the lecture deck as static reveal.js slides that need no network.

    python course/build_slides.py [--out DIR] [--no-execute]      (what `make slides` runs)

Executes `channels.ipynb` top to bottom (cwd `course/`, so `figures.py` imports), exports it
with nbconvert's reveal template (our copy in `templates/offline_reveal`), and writes
`DIR/channels.slides.html` (default `course/build/`) with everything it loads copied from
`node_modules/` into `DIR/lib/`: reveal.js and MathJax 2. Figures are embedded as PNG data
URIs and `rise.css` is inlined, so the folder can be copied to a classroom machine and opened
from disk (file://) or from any static web server, offline.
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import SlidesExporter
from nbconvert.preprocessors import TagRemovePreprocessor
from traitlets.config import Config

COURSE = Path(__file__).resolve().parent
ROOT = COURSE.parent
DECK = COURSE / "channels.ipynb"
NODE_MODULES = ROOT / "node_modules"
LIB = "lib"  # assets live in DIR/lib/, referenced by relative URLs

# What the slides load at run time, per npm package (paths inside the package).
ASSETS = {
    "reveal.js": ["LICENSE", "dist/reveal.js", "dist/reveal.css", "dist/theme", "plugin/notes/notes.js"],
    "mathjax": [
        "LICENSE", "MathJax.js", "config/TeX-AMS_CHTML-full.js", "config/Safe.js", "config/local",
        "extensions", "jax/input", "jax/element", "jax/output/CommonHTML", "jax/output/PreviewHTML",
        "jax/output/NativeMML", "jax/output/PlainSource", "fonts/HTML-CSS/TeX/woff",
        "fonts/HTML-CSS/TeX/otf", "localization",
    ],
}
# The static frame: 16:9 like most projectors; reveal.js scales it to the window.
FRAME = {"width": 1280, "height": 720}


def ensure_node_modules():
    """Install the npm assets (reveal.js, MathJax) from package-lock.json when they are missing."""
    if all((NODE_MODULES / package).is_dir() for package in ASSETS):
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("node_modules/ is missing and npm is not installed: install Node.js, then run `npm ci`.")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ROOT, check=True)


def copy_assets(out_dir):
    """Copy the runtime files of every npm package into out_dir/lib/<package>/ (fresh each time)."""
    shutil.rmtree(out_dir / LIB, ignore_errors=True)
    for package, paths in ASSETS.items():
        for rel in paths:
            src, dest = NODE_MODULES / package / rel, out_dir / LIB / package / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dest)


def execute(nb, timeout=600):
    """Run every cell in course/ (where figures.py lives); raises on the first error."""
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(COURSE)}}).execute()
    return nb


def reveal_options(nb):
    """reveal.js settings for the static slides, taken from the notebook's RISE metadata."""
    rise = nb.metadata.get("rise", {})
    number = rise.get("slideNumber", False)
    return {
        "theme": rise.get("theme", "white"),
        "transition": rise.get("transition", "fade"),
        "scroll": bool(rise.get("scroll", False)),
        "center": bool(rise.get("center", True)),
        "slideNumber": "c/t" if number is True else number,
        **FRAME,
    }


def export(nb):
    """The slides' HTML for an executed notebook."""
    options = reveal_options(nb)
    config = Config()
    config.SlidesExporter.reveal_url_prefix = f"{LIB}/reveal.js"
    config.SlidesExporter.reveal_theme = options["theme"]
    config.HTMLExporter.mathjax_url = f"{LIB}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    config.HTMLExporter.language_code = "zh"
    exporter = SlidesExporter(config=config, template_name="offline_reveal",
                              extra_template_basedirs=[str(COURSE / "templates")])
    # Figure cells show the picture only; their one-line drawing call stays in the notebook.
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={"remove-input"}), enabled=True)
    resources = {"deck_css": (COURSE / "rise.css").read_text(encoding="utf-8"), "deck_reveal": options}
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    return html


def build(out_dir=COURSE / "build", run=True):
    """Write out_dir/channels.slides.html and its assets; return the HTML file's path."""
    out_dir = Path(out_dir)
    ensure_node_modules()
    nb = nbformat.read(DECK, as_version=4)
    if run:
        execute(nb)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_assets(out_dir)
    target = out_dir / f"{DECK.stem}.slides.html"
    target.write_text(export(nb), encoding="utf-8")
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=COURSE / "build", help="output folder (default: course/build)")
    parser.add_argument("--no-execute", action="store_true", help="export without running the deck (no outputs)")
    args = parser.parse_args(argv)
    target = build(args.out, run=not args.no_execute)
    print(f"wrote {target}  (open it in a browser; the folder {target.parent} is self-contained)")


if __name__ == "__main__":
    main()

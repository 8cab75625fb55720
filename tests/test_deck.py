"""The lecture deck course/channels.ipynb and its figures (course/figures.py).

- committed clean: no outputs or execution counts, every cell has a slide type, RISE
  metadata and rise.css are there, no personal names or e-mail addresses;
- it covers the chapter: the worked example, shapes, the 1x1 equivalence, the cost example
  (with the seeds' mistakes corrected), the Q&A and the assignment;
- it teaches without handing out the assignment's answers: beyond the book's own loop versions
  no function of the deck computes a multi-channel cross-correlation, a FLOP count or a
  training time, nothing loads a kernel into nn.Conv2d, and nothing in course/ writes the
  bonus's loop-free convolution (no `unfold`, no `.weight.copy_`);
- the title slide draws a figure, so a presenter sees at once whether the outputs are there;
- every figure draws with the fonts matplotlib ships (no missing glyphs, no CJK text);
- it runs top to bottom in a fresh kernel and prints the numbers the slides talk about.
"""
import json
import re
import sys
import warnings
from io import BytesIO

import nbformat
import pytest
from matplotlib.colors import to_rgba
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from conftest import ROOT

COURSE = ROOT / "course"
DECK = COURSE / "channels.ipynb"
SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}
FIGURES = ["channel_stack", "input_channels", "multi_in_example", "multi_out_kernel", "conv_1x1"]
TITLE_FIGURE = "channel_stack"  # small, beside the title: its own minimum width
# The assignment's functions (source/channels/channels.ipynb) and the deck's former ready answers.
ANSWER_NAMES = {"corr2d_multi_in_out_fast", "corr2d_multi_in_out_mm", "conv_flops", "train_hours",
                "conv_mults", "conv2d_layer"}


@pytest.fixture(scope="module")
def deck():
    return nbformat.read(DECK, as_version=4)


def markdown(deck):
    return "\n".join(cell.source for cell in deck.cells if cell.cell_type == "markdown")


def squash(text):
    """Whitespace-insensitive text, so line wrapping in sources and outputs does not matter."""
    return re.sub(r"\s+", " ", text)


@pytest.mark.fast
def test_committed_without_outputs(deck):
    for index, cell in enumerate(deck.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"


@pytest.mark.fast
def test_every_cell_has_a_slide_type(deck):
    missing = [i for i, cell in enumerate(deck.cells)
               if cell.metadata.get("slideshow", {}).get("slide_type") not in SLIDE_TYPES]
    assert missing == []


@pytest.mark.fast
def test_rise_metadata_and_stylesheet(deck):
    rise = deck.metadata["rise"]
    assert rise["scroll"] is True
    assert rise["theme"] in {"white", "simple", "serif", "sky", "beige", "solarized"}  # light themes
    assert rise["transition"]
    assert rise["slideNumber"]
    assert (COURSE / "rise.css").is_file()  # jupyterlab-rise loads rise.css from the deck's folder


@pytest.mark.fast
def test_title_slide_and_speaker_notes(deck):
    visible = [c for c in deck.cells if c.metadata.slideshow.slide_type not in {"skip", "notes"}]
    assert visible[0].metadata.slideshow.slide_type == "slide"
    assert "多输入多输出通道" in visible[0].source and "§6.4" in visible[0].source
    types = [c.metadata.slideshow.slide_type for c in deck.cells]
    assert types.count("slide") >= 12
    assert types.count("fragment") >= 15
    assert types.count("notes") >= 10
    # the title slide draws a figure: a code cell that shows only its output, on the same slide
    title = deck.cells.index(visible[0])
    follows = [c for c in deck.cells[title + 1:] if c.metadata.slideshow.slide_type in {"-", "notes"}]
    drawn = [c for c in follows if c.cell_type == "code"]
    assert drawn and f"{TITLE_FIGURE}()" in drawn[0].source
    assert "remove-input" in drawn[0].metadata.get("tags", []) and drawn[0].metadata.jupyter.source_hidden
    # the speaker note says how to present: `make present`, not "Run All first, then Alt+R"
    notes = "\n".join(c.source for c in follows if c.cell_type == "markdown")
    assert "make present" in notes and "Alt+R" not in notes
    # the last slide sends students to the assignment
    last_slide = max(i for i, t in enumerate(types) if t == "slide")
    assert "作业" in deck.cells[last_slide].source and "channels" in deck.cells[last_slide].source


@pytest.mark.fast
def test_no_personal_data(deck):
    text = "\n".join(cell.source for cell in deck.cells)
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text), "an e-mail address in the deck"
    assert "主讲" not in text  # the seed's "lecturer: <name>" line


@pytest.mark.fast
def test_covers_the_chapter(deck):
    text = squash(markdown(deck))
    for phrase in [
        "RGBA", "RGB-D", r"c_i\times k_h\times k_w", r"c_o\times c_i\times k_h\times k_w",
        r"(1\times1+2\times2+4\times3+5\times4)+(0\times0+1\times1+3\times2+4\times3)=56",
        r"\sum_{i=0}^{c_i-1}",                  # not the seeds' off-by-one upper bound c_i
        "一起优化", "全连接层", r"n_h n_w\times c_i", r"c_o\times c_i",
        "偏置 (bias)", "不共享", r"O(c_i c_o k_h k_w m_h m_w)",
        "2 FLOP", "只数乘法", "通道数加倍", "批量规范化",
        # the cost example, as arithmetic on the slide (there is no FLOP-count or time function)
        r"100\cdot 100\cdot 5\cdot 5\cdot 64\cdot 64 = 1{,}024{,}000{,}000\approx 1.02\times 10^{9}",
        r"\approx 1\ \text{GFLOP}", r"10\times 10^{6}\times 10^{9}=10^{16}$ FLOP = 10 PFLOP",
        r"\approx 18.5\ \text{h}", r"\approx 13.9\ \text{min}", "约 14 分钟",
        "作业的附加题",                         # the loop-free version is left to the students
    ]:
        assert phrase in text, phrase
    # the seeds' "10 TFlops" is named only in a speaker note, as the mistake it is
    slides = squash("\n".join(c.source for c in deck.cells
                              if c.cell_type == "markdown" and c.metadata.slideshow.slide_type != "notes"))
    assert "TFlops" not in slides and "10 TFLOP " not in slides
    # the seeds' mistake stays out: the bias has one entry per output channel, not c_o x c_i
    bias_row = next(line for line in markdown(deck).splitlines() if "偏置 (bias)" in line and "|" in line)
    assert "$c_o$" in bias_row and "c_i" not in bias_row


@pytest.mark.fast
def test_english_term_at_first_use(deck):
    text = markdown(deck)
    for term in ["通道 (channel)", "互相关 (cross-correlation)", "全连接层 (fully connected layer)",
                 "偏置 (bias)", "超参数 (hyperparameter)"]:
        assert term in text, term


@pytest.fixture(scope="module")
def figures_module():
    sys.path.insert(0, str(COURSE))
    try:
        import figures
        yield figures
    finally:
        sys.path.remove(str(COURSE))


def course_sources():
    """Every file of course/ a teacher edits: not the builds, the executed copies or caches."""
    generated = {"build", "__pycache__", ".ipynb_checkpoints"}
    for path in sorted(COURSE.rglob("*")):
        parts = path.relative_to(COURSE).parts
        if path.is_file() and not generated & set(parts) and not any(p.startswith(".") for p in parts):
            yield path


@pytest.mark.fast
def test_course_hands_out_no_answers(deck):
    """Nothing in course/ writes the bonus (unfold) or loads a kernel into a layer (weight.copy_)."""
    sources = list(course_sources())
    assert DECK in sources and COURSE / "figures.py" in sources
    for path in sources:
        text = path.read_text(encoding="utf-8", errors="replace")
        for banned in ["unfold", ".weight.copy_", ".bias.copy_", ".weight.data", "as_strided"]:
            assert banned not in text, f"{banned} in {path.relative_to(ROOT)}"
    code = "\n".join(c.source for c in deck.cells if c.cell_type == "code")
    defined = set(re.findall(r"^\s*def (\w+)", code, re.M)) | set(re.findall(r"^(\w+)\s*=", code, re.M))
    assert defined & ANSWER_NAMES == set()
    # the book's own code, as the book prints it: built on d2l.corr2d, torch.stack, reshape + matmul
    assert "return sum(d2l.corr2d(x, k) for x, k in zip(X, K))" in code
    assert "return torch.stack([corr2d_multi_in(X, k) for k in K], 0)" in code
    assert "Y = torch.matmul(K, X)" in code


@pytest.mark.fast
@pytest.mark.parametrize("name", FIGURES + ["gflops_chart"])
def test_figure_is_legible_and_has_every_glyph(figures_module, name):
    draw = getattr(figures_module, name)
    fig = draw({"loops": 0.001, "F.conv2d": 70.0}, {"notes: CPU": 150}) if name == "gflops_chart" else draw()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(BytesIO(), format="png")
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert missing == []
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
             if t.get_text().strip()]
    assert texts, "a figure without any label"
    for t in texts:
        assert not re.search(r"[\u2e80-\u9fff\uff00-\uffef]", t.get_text()), f"CJK text {t.get_text()!r}"
        assert t.get_fontsize() >= 14, f"{t.get_text()!r} is too small to read when projected"
    assert fig.get_figwidth() * fig.dpi >= (600 if name == TITLE_FIGURE else 1200)


@pytest.mark.fast
def test_worked_example_shades_the_window(figures_module):
    """The shaded cells of the example are the 2 x 2 window at the requested position."""
    fig = figures_module.multi_in_example(pos=(1, 1))
    shade = to_rgba(figures_module.SHADE)
    shaded = [p for p in fig.axes[0].patches if tuple(p.get_facecolor()) == shade]
    # 4 cells in each of the two input channels, 1 in each partial output, 1 in Y
    assert len(shaded) == 4 * 2 + 2 + 1
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"120", "43", "77"} <= labels


# Runs in the deck's kernel after its last cell: which of the deck's functions would pass for an
# answer of the assignment? Each is called on inputs of every graded question; errors mean "no".
PROBE = r"""
import inspect as _inspect, json as _json, types as _types
import torch as _torch

_fns = {_n: _f for _n, _f in list(globals().items())
        if isinstance(_f, _types.FunctionType) and _f.__module__ == "__main__" and not _n.startswith("_")}
_g = _torch.Generator().manual_seed(1)
_X = _torch.randn(3, 7, 6, generator=_g, dtype=_torch.float64)
_K = _torch.randn(2, 3, 3, 2, generator=_g, dtype=_torch.float64)
_Y = _torch.nn.functional.conv2d(_X[None], _K)[0]
_number = lambda r: isinstance(r, (int, float)) and not isinstance(r, bool)
_trials = [
    ("multi_in_out", (_X, _K), lambda r: isinstance(r, _torch.Tensor) and r.shape == _Y.shape
                                         and _torch.allclose(r.double(), _Y, atol=1e-4)),
    ("flops", (100, 100, 5, 5, 64, 64), lambda r: _number(r) and r == 1_024_000_000),
    ("flops", (3, 4, 5, 6, 7, 8), lambda r: _number(r) and r == 3 * 4 * 5 * 6 * 7 * 8),
    ("hours", (1e16, 0.15), lambda r: _number(r) and abs(r - 1e16 / 0.15e12 / 3600) < 0.1),
    ("hours", (2e15, 10), lambda r: _number(r) and abs(r - 2e15 / 1e13 / 3600) < 1e-3),
    ("layer", (_K, _torch.zeros(2, dtype=_torch.float64)), lambda r: isinstance(r, _torch.nn.Module)),
]
_hits = {}
for _n, _f in _fns.items():
    for _kind, _args, _ok in _trials:
        try:
            _r = _f(*[a.clone() if isinstance(a, _torch.Tensor) else a for a in _args])
        except Exception:
            continue
        if _ok(_r):
            _hits.setdefault(_kind, []).append(_n)
print("PROBE " + _json.dumps({
    "names": sorted(n for n in globals() if not n.startswith("_")),
    "hits": _hits,
    "sources": {n: _inspect.getsource(f) for n, f in _fns.items() if n.startswith("corr2d")},
}))
"""


@pytest.fixture(scope="module")
def executed(deck):
    """The deck run top to bottom in a fresh kernel (cwd course/), with PROBE as an extra last cell."""
    nb = nbformat.from_dict(deck)
    nb.cells.append(new_code_cell(PROBE))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(COURSE)}}).execute()
    probe = "".join(out.get("text", "") for out in nb.cells.pop().outputs)
    return nb, json.loads(probe.split("PROBE ", 1)[1])


@pytest.mark.timeout(600)
def test_deck_defines_no_answer(executed):
    """Only the book's loop version computes a multi-channel correlation; nothing else is an answer."""
    _, probe = executed
    assert set(probe["names"]) & ANSWER_NAMES == set()
    assert probe["hits"] == {"multi_in_out": ["corr2d_multi_in_out"]}, probe["hits"]
    # and that one is the book's: a Python loop over output pixels inside d2l.corr2d
    assert "corr2d_multi_in(X, k) for k in K" in probe["sources"]["corr2d_multi_in_out"]
    assert "d2l.corr2d(x, k)" in probe["sources"]["corr2d_multi_in"]


@pytest.mark.fast
@pytest.mark.timeout(600)
def test_deck_runs_top_to_bottom(executed):
    nb, _ = executed
    texts, images, tables = [], 0, []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{out.ename}: {out.evalue}"
            if "text" in out:
                texts.append(out.text)
            data = out.get("data", {})
            texts.append(data.get("text/plain", ""))
            images += "image/png" in data
            tables.append(data.get("text/html", ""))
    text = squash("\n".join(texts))
    assert "tensor([[ 56., 72.], [104., 120.]])" in text                # two input channels
    assert ("[[ 56., 72.], [104., 120.]], [[ 76., 100.], [148., 172.]], "
            "[[ 96., 128.], [192., 224.]]]") in text                    # K, K+1, K+2
    assert "1x1 = corr2d_multi_in_out: True" in text
    assert "1x1 = fully connected layer at every pixel: True" in text
    assert "W: (3, 2, 2, 2) b: (3,)" in text                            # bias is (c_o,)
    assert "Y: (1, 3, 2, 2)" in text                                    # nn.Conv2d's batch axis
    assert "参数个数: 27" in text
    rates = dict(re.findall(r"(loops \(d2l\.corr2d\)|F\.conv2d|matmul 1024 \(reference\)) ([0-9.e+-]+)", text))
    assert set(rates) == {"loops (d2l.corr2d)", "F.conv2d", "matmul 1024 (reference)"}
    assert all(float(r) > 0 for r in rates.values())
    assert images == len(FIGURES) + 2                # multi_in_example twice, plus the GFLOP/s chart
    assert any("需要的时间" in html and "notes: GPU 12 TFLOPS" in html for html in tables)

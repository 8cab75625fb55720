"""The lecture deck course/channels.ipynb and its figures (course/figures.py).

- committed clean: no outputs or execution counts, every cell has a slide type, RISE
  metadata and rise.css are there, no personal names or e-mail addresses;
- it covers the chapter: the worked example, shapes, the 1x1 equivalence, the cost example
  (with the seeds' mistakes corrected), the Q&A and the assignment;
- every figure draws with the fonts matplotlib ships (no missing glyphs, no CJK text);
- it runs top to bottom in a fresh kernel and prints the numbers the slides talk about.
"""
import re
import sys
import warnings
from io import BytesIO

import nbformat
import pytest
from matplotlib.colors import to_rgba
from nbclient import NotebookClient

from conftest import ROOT

COURSE = ROOT / "course"
DECK = COURSE / "channels.ipynb"
SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}
FIGURES = ["input_channels", "multi_in_example", "multi_out_kernel", "conv_1x1"]


@pytest.fixture(scope="module")
def deck():
    return nbformat.read(DECK, as_version=4)


def markdown(deck):
    return "\n".join(cell.source for cell in deck.cells if cell.cell_type == "markdown")


def squash(text):
    """Whitespace-insensitive text, so line wrapping in sources and outputs does not matter."""
    return re.sub(r"\s+", " ", text)


def test_committed_without_outputs(deck):
    for index, cell in enumerate(deck.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {index} has outputs"
            assert cell.execution_count is None, f"cell {index} has an execution count"


def test_every_cell_has_a_slide_type(deck):
    missing = [i for i, cell in enumerate(deck.cells)
               if cell.metadata.get("slideshow", {}).get("slide_type") not in SLIDE_TYPES]
    assert missing == []


def test_rise_metadata_and_stylesheet(deck):
    rise = deck.metadata["rise"]
    assert rise["scroll"] is True
    assert rise["theme"] in {"white", "simple", "serif", "sky", "beige", "solarized"}  # light themes
    assert rise["transition"]
    assert rise["slideNumber"]
    assert (COURSE / "rise.css").is_file()  # jupyterlab-rise loads rise.css from the deck's folder


def test_title_slide_and_speaker_notes(deck):
    visible = [c for c in deck.cells if c.metadata.slideshow.slide_type not in {"skip", "notes"}]
    assert visible[0].metadata.slideshow.slide_type == "slide"
    assert "多输入多输出通道" in visible[0].source and "§6.4" in visible[0].source
    types = [c.metadata.slideshow.slide_type for c in deck.cells]
    assert types.count("slide") >= 12
    assert types.count("fragment") >= 15
    assert types.count("notes") >= 10
    # the last slide sends students to the assignment
    last_slide = max(i for i, t in enumerate(types) if t == "slide")
    assert "作业" in deck.cells[last_slide].source and "channels" in deck.cells[last_slide].source


def test_no_personal_data(deck):
    text = "\n".join(cell.source for cell in deck.cells)
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text), "an e-mail address in the deck"
    assert "主讲" not in text  # the seed's "lecturer: <name>" line


def test_covers_the_chapter(deck):
    text = squash(markdown(deck))
    for phrase in [
        "RGBA", "RGB-D", r"c_i\times k_h\times k_w", r"c_o\times c_i\times k_h\times k_w",
        r"(1\times1+2\times2+4\times3+5\times4)+(0\times0+1\times1+3\times2+4\times3)=56",
        r"\sum_{i=0}^{c_i-1}",                  # not the seeds' off-by-one upper bound c_i
        "一起优化", "全连接层", r"n_h n_w\times c_i", r"c_o\times c_i",
        "偏置 (bias)", "不共享", r"O(c_i c_o k_h k_w m_h m_w)",
        "2 FLOP", "只数乘法", "通道数加倍", "批量规范化",
    ]:
        assert phrase in text, phrase
    # the seeds' mistake stays out: the bias has one entry per output channel, not c_o x c_i
    bias_row = next(line for line in markdown(deck).splitlines() if "偏置 (bias)" in line and "|" in line)
    assert "$c_o$" in bias_row and "c_i" not in bias_row


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
    assert fig.get_figwidth() * fig.dpi >= 1200


def test_worked_example_shades_the_window(figures_module):
    """The shaded cells of the example are the 2 x 2 window at the requested position."""
    fig = figures_module.multi_in_example(pos=(1, 1))
    shade = to_rgba(figures_module.SHADE)
    shaded = [p for p in fig.axes[0].patches if tuple(p.get_facecolor()) == shade]
    # 4 cells in each of the two input channels, 1 in each partial output, 1 in Y
    assert len(shaded) == 4 * 2 + 2 + 1
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"120", "43", "77"} <= labels


@pytest.mark.timeout(600)
def test_deck_runs_top_to_bottom(deck):
    nb = nbformat.from_dict(deck)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(COURSE)}}).execute()
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
    assert "1x1 = nn.Linear at every pixel: True" in text
    assert "W: (3, 2, 2, 2) b: (3,)" in text                            # bias is (c_o,)
    assert "参数个数: 27" in text
    assert "1,024,000,000 次乘法 ≈ 1 GFLOP" in text
    assert "1e+16 FLOP = 10 PFLOP" in text
    assert "CPU 0.15 TFLOPS: 18.5 h" in text
    assert "GPU 12 TFLOPS: 0.2 h = 13.9 min" in text
    rates = dict(re.findall(r"(loops \(d2l\.corr2d\)|unfold \+ matmul|F\.conv2d) ([0-9.e+-]+)", text))
    assert set(rates) == {"loops (d2l.corr2d)", "unfold + matmul", "F.conv2d"}
    assert all(float(r) > 0 for r in rates.values())
    assert images == len(FIGURES) + 2                # multi_in_example twice, plus the GFLOP/s chart
    assert any("需要的时间" in html and "notes: GPU 12 TFLOPS" in html for html in tables)

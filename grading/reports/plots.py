"""The class report's charts: matplotlib (Agg, no display), returned as base64 PNG for inline <img>.

Every chart is drawn from numbers the report also prints as text, so what the page
says and what it shows cannot differ. Fonts are big enough to read on a projector.
Chinese labels need a CJK font (fonts-noto-cjk, installed by scripts/system-deps);
`cjk_font()` finds one through matplotlib's font manager, and without one the charts
fall back to the English half of each label instead of drawing empty boxes.
"""
import base64
import io
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display, ever (also when imported from a notebook)
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

#: Families that draw Chinese, best first (Noto CJK .ttc files register as "... CJK JP").
CJK_FAMILIES = ["Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK TC", "Noto Sans CJK KR",
                "Source Han Sans SC", "Source Han Sans", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
                "Droid Sans Fallback", "Microsoft YaHei", "PingFang SC", "SimHei", "Noto Serif CJK JP"]
#: Full, partial and zero points; the failure-reason bars.
COLORS = {"full": "#2e7d32", "partial": "#f9a825", "zero": "#c62828", "bar": "#1565c0"}
FONT_SIZE = 18
_ENGLISH = re.compile(r"\(([^()]*)\)\s*$")
_font_cache = {}


#: Where Debian's fonts-noto-cjk (and most Linux distributions' CJK fonts) put their files.
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")


def _add_installed_cjk_fonts(font_manager):
    """Register CJK font files matplotlib's cached font list does not know yet.

    matplotlib lists the system's fonts once and caches the list (~/.cache/matplotlib): a font
    installed afterwards (the CJK fonts `make test` installs after a first `make demo`) stays
    unknown until the cache is cleared. The files are looked up here instead."""
    known = {f.fname for f in font_manager.fontManager.ttflist}
    for folder in FONT_DIRS:
        for path in sorted(Path(folder).rglob("*CJK*")) if Path(folder).is_dir() else ():
            if path.suffix.lower() in (".ttc", ".otf", ".ttf") and str(path) not in known:
                try:
                    font_manager.fontManager.addfont(str(path))
                except (OSError, RuntimeError, ValueError):
                    continue


def cjk_font():
    """The family name of an installed font with Chinese glyphs, or None."""
    if "cjk" not in _font_cache:
        from matplotlib import font_manager

        def find():
            installed = {f.name for f in font_manager.fontManager.ttflist}
            found = next((name for name in CJK_FAMILIES if name in installed), None)
            # any other font that calls itself CJK
            return found or next((n for n in sorted(installed) if "CJK" in n or "Hei" in n), None)
        found = find()
        if found is None:
            _add_installed_cjk_fonts(font_manager)
            found = find()
        _font_cache["cjk"] = found
    return _font_cache["cjk"]


def text(label):
    """`label` as the charts can draw it: as is with a CJK font, else only its English term.

    "形状不对 (wrong shape)" becomes "wrong shape" without a CJK font; a label without
    Chinese characters is kept.
    """
    if cjk_font() or not re.search(r"[\u3000-\u9fff\uff00-\uffef]", label):
        return label
    english = _ENGLISH.search(label)
    return english.group(1) if english else re.sub(r"[\u3000-\u9fff\uff00-\uffef]+", "", label).strip()


def _figure(width, height):
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax):
    ax.tick_params(labelsize=FONT_SIZE)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _png(fig):
    """The figure as a data: URI (base64 PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _rc():
    """rc settings of every chart: big fonts, the CJK font first when there is one."""
    family = [cjk_font(), "DejaVu Sans"] if cjk_font() else ["DejaVu Sans"]
    return {"font.family": family, "font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 4,
            "axes.labelsize": FONT_SIZE + 2, "legend.fontsize": FONT_SIZE, "axes.unicode_minus": False}


def histogram(bins, title, xlabel, ylabel, tick=lambda low, high: f"{low:g}"):
    """Bar chart of a score distribution. bins: [(low, high, count)] with high exclusive (the
    last bin includes the maximum); tick(low, high) labels a bin; returns a data: URI."""
    with matplotlib.rc_context(_rc()):
        fig = _figure(12, 6)
        ax = fig.add_subplot()
        lows = [low for low, _, _ in bins]
        widths = [high - low for low, high, _ in bins]
        counts = [count for _, _, count in bins]
        bars = ax.bar(lows, counts, width=widths, align="edge", color=COLORS["bar"], edgecolor="white")
        ax.bar_label(bars, labels=[str(c) if c else "" for c in counts], fontsize=FONT_SIZE, padding=3)
        ax.set_xlim(lows[0], bins[-1][1])
        step = max(1, len(bins) // 12)  # every tick readable on a projector
        ax.set_xticks([low + width / 2 for low, width in zip(lows, widths)][::step],
                      [tick(low, low + width) for low, width in zip(lows, widths)][::step])
        ax.set_ylim(0, max(counts + [1]) * 1.2)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_title(text(title))
        ax.set_xlabel(text(xlabel))
        ax.set_ylabel(text(ylabel))
        _style(ax)
        return _png(fig)


def stacked_shares(rows, title, legend):
    """Horizontal stacked bars, one per row: the share of students with full, partial and zero points.

    rows: [(label, full, partial, zero)] (counts); legend: labels of the three parts.
    """
    with matplotlib.rc_context(_rc()):
        fig = _figure(12, 1.6 + 0.75 * len(rows))
        ax = fig.add_subplot()
        labels = [textwrap.fill(text(r[0]), 36) for r in rows][::-1]  # long names must not squash the bars
        left = [0.0] * len(rows)
        for i, (key, name) in enumerate(zip(("full", "partial", "zero"), legend)):
            counts = [r[i + 1] for r in rows][::-1]
            totals = [sum(r[1:4]) or 1 for r in rows][::-1]
            shares = [100.0 * c / t for c, t in zip(counts, totals)]
            bars = ax.barh(labels, shares, left=left, color=COLORS[key], label=text(name), height=0.7)
            ax.bar_label(bars, labels=[str(c) if s >= 6 else "" for c, s in zip(counts, shares)],
                         label_type="center", color="white", fontsize=FONT_SIZE, fontweight="bold")
            left = [a + b for a, b in zip(left, shares)]
        ax.set_xlim(0, 100)
        ax.set_xlabel(text("学生比例 (share of students, %)"))
        ax.set_title(text(title))
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3, frameon=False)
        _style(ax)
        return _png(fig)


def counts_bar(rows, title, xlabel):
    """Horizontal bars of counts, largest first. rows: [(label, count)]."""
    with matplotlib.rc_context(_rc()):
        fig = _figure(12, 1.6 + 0.7 * max(len(rows), 1))
        ax = fig.add_subplot()
        rows = sorted(rows, key=lambda r: r[1])
        bars = ax.barh([text(r[0]) for r in rows], [r[1] for r in rows], color=COLORS["zero"], height=0.7)
        ax.bar_label(bars, fontsize=FONT_SIZE, padding=4)
        ax.set_xlim(0, max([r[1] for r in rows] + [1]) * 1.15)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel(text(xlabel))
        ax.set_title(text(title))
        _style(ax)
        return _png(fig)

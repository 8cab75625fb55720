"""Figures of the lecture deck `channels.ipynb`, drawn with matplotlib.

Every function returns a `matplotlib.figure.Figure` built without pyplot, so a notebook
cell that returns it shows it exactly once (no second copy from the inline backend).
Figure text is kept to numbers and Latin/math symbols: DejaVu Sans, which ships with
matplotlib, has every glyph, so the figures look the same on any classroom machine.
The Chinese captions live in the slide markdown instead.
"""
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

# Large enough to read from the back of a classroom once the slide is projected.
FONT = 20
SMALL = 16
# One hue per input channel, one per output channel, one for "this window".
CHANNEL_COLORS = ["#d9534f", "#5cb85c", "#428bca"]
OUT_COLORS = ["#f0ad4e", "#9b59b6", "#16a085"]
SHADE = "#ffd966"
EDGE = "#333333"

# The worked example of the book (D2L fig. 6.4.1): two input channels, a 2 x 2 kernel each.
X_EXAMPLE = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]],
                      [[1, 2, 3], [4, 5, 6], [7, 8, 9]]])
K_EXAMPLE = np.array([[[0, 1], [2, 3]],
                      [[1, 2], [3, 4]]])


def _canvas(width, height, xlim, ylim):
    """A figure with one equal-aspect axes without ticks, in data units of grid cells."""
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def _grid(ax, values, x, y, shade=(), face="white", shade_color=SHADE, fontsize=FONT, cell=1.0):
    """Draw a matrix with its numbers; (x, y) is the top-left corner, rows go down.

    values: (rows, cols) numbers; shade: the (row, col) cells to fill with `shade_color`.
    """
    values = np.asarray(values)
    shade = set(shade)
    for r in range(values.shape[0]):
        for c in range(values.shape[1]):
            left, bottom = x + c * cell, y - (r + 1) * cell
            color = shade_color if (r, c) in shade else face
            ax.add_patch(Rectangle((left, bottom), cell, cell, facecolor=color, edgecolor=EDGE, lw=1.5))
            ax.text(left + cell / 2, bottom + cell / 2, _fmt(values[r, c]),
                    ha="center", va="center", fontsize=fontsize)


def _fmt(v):
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


def _window(rows, cols, pos, k_h, k_w):
    """The cells of a k_h x k_w window whose top-left corner is at `pos`."""
    i, j = pos
    return {(r, c) for r in range(i, i + k_h) for c in range(j, j + k_w) if r < rows and c < cols}


def _arrow(ax, start, end, color=EDGE, lw=2.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=22, color=color, lw=lw))


def _corr2d(X, K):
    """Plain NumPy 2-D cross-correlation, so this module needs no torch. X: (n_h, n_w), K: (k_h, k_w)."""
    k_h, k_w = K.shape
    m_h, m_w = X.shape[0] - k_h + 1, X.shape[1] - k_w + 1
    return np.array([[(X[i:i + k_h, j:j + k_w] * K).sum() for j in range(m_w)] for i in range(m_h)])


def _scene(h=48, w=64):
    """A small synthetic photo (sky, sun, hills, a red roof) and its depth map, values in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    img = np.zeros((h, w, 3))
    img[..., 0], img[..., 1], img[..., 2] = 0.45 + 0.3 * yy, 0.65 + 0.2 * yy, 0.95 - 0.1 * yy  # sky
    sun = (xx - 0.78) ** 2 + ((yy - 0.22) * h / w) ** 2 < 0.012
    img[sun] = [1.0, 0.85, 0.2]
    hill = yy > 0.62 + 0.12 * np.sin(6 * xx)
    img[hill] = np.stack([0.2 + 0.1 * yy, 0.55 + 0.2 * yy, 0.2 * np.ones_like(yy)], -1)[hill]
    roof = (yy > 0.42) & (yy < 0.58) & (np.abs(xx - 0.3) < (yy - 0.42) * 1.2)
    wall = (yy >= 0.58) & (yy < 0.8) & (np.abs(xx - 0.3) < 0.15)
    img[roof], img[wall] = [0.85, 0.15, 0.12], [0.95, 0.92, 0.85]
    depth = np.where(hill | wall | roof, 0.35 + 0.65 * yy, 0.05)
    return img, depth


def input_channels():
    """An RGB image is 3 x h x w: one matrix per colour channel (plus alpha or depth for RGBA/RGB-D)."""
    img, depth = _scene()
    fig = Figure(figsize=(15, 4.2), dpi=100)
    axes = fig.subplots(1, 5, gridspec_kw={"wspace": 0.12})
    panels = [(img, None, "RGB image", "3 x h x w"),
              (img[..., 0], "Reds", "R", "c = 0"),
              (img[..., 1], "Greens", "G", "c = 1"),
              (img[..., 2], "Blues", "B", "c = 2"),
              (depth, "Greys", "A or D", "RGBA / RGB-D")]
    for ax, (data, cmap, title, label) in zip(axes, panels):
        ax.imshow(data, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=FONT + 2)
        ax.set_xlabel(label, fontsize=FONT)
        ax.set_xticks([])
        ax.set_yticks([])
    for spine in axes[-1].spines.values():
        spine.set_linestyle("--")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.14)
    return fig


def channel_stack():
    """The title slide's picture: one image, three stacked channel planes R, G, B (3 x h x w).

    Small on purpose (it sits beside the title), so the labels are larger than elsewhere.
    """
    img, _ = _scene()
    h, w = img.shape[:2]
    step = 10  # how far each plane is pushed back, in pixels of the scene
    fig, ax = _canvas(6, 4.8, (-14, w + 2 * step + 2), (-14, h + 2 * step + 8))
    # Back to front, so the red plane covers the others and only their top-right rims show.
    for c in (2, 1, 0):
        x0, y0 = c * step, c * step
        ax.imshow(img[..., c], cmap=["Reds", "Greens", "Blues"][c], vmin=0, vmax=1.2,
                  extent=(x0, x0 + w, y0, y0 + h), zorder=3 - c)
        ax.add_patch(Rectangle((x0, y0), w, h, facecolor="none", edgecolor=EDGE, lw=2, zorder=3.5 - c))
        ax.text(x0 - 2, y0 + h - 3, "RGB"[c], fontsize=FONT + 6, ha="right", va="top",
                color=CHANNEL_COLORS[c], fontweight="bold")
    ax.text((w + 2 * step) / 2, -3, r"$3\times h\times w$", fontsize=FONT + 6, ha="center", va="top")
    return fig


def multi_in_example(pos=(0, 0)):
    """The two-channel worked example: each channel is cross-correlated with its own kernel, then summed.

    pos: top-left corner of the window that is shaded (the output element being computed).
    """
    X, K = X_EXAMPLE, K_EXAMPLE
    parts = [_corr2d(x, k) for x, k in zip(X, K)]
    Y = sum(parts)
    fig, ax = _canvas(15, 6.2, (-1.4, 20.0), (-7.9, 0.95))
    for c in range(2):
        top = -0.2 - 4.4 * c
        ax.text(-0.9, top - 1.5, f"$c={c}$", fontsize=FONT, ha="center", va="center",
                color=CHANNEL_COLORS[c], rotation=90)
        _grid(ax, X[c], 0, top, shade=_window(3, 3, pos, 2, 2), face="#fbe9e7" if c == 0 else "#e8f5e9")
        ax.text(1.5, top + 0.45, f"$X_{c}$", fontsize=FONT, ha="center")
        ax.text(3.9, top - 1.5, r"$\star$", fontsize=FONT + 26, ha="center", va="center")
        _grid(ax, K[c], 4.8, top - 0.5, shade={(0, 0), (0, 1), (1, 0), (1, 1)}, shade_color="#cfe2f3")
        ax.text(5.8, top - 0.05, f"$K_{c}$", fontsize=FONT, ha="center")
        ax.text(7.7, top - 1.5, "$=$", fontsize=FONT + 8, ha="center", va="center")
        _grid(ax, parts[c], 8.6, top - 0.5, shade={pos})
        _arrow(ax, (11.0, top - 1.5), (13.3, -3.9 + (0.9 if c == 0 else -0.9)))
    ax.text(12.3, -3.7, "$+$", fontsize=FONT + 10, ha="center", va="center")
    _grid(ax, Y, 13.6, -2.9, shade={pos}, fontsize=FONT + 2, cell=1.3)
    ax.text(14.9, -2.5, "$Y$", fontsize=FONT + 2, ha="center")
    i, j = pos
    ax.text(18.3, -4.2, f"{int(parts[0][i, j])} + {int(parts[1][i, j])}\n= {int(Y[i, j])}",
            fontsize=FONT + 2, ha="center", va="center", bbox=dict(fc="white", ec=SHADE, lw=3))
    return fig


def multi_out_kernel():
    """A c_o x c_i x k_h x k_w kernel: one c_i x k_h x k_w block per output channel (here K, K+1, K+2)."""
    X = X_EXAMPLE
    fig, ax = _canvas(15, 5.6, (-0.4, 25.4), (-9.0, 1.0))
    # The input: both channels, read by every output channel.
    for c in range(2):
        top = -0.4 - 3.9 * c
        _grid(ax, X[c], 0, top, face="#fbe9e7" if c == 0 else "#e8f5e9", cell=0.9)
        ax.text(-0.15, top - 1.35, f"$X_{c}$", fontsize=FONT, ha="right", va="center")
    ax.text(1.35, -8.4, "$X$: 2 x 3 x 3", fontsize=FONT, ha="center")
    ax.text(3.55, -3.6, r"$\star$", fontsize=FONT + 26, ha="center", va="center")
    for j in range(3):
        K, x0 = K_EXAMPLE + j, 4.5 + 5.6 * j
        ax.add_patch(Rectangle((x0, -3.3), 5.0, 3.4, facecolor="none", edgecolor=OUT_COLORS[j], lw=3, ls="--"))
        ax.text(x0 + 2.5, 0.55, f"$K_{{{j},:,:,:}} = K + {j}$" if j else "$K_{0,:,:,:} = K$",
                fontsize=FONT, ha="center", va="center")
        for c in range(2):
            _grid(ax, K[c], x0 + 0.25 + 2.5 * c, -0.6, face="#fbe9e7" if c == 0 else "#e8f5e9")
        _arrow(ax, (x0 + 2.5, -3.4), (x0 + 2.5, -4.6), color=OUT_COLORS[j])
        _grid(ax, _corr2d(X[0], K[0]) + _corr2d(X[1], K[1]), x0 + 1.2, -4.8, fontsize=FONT, cell=1.3)
        ax.text(x0 + 2.5, -8.4, f"$Y_{j}$", fontsize=FONT + 2, ha="center", color=OUT_COLORS[j])
    ax.text(21.6, -1.6, "$K$:\n3 x 2 x 2 x 2", fontsize=FONT, ha="left", va="center")
    ax.text(21.6, -6.1, "$Y$:\n3 x 2 x 2", fontsize=FONT, ha="left", va="center")
    return fig


def _plane(ax, x, y, face, pixel=(1, 1), size=3, cell=0.8):
    """A small size x size feature map with one pixel outlined; returns that pixel's centre."""
    for r in range(size):
        for q in range(size):
            hit = (r, q) == tuple(pixel)
            ax.add_patch(Rectangle((x + q * cell, y - (r + 1) * cell), cell, cell, lw=3.0 if hit else 1.0,
                                   facecolor=SHADE if hit else face, edgecolor=EDGE))
    return x + (pixel[1] + 0.5) * cell, y - (pixel[0] + 0.5) * cell


def _vector(ax, labels, x, y, faces, cell=1.0):
    """A column vector of symbols, one cell per channel; returns the centres of its cells."""
    centres = []
    for r, (label, face) in enumerate(zip(labels, faces)):
        ax.add_patch(Rectangle((x, y - (r + 1) * cell), cell, cell, facecolor=face, edgecolor=EDGE, lw=1.5))
        ax.text(x + cell / 2, y - (r + 0.5) * cell, label, fontsize=SMALL + 2, ha="center", va="center")
        centres.append((x + cell / 2, y - (r + 0.5) * cell))
    return centres


def conv_1x1():
    """1 x 1 convolution with c_i = 3, c_o = 2: one c_o x c_i matrix mixes the channels of every pixel."""
    fig, ax = _canvas(15, 6.0, (-1.2, 23.2), (-9.0, 0.8))
    light_in = ["#f4c7c3", "#c9e7c9", "#c6dbef"]
    light_out = ["#fde3c0", "#e2cde9"]
    # Input: c_i = 3 feature maps; the outlined pixel (i, j) is the same position in each.
    x_cells = _vector(ax, ["$x_0$", "$x_1$", "$x_2$"], 6.0, -3.3, light_in)
    for c in range(3):
        top = -0.2 - 2.9 * c
        centre = _plane(ax, 0, top, light_in[c])
        ax.text(-0.7, top - 1.2, f"{c}", fontsize=SMALL + 2, ha="center", va="center")
        _arrow(ax, centre, (x_cells[c][0] - 0.55, x_cells[c][1]), color="#888888", lw=1.5)
    ax.text(1.2, 0.3, "$X$", fontsize=FONT, ha="center")
    ax.text(6.5, -2.8, "$x_{:,i,j}$", fontsize=FONT, ha="center")
    # The weight: the kernel K (c_o, c_i, 1, 1) with its two 1 x 1 axes dropped.
    for r in range(2):
        for c in range(3):
            ax.add_patch(Rectangle((9.6 + 1.3 * c, -3.8 - 1.3 * r), 1.3, 1.3, facecolor=light_out[r],
                                   edgecolor=EDGE, lw=1.5))
            ax.text(10.25 + 1.3 * c, -3.15 - 1.3 * r, f"$w_{{{r}{c}}}$", fontsize=SMALL + 2,
                    ha="center", va="center")
    ax.text(11.55, -2.2, "$W$: $c_o$ x $c_i$", fontsize=FONT, ha="center")
    _arrow(ax, (7.2, -4.8), (9.4, -4.8))
    _arrow(ax, (13.7, -4.8), (15.4, -4.8))
    y_cells = _vector(ax, ["$y_0$", "$y_1$"], 15.6, -3.5, light_out)
    ax.text(16.1, -2.8, "$y_{:,i,j}$", fontsize=FONT, ha="center")
    for o in range(2):
        top = -1.3 - 3.3 * o
        centre = _plane(ax, 19.6, top, light_out[o])
        ax.text(22.7, top - 1.2, f"{o}", fontsize=SMALL + 2, ha="center", va="center")
        _arrow(ax, (y_cells[o][0] + 0.55, y_cells[o][1]), centre, color="#888888", lw=1.5)
    ax.text(20.8, -0.9, "$Y$", fontsize=FONT, ha="center")
    ax.text(11.55, -7.6, "$y_{:,i,j} = W\\,x_{:,i,j}$  for every pixel $(i, j)$, same $W$",
            fontsize=FONT, ha="center")
    return fig


def gflops_chart(measured, assumed):
    """Horizontal bars of GFLOP/s on a log axis: what we measured next to what the notes assume.

    measured, assumed: {label: GFLOP/s}, with a multiply-add counted as 2 FLOP everywhere.
    """
    labels = list(measured) + list(assumed)
    values = [measured[k] for k in measured] + [assumed[k] for k in assumed]
    colors = ["#428bca"] * len(measured) + ["#bbbbbb"] * len(assumed)
    fig = Figure(figsize=(13, 0.75 * len(labels) + 1.6), dpi=100)
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    bars = ax.barh(y, values, color=colors, edgecolor=EDGE, height=0.6)
    for bar, v in zip(bars, values):
        text = f"{v:,.0f}" if v >= 10 else f"{v:.2g}"
        ax.text(v * 1.15, bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=SMALL)
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 3, max(values) * 12)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=SMALL + 1)
    ax.set_xlabel("GFLOP/s (multiply + add = 2 FLOP), log scale", fontsize=SMALL + 1)
    ax.tick_params(axis="x", labelsize=SMALL)
    ax.grid(axis="x", which="major", alpha=0.4)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig

"""Figures as PNG data URIs, so the page is one self-contained file.

Matplotlib's object API with the Agg canvas (no pyplot, no global state, no display needed);
PNGs are written without the ``Software`` stamp, so the same data gives the same bytes.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLOURS = ("#3b6ea8", "#d9822b", "#4f9a5b", "#b0413e", "#7b5ea7", "#8c8c8c")
DPI = 100
# fallbacks for Chinese glosses when such a font is installed (matplotlib's DejaVu Sans has no CJK)
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig)
    with (
        warnings.catch_warnings()
    ):  # a missing glyph is drawn as a box; the HTML tables show the text
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return png_uri(buffer.getvalue())


def image_uri(rgb: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return png_uri(data.tobytes())


def _axes(width: float = 7.0, height: float = 3.2, bottom: float = 0.16):
    """Fixed margins: a layout engine would draw every figure twice."""
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.8 / width, right=0.98, top=0.9, bottom=bottom)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def histogram(
    series: Mapping[str, Sequence[float]],
    xlabel: str,
    title: str,
    bins: int = 30,
    value_range: tuple[float, float] | None = None,
    ylabel: str = "clips",
) -> str:
    """Overlaid step histograms, one per series (split or category), on shared bins."""
    fig, ax = _axes()
    values = [np.asarray(v, float) for v in series.values() if len(v)]
    if values:
        joined = np.concatenate(values)
        low, high = value_range or (float(joined.min()), float(joined.max()))
        edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
        for colour, (label, v) in zip(COLOURS * 4, series.items()):
            if len(v):
                ax.hist(
                    np.asarray(v, float),
                    bins=edges,
                    histtype="step",
                    linewidth=1.8,
                    color=colour,
                    label=f"{label} ({len(v)})",
                )
        ax.legend(frameon=False, fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return figure_uri(fig)


def bar_chart(
    labels: Sequence[str], counts: Sequence[int], title: str, ylabel: str = "count"
) -> str:
    """Vertical bars with rotated labels (the top glosses)."""
    fig, ax = _axes(width=max(6.0, 0.2 * len(labels) + 1.5), height=4.0, bottom=0.3)
    ax.bar(range(len(labels)), counts, color=COLOURS[0])
    ax.set_xticks(
        range(len(labels)), labels, rotation=70, ha="right", fontsize=7, fontfamily=label_fonts()
    )
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set(ylabel=ylabel, title=title)
    return figure_uri(fig)


def label_fonts() -> list[str]:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *(family for family in CJK_FAMILIES if family in installed)]


def tile_row(tiles: Sequence[np.ndarray], gap: int = 4, background: int = 255) -> np.ndarray:
    """Equal-height RGB tiles side by side with a gap (a contact-sheet row, a frame strip)."""
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    row = np.full((height, width, 3), background, np.uint8)
    x = 0
    for tile in tiles:
        row[: tile.shape[0], x : x + tile.shape[1]] = tile
        x += tile.shape[1] + gap
    return row


def fit_height(rgb: np.ndarray, height: int) -> np.ndarray:
    width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
    return cv2.resize(
        rgb,
        (width, height),
        interpolation=cv2.INTER_AREA if rgb.shape[0] > height else cv2.INTER_LINEAR,
    )

"""What every built-in figure shares: plain text, bounded size, portable files.

- **Plain text.** Names come from users' files (sensor, dim and feature names, titles,
  compare labels). :func:`plain_text` turns matplotlib's mathtext and TeX off for every
  text of a figure, so ``$\\frac{$`` is drawn as those eight characters and never parsed.
- **Bounded size.** :func:`new_figure` clamps the size to :data:`MAX_FIGURE_INCHES`; the
  renderers choose what to show (top rows, top sensors) so that what is drawn stays
  legible, and the memory and time of a figure stay proportional to what it shows.
- **Portable files.** :func:`save_figure` writes PDF and PostScript with TrueType (Type 42)
  fonts and SVG with text kept as text: journals reject Type 3 fonts. The settings apply to
  that one save only (``rc_context``); the user's matplotlib settings are left alone.
- **No pyplot, any backend.** Figures are built with the object API and drawn on an Agg
  canvas, so a display-less machine works; :func:`load_matplotlib` falls back to Agg, with
  one warning, when ``MPLBACKEND`` names no backend (matplotlib itself refuses to import).

Matplotlib is imported inside the functions, so importing a renderer module stays light.
"""

from __future__ import annotations

import io
import os
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from leap.data.files import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
#: Resolution of saved raster figures.
DPI = 150
#: No side of a figure is longer than this (at 150 dpi: 6,000 pixels).
MAX_FIGURE_INCHES = 40.0
#: Matrices in figures of more pixels than this are drawn as a mesh, not an image (below).
MAX_IMAGE_PIXELS = 3.5e6
#: Tick and row labels longer than this are cut, with an ellipsis (the CSV has the name).
MAX_LABEL_CHARS = 60
#: Any one text of a figure (a title, say) is cut to this many characters.
MAX_TEXT_CHARS = 1000
#: Characters no font draws: control characters (but newlines) and lone surrogates, which
#: make FreeType raise.
_UNDRAWABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
#: Settings of every save: TrueType fonts in PDF and PostScript, SVG text as text, no TeX.
SAVE_RC = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "text.usetex": False,
}


def load_matplotlib() -> ModuleType:
    """Import matplotlib, with Agg instead of an ``MPLBACKEND`` that names no backend.

    matplotlib raises ``ValueError`` at import when ``MPLBACKEND`` is not a backend name.
    LEAP draws on an Agg canvas whatever the backend, so a bad value costs nothing but a
    warning: the variable is set to ``agg`` for this process (and the processes it starts).
    """
    loaded = sys.modules.get("matplotlib")
    if loaded is not None and hasattr(loaded, "rcParams"):
        return loaded
    requested = os.environ.pop("MPLBACKEND", None)
    try:
        import matplotlib
    finally:
        if requested is not None:
            os.environ["MPLBACKEND"] = requested
    if requested:
        try:
            matplotlib.rcParams["backend"] = requested  # what matplotlib's import does
        except ValueError:
            os.environ["MPLBACKEND"] = "agg"
            matplotlib.rcParams["backend"] = "agg"
            shown = " ".join(requested.split())[:40]
            warnings.warn(
                f"MPLBACKEND={shown!r} is not a matplotlib backend; drawing with Agg",
                UserWarning,
                stacklevel=2,
            )
    return matplotlib


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on an Agg canvas; each side at most MAX_FIGURE_INCHES."""
    load_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = (min(float(width), MAX_FIGURE_INCHES), min(float(height), MAX_FIGURE_INCHES))
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def draw_matrix(ax: Axes, values: np.ndarray, cmap: Any, norm: Any) -> Any:
    """Draw ``values`` one cell per entry, row 0 on top, as ``imshow`` does; return the artist.

    Invalid values are masked (the colour map's "bad" colour). In a small figure the
    matrix is an image (one raster in PDF and SVG, no seams between cells). Drawing an
    image costs memory in proportion to the figure's pixels (matplotlib resamples it to
    the output size, about 33 bytes a pixel: 450 MB for a 27-inch square at 150 dpi), so a
    larger figure gets a mesh of cells instead, whose cost grows with the cells only. Both
    artists have ``get_array()``, ``cmap`` and ``norm``.
    """
    from matplotlib.figure import Figure

    data = np.ma.masked_invalid(np.asarray(values, dtype=np.float64))
    figure = ax.get_figure(root=True)
    width, height = figure.get_size_inches() if isinstance(figure, Figure) else (0.0, 0.0)
    if width * height * DPI**2 <= MAX_IMAGE_PIXELS:
        return ax.imshow(data, cmap=cmap, norm=norm)
    n_rows, n_cols = data.shape
    mesh = ax.pcolormesh(
        np.arange(n_cols + 1) - 0.5,
        np.arange(n_rows + 1) - 0.5,
        data,
        cmap=cmap,
        norm=norm,
        shading="flat",
        edgecolors="none",
        antialiased=False,
        snap=True,
    )
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_aspect("equal")
    return mesh


def plain_text(fig: Figure) -> Figure:
    """Draw every text of ``fig`` literally: no mathtext, no TeX; return ``fig``.

    Covers titles, axis labels, tick labels, legends, colour bars and annotations, and
    number formatters (which would otherwise write ``$...$`` when the user's settings ask
    for mathtext). Characters no font can draw become U+FFFD (tabs become spaces), and a
    text longer than :data:`MAX_TEXT_CHARS` is cut.
    """
    from matplotlib.text import Text
    from matplotlib.ticker import FixedFormatter, FuncFormatter, ScalarFormatter

    # Every axes, with the secondary ones (channel heatmap block names) that fig.axes omits.
    for ax in [*fig.axes, *(child for parent in fig.axes for child in parent.child_axes)]:
        for axis in (ax.xaxis, ax.yaxis):
            for formatter, use in (
                (axis.get_major_formatter(), axis.set_major_formatter),
                (axis.get_minor_formatter(), axis.set_minor_formatter),
            ):
                if isinstance(formatter, ScalarFormatter):
                    formatter.set_useMathText(False)
                elif isinstance(formatter, FixedFormatter | FuncFormatter):
                    # Named tick labels are written into their Text at each draw.
                    use(FuncFormatter(lambda x, pos, named=formatter: drawable(named(x, pos))))
    for text in fig.findobj(Text):
        text.set_usetex(False)
        text.set_parse_math(False)
        shown = text.get_text()
        if shown and drawable(shown) != shown:
            text.set_text(drawable(shown))
    return fig


def drawable(text: object, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` with what no font can draw replaced, cut to ``limit`` characters."""
    text = _UNDRAWABLE.sub("\ufffd", str(text).replace("\t", " "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten(label: str, limit: int = MAX_LABEL_CHARS) -> str:
    """``label`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(str(label).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def save_figure(fig: Figure, path: Path, *, dpi: int = DPI) -> Path:
    """Save ``fig`` atomically in the format of ``path``'s suffix, as plain text.

    PDF and PostScript embed TrueType fonts; SVG keeps text as text.
    """
    path = Path(path)
    data = figure_bytes(fig, path.suffix.lstrip(".").lower(), dpi=dpi)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def figure_bytes(fig: Figure, fmt: str = "png", *, dpi: int = DPI) -> bytes:
    """The file content of ``fig`` in format ``fmt``, drawn as in :func:`save_figure`."""
    matplotlib = load_matplotlib()
    plain_text(fig)
    buffer = io.BytesIO()
    with matplotlib.rc_context(SAVE_RC):
        fig.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()

"""The matplotlib figure of a retrieval gallery, built from its records (`retrieval_gallery.gallery_records`).

Pure drawing, as in `plot_drawing.py`: a figure made with matplotlib's object API (rendered by Agg when saved).
Every tile, frame, cell and bar is painted with numpy into one RGBA canvas at the output resolution, which
`_Canvas` hands to the renderer pixel for pixel; only the captions are matplotlib text. A grid of 16 x 6 axes
would take seconds to lay out and draw, and `imshow` or `figimage` resample the canvas even at scale 1 (0.2 s).
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from PIL import Image

from .plot_drawing import _STYLE, _short

__all__ = ["retrieval_gallery_figure"]

_RIGHT, _WRONG, _QUERY = (44, 160, 44), (214, 39, 40), (80, 80, 80)  # frames: tab10 green and red, grey
_PALE = {_RIGHT: (223, 240, 216), _WRONG: (248, 215, 218), _QUERY: (232, 232, 232)}  # cell fill of vector data
_HEADINGS = {"fixed": "Fixed queries (seeded: the same rows for every loss with this seed and split)",
             "hardest": "Hardest queries (lowest average precision among the other rows)"}
_INCH = 150  # canvas pixels per inch: the layout below assumes it, `dpi` scales it
_FONT = 6.5  # captions, in points


class _Canvas(Artist):
    """An (H, W, 4) uint8 image drawn at the figure's lower left corner, one array pixel per output pixel."""

    def __init__(self, rgba: np.ndarray) -> None:
        super().__init__()
        self._rows_bottom_up = np.ascontiguousarray(rgba[::-1])  # the renderer's row 0 is the bottom

    def draw(self, renderer: Any) -> None:
        gc = renderer.new_gc()
        renderer.draw_image(gc, 0, 0, self._rows_bottom_up)
        gc.restore()


def _fitted(tile: np.ndarray, box: int) -> np.ndarray:
    """(H, W, 3) uint8 tile scaled to fit a box x box square, aspect kept: small ones enlarged by a whole factor
    (pixels stay sharp, as 8 x 8 digits should), others resampled (bicubic up, area averaging down)."""
    height, width = tile.shape[:2]
    factor = box // max(height, width)
    if factor >= 2 or max(height, width) == box:
        return tile.repeat(factor, axis=0).repeat(factor, axis=1)
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    method = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BOX
    return np.asarray(Image.fromarray(tile).resize(size, method))


def _caption(query: dict[str, Any], neighbor: dict[str, Any] | None, width: int) -> str:
    if neighbor is None:
        ap = query["average_precision"]
        return f"{_short(query['class_name'], width)}\nrow {query['row']} · AP {'n/a' if ap is None else f'{ap:.2f}'}"
    return f"{_short(neighbor['class_name'], width)}\nd = {neighbor['distance']:.3g}"


def retrieval_gallery_figure(records: dict[str, Any], tiles: np.ndarray | None, pairs: pd.DataFrame, *, k_ap: int,
                             num_rows: int, dpi: float) -> Figure:
    """One line per query of `records` (under a heading per kind): the query, then its neighbours; below them,
    the most confused class pairs as bars.

    Args:
        records: `gallery_records`' output.
        tiles: (Q, 1 + k, H, W, 3) uint8 thumbnails of each line's query and neighbours, or None for vector
            data, drawn as a table of cells filled pale green/red with the captions inside.
        pairs: `confused_pairs`' table with class names in class_a and class_b.
        k_ap: the neighbours the average precision counts, and num_rows: the rows, for the subtitles.
        dpi: the resolution the figure will be saved at (the canvas is placed pixel for pixel).

    Returns:
        The figure: frames green where the neighbour has the query's class, red where not, grey for queries;
        captions give the class name and distance (queries: dataset row and average precision).
    """
    queries, k = records["queries"], records["k"]
    px = dpi / _INCH  # output pixels per layout pixel
    box, caption = (round(112 * px), round(40 * px)) if tiles is not None else (None, round(10 * px))
    cell_w, cell_h = (box, box) if tiles is not None else (round(150 * px), round(50 * px))
    frame, gap, margin = max(2, round(5 * px)), round(18 * px), round(22 * px)
    heading, title, line = round(46 * px), round(130 * px), round(22 * px)
    xs = [margin + c * (cell_w + 2 * frame + gap) + (round(20 * px) if c else 0) for c in range(1 + k)]
    width = max(xs[-1] + cell_w + 2 * frame + margin, round(900 * px))
    y, lines, texts = title, [], []  # texts: (x, y, text, options)
    for kind in ("fixed", "hardest"):
        group = [i for i, q in enumerate(queries) if q["kind"] == kind]
        if group:
            texts.append((margin, y + heading * 0.55, _HEADINGS[kind], {"fontsize": 9, "fontweight": "bold"}))
            y += heading
        for i in group:
            lines.append((i, y))
            y += cell_h + 2 * frame + caption
    pairs_top = y + round(12 * px)
    height = pairs_top + heading + line * (1 + max(len(pairs), 1)) + margin
    canvas = np.full((height, width, 4), 255, dtype=np.uint8)  # opaque white
    for i, top in lines:
        query = queries[i]
        cells = [(None, _QUERY)] + [(n, _RIGHT if n["correct"] else _WRONG) for n in query["neighbors"]]
        for c, (neighbor, color) in enumerate(cells):
            x = xs[c]
            canvas[top: top + cell_h + 2 * frame, x: x + cell_w + 2 * frame, :3] = color
            inner = canvas[top + frame: top + frame + cell_h, x + frame: x + frame + cell_w, :3]
            if tiles is None:
                inner[:] = _PALE[color]
                texts.append((x + frame + cell_w / 2, top + frame + cell_h / 2, _caption(query, neighbor, 22),
                              {"fontsize": _FONT, "ha": "center", "va": "center"}))
                continue
            inner[:] = 255
            image = _fitted(tiles[i, c], box)
            dy, dx = (box - image.shape[0]) // 2, (box - image.shape[1]) // 2
            inner[dy: dy + image.shape[0], dx: dx + image.shape[1]] = image
            texts.append((x + frame + cell_w / 2, top + cell_h + 2 * frame + round(3 * px),
                          _caption(query, neighbor, 17), {"fontsize": _FONT, "ha": "center", "va": "top"}))
    for c, x in enumerate(xs):
        texts.append((x + frame + cell_w / 2, title - round(6 * px), "query" if c == 0 else f"#{c}",
                      {"fontsize": 8, "ha": "center", "va": "bottom", "color": "0.35"}))
    split = f" of the {records['split']} split" if records.get("split") else ""
    texts.append((margin, round(18 * px), f"Retrievals{split}: each query and its {k} nearest neighbours",
                  {"fontsize": 11, "va": "top"}))
    texts.append((margin, round(52 * px), "frame: green = same class as the query, red = another class\n"
                  f"d: Euclidean distance ({records['metric']} metric); AP: average precision over the {k_ap} "
                  "nearest", {"fontsize": 7.5, "va": "top", "color": "0.35", "linespacing": 1.3}))
    texts.append((margin, pairs_top + heading * 0.3, "Most confused class pairs",
                  {"fontsize": 9, "fontweight": "bold"}))
    texts.append((margin, pairs_top + heading * 0.75, f"wrong neighbours among the {k} nearest of all {num_rows:,} "
                  "rows; share: of the two classes' neighbours", {"fontsize": 7.5, "color": "0.35"}))
    bar_x, bar_w = round(330 * px), width - round(330 * px) - round(170 * px)
    top = pairs_top + heading
    if pairs.empty:
        texts.append((margin, top + line / 2, f"no wrong neighbour among the first {k}", {"fontsize": 8}))
    most = max(int(pairs["count"].max()), 1) if not pairs.empty else 1
    for j, (a, b, count, share) in enumerate(pairs[["class_a", "class_b", "count", "share"]].itertuples(index=False)):
        middle = top + j * line + line / 2
        length = max(1, round(bar_w * count / most))
        canvas[round(middle - line * 0.3): round(middle + line * 0.3), bar_x: bar_x + length, :3] = _WRONG
        texts.append((margin, middle, f"{_short(str(a), 20)} ↔ {_short(str(b), 20)}", {"fontsize": 8}))
        texts.append((bar_x + length + round(6 * px), middle, f"{count:,} ({share:.1%})", {"fontsize": 8}))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        fig.add_artist(_Canvas(canvas))
        for x, y_text, text, options in texts:
            fig.text(x / width, 1 - y_text / height, text, **{"va": "center", "linespacing": 1.15, **options})
    return fig

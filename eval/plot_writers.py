"""Write PNG figures of an embedding's class structure: a UMAP map, pair-distance histograms, class margins.

Each `plot_*` function takes arrays or a DataFrame and an output path, writes one PNG and returns the
path; `write_eval_plots` writes all three into a directory. Figures are built with matplotlib's
object API (`matplotlib.figure.Figure`, rendered by Agg), so no display, no pyplot state and no global
backend switch is involved. Every file is written to a temporary name beside its target and renamed
into place only once all files of the call are complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from metricbench.atomic import write_files_atomically

from .distance_stats import class_distance_stats
from .inputs import check_int, check_metric, to_float32_matrix, to_int_labels
from .pairs import pair_distances
from .plot_drawing import class_margin_figure, distance_histogram_figure, umap_figure
from .retrieval_suite import Neighbors
from .umap_projection import umap_2d

__all__ = [
    "PLOT_FILES",
    "UMAP_COORDS",
    "plot_class_margins",
    "plot_distance_histograms",
    "plot_umap",
    "write_eval_plots",
]

# File name of each figure `write_eval_plots` writes, by the key of its returned dict.
PLOT_FILES = {"umap": "umap.png", "distances": "distances.png", "margins": "margins.png"}
UMAP_COORDS = "umap.npz"  # the projected points of umap.png, for figures that combine several runs

ClassNames = Mapping[Any, Any] | Sequence[Any]  # class_names[label] -> display name

_DPI = 150
_MAX_POINTS = 10_000  # plot_umap's default, also used by write_eval_plots
_MAX_CLASSES = 50  # plot_class_margins' default, likewise


def _png_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    result = Path(path)
    if result.suffix.lower() != ".png":
        raise ValueError(f"path must end with .png, got {str(result)!r}")
    return result


def _names_for(classes: np.ndarray, class_names: ClassNames | None) -> dict[Any, str]:
    """Display name of every label in `classes`: class_names[label], or the label itself."""
    if class_names is None:
        return {label: str(label) for label in classes.tolist()}
    if isinstance(class_names, np.ndarray) and class_names.ndim == 1:
        class_names = class_names.tolist()
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, (Mapping, Sequence)):
        raise TypeError(
            f"class_names must be a mapping or a sequence indexed by label, got {type(class_names).__name__}"
        )
    names = {}
    for label in classes.tolist():
        in_range = isinstance(label, int) and 0 <= label < len(class_names)
        if isinstance(class_names, Sequence) and not in_range:
            raise ValueError(
                f"class_names must name every label; a sequence of {len(class_names)} names covers "
                f"labels 0..{len(class_names) - 1}, got label {label}"
            )
        if isinstance(class_names, Mapping) and label not in class_names:
            raise ValueError(f"class_names must name every label, got no name for label {label}")
        names[label] = str(class_names[label])
    return names


def _save_figures(figures: Mapping[Path, Figure]) -> None:
    """Write every figure as a PNG with `write_files_atomically`: all complete, or none touched.

    Missing parent directories are created, and removed again if writing fails.
    """
    missing = {d for path in figures for d in (path.parent, *path.parent.parents) if not d.exists()}
    for path in figures:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_files_atomically(
            {path: functools.partial(fig.savefig, format="png", dpi=_DPI) for path, fig in figures.items()}
        )
    except BaseException:
        for directory in sorted(missing, key=lambda d: len(d.parts), reverse=True):  # deepest first
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _umap(
    x: np.ndarray, labels: np.ndarray, names: dict[Any, str], metric: str, max_points: int, seed: int,
    title: str | None,
) -> Figure:
    coords, kept = umap_2d(x, metric=metric, seed=seed, max_points=max_points, labels=labels)
    return umap_figure(
        coords, labels[kept], names, total_points=labels.size, metric=metric, seed=seed, title=title
    )


def _embeddings_and_labels(embeddings: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = to_float32_matrix(embeddings, "embeddings")
    return x, to_int_labels(labels, "labels", x.shape[0], "embeddings rows")


def _margin_table(per_class_df: Any, class_names: Any) -> tuple[pd.DataFrame, dict[Any, str]]:
    if not isinstance(per_class_df, pd.DataFrame):
        raise TypeError(f"per_class_df must be a pandas DataFrame, got {type(per_class_df).__name__}")
    if "margin_ratio" not in per_class_df.columns:
        raise ValueError(
            f"per_class_df must have a 'margin_ratio' column, got columns {list(per_class_df.columns)}"
        )
    ratios = pd.to_numeric(per_class_df["margin_ratio"], errors="coerce")
    if ratios.notna().sum() == 0:
        raise ValueError(
            f"per_class_df must have at least one non-NaN margin_ratio, got {len(ratios)} rows, none defined"
        )
    labels = per_class_df.index.to_numpy()
    if "nearest_class" in per_class_df.columns:
        labels = np.union1d(labels, per_class_df["nearest_class"].to_numpy())
    if class_names is None:
        names = {label: str(label) for label in labels.tolist()}
    else:
        names = _names_for(np.asarray(labels), class_names)
    return per_class_df.assign(margin_ratio=ratios), names


# ----- public API ----------------------------------------------------------------------------------

def plot_umap(
    embeddings: ArrayLike,
    labels: ArrayLike,
    path: str | os.PathLike[str],
    *,
    class_names: ClassNames | None = None,
    metric: str = "l2",
    max_points: int = _MAX_POINTS,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Write a UMAP scatter plot of the embeddings, one colour per class.

    The projection is `umap_2d(embeddings, metric=metric, seed=seed, max_points=max_points,
    labels=labels)`: above `max_points` rows, a seeded random sample stratified by class (class
    proportions kept to within one point) is projected, and the subtitle says how many points are
    shown of how many. Up to 20 classes get a legend (tab10 colours up to 10, tab20 up to 20); more
    classes are coloured along a colormap with a colorbar.

    Args:
        embeddings: (N, D) numpy array or torch tensor, finite in float32, N >= 4.
        labels: (N,) integer labels.
        path: output PNG path (parent directories are created).
        class_names: display names, `class_names[label]` (a mapping, or a sequence indexed by label);
            None shows the labels.
        metric: "l2" or "cosine" (UMAP's "euclidean" / "cosine").
        max_points: most points to project, >= 4.
        seed: seed of the sample, of UMAP and of the drawing order, >= 0.
        title: main title; None for a default. The sample size is always shown below it.

    Returns:
        The path written, as a Path.

    Raises:
        TypeError: on non-numeric embeddings, non-integer labels, or arguments of the wrong type.
        ValueError: on bad shapes, NaN/Inf, an unknown metric, out-of-range ints, missing class names,
            or a path not ending in .png.
    """
    target = _png_path(path)
    x, label_array = _embeddings_and_labels(embeddings, labels)
    names = _names_for(np.unique(label_array), class_names)
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    _save_figures({target: _umap(x, label_array, names, check_metric(metric), max_points, seed, title)})
    return target


def plot_distance_histograms(
    embeddings: ArrayLike,
    labels: ArrayLike,
    path: str | os.PathLike[str],
    *,
    metric: str = "l2",
    max_pairs: int = 200_000,
    seed: int = 0,
) -> Path:
    """Write overlaid density histograms of same-class and different-class pair distances.

    The pairs are `pair_distances(embeddings, labels, metric=metric, max_pairs=max_pairs, seed=seed)`:
    every pair when there are at most `max_pairs`, else a seeded sample that gives each population its
    own share; both histograms share the same 60 bins and each has area 1; dashed lines mark the means.
    The subtitle gives the number of pairs drawn of each kind and whether they were sampled.

    Args:
        embeddings: (N, D) numpy array or torch tensor, finite in float32.
        labels: (N,) integer labels with at least 2 classes and one class of 2 or more rows.
        path: output PNG path (parent directories are created).
        metric: "l2" or "cosine" (Euclidean distance between L2-normalised rows).
        max_pairs: most pairs used in total, >= 2.
        seed: seed of the pair sample, >= 0.

    Returns:
        The path written, as a Path.

    Raises:
        TypeError: on non-numeric embeddings, non-integer labels, or arguments of the wrong type.
        ValueError: on bad shapes, NaN/Inf, an unknown metric, out-of-range ints, labels without both
            kinds of pair, or a path not ending in .png.
    """
    target = _png_path(path)
    pairs = pair_distances(embeddings, labels, metric=metric, max_pairs=max_pairs, seed=seed)
    _save_figures({target: distance_histogram_figure(pairs, metric=metric, seed=seed)})
    return target


def plot_class_margins(
    per_class_df: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    max_classes: int = _MAX_CLASSES,
    class_names: ClassNames | None = None,
) -> Path:
    """Write a horizontal bar chart of each class's margin ratio, worst class at the top.

    margin_ratio (from `class_distance_stats`' per-class table) = distance from the class centroid to
    the nearest other class centroid / mean distance of the class's points to their own centroid.
    Below 1 (red bars), the nearest other class's centre lies within the class's typical spread. A
    dashed line marks 1. With more than `max_classes` classes, only the max_classes // 2 worst and the
    remaining best are drawn, with a row saying how many were left out. Infinite ratios (single-point
    classes) are drawn to the frame and labelled ∞; NaN ratios (0/0) are left out and counted.

    Args:
        per_class_df: `class_distance_stats`' table: index = label, a "margin_ratio" column and,
            optionally, "nearest_class" (shown beside each label).
        path: output PNG path (parent directories are created).
        max_classes: most classes drawn, >= 2.
        class_names: display names, `class_names[label]`; None shows the labels.

    Returns:
        The path written, as a Path.

    Raises:
        TypeError: if per_class_df is not a DataFrame or an argument has the wrong type.
        ValueError: if the table has no "margin_ratio" column or no class with a defined ratio,
            on missing class names, or a path not ending in .png.
    """
    target = _png_path(path)
    table, names = _margin_table(per_class_df, class_names)
    max_classes = check_int(max_classes, "max_classes", 2)
    _save_figures({target: class_margin_figure(table, names, max_classes=max_classes)})
    return target


def write_eval_plots(
    out_dir: str | os.PathLike[str],
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    class_names: ClassNames | None = None,
    metric: str = "l2",
    seed: int = 0,
    class_stats: pd.DataFrame | None = None,
    neighbors: Neighbors | None = None,
) -> dict[str, Path]:
    """Write umap.png, distances.png and margins.png for one labelled embedding into `out_dir`, and
    umap.npz with the projection behind umap.png (`coords` (M, 2), `rows` (M,) into `embeddings`, `labels`).

    Uses the defaults of `plot_umap`, `plot_distance_histograms` and `plot_class_margins`. The margin
    table is `class_stats` when given (an evaluation that has computed it already), else
    `class_distance_stats(embeddings, labels, metric=metric, seed=seed)`'s; `neighbors` (see `umap_2d`)
    spare UMAP its own neighbour search. All three figures are built before any file is written, and
    the files are renamed into place together.

    Args:
        out_dir: output directory (created if missing).
        embeddings: (N, D) numpy array or torch tensor, finite in float32, N >= 4.
        labels: (N,) integer labels with at least 2 classes and one class of 2 or more rows.
        class_names: display names, `class_names[label]`; None shows the labels.
        metric: "l2" or "cosine".
        seed: seed of every sample and of UMAP, >= 0.
        class_stats: `class_distance_stats(embeddings, labels, metric=metric, seed=seed)[1]`, if known.
        neighbors: the leave-one-out neighbours of every row from an exact search, if known.

    Returns:
        {"umap": path, "distances": path, "margins": path}, the files written (names in PLOT_FILES).

    Raises:
        TypeError/ValueError: as the three plot functions and `class_distance_stats`.
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a str or os.PathLike, got {type(out_dir).__name__}")
    x, label_array = _embeddings_and_labels(embeddings, labels)
    metric = check_metric(metric)
    names = _names_for(np.unique(label_array), class_names)
    table = class_distance_stats(x, label_array, metric=metric, seed=seed)[1] if class_stats is None else class_stats
    pairs = pair_distances(x, label_array, metric=metric, seed=seed)
    coords, kept = umap_2d(x, metric=metric, seed=seed, max_points=_MAX_POINTS, labels=label_array,
                           neighbors=neighbors)
    figures = {
        "umap": umap_figure(coords, label_array[kept], names, total_points=label_array.size, metric=metric, seed=seed),
        "distances": distance_histogram_figure(pairs, metric=metric, seed=seed),
        "margins": class_margin_figure(table, names, max_classes=_MAX_CLASSES),
    }
    paths = {key: Path(out_dir) / PLOT_FILES[key] for key in figures}
    _save_figures({paths[key]: figures[key] for key in figures})
    write_files_atomically({Path(out_dir) / UMAP_COORDS: functools.partial(
        np.savez, coords=coords, rows=kept, labels=label_array[kept])})
    return paths

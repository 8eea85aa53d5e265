"""Matplotlib figures of an embedding's class structure, built from already computed numbers.

Pure drawing: each function takes arrays/tables and returns a `matplotlib.figure.Figure` made with
matplotlib's object API (rendered by Agg when saved), without pyplot state, a display or a global
backend switch. Computing the numbers (`umap_2d`, `pair_distances`, `class_distance_stats`) and
writing files is `plot_writers.py`'s job; a benchmark can also use these figures directly.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .pairs import PairDistances

__all__ = ["MAX_LEGEND_CLASSES", "class_colors", "class_margin_figure", "distance_histogram_figure", "umap_figure"]

# Most classes that get a legend (tab10 colours up to 10, tab20 up to 20); above, a colorbar.
MAX_LEGEND_CLASSES = 20

_STYLE = {
    "font.size": 11,
    "axes.titlesize": 10,
    "axes.titlecolor": "0.35",  # the axes title is the subtitle (what was drawn); suptitle says what it is
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "figure.titlesize": 14,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_SAME, _OTHER, _BAD = "#1f77b4", "#ff7f0e", "#d62728"  # tab10 blue, orange, red
_DISTANCE_AXIS = {
    "l2": "Euclidean distance between embeddings",
    "cosine": "Euclidean distance between L2-normalised embeddings  (= √(2 − 2·cos))",
}


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def class_colors(rank: np.ndarray, num_classes: int) -> np.ndarray:
    """(M, 4) RGBA colour of each point from its class's rank among `num_classes` sorted classes."""
    if num_classes <= 10:
        return matplotlib.colormaps["tab10"](rank)
    if num_classes <= MAX_LEGEND_CLASSES:
        return matplotlib.colormaps["tab20"](rank)
    return matplotlib.colormaps["turbo"](rank / (num_classes - 1))


def umap_figure(
    coords: np.ndarray,
    point_labels: np.ndarray,
    names: dict[Any, str],
    *,
    total_points: int,
    metric: str,
    seed: int,
    title: str | None = None,
) -> Figure:
    """Scatter plot of 2-D coordinates coloured by class, with a legend (<= 20 classes) or a colorbar.

    Args:
        coords: (M, 2) coordinates of the points drawn.
        point_labels: (M,) their labels.
        names: display name of every class of the full data set (keys = labels); fixes the colours.
        total_points: N, the number of points the M were drawn from (the subtitle says "M of N").
        metric: the metric of the projection, shown in the subtitle.
        seed: the seed of the sample, shown in the subtitle; also shuffles the drawing order so that
            no class is always drawn on top.
        title: main title; None for a default.

    Returns:
        The figure.
    """
    classes = np.array(sorted(names))
    rank = np.searchsorted(classes, point_labels)
    colors = class_colors(rank, classes.size)
    order = np.random.default_rng(seed).permutation(point_labels.size)
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(9.0, 7.0), layout="constrained")
        ax = fig.add_subplot()
        size = float(np.clip(6000.0 / max(point_labels.size, 1), 2.0, 30.0))
        ax.scatter(coords[order, 0], coords[order, 1], c=colors[order], s=size, alpha=0.8, linewidths=0)
        if classes.size <= MAX_LEGEND_CLASSES:
            palette = class_colors(np.arange(classes.size), classes.size)
            handles = [
                Line2D([], [], marker="o", linestyle="", markersize=7, color=palette[i],
                       label=_short(names[label], 28))
                for i, label in enumerate(classes.tolist())
            ]
            ax.legend(handles=handles, title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      frameon=False)
        else:
            bar = fig.colorbar(ScalarMappable(cmap="turbo"), ax=ax, shrink=0.8)
            ticks = np.linspace(0, classes.size - 1, min(classes.size, 8)).round().astype(int)
            tick_names = [_short(names[classes[t].item()], 16) for t in ticks]
            bar.set_ticks(ticks / (classes.size - 1), labels=tick_names)
            bar.set_label(f"class ({classes.size} classes, in label order)")
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("UMAP 1  (no units: only which points lie near each other is meaningful)")
        ax.set_ylabel("UMAP 2")
        fig.suptitle(title or "UMAP map of the embeddings, coloured by class")
        if point_labels.size < total_points:
            shown = (
                f"{point_labels.size:,} of {total_points:,} points (stratified random sample, seed {seed})"
            )
        else:
            shown = f"all {total_points:,} points"
        ax.set_title(f"{shown} · {classes.size} classes · {metric} metric")
    return fig


def _describe(kind: str, drawn: int, total: int, seed: int) -> str:
    if drawn == total:
        return f"all {total:,} {kind} pairs"
    return f"{drawn:,} of {total:,} {kind} pairs (random sample, seed {seed})"


def distance_histogram_figure(pairs: PairDistances, *, metric: str, seed: int) -> Figure:
    """Overlaid density histograms (60 shared bins) of same- and different-class pair distances.

    Args:
        pairs: the distances, from `pair_distances`.
        metric: "l2" or "cosine", for the x-axis label.
        seed: the seed of the pair sample, shown in the subtitle when pairs were sampled.

    Returns:
        The figure; dashed lines mark each population's mean.
    """
    values = np.concatenate([pairs.intra, pairs.inter])
    low, high = float(values.min()), float(values.max())
    edges = np.linspace(low, high if high > low else low + 1.0, 61)
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(9.0, 5.8), layout="constrained")
        ax = fig.add_subplot()
        populations = ((pairs.intra, _SAME, "same class"), (pairs.inter, _OTHER, "different class"))
        for data, color, kind in populations:
            ax.hist(data, bins=edges, density=True, color=color, alpha=0.35, label=f"{kind} pairs")
            ax.hist(data, bins=edges, density=True, color=color, histtype="step", linewidth=1.5)
            mean = float(data.mean())
            ax.axvline(mean, color=color, linestyle="--", linewidth=2, label=f"{kind} mean = {mean:.3g}")
        ax.set_xlabel(_DISTANCE_AXIS[metric])
        ax.set_ylabel("density (each histogram has area 1)")
        fig.legend(loc="outside lower center", ncols=2, frameon=False)
        fig.suptitle("Distances between pairs of points: same class vs different class")
        ax.set_title(
            f"{_describe('same-class', pairs.intra.size, pairs.intra_total, seed)}\n"
            f"{_describe('different-class', pairs.inter.size, pairs.inter_total, seed)}"
        )
    return fig


def _margin_rows(ratios: pd.Series, max_classes: int) -> tuple[list[Any], int]:
    """Labels to draw, worst first (None marks the gap), and how many classes were left out."""
    order = ratios.sort_values(kind="stable").index.tolist()
    if len(order) <= max_classes:
        return order, 0
    worst = max_classes // 2
    return order[:worst] + [None] + order[worst - max_classes :], len(order) - max_classes


def class_margin_figure(table: pd.DataFrame, names: dict[Any, str], *, max_classes: int) -> Figure:
    """Horizontal bars of each class's margin_ratio, sorted, worst at the top, with a line at 1.

    Args:
        table: per-class table with a float "margin_ratio" column (index = label) and optionally
            "nearest_class"; NaN ratios are left out (and counted in the subtitle), infinite ones are
            drawn to the frame and labelled ∞.
        names: display name of every label in the index and in "nearest_class".
        max_classes: most classes drawn; above it the max_classes // 2 worst and the rest best ones.

    Returns:
        The figure.
    """
    ratios = table["margin_ratio"]
    undefined = int(ratios.isna().sum())
    ratios = ratios.dropna()
    rows, hidden = _margin_rows(ratios, max_classes)
    finite = ratios[np.isfinite(ratios)]
    largest = max(1.0, float(finite.max()) if finite.size else 1.0)
    nearest = table["nearest_class"] if "nearest_class" in table.columns else None
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(9.0, 2.6 + 0.27 * len(rows)), layout="constrained")
        ax = fig.add_subplot()
        ticks = []
        for y, label in enumerate(rows):
            if label is None:
                ticks.append(f"… {hidden:,} classes not shown …")
                continue
            value = float(ratios[label])
            length = min(value, 1.1 * largest)  # an infinite ratio (single-point class) ends past the largest
            ax.barh(y, length, color=_BAD if value < 1 else _SAME, height=0.7)
            ax.text(length, y, f" {value:.2f}" if np.isfinite(value) else " ∞", va="center", fontsize=8,
                    zorder=3, bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5})
            tick = _short(names[label], 20)
            if nearest is not None:
                tick += f"  (nearest: {_short(names[nearest[label]], 14)})"
            ticks.append(tick)
        ax.set_yticks(range(len(rows)), labels=ticks, fontsize=9)
        ax.set_ylim(len(rows) - 0.5, -0.5)  # worst at the top
        ax.set_xlim(0, 1.2 * largest)
        ax.axvline(1.0, color="black", linestyle="--", linewidth=1.2, zorder=0.5)  # behind the bars
        key = [
            Patch(color=_BAD, label="< 1: the nearest other class centre lies within this class's spread"),
            Patch(color=_SAME, label="≥ 1"),
            Line2D([], [], color="black", linestyle="--", label="ratio = 1"),
        ]
        fig.legend(handles=key, loc="outside lower center", ncols=3, frameon=False, fontsize=9)
        ax.set_xlabel(
            "margin ratio = distance to the nearest other class centroid / mean distance to own centroid"
        )
        fig.suptitle("Class margins: how far each class is from its nearest neighbouring class")
        subtitle = "sorted, worst at the top; higher is better separated"
        if hidden:
            worst = max_classes // 2
            best = max_classes - worst
            subtitle += f"\nshowing the {worst} worst and {best} best of {len(ratios):,} classes"
        if undefined:
            subtitle += f"\n{undefined} class(es) with an undefined ratio (0 / 0) not shown"
        ax.set_title(subtitle)
    return fig

"""The benchmark's comparison figures: losses side by side in metric bars with error bars, UMAP grids,
intra vs inter distances and training curves (one run's own plots are `metricbench.eval`'s).

Every figure is drawn from the tables of `collect_runs` (runs, histories, summary) and, for the UMAP
grid, from the coordinates each finished run saved; no metrics.json is read here. matplotlib's object
API; one panel per (dataset, protocol).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from metricbench.eval import UMAP_COORDS
from metricbench.eval.plot_drawing import class_colors

from ..atomic import atomic_write
from ..run_dir import RunDir
from .spec import slug

__all__ = ["write_figures"]

_BAR_METRICS = {"map_at_r": "MAP@R", "precision_at_1": "P@1", "r_precision": "R-Precision"}
_STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.spines.top": False, "axes.spines.right": False}


def _panels(table: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(table["dataset"], table["protocol"])))


def _loss_colors(losses: list[str]) -> dict[str, tuple]:
    palette = matplotlib.colormaps["tab10" if len(losses) <= 10 else "tab20"]
    return {loss: palette(i) for i, loss in enumerate(losses)}


def _grid(count: int, columns: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(size[0] * columns, size[1] * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path


def metric_bars(summary: pd.DataFrame) -> Figure:
    """Per panel, one group of bars per loss (MAP@R, P@1, R-Precision); error bars are ± std over seeds."""
    panels = _panels(summary)
    with matplotlib.rc_context(_STYLE):
        fig, axes = _grid(len(panels), 2, (7.5, 4.0))
        for ax, (dataset, protocol) in zip(axes, panels):
            part = summary[(summary["dataset"] == dataset) & (summary["protocol"] == protocol)]
            losses = list(dict.fromkeys(part["loss"]))
            width = 0.8 / len(_BAR_METRICS)
            for i, (metric, label) in enumerate(_BAR_METRICS.items()):
                rows = part[part["metric"] == metric].set_index("loss").reindex(losses)
                ax.bar(np.arange(len(losses)) + (i - 1) * width, rows["mean"], width, yerr=rows["std"].fillna(0),
                       capsize=2, label=label, color=matplotlib.colormaps["tab10"](i))
            ax.set_xticks(np.arange(len(losses)), losses, rotation=30, ha="right")
            low = part[part["metric"].isin(list(_BAR_METRICS))]["mean"].min()
            ax.set_ylim(max(0.0, low - 0.15), 1.0)
            ax.set_title(f"{dataset}, {protocol} set")
            ax.set_ylabel("test retrieval")
            ax.grid(axis="y", alpha=0.3)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper right", ncols=len(_BAR_METRICS))
        fig.suptitle("Retrieval on the test split: mean ± std over seeds", x=0.02, ha="left")
    return fig


def umap_grid(table: pd.DataFrame, runs: Path, dataset: str, protocol: str, seed: int) -> Figure | None:
    """One UMAP panel per loss of one (dataset, protocol), all from runs with the same seed."""
    part = table[(table["dataset"] == dataset) & (table["protocol"] == protocol) & (table["seed"] == seed)]
    found = [(row.loss, RunDir(runs / row.run).plots / UMAP_COORDS) for row in part.itertuples()]
    found = [(loss, path) for loss, path in found if path.is_file()]
    if not found:
        return None
    with matplotlib.rc_context(_STYLE):
        fig, axes = _grid(len(found), min(3, len(found)), (4.0, 3.8))
        for ax, (loss, path) in zip(axes, found):
            with np.load(path) as points:
                coords, labels = points["coords"], points["labels"]
            classes = np.unique(labels)
            colors = class_colors(np.searchsorted(classes, labels), classes.size)
            ax.scatter(coords[:, 0], coords[:, 1], c=colors, s=3, linewidths=0, alpha=0.8)
            ax.set_title(loss)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"UMAP of the test embeddings — {dataset}, {protocol} set, seed {seed} (colour = class)")
    return fig


def distance_scatter(table: pd.DataFrame) -> Figure:
    """Per panel, each run's mean intra-class vs inter-class squared distance, one colour per loss."""
    panels = _panels(table)
    colors = _loss_colors(list(dict.fromkeys(table["loss"])))
    with matplotlib.rc_context(_STYLE):
        fig, axes = _grid(len(panels), 2, (6.0, 4.5))
        for ax, (dataset, protocol) in zip(axes, panels):
            part = table[(table["dataset"] == dataset) & (table["protocol"] == protocol)]
            for loss, runs in part.groupby("loss", sort=False):
                ax.scatter(runs["intra_pair_sqdist"], runs["inter_pair_sqdist"], color=colors[loss], label=loss, s=25,
                           marker="^" if runs["tuned"].iloc[0] else "o")
            top = float(np.nanmax(part[["intra_pair_sqdist", "inter_pair_sqdist"]].to_numpy())) * 1.05
            ax.plot([0, top], [0, top], color="0.7", linewidth=0.8, linestyle="--")
            ax.set_xlim(0, None)
            ax.set_ylim(0, None)
            ax.set_title(f"{dataset}, {protocol} set")
            ax.set_xlabel("mean squared distance within a class")
            ax.set_ylabel("mean squared distance between classes")
        axes[0].legend(fontsize=8)
        fig.suptitle("Class compactness vs separation on the test split (up and left is better; ▲ tuned)")
    return fig


def training_curves(table: pd.DataFrame, histories: pd.DataFrame) -> Figure:
    """Per (dataset, protocol): training loss and validation MAP@R by epoch, mean over seeds per loss.

    `histories`: one row per run and epoch, as `collect_runs` returns them.
    """
    panels = _panels(table)
    colors = _loss_colors(list(dict.fromkeys(table["loss"])))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(11.0, 3.2 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), 2, squeeze=False)
        for (loss_ax, val_ax), (dataset, protocol) in zip(axes, panels):
            part = table[(table["dataset"] == dataset) & (table["protocol"] == protocol)]
            for loss, group in part.groupby("loss", sort=False):
                # Columns of other losses' parts (or of validation, when these runs had none) are all NaN here.
                history = histories[histories["run"].isin(group["run"])].dropna(axis=1, how="all")
                mean = history.groupby("epoch").mean(numeric_only=True)
                style = {"color": colors[loss], "label": loss, "marker": "o", "markersize": 3,
                         "linestyle": "--" if group["tuned"].iloc[0] else "-"}
                loss_ax.plot(mean.index, mean["train_loss"], **style)
                if "val_map_at_r" in mean:
                    val_ax.plot(mean.index, mean["val_map_at_r"], **style)
            loss_ax.set_yscale("log")
            loss_ax.set_title(f"{dataset}, {protocol} set: training loss (each loss on its own scale)")
            val_ax.set_title(f"{dataset}, {protocol} set: validation MAP@R")
            for ax in (loss_ax, val_ax):
                ax.set_xlabel("epoch")
                ax.grid(alpha=0.3)
        axes[0, 1].legend(fontsize=8)
    return fig


def write_figures(table: pd.DataFrame, histories: pd.DataFrame, summary: pd.DataFrame, runs: Path,
                  out: Path) -> list[Path]:
    """Write metrics.png, umap-<dataset>-<protocol>.png, distances.png and curves.png into `out`.

    `table`, `histories`: from `collect_runs`; `summary`: from `summarize`; `runs`: where the run
    directories are (for their UMAP coordinates).
    """
    makers: dict[str, Callable[[], Figure | None]] = {
        "metrics.png": lambda: metric_bars(summary),
        "distances.png": lambda: distance_scatter(table),
        "curves.png": lambda: training_curves(table, histories),
    }
    seed = int(table["seed"].min())
    for dataset, protocol in _panels(table):
        makers[f"umap-{slug(dataset)}-{protocol}.png"] = (
            lambda d=dataset, p=protocol: umap_grid(table, runs, d, p, seed))
    written = []
    for name, make in makers.items():
        fig = make()
        if fig is not None:
            written.append(_save(fig, out / name))
    return written

"""Everything an evaluation writes to disk: metrics, distance tables, projector export, plots.

Used at the end of every training run and by `metricbench eval --out`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from metricbench.eval import class_distance_stats, export_projector, knn_search, retrieval_metrics, write_eval_plots

from .atomic import atomic_write

__all__ = ["evaluate_embeddings", "projector_metadata", "write_evaluation"]


def evaluate_embeddings(embeddings: np.ndarray, labels: np.ndarray, *, metric: str = "l2",
                        ks: Sequence[int] = (1, 2, 4, 8), full_map: bool = False) -> tuple[dict[str, Any], pd.DataFrame]:
    """Leave-one-out retrieval metrics plus the class distance statistics of one labelled set.

    Returns:
        metrics (retrieval keys, and `distances`: the summary of `class_distance_stats`) and the per-class table.
    """
    # A small set cannot answer Recall@K for K beyond its other rows; report the Ks it can.
    usable = tuple(k for k in ks if k < len(labels)) or (1,)
    metrics: dict[str, Any] = retrieval_metrics(embeddings, labels, ks=usable, metric=metric, full_map=full_map)
    summary, per_class = class_distance_stats(embeddings, labels, metric=metric)
    metrics["distances"] = summary
    return metrics, per_class


def write_evaluation(out_dir: Path, embeddings: np.ndarray, labels: np.ndarray, *, class_names: Sequence[str],
                     metric: str = "l2", ks: Sequence[int] = (1, 2, 4, 8), full_map: bool = False,
                     images: np.ndarray | None = None, rows: np.ndarray | None = None, split: str | None = None,
                     plots: bool = True, export: bool = True, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Evaluate (N, D) `embeddings` with (N,) contiguous int `labels` and write into `out_dir`:
    `class_stats.csv`, `export/` (Embedding Projector files; a sprite when `images` are given) and
    `plots/` (UMAP, intra vs inter distances, class margins).

    Returns:
        The metrics, for the caller to write into its `metrics.json` with whatever else it records.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = ["retrieval and distances"] + ["projector export"] * export + ["plots"] * plots
    bar = tqdm(total=len(stages), desc="evaluating", unit="stage", disable=not progress, leave=False)
    bar.set_postfix_str(stages[0])
    metrics, per_class = evaluate_embeddings(embeddings, labels, metric=metric, ks=ks, full_map=full_map)
    bar.update()
    named = [class_names[i] for i in per_class.index]
    table = per_class.assign(class_name=named, nearest_class_name=[class_names[i] for i in per_class["nearest_class"]])
    atomic_write(out_dir / "class_stats.csv", lambda tmp: table.to_csv(tmp, float_format="%.6g"))
    if export:
        bar.set_postfix_str("projector export")
        export_projector(out_dir / "export", embeddings, projector_metadata(embeddings, labels, class_names, metric,
                                                                             rows=rows, split=split), images=images)
        bar.update()
    if plots:
        bar.set_postfix_str("plots")
        write_eval_plots(out_dir / "plots", embeddings, labels, class_names=list(class_names), metric=metric, seed=seed)
        bar.update()
    bar.close()
    return metrics


def projector_metadata(embeddings: np.ndarray, labels: np.ndarray, class_names: Sequence[str], metric: str, *,
                        rows: np.ndarray | None, split: str | None) -> pd.DataFrame:
    """One row per point: its class, and what its nearest neighbour says (to colour errors in the projector)."""
    _, neighbor = knn_search(embeddings, k=1, metric=metric)
    nearest = labels[neighbor[:, 0]]
    columns: dict[str, Any] = {"label": [class_names[i] for i in labels], "label_id": labels}
    if split is not None:
        columns["split"] = split
    if rows is not None:
        columns["row"] = rows
    columns["nearest_label"] = [class_names[i] for i in nearest]
    columns["nearest_correct"] = nearest == labels
    return pd.DataFrame(columns)

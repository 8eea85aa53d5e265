"""Evaluate a labelled embedding once and hand every result to every consumer.

`evaluate` runs one neighbour search (its first columns serve the projector's nearest-neighbour
column and UMAP's graph, as well as the retrieval metrics) and one `class_distance_stats` (its
summary goes into the metrics, its table into class_stats.csv and the margins plot).
`write_evaluation` writes what a run directory holds besides metrics.json. Used at the end of every
training run and by `metricbench eval`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from metricbench.eval import (Neighbors, class_distance_stats, export_projector, retrieval_metrics_and_neighbors,
                              write_eval_plots)
from metricbench.eval.umap_projection import UMAP_NEIGHBORS

from .atomic import atomic_write
from .config import EvalConfig
from .run_dir import RunDir

__all__ = ["Evaluation", "check_evaluable", "evaluate", "projector_metadata", "write_evaluation"]


@dataclass(frozen=True)
class Evaluation:
    """Everything computed about one labelled embedding set.

    Attributes:
        embeddings: (N, D) float32 embeddings.
        labels: (N,) int class ids.
        metrics: retrieval and clustering metrics, and `distances`: `class_distance_stats`' summary.
        class_stats: `class_distance_stats`' per-class table (index = label).
        neighbors: every row's nearest other rows (leave-one-out), `UMAP_NEIGHBORS - 1` columns at most.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    metrics: dict[str, Any]
    class_stats: pd.DataFrame
    neighbors: Neighbors


def check_evaluable(labels: np.ndarray, ks: Sequence[int], *, labels_name: str = "labels",
                    ks_name: str = "ks") -> None:
    """Refuse a set that leave-one-out retrieval cannot score, naming the argument at fault.

    Raises:
        ValueError: when every label is unique (no query has a relevant item) or a K of Recall@K
            exceeds the N - 1 other rows each query can retrieve.
    """
    num_rows = len(labels)
    if num_rows < 2 or np.unique(labels).size == num_rows:
        raise ValueError(f"{labels_name} must have at least one class with 2 or more rows for leave-one-out "
                         f"retrieval, got {num_rows} rows with {np.unique(labels).size} distinct labels")
    if max(ks) > num_rows - 1:
        raise ValueError(f"{ks_name} must be at most {num_rows - 1} (each of the {num_rows} rows can retrieve "
                         f"only the {num_rows - 1} others), got {max(ks)}")


def evaluate(embeddings: np.ndarray, labels: np.ndarray, config: EvalConfig) -> Evaluation:
    """Leave-one-out retrieval metrics and class distance statistics of (N, D) `embeddings` with (N,) int
    `labels`, each computed once (see `check_evaluable` for what is refused)."""
    check_evaluable(labels, config.ks)
    metrics, neighbors = retrieval_metrics_and_neighbors(
        embeddings, labels, ks=config.ks, metric=config.metric, full_map=config.full_map,
        nearest=min(UMAP_NEIGHBORS - 1, len(labels) - 1),
    )
    summary, class_stats = class_distance_stats(embeddings, labels, metric=config.metric)
    metrics["distances"] = summary
    return Evaluation(np.asarray(embeddings, dtype=np.float32), labels, metrics, class_stats, neighbors)


def projector_metadata(labels: np.ndarray, nearest: np.ndarray, class_names: Sequence[str], *,
                       rows: np.ndarray | None, split: str | None) -> pd.DataFrame:
    """One row per point: its class, and what its nearest neighbour (row `nearest[i]`) says, to colour
    errors in the projector."""
    nearest_labels = labels[nearest]
    columns: dict[str, Any] = {"label": [class_names[i] for i in labels], "label_id": labels}
    if split is not None:
        columns["split"] = split
    if rows is not None:
        columns["row"] = rows
    columns["nearest_label"] = [class_names[i] for i in nearest_labels]
    columns["nearest_correct"] = nearest_labels == labels
    return pd.DataFrame(columns)


def write_evaluation(out_dir: str | Path, evaluation: Evaluation, config: EvalConfig, *, class_names: Sequence[str],
                     images: np.ndarray | None = None, rows: np.ndarray | None = None, split: str | None = None,
                     seed: int = 0, progress: bool = True) -> None:
    """Write class_stats.csv, export/ (Embedding Projector files, with a sprite when `images` are given;
    if `config.export`) and plots/ (UMAP, intra vs inter distances, class margins; if `config.plots`)
    into `out_dir`, from an `evaluate` result. `seed` seeds UMAP and the plots' samples."""
    run = RunDir(out_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    stages = ["projector export"] * config.export + ["plots"] * config.plots
    bar = tqdm(total=len(stages), desc="writing evaluation", unit="stage", disable=not progress or not stages,
               leave=False)
    table = evaluation.class_stats
    named = table.assign(class_name=[class_names[i] for i in table.index],
                         nearest_class_name=[class_names[i] for i in table["nearest_class"]])
    atomic_write(run.class_stats, lambda f: named.to_csv(f, float_format="%.6g"))
    labels = evaluation.labels
    if config.export:
        bar.set_postfix_str("projector export")
        metadata = projector_metadata(labels, evaluation.neighbors.indices[:, 0], class_names, rows=rows, split=split)
        export_projector(run.export, evaluation.embeddings, metadata, images=images)
        bar.update()
    if config.plots:
        bar.set_postfix_str("plots")
        write_eval_plots(run.plots, evaluation.embeddings, labels, class_names=list(class_names), metric=config.metric,
                         seed=seed, class_stats=table, neighbors=evaluation.neighbors)
        bar.update()
    bar.close()

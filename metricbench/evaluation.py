"""Evaluate a labelled embedding once and hand every result to every consumer.

`evaluate` runs one neighbour search (its first columns serve the projector's nearest-neighbour
column and UMAP's graph, as well as the retrieval metrics) and one `class_distance_stats` (its
summary goes into the metrics, its table into class_stats.csv and the margins plot).
`write_evaluation` writes what a run directory holds besides metrics.json. Used at the end of every
training run and by `metricbench eval`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from metricbench.eval import (Neighbors, class_distance_stats, export_projector, knn_search,
                              retrieval_metrics_and_neighbors, write_eval_plots)
from metricbench.eval.retrieval_gallery import write_retrieval_gallery
from metricbench.eval.umap_projection import UMAP_NEIGHBORS
from metricbench.eval.verification import verification_metrics

from .atomic import atomic_write
from .config import EvalConfig
from .run_dir import RunDir

__all__ = ["DEFAULT_KS", "Evaluation", "check_evaluable", "evaluate", "projector_metadata", "write_evaluation"]

DEFAULT_KS = (1, 2, 4, 8)  # Recall@K when neither eval.ks nor the dataset names others


@dataclass(frozen=True)
class Evaluation:
    """Everything computed about one labelled embedding set.

    Attributes:
        embeddings: (N, D) float32 embeddings.
        labels: (N,) int class ids.
        metrics: retrieval and clustering metrics, and `distances`: `class_distance_stats`' summary.
        class_stats: `class_distance_stats`' per-class table (index = label).
        neighbors: every row's nearest other rows (leave-one-out, whatever the metrics' queries), for the
            projector and UMAP: `UMAP_NEIGHBORS - 1` columns at most.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    metrics: dict[str, Any]
    class_stats: pd.DataFrame
    neighbors: Neighbors


def check_evaluable(labels: np.ndarray, ks: Sequence[int], *, labels_name: str = "labels",
                    ks_name: str = "ks", queries: np.ndarray | None = None) -> None:
    """Refuse a set that retrieval cannot score, naming the argument at fault.

    Args:
        labels: (N,) labels of the rows.
        ks: the K of Recall@K.
        labels_name, ks_name: what messages call them.
        queries: (N,) bool mask of the query rows, searched against the others (the gallery); None:
            leave-one-out, every row a query against all the others.

    Raises:
        ValueError: when no query has a relevant item (every label unique in leave-one-out; no query label
            in the gallery), or a K of Recall@K exceeds the rows each query can retrieve.
    """
    num_rows = len(labels)
    if queries is None:
        if num_rows < 2 or np.unique(labels).size == num_rows:
            raise ValueError(f"{labels_name} must have at least one class with 2 or more rows for leave-one-out "
                             f"retrieval, got {num_rows} rows with {np.unique(labels).size} distinct labels")
        gallery, what = num_rows - 1, f"each of the {num_rows} rows can retrieve only the {num_rows - 1} others"
    else:
        gallery_labels = labels[~queries]
        if not np.isin(labels[queries], gallery_labels).any():
            raise ValueError(f"{labels_name}: no query's label is in the gallery ({int(queries.sum())} queries, "
                             f"{gallery_labels.size} gallery rows), so no query can be answered")
        gallery, what = gallery_labels.size, f"the gallery has {gallery_labels.size} rows"
    if max(ks) > gallery:
        raise ValueError(f"{ks_name} must be at most {gallery} ({what}), got {max(ks)}")


def evaluate(embeddings: np.ndarray, labels: np.ndarray, config: EvalConfig, *,
             queries: np.ndarray | None = None, verification_threshold: float | None = None) -> Evaluation:
    """Retrieval metrics and class distance statistics of (N, D) `embeddings` with (N,) int `labels`, each
    computed once (see `check_evaluable` for what is refused).

    The metrics are leave-one-out, or with a (N,) bool `queries` mask, those of the query rows searched
    against the others (In-Shop's query and gallery), as the dataset's papers report them. Distance
    statistics, projector neighbours and plots use every row.

    With `config.verification`, `metrics["verification"]` holds `verification_metrics` of the pairs of
    rows, or with `queries`, of the query-gallery pairs only (In-Shop verifies a query against the gallery,
    as it retrieves), plus `accuracy_at_val_threshold` when a `verification_threshold` (a distance chosen on
    validation rows) is given.
    """
    ks = config.ks or DEFAULT_KS
    check_evaluable(labels, ks, queries=queries)
    nearest = min(UMAP_NEIGHBORS - 1, len(labels) - 1)
    if queries is None:
        metrics, neighbors = retrieval_metrics_and_neighbors(
            embeddings, labels, ks=ks, metric=config.metric, full_map=config.full_map, nearest=nearest)
    else:
        metrics, _ = retrieval_metrics_and_neighbors(
            embeddings[~queries], labels[~queries], query_embeddings=embeddings[queries],
            query_labels=labels[queries], ks=ks, metric=config.metric, full_map=config.full_map)
        distances, indices = knn_search(embeddings, k=nearest, metric=config.metric)
        neighbors = Neighbors(distances, indices)
    summary, class_stats = class_distance_stats(embeddings, labels, metric=config.metric)
    metrics["distances"] = summary
    if config.verification:
        scores = verification_metrics(embeddings, labels, metric=config.metric, queries=queries,
                                      threshold=verification_threshold,
                                      max_negative_pairs=config.verification_negatives)
        if verification_threshold is not None:
            scores["accuracy_at_val_threshold"] = scores.pop("accuracy_at_threshold")
        metrics["verification"] = scores
    return Evaluation(np.asarray(embeddings, dtype=np.float32), labels, metrics, class_stats, neighbors)


def projector_metadata(labels: np.ndarray, nearest: np.ndarray, class_names: Sequence[str], *,
                       rows: np.ndarray | None, split: str | None,
                       columns: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per point: its class, `columns` (a photo's path, SOP's super-class, ...), and what its nearest
    neighbour (row `nearest[i]`) says, to colour errors in the projector."""
    nearest_labels = labels[nearest]
    table: dict[str, Any] = {"label": [class_names[i] for i in labels], "label_id": labels}
    if split is not None:
        table["split"] = split
    if rows is not None:
        table["row"] = rows
    table.update(columns or {})
    table["nearest_label"] = [class_names[i] for i in nearest_labels]
    table["nearest_correct"] = nearest_labels == labels
    return pd.DataFrame(table)


def _gallery_images(images: np.ndarray | None, thumbnails: Callable[[np.ndarray], np.ndarray | None] | None,
                    rows: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray | None] | None:
    """The gallery's thumbnails by position in the evaluated set: rows of `images`, else `thumbnails` of those
    positions' dataset rows (decoding only the rows shown)."""
    if images is not None:
        return lambda positions: images[positions]
    if thumbnails is not None:
        return lambda positions: thumbnails(positions if rows is None else np.asarray(rows)[positions])
    return None


def write_evaluation(out_dir: str | Path, evaluation: Evaluation, config: EvalConfig, *, class_names: Sequence[str],
                     images: np.ndarray | None = None, rows: np.ndarray | None = None, split: str | None = None,
                     columns: dict[str, np.ndarray] | None = None, seed: int = 0, progress: bool = True,
                     thumbnails: Callable[[np.ndarray], np.ndarray | None] | None = None) -> None:
    """Write class_stats.csv, export/ (Embedding Projector files, with a sprite when `images` are given;
    if `config.export`) and plots/ (UMAP, intra vs inter distances, class margins, and the retrieval gallery:
    retrievals.png/.json, confused_pairs.csv; if `config.plots`) into `out_dir`, from an `evaluate` result.
    `columns` are extra projector metadata columns (one value per row); `seed` seeds UMAP, the plots' samples and
    the gallery's fixed queries. The gallery shows thumbnails from `images` (every row's) when given, else from
    `thumbnails` (dataset rows -> uint8 (n, C, H, W), or None for vectors), called for the few dozen rows shown."""
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
        metadata = projector_metadata(labels, evaluation.neighbors.indices[:, 0], class_names, rows=rows, split=split,
                                      columns=columns)
        export_projector(run.export, evaluation.embeddings, metadata, images=images)
        bar.update()
    if config.plots:
        bar.set_postfix_str("plots")
        write_eval_plots(run.plots, evaluation.embeddings, labels, class_names=list(class_names), metric=config.metric,
                         seed=seed, class_stats=table, neighbors=evaluation.neighbors)
        write_retrieval_gallery(run.plots, evaluation.neighbors, labels, metric=config.metric, seed=seed,
                                class_names=list(class_names), rows=rows, split=split,
                                images=_gallery_images(images, thumbnails, rows))
        bar.update()
    bar.close()

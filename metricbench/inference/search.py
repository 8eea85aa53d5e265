"""Search an index directory with queries: a dataset embedded by the index's own run, or a file from `embed`.

Neighbours are `metricbench.eval.knn_search_index`'s, which are `knn_search`'s for the gallery the index holds.
Each result row is one (query, rank). `distance` is evaluation's: the squared Euclidean distance for "l2", and
1 - cosine similarity for "cosine" (knn_search returns the similarity itself; the order is the same). When the
run directory has a `verification.json` (`eval.verification`: "metric", "threshold" on this same distance) of the
index's metric, `same_class` is `distance <= threshold`: the verification decision that query and neighbour show the
same class.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metricbench.atomic import atomic_write, json_text
from metricbench.eval import knn_search_index
from metricbench.run_dir import RunDir

from .embed import embed_dataset, is_dataset_spec, model_digest, open_run
from .embedded_files import EmbeddedSet, read_embedded
from .index_dir import GalleryIndex

__all__ = ["RESULT_SUFFIXES", "load_queries", "search_index_dir", "verification_threshold", "write_results"]

RESULT_SUFFIXES = (".csv", ".json")


def load_queries(gallery: GalleryIndex, query: str, *, split: str = "all", batch_size: int = 256,
                 device: str = "auto", progress: bool = False) -> EmbeddedSet:
    """The queries `query` names, checked against the index: a dataset spec is embedded by the index's run (refused
    when that run's model is no longer the one that built the index); a file from `metricbench embed` must come
    from the same model and metric and have the index's dimension.

    Raises:
        FileNotFoundError: the file, or the index's run, is missing.
        ValueError: another model, metric or dimension than the index's; a bad file or dataset.
    """
    info, where = gallery.info, f"index {str(gallery.path)!r}"
    if is_dataset_spec(query):
        try:
            run = open_run(info["run"], device=device)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{where} was built by run {info['run']!r}, which cannot embed --query "
                                    f"{query!r}: {error}") from error
        digest = model_digest(run)
        if digest != info["model_digest"]:
            raise ValueError(f"{where} was built by model {info['model_digest'][:16]}… but its run {info['run']!r} "
                             f"now holds model {digest[:16]}… (retrained or overwritten); rebuild the index with "
                             "`metricbench index`")
        if run.config.eval.metric != info["metric"]:
            raise ValueError(f"{where} measures {info['metric']!r} but its run {info['run']!r} now has eval.metric "
                             f"{run.config.eval.metric!r}; rebuild the index with `metricbench index`")
        return embed_dataset(run, info["run"], query, split=split, batch_size=batch_size, progress=progress,
                             what="--query")
    queries = read_embedded(query, what="--query")
    label = f"--query {query!r}"
    if queries.provenance.model_digest != info["model_digest"]:
        raise ValueError(f"{label} was embedded by model {queries.provenance.model_digest[:16]}… (run "
                         f"{queries.provenance.run!r}), {where} by model {info['model_digest'][:16]}… (run "
                         f"{info['run']!r}); embed the queries with the index's run")
    if queries.provenance.metric != info["metric"]:
        raise ValueError(f"{label} was embedded for metric {queries.provenance.metric!r}, {where} measures "
                         f"{info['metric']!r}")
    if queries.embeddings.shape[1] != info["dim"]:
        raise ValueError(f"{label} is a query of the wrong shape: embeddings {queries.embeddings.shape}, {where} "
                         f"holds dim {info['dim']}")
    return queries


def verification_threshold(run_dir: str | os.PathLike, metric: str) -> float | None:
    """The run's verification threshold for `metric`, or None when it has none (a warning when it is unusable)."""
    path = RunDir(run_dir).verification
    if not path.is_file():
        return None
    try:
        verification = json.loads(path.read_text(encoding="utf-8"))
        recorded, threshold = verification["metric"], float(verification["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"warning: no same_class column: {str(path)!r} is unreadable ({error!r})", file=sys.stderr)
        return None
    if recorded != metric:
        print(f"warning: no same_class column: {str(path)!r} holds a threshold for {recorded!r}, the index "
              f"measures {metric!r}", file=sys.stderr)
        return None
    return threshold


def search_index_dir(gallery: GalleryIndex, queries: EmbeddedSet, *, k: int,
                     threshold: float | None = None) -> pd.DataFrame:
    """The k nearest gallery items of every query, one row per (query, rank).

    Columns: query_id (position among the queries), query_row, query_label, query_class, query_path (photos),
    rank (1 = nearest), neighbor_id (id in the index), neighbor_row, neighbor_label, neighbor_class, neighbor_path
    (photos), distance, and with a `threshold` same_class (distance <= threshold).

    Raises:
        ValueError: `k` is not in [1, number of gallery items].
    """
    count, metric = gallery.info["count"], gallery.info["metric"]
    if not isinstance(k, int) or not 1 <= k <= count:
        raise ValueError(f"-k must be in [1, {count}] (the gallery's items), got {k}")
    values, ids = knn_search_index(gallery.index, queries.embeddings, k=k, metric=metric)
    which = np.repeat(np.arange(len(queries)), k)
    flat = ids.reshape(-1)
    columns: dict[str, Any] = {
        "query_id": which, "query_row": queries.rows[which], "query_label": queries.labels[which],
        "query_class": np.asarray(queries.class_names, dtype=object)[queries.labels[which]],
    }
    if queries.paths is not None:
        columns["query_path"] = np.asarray(queries.paths, dtype=object)[which]
    items = gallery.items.iloc[flat]
    columns.update({"rank": np.tile(np.arange(1, k + 1), len(queries)), "neighbor_id": flat,
                    "neighbor_row": items["row"].to_numpy(), "neighbor_label": items["label"].to_numpy(),
                    "neighbor_class": items["class_name"].to_numpy()})
    if "path" in items:
        columns["neighbor_path"] = items["path"].to_numpy()
    distances = values.reshape(-1).astype(np.float64)
    columns["distance"] = distances if metric == "l2" else 1.0 - distances
    if threshold is not None:
        columns["same_class"] = columns["distance"] <= threshold
    return pd.DataFrame(columns)


def write_results(results: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the results atomically: `.csv` (a header row), or `.json` (a list of one object per row)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        atomic_write(path, results.to_csv(index=False).encode("utf-8"))
    elif suffix == ".json":
        atomic_write(path, json_text(results.to_dict(orient="records")).encode("utf-8"))
    else:
        raise ValueError(f"--out must end in {' or '.join(RESULT_SUFFIXES)}, got {str(path)!r}")

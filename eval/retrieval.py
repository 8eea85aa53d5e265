"""Retrieval metrics: small pure functions over neighbour labels, and one entry point.

The definitions follow "A Metric Learning Reality Check" (Musgrave et al., ECCV 2020) and match
pytorch-metric-learning's `AccuracyCalculator` on the same inputs; Recall@K is the metric-learning
papers' one (a hit if any of the K nearest shares the query's label).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .knn import METRICS, knn_search_chunks, to_float32_matrix, to_int_labels

__all__ = ["map_at_r", "precision_at_1", "r_precision", "recall_at_k", "retrieval_metrics"]


def _check_neighbor_labels(neighbor_labels: Any, query_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    neighbors, queries = np.asarray(neighbor_labels), np.asarray(query_labels)
    if neighbors.ndim != 2 or neighbors.shape[1] == 0:
        raise ValueError(f"neighbor_labels must have shape (num_queries, k >= 1), got {neighbors.shape}")
    if queries.shape != (neighbors.shape[0],):
        raise ValueError(
            f"query_labels must have shape ({neighbors.shape[0]},) like neighbor_labels' rows, "
            f"got {queries.shape}"
        )
    if queries.shape[0] == 0:
        raise ValueError("neighbor_labels must hold at least one query, got 0 rows")
    return neighbors, queries


def _first_r_hits(
    neighbor_labels: Any, query_labels: Any, num_relevant: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(Nq, max R) bool: neighbour j is within the query's first R and shares its label; and R (Nq,)."""
    neighbors, queries = _check_neighbor_labels(neighbor_labels, query_labels)
    r = np.asarray(num_relevant)
    if r.shape != queries.shape or r.dtype.kind not in "iu":
        raise ValueError(
            f"num_relevant must be an int array of shape {queries.shape}, got {r.dtype} {r.shape}"
        )
    if r.min() < 1 or r.max() > neighbors.shape[1]:
        raise ValueError(
            f"num_relevant must lie in [1, k={neighbors.shape[1]}] (k neighbours are needed for R = k), "
            f"got values in [{r.min()}, {r.max()}]"
        )
    width = int(r.max())
    within_r = np.arange(width)[None, :] < r[:, None]
    return (neighbors[:, :width] == queries[:, None]) & within_r, r


def precision_at_1(neighbor_labels: ArrayLike, query_labels: ArrayLike) -> float:
    """Fraction of queries whose nearest neighbour shares their label.

    Args:
        neighbor_labels: (Nq, k) labels of each query's neighbours, nearest first.
        query_labels: (Nq,) labels of the queries.

    Example:
        >>> precision_at_1(np.array([[0, 1], [0, 1]]), np.array([0, 1]))
        0.5
    """
    neighbors, queries = _check_neighbor_labels(neighbor_labels, query_labels)
    return float(np.mean(neighbors[:, 0] == queries))


def recall_at_k(neighbor_labels: ArrayLike, query_labels: ArrayLike, k: int) -> float:
    """Fraction of queries with at least one same-label item among their k nearest neighbours.

    Args:
        neighbor_labels: (Nq, >= k) labels of each query's neighbours, nearest first.
        query_labels: (Nq,) labels of the queries.
        k: how many neighbours count, 1 <= k <= neighbor_labels.shape[1].

    Example:
        >>> recall_at_k(np.array([[1, 0], [1, 1]]), np.array([0, 0]), k=2)
        0.5
    """
    neighbors, queries = _check_neighbor_labels(neighbor_labels, query_labels)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= neighbors.shape[1]:
        raise ValueError(f"k must be an int in [1, {neighbors.shape[1]}] (neighbor_labels columns), got {k!r}")
    return float(np.mean((neighbors[:, :k] == queries[:, None]).any(axis=1)))


def r_precision(neighbor_labels: ArrayLike, query_labels: ArrayLike, num_relevant: ArrayLike) -> float:
    """Mean over queries of (same-label items among the first R neighbours) / R.

    Args:
        neighbor_labels: (Nq, k) labels of each query's neighbours, nearest first; k >= max R.
        query_labels: (Nq,) labels of the queries.
        num_relevant: (Nq,) int R per query: gallery items sharing its label (the query itself
            excluded in leave-one-out), each >= 1.

    Example:
        >>> r_precision(np.array([[1, 0, 0], [1, 1, 0]]), np.array([0, 1]), np.array([2, 3]))
        0.5833333333333333
    """
    hits, r = _first_r_hits(neighbor_labels, query_labels, num_relevant)
    return float(np.mean(hits.sum(axis=1) / r))


def map_at_r(neighbor_labels: ArrayLike, query_labels: ArrayLike, num_relevant: ArrayLike) -> float:
    """Mean Average Precision at R: mean over queries of (1/R) * sum_{i<=R} P@i * [neighbour i relevant].

    Args:
        neighbor_labels: (Nq, k) labels of each query's neighbours, nearest first; k >= max R.
        query_labels: (Nq,) labels of the queries.
        num_relevant: (Nq,) int R per query, as in `r_precision`.

    Example:
        >>> map_at_r(np.array([[1, 0, 0], [1, 1, 0]]), np.array([0, 1]), np.array([2, 3]))
        0.4583333333333333
    """
    hits, r = _first_r_hits(neighbor_labels, query_labels, num_relevant)
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return float(np.mean((precision_at_i * hits).sum(axis=1) / r))


def _check_ks(ks: Any, available: int) -> tuple[int, ...]:
    if isinstance(ks, (int, str)) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise TypeError(f"ks must be a non-empty sequence of ints, got {ks!r}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= available:
            raise ValueError(f"ks must hold ints in [1, {available}] (neighbours available), got {k!r}")
    return tuple(dict.fromkeys(int(k) for k in ks))


def retrieval_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: str = "l2",
    query_embeddings: ArrayLike | None = None,
    query_labels: ArrayLike | None = None,
) -> dict[str, float]:
    """Recall@K, Precision@1, R-Precision and MAP@R of a labelled embedding set.

    Without `query_embeddings`, every item is a query against all the others (leave-one-out);
    with them, the queries search `embeddings` (the gallery). R is the number of gallery items
    sharing the query's label (excluding the query itself in leave-one-out). Queries with R = 0
    (a singleton class in leave-one-out, or a label absent from the gallery) can never be answered
    and are left out of every average, as pytorch-metric-learning's `AccuracyCalculator` does; when
    no query is left, every metric is NaN. The search fetches max(max(ks), max R) neighbours and the
    metrics are reduced chunk by chunk, so the (Nq, k) neighbour table is never held in memory.

    Args:
        embeddings: (N, D) gallery embeddings, numpy array or torch tensor.
        labels: (N,) integer gallery labels.
        ks: the K values of Recall@K, each in [1, neighbours available].
        metric: "l2" or "cosine", as in `knn_search`.
        query_embeddings: (Nq, D) query embeddings, or None for leave-one-out.
        query_labels: (Nq,) integer query labels; given exactly when `query_embeddings` is.

    Returns:
        {"recall_at_{k}" for each k, "precision_at_1", "r_precision", "map_at_r"} as Python floats.

    Raises:
        TypeError/ValueError: naming the argument, on bad shapes, dtypes, lengths or ks.

    Example:
        >>> x = np.array([[0.0], [1.0], [5.0], [6.0]])
        >>> retrieval_metrics(x, np.array([0, 0, 1, 1]), ks=(1,))["recall_at_1"]
        1.0
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    gallery = to_float32_matrix(embeddings, "embeddings")
    gallery_labels = to_int_labels(labels, "labels", gallery.shape[0], "embeddings rows")
    leave_one_out = query_embeddings is None
    if leave_one_out != (query_labels is None):
        raise ValueError("query_embeddings and query_labels must be given together, got only one of them")
    if leave_one_out:
        queries, query_label_array = None, gallery_labels
    else:
        queries = to_float32_matrix(query_embeddings, "query_embeddings")
        if queries.shape[1] != gallery.shape[1]:
            raise ValueError(
                f"query_embeddings must have dim {gallery.shape[1]} like embeddings, got {queries.shape}"
            )
        query_label_array = to_int_labels(
            query_labels, "query_labels", queries.shape[0], "query_embeddings rows"
        )
    if gallery.shape[0] < 1 + int(leave_one_out):
        needed = "2 rows for leave-one-out" if leave_one_out else "1 row"
        raise ValueError(f"embeddings must have at least {needed}, got shape {gallery.shape}")
    ks = _check_ks(ks, gallery.shape[0] - int(leave_one_out))

    classes, counts = np.unique(gallery_labels, return_counts=True)
    position = np.clip(np.searchsorted(classes, query_label_array), 0, len(classes) - 1)
    found = classes[position] == query_label_array
    num_relevant = np.where(found, counts[position], 0) - int(leave_one_out)
    answerable = num_relevant > 0
    names = [f"recall_at_{k}" for k in ks] + ["precision_at_1", "r_precision", "map_at_r"]
    if not answerable.any():
        return dict.fromkeys(names, float("nan"))

    # R-Precision and MAP@R read the first R neighbours, Recall@K the first K.
    k = max(max(ks), int(num_relevant.max()))
    _, chunks = knn_search_chunks(
        gallery if leave_one_out else queries, None if leave_one_out else gallery, k=k, metric=metric
    )
    # Average chunk by chunk (weighted by answerable queries), so (Nq, k) neighbours never sit in memory.
    totals = dict.fromkeys(names, 0.0)
    for start, _, indices in chunks:
        rows = slice(start, start + len(indices))
        keep = answerable[rows]
        if not keep.any():
            continue
        neighbor_labels = gallery_labels[indices[keep]]
        chunk_labels, r = query_label_array[rows][keep], num_relevant[rows][keep]
        chunk = {f"recall_at_{n}": recall_at_k(neighbor_labels, chunk_labels, n) for n in ks}
        chunk["precision_at_1"] = precision_at_1(neighbor_labels, chunk_labels)
        chunk["r_precision"] = r_precision(neighbor_labels, chunk_labels, r)
        chunk["map_at_r"] = map_at_r(neighbor_labels, chunk_labels, r)
        for name, value in chunk.items():
            totals[name] += value * int(keep.sum())
    count = int(answerable.sum())
    return {name: total / count for name, total in totals.items()}

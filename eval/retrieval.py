"""Retrieval metrics: small pure functions over neighbour labels (`retrieval_suite.py` runs them all).

The definitions follow "A Metric Learning Reality Check" (Musgrave et al., ECCV 2020) and match
pytorch-metric-learning's `AccuracyCalculator` on the same inputs; Recall@K is the metric-learning
papers' one (a hit if any of the K nearest shares the query's label).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .inputs import check_int

__all__ = [
    "map_at_r",
    "map_at_r_per_query",
    "precision_at_1",
    "r_precision",
    "r_precision_per_query",
    "recall_at_k",
]


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


def _check_num_relevant(neighbors: np.ndarray, queries: np.ndarray, num_relevant: Any) -> np.ndarray:
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
    return r


def _first_r(hits: np.ndarray, r: np.ndarray) -> np.ndarray:
    """(Nq, max R) bool: neighbour j is relevant and within the query's first R."""
    width = int(r.max())
    return hits[:, :width] & (np.arange(width)[None, :] < r[:, None])


def r_precision_per_query(hits: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    """(Nq,) R-Precision of each query from its (Nq, >= max R) bool relevance of neighbours, nearest first.

    Example:
        >>> r_precision_per_query(np.array([[False, True, True]]), np.array([2])).tolist()
        [0.5]
    """
    return _first_r(hits, num_relevant).sum(axis=1) / num_relevant


def map_at_r_per_query(hits: np.ndarray, num_relevant: np.ndarray) -> np.ndarray:
    """(Nq,) MAP@R of each query from its (Nq, >= max R) bool relevance of neighbours, nearest first.

    Example:
        >>> map_at_r_per_query(np.array([[False, True, True]]), np.array([2])).tolist()
        [0.25]
    """
    r = num_relevant
    first_r = _first_r(hits, r)
    precision_at_i = np.cumsum(first_r, axis=1, dtype=np.int32) / np.arange(1, first_r.shape[1] + 1)
    return (precision_at_i * first_r).sum(axis=1) / r


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
    k = check_int(k, "k", 1, neighbors.shape[1])  # at most the neighbor_labels columns
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
    neighbors, queries = _check_neighbor_labels(neighbor_labels, query_labels)
    r = _check_num_relevant(neighbors, queries, num_relevant)
    return float(np.mean(r_precision_per_query(neighbors == queries[:, None], r)))


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
    neighbors, queries = _check_neighbor_labels(neighbor_labels, query_labels)
    r = _check_num_relevant(neighbors, queries, num_relevant)
    return float(np.mean(map_at_r_per_query(neighbors == queries[:, None], r)))

"""How many of the exact nearest neighbours an approximate index returns, on a sample of queries."""

from __future__ import annotations

import numpy as np

from .knn import knn_search

__all__ = ["INDEX_RECALL_QUERIES", "index_recall_rows", "neighbor_recall"]

INDEX_RECALL_QUERIES = 1000


def index_recall_rows(num_queries: int, seed: int) -> np.ndarray:
    """Sorted seeded sample of min(`INDEX_RECALL_QUERIES`, num_queries) query rows."""
    size = min(INDEX_RECALL_QUERIES, num_queries)
    return np.sort(np.random.default_rng(seed).choice(num_queries, size, replace=False))


def neighbor_recall(
    approximate: dict[int, np.ndarray], queries: np.ndarray, gallery: np.ndarray | None, metric: str
) -> float:
    """Mean over the sampled queries of |approximate ∩ exact k nearest| / k.

    Args:
        approximate: {query row: (k,) int64 neighbour indices from the approximate index (-1: missing)}.
        queries: (Nq, D) float32 query embeddings.
        gallery: (Ng, D) float32 gallery, or None for leave-one-out within `queries`.
        metric: "l2" or "cosine".

    Example:
        >>> x = np.array([[0.0], [1.0], [3.0]], dtype=np.float32)
        >>> neighbor_recall({0: np.array([1]), 2: np.array([0])}, x, None, "l2")
        0.5
    """
    rows = np.array(sorted(approximate))
    k = len(approximate[int(rows[0])])
    if gallery is None:  # search the whole set for the sampled rows, then drop each row itself
        _, exact = knn_search(queries[rows], queries, k=k + 1, metric=metric)
        exact = [ids[ids != row][:k] for row, ids in zip(rows, exact)]
    else:
        _, exact = knn_search(queries[rows], gallery, k=k, metric=metric)
    found = [np.intersect1d(approximate[int(row)], ids).size / k for row, ids in zip(rows, exact)]
    return float(np.mean(found))

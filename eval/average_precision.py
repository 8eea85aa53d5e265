"""Mean average precision over the whole ranking, computed exactly in memory-bounded query chunks.

MAP@R only looks at each query's first R neighbours; `map` ranks the entire gallery. For a query with
R relevant gallery items (same label; the query itself excluded in leave-one-out) at distances
d_1 <= ... <= d_R, AP = (1/R) * sum_j P(d_j), where P(t) = (relevant items at distance <= t) / (all
gallery items at distance <= t). Items tied at the same distance thus count as one block, as in
scikit-learn's `average_precision_score`; without ties this is the usual mean over the relevant
items of the precision at their rank. Queries with no relevant item are left out of the mean.

Each chunk of queries gets its distances to the whole gallery from one matrix product (at most
`_CHUNK_BYTES` of them and their sorted copy at a time); binary searches of a query's relevant
distances in its sorted row give every count. O(Nq * Ng * log Ng) time, O(Ng) memory per query.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .inputs import check_metric, l2_normalized, labelled_sets

__all__ = ["mean_average_precision"]

# Distances held at once (float32), in bytes.
_CHUNK_BYTES = 256 * 2**20


def _average_precision(sorted_distances: np.ndarray, relevant_distances: np.ndarray) -> float:
    """AP of one query from its (Ng,) sorted distances and its relevant items' distances."""
    relevant_distances = np.sort(relevant_distances)
    at_or_below = np.searchsorted(sorted_distances, relevant_distances, side="right")
    relevant_at_or_below = np.searchsorted(relevant_distances, relevant_distances, side="right")
    return float(np.mean(relevant_at_or_below / at_or_below))


def _map_over_chunks(
    queries: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    leave_one_out: bool,
    metric: str,
) -> float:
    """`mean_average_precision` on validated float32 arrays (cosine rows already normalised)."""
    if metric == "cosine":
        left, right = -queries, gallery
    else:
        left = np.hstack([-2.0 * queries, np.einsum("ij,ij->i", queries, queries)[:, None]])
        right = np.hstack([gallery, np.ones((gallery.shape[0], 1), dtype=np.float32)])
        right = np.hstack([right, np.einsum("ij,ij->i", gallery, gallery)[:, None]])
        left = np.hstack([left, np.ones((queries.shape[0], 1), dtype=np.float32)])
    order = np.argsort(gallery_labels, kind="stable")
    classes, starts, counts = np.unique(gallery_labels[order], return_index=True, return_counts=True)
    position = np.clip(np.searchsorted(classes, query_labels), 0, len(classes) - 1)
    found = classes[position] == query_labels
    total, answered = 0.0, 0
    rows = max(1, _CHUNK_BYTES // (8 * gallery.shape[0]))  # distances and their sorted copy
    for start in range(0, queries.shape[0], rows):
        distances = left[start : start + rows] @ right.T
        if leave_one_out:  # the query itself ranks after every other item
            distances[np.arange(len(distances)), np.arange(start, start + len(distances))] = np.inf
        ranked = np.sort(distances, axis=1)
        for offset, row in enumerate(distances):
            query = start + offset
            if not found[query]:
                continue
            cls = position[query]
            relevant = order[starts[cls] : starts[cls] + counts[cls]]
            if leave_one_out:
                relevant = relevant[relevant != query]
            if relevant.size == 0:
                continue
            total += _average_precision(ranked[offset], row[relevant])
            answered += 1
    return total / answered if answered else float("nan")


def mean_average_precision(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    metric: str = "l2",
    query_embeddings: ArrayLike | None = None,
    query_labels: ArrayLike | None = None,
) -> float:
    """Mean over queries of the average precision of the full gallery ranking (see the module doc).

    Args:
        embeddings: (N, D) gallery embeddings, numpy array or torch tensor.
        labels: (N,) integer gallery labels.
        metric: "l2" (squared Euclidean, ascending) or "cosine" (similarity, descending).
        query_embeddings: (Nq, D) queries, or None for leave-one-out within `embeddings`.
        query_labels: (Nq,) integer query labels; given exactly when `query_embeddings` is.

    Returns:
        The mean AP over queries with at least one relevant gallery item; NaN when there are none.

    Raises:
        TypeError/ValueError: naming the argument, on bad shapes, dtypes or lengths.

    Example:
        >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
        >>> round(mean_average_precision(x, np.array([0, 1, 0, 1])), 6)  # (1/2 + 1/3 + 1/3 + 1/2) / 4
        0.416667
    """
    metric = check_metric(metric)
    gallery, gallery_labels, queries, query_label_array, leave_one_out = labelled_sets(
        embeddings, labels, query_embeddings, query_labels
    )
    if metric == "cosine":
        gallery = l2_normalized(gallery)
        queries = gallery if leave_one_out else l2_normalized(queries)
    return _map_over_chunks(queries, query_label_array, gallery, gallery_labels, leave_one_out, metric)

"""`retrieval_metrics`: every retrieval and clustering metric of a labelled embedding set in one call.

It runs the neighbour search once (`knn.py`), keeps the first columns of the neighbour table on
request (`retrieval_metrics_and_neighbors`: a projector's nearest-neighbour column and a UMAP graph
come from the same search), reduces the neighbour table chunk by chunk with the
pure functions of `retrieval.py`, and adds the clustering scores (`clustering.py`), the full-ranking
MAP (`average_precision.py`) and the approximate index's recall (`index_recall.py`) on request.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .average_precision import mean_average_precision
from .clustering import ami, kmeans_assignment, nmi
from .index_recall import index_recall_rows, neighbor_recall
from .indexes import resolve_index
from .inputs import check_int, check_metric, l2_normalized, labelled_sets
from .knn import knn_search_chunks
from .retrieval import map_at_r_per_query, r_precision_per_query

__all__ = ["Neighbors", "retrieval_metrics", "retrieval_metrics_and_neighbors"]

# Neighbour-table elements reduced at once (a few bytes of temporaries each).
_REDUCE_ELEMENTS = 2**22


def _check_ks(ks: Any, available: int) -> tuple[int, ...]:
    if isinstance(ks, (int, str)) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise TypeError(f"ks must be a non-empty sequence of ints, got {ks!r}")
    # At most `available` neighbours exist (N - 1 in leave-one-out, where the query is not its own neighbour).
    return tuple(dict.fromkeys(check_int(k, "each of ks", 1, available) for k in ks))


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


@dataclass(frozen=True)
class Neighbors:
    """The first columns of every query's neighbour list, as `knn_search` returns them.

    Attributes:
        distances: (Nq, k) float32: squared L2 distances (metric "l2", ascending) or cosine
            similarities (metric "cosine", descending).
        indices: (Nq, k) int64 gallery rows, nearest first (in leave-one-out, never the query itself;
            -1 where an approximate index found fewer).
    """

    distances: np.ndarray
    indices: np.ndarray


def _neighbor_metrics(
    chunks: Iterator[tuple[int, np.ndarray, np.ndarray]],
    gallery_codes: np.ndarray,
    query_codes: np.ndarray,
    num_relevant: np.ndarray,
    ks: tuple[int, ...],
    keep_rows: np.ndarray,
    nearest: int,
) -> tuple[dict[str, float], dict[int, np.ndarray], Neighbors]:
    """Average every neighbour metric over the answerable queries, chunk by chunk.

    Returns the averages (NaN when no query is answerable), the neighbour indices of the rows
    `keep_rows` (for `index_recall`), and the first `nearest` neighbours of every query.
    """
    names = [f"recall_at_{k}" for k in ks] + ["precision_at_1", "r_precision", "map_at_r"]
    totals = dict.fromkeys(names, 0.0)
    kept: dict[int, np.ndarray] = {}
    answerable = num_relevant > 0
    first = Neighbors(np.empty((len(query_codes), nearest), np.float32), np.empty((len(query_codes), nearest), np.int64))
    for start, distances, indices in chunks:
        first.distances[start : start + len(indices)] = distances[:, :nearest]
        first.indices[start : start + len(indices)] = indices[:, :nearest]
        for row in keep_rows[(keep_rows >= start) & (keep_rows < start + len(indices))]:
            kept[int(row)] = indices[row - start].copy()
        step = max(1, _REDUCE_ELEMENTS // indices.shape[1])
        for sub in range(0, len(indices), step):
            rows = np.arange(start + sub, start + min(sub + step, len(indices)))
            rows = rows[answerable[rows]]
            if rows.size == 0:
                continue
            neighbors = indices[rows - start]
            # A missing neighbour (-1, approximate indexes only) matches no query: codes are >= 0 there.
            hits = np.where(neighbors >= 0, gallery_codes[neighbors], -1) == query_codes[rows][:, None]
            r = num_relevant[rows]
            for k in ks:
                totals[f"recall_at_{k}"] += float(hits[:, :k].any(axis=1).sum())
            totals["precision_at_1"] += float(hits[:, 0].sum())
            totals["r_precision"] += float(r_precision_per_query(hits, r).sum())
            totals["map_at_r"] += float(map_at_r_per_query(hits, r).sum())
    count = int(answerable.sum())
    return {name: total / count if count else float("nan") for name, total in totals.items()}, kept, first


def retrieval_metrics(embeddings: ArrayLike, labels: ArrayLike, **options: Any) -> dict[str, float]:
    """Recall@K, Precision@1, R-Precision, MAP@R, NMI, AMI (and optionally MAP) of labelled embeddings.

    The same as `retrieval_metrics_and_neighbors(embeddings, labels, **options)[0]`; see there for
    the arguments, definitions and how they compare with pytorch-metric-learning.

    Example:
        >>> x = np.array([[0.0], [1.0], [5.0], [6.0]])
        >>> retrieval_metrics(x, np.array([0, 0, 1, 1]), ks=(1,))["recall_at_1"]
        1.0
    """
    return retrieval_metrics_and_neighbors(embeddings, labels, **options)[0]


def retrieval_metrics_and_neighbors(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    ks: Sequence[int] = (1, 2, 4, 8),
    metric: str = "l2",
    query_embeddings: ArrayLike | None = None,
    query_labels: ArrayLike | None = None,
    index: str = "auto",
    full_map: bool = False,
    clustering: bool = True,
    index_recall: bool = False,
    seed: int = 0,
    nearest: int = 0,
) -> tuple[dict[str, float], Neighbors]:
    """Every retrieval and clustering metric, and each query's `nearest` neighbours from the same search.

    The neighbours are what a projector export (each point's nearest neighbour) or a UMAP graph
    needs, so one evaluation searches once.

    Without `query_embeddings`, every item is a query against all the others (leave-one-out: its
    own row is excluded by index, exact duplicates stay neighbours); with them, the queries search
    `embeddings` (the gallery). R is the number of gallery items sharing the query's label (the
    query itself excluded in leave-one-out). The neighbour metrics equal pytorch-metric-learning's
    `AccuracyCalculator(k="max_bin_count")` on the same inputs (tested to 1e-6), and so do NMI/AMI
    given the same k-means seed. The definitions, and where they differ from PML:

    - Queries with R = 0 (a singleton class in leave-one-out, or a label absent from the gallery) can
      never be answered and are left out of every neighbour average (as in PML); when no query is
      left, those metrics are NaN. NMI and AMI use every query (as in PML).
    - Recall@K is the metric-learning papers' one: a hit if any of the K nearest shares the label
      (PML has no Recall@K; its precision_at_1 is our recall_at_1).
    - Neighbours at exactly the same distance may come in a different order than FAISS returns them
      (both are exact), and distances within float32 rounding of each other may swap: metrics can
      differ from PML only on such ties.
    - `nmi`/`ami` (see `clustering.py`): FAISS k-means on the query embeddings with one cluster per
      distinct query label, 20 iterations, as PML. Differences: the k-means seed is `seed` (PML's is
      always FAISS's default, 1234: pass seed=1234 to reproduce its clusters), and for "cosine" the
      rows are L2-normalised before clustering (PML clusters the raw embeddings whatever the distance).
    - `map` (with `full_map=True`, see `average_precision.py`): average precision over the whole
      gallery ranking, tied distances counted as one block (scikit-learn's convention). PML's
      `mean_average_precision` is the same quantity only with k=None; with k="max_bin_count" it
      truncates the ranking after max R neighbours.

    The search fetches max(max(ks), max R) neighbours and the metrics are reduced chunk by chunk,
    so the (Nq, k) neighbour table is never held in memory at once.

    Args:
        embeddings: (N, D) gallery embeddings, numpy array or torch tensor.
        labels: (N,) integer gallery labels.
        ks: the K values of Recall@K, each in [1, neighbours available].
        metric: "l2" or "cosine", as in `knn_search`.
        query_embeddings: (Nq, D) query embeddings, or None for leave-one-out.
        query_labels: (Nq,) integer query labels; given exactly when `query_embeddings` is.
        index: neighbour index, as in `knn_search`: "auto" (exact up to `AUTO_EXACT_MAX_GALLERY`
            gallery rows, IVF above), "flat" (exact), "ivf" or "hnsw" (approximate).
        full_map: also compute `map`, the mean average precision over the whole ranking, exactly
            (O(Nq * Ng) time, bounded memory).
        clustering: compute `nmi` and `ami` (one FAISS k-means).
        index_recall: with an approximate index, also report `index_recall`: the fraction of the
            exact k nearest neighbours (k as searched) that the index returned, averaged over a
            seeded sample of at most 1,000 queries. Not reported for an exact index.
        seed: seed of the k-means, the IVF training sample, the `index_recall` sample and the exact
            search's threshold sample (which changes its speed, never its result).
        nearest: how many neighbours of every query to return, in [0, neighbours available].

    Returns:
        (metrics, neighbors): {"recall_at_{k}" for each k, "precision_at_1", "r_precision",
        "map_at_r"} then "map" (if `full_map`), "nmi" and "ami" (if `clustering`), "index_recall" (if
        asked for and the index is approximate), as Python floats; and the first `nearest` columns
        of the neighbour table.

    Raises:
        TypeError/ValueError: naming the argument, on bad shapes, dtypes, lengths, ks, index or flags.

    Example:
        >>> x = np.array([[0.0], [1.0], [5.0], [6.0]])
        >>> metrics, neighbors = retrieval_metrics_and_neighbors(x, np.array([0, 0, 1, 1]), ks=(1,), nearest=1)
        >>> metrics["recall_at_1"], neighbors.indices[:, 0].tolist()
        (1.0, [1, 0, 3, 2])
    """
    metric = check_metric(metric)
    gallery, gallery_labels, queries, query_label_array, leave_one_out = labelled_sets(
        embeddings, labels, query_embeddings, query_labels
    )
    if gallery.shape[0] < 1 + int(leave_one_out):
        needed = "2 rows for leave-one-out" if leave_one_out else "1 row"
        raise ValueError(f"embeddings must have at least {needed}, got shape {gallery.shape}")
    ks = _check_ks(ks, gallery.shape[0] - int(leave_one_out))
    kind = resolve_index(index, gallery.shape[0])
    full_map, clustering = _check_flag(full_map, "full_map"), _check_flag(clustering, "clustering")
    index_recall = _check_flag(index_recall, "index_recall")
    seed = check_int(seed, "seed")
    nearest = check_int(nearest, "nearest", 0, gallery.shape[0] - int(leave_one_out))

    # Labels as class codes 0..C-1 (queries whose label is not in the gallery: -2, matching nothing).
    classes, gallery_codes, counts = np.unique(gallery_labels, return_inverse=True, return_counts=True)
    position = np.clip(np.searchsorted(classes, query_label_array), 0, len(classes) - 1)
    found = classes[position] == query_label_array
    query_codes = np.where(found, position, -2)
    num_relevant = np.where(found, counts[position], 0) - int(leave_one_out)
    approximate = kind != "flat"
    names = [f"recall_at_{k}" for k in ks] + ["precision_at_1", "r_precision", "map_at_r"]
    result = dict.fromkeys(names, float("nan"))
    recall_rows, kept = np.empty(0, dtype=np.int64), {}
    neighbors = Neighbors(np.empty((queries.shape[0], 0), np.float32), np.empty((queries.shape[0], 0), np.int64))
    if index_recall and approximate:
        recall_rows = index_recall_rows(queries.shape[0], int(seed))
    if (num_relevant > 0).any() or nearest:
        # R-Precision and MAP@R read the first R neighbours, Recall@K the first K.
        k = max(max(ks), int(num_relevant.max()), nearest)
        _, chunks = knn_search_chunks(
            queries, None if leave_one_out else gallery, k=k, metric=metric, index=kind, seed=int(seed)
        )
        averages, kept, neighbors = _neighbor_metrics(
            chunks, gallery_codes, query_codes, num_relevant, ks, recall_rows, nearest
        )
        result.update(averages)
    if full_map:
        result["map"] = mean_average_precision(
            gallery, gallery_labels, metric=metric,
            query_embeddings=None if leave_one_out else queries,
            query_labels=None if leave_one_out else query_label_array,
        )
    if clustering:
        clustered = l2_normalized(queries) if metric == "cosine" else queries
        assignment = kmeans_assignment(clustered, len(np.unique(query_label_array)), seed=int(seed))
        result["nmi"], result["ami"] = nmi(query_label_array, assignment), ami(query_label_array, assignment)
    if index_recall and approximate:
        result["index_recall"] = (
            neighbor_recall(kept, queries, None if leave_one_out else gallery, metric) if kept else float("nan")
        )
    return result, neighbors

"""k-nearest-neighbour search: the one entry point metricbench's neighbours come from.

Everything that needs neighbours (retrieval metrics, distance statistics, plots) goes through
`knn_search` or its streaming form `knn_search_chunks`: they convert the inputs to contiguous float32
once, choose the index (`indexes.py`: exact flat, IVF, HNSW; GPUs when FAISS has them), search in
memory-bounded query chunks and drop the self-match in leave-one-out mode. `knn_search_index` searches
an index saved earlier (`index_files.py`) with the same conventions. The exact CPU search is `exact_knn.py`.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
from numpy.typing import ArrayLike

from .exact_knn import exact_knn_blocks
from .indexes import GPU_MAX_K, build_index, gpu_count, on_gpus, resolve_index, set_search_k
from .inputs import check_int, check_metric, l2_normalized, to_float32_matrix

__all__ = ["knn_search", "knn_search_chunks", "knn_search_index"]


# Working memory one FAISS search call may use (result heaps and FAISS's distance blocks), in bytes.
_CHUNK_BUDGET_BYTES = 256 * 2**20


def _chunk_size(k_search: int) -> int:
    # Per query: FAISS's result heap or reservoir (up to 2k float32 + int64 pairs), our (k) copy of it,
    # and one row of FAISS's BLAS block (database_bs float32; FAISS caps the block at query_bs rows).
    per_query = 3 * k_search * (4 + 8) + 4 * faiss.cvar.distance_compute_blas_database_bs
    return max(1, _CHUNK_BUDGET_BYTES // per_query)


def _drop_self(distances: np.ndarray, indices: np.ndarray, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index from (rows, k + 1) results; rows that lack it lose their last column."""
    rows = indices.shape[0]
    is_self = indices == np.arange(first_row, first_row + rows)[:, None]
    is_self[~is_self.any(axis=1), -1] = True  # ties (or an approximate index) left the query out of its k + 1
    keep = ~is_self
    k = indices.shape[1] - 1
    return distances[keep].reshape(rows, k), indices[keep].reshape(rows, k)


_OVERFLOW = "queries/gallery produce distances that overflow float32; rescale the embeddings"


def _exact_chunks(
    queries: np.ndarray, gallery: np.ndarray | None, k: int, metric: str, chunk_size: int | None, seed: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for start, distances, indices in exact_knn_blocks(
        queries, gallery, k=k, metric=metric, block_rows=chunk_size, seed=seed
    ):
        if (indices < 0).any():  # an Inf/NaN distance never enters a heap
            raise ValueError(_OVERFLOW)
        yield start, distances, indices


def _faiss_chunks(
    index: faiss.Index, queries: np.ndarray, k: int, metric: str, leave_one_out: bool, exact: bool,
    chunk_size: int,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    k_search = k + int(leave_one_out)
    for start in range(0, queries.shape[0], chunk_size):
        distances, indices = index.search(queries[start : start + chunk_size], k_search)
        found = indices >= 0
        if (exact and not found.all()) or not np.isfinite(distances[found]).all():
            raise ValueError(_OVERFLOW)
        distances[~found] = np.inf if metric == "l2" else -np.inf  # FAISS pads with +-FLT_MAX
        if leave_one_out:
            distances, indices = _drop_self(distances, indices, start)
        yield start, distances, indices


def knn_search_chunks(
    queries: ArrayLike,
    gallery: ArrayLike | None = None,
    *,
    k: int,
    metric: str = "l2",
    index: str = "flat",
    chunk_size: int | None = None,
    seed: int = 0,
) -> tuple[int, Iterator[tuple[int, np.ndarray, np.ndarray]]]:
    """Validate, build the index, and return the query count and a lazy search over query chunks.

    Consumers that reduce each chunk (retrieval metrics) never hold all (Nq, k) results at once;
    `knn_search` collects them. Arguments are those of `knn_search`; all validation happens here,
    before the first chunk is searched.

    Returns:
        (Nq, chunks): `chunks` yields (first_row, distances (rows, k) float32, indices (rows, k) int64)
        for consecutive query rows, as `knn_search` would return them.
    """
    metric = check_metric(metric)
    leave_one_out = gallery is None
    query_array = to_float32_matrix(queries, "queries")
    gallery_array = query_array if leave_one_out else to_float32_matrix(gallery, "gallery")
    if gallery_array.shape[1] != query_array.shape[1]:
        raise ValueError(
            f"queries and gallery must have the same dim, got {query_array.shape} and {gallery_array.shape}"
        )
    kind = resolve_index(index, gallery_array.shape[0])
    # k is at most N - 1 in leave-one-out (the query itself is not a neighbour), else the gallery size.
    k = check_int(k, "k", 1, gallery_array.shape[0] - int(leave_one_out))
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", 1)
    seed = check_int(seed, "seed")

    if metric == "cosine":
        query_array = l2_normalized(query_array)
        gallery_array = query_array if leave_one_out else l2_normalized(gallery_array)
    k_search = k + int(leave_one_out)
    if kind == "flat" and not (gpu_count() > 0 and k_search <= GPU_MAX_K):
        if gallery_array.shape[0] >= 2**31:  # the exact search keeps int32 ids
            raise ValueError(
                f"gallery must have < 2**31 rows for index='flat', got {gallery_array.shape[0]}; use 'ivf'"
            )
        chunks = _exact_chunks(
            query_array, None if leave_one_out else gallery_array, k, metric, chunk_size, int(seed)
        )
    else:
        built = build_index(gallery_array, metric, kind, k=k_search, seed=int(seed))
        size = _chunk_size(k_search) if chunk_size is None else chunk_size
        chunks = _faiss_chunks(built, query_array, k, metric, leave_one_out, kind == "flat", size)
    return query_array.shape[0], chunks


def knn_search(
    queries: ArrayLike,
    gallery: ArrayLike | None = None,
    *,
    k: int,
    metric: str = "l2",
    index: str = "flat",
    chunk_size: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest gallery neighbours of every query: exact by default, or from an approximate index.

    Args:
        queries: (Nq, D) numpy array or torch tensor.
        gallery: (Ng, D) numpy array or torch tensor, or None for leave-one-out inside `queries`:
            each query's own row is never its neighbour (removed by index, so exact duplicates of a
            query still count as neighbours).
        k: number of neighbours, 1 <= k <= Ng (N - 1 for leave-one-out).
        metric: "l2" (squared Euclidean distance, ascending) or "cosine" (cosine similarity of
            L2-normalised copies, descending; an all-zero row has similarity 0 to everything).
        index: "flat" (exact), "ivf" (FAISS IndexIVFFlat, ~4·√Ng lists), "hnsw" (IndexHNSWFlat,
            M = 32, efSearch >= k), or "auto" (flat up to `AUTO_EXACT_MAX_GALLERY` gallery rows,
            ivf above); see `indexes.py`. An approximate index may return fewer than k neighbours:
            the missing ones have index -1 and distance +Inf (-Inf similarity).
        chunk_size: queries searched together; None bounds the working memory (about 2 GiB of
            candidate lists for the exact CPU search, 256 MB per FAISS call otherwise).
        seed: seed of the exact search's gallery sample (its speed, never its result) and of IVF training.

    Returns:
        (distances, indices): (Nq, k) float32 distances or similarities, and (Nq, k) int64 row indices
        into the gallery (into `queries` for leave-one-out), nearest first.

    Raises:
        TypeError: if an input is not numeric or `k`/`chunk_size`/`seed` is not an int.
        ValueError: on bad shapes, NaN/Inf, an unknown metric or index, `k`/`chunk_size` out of range,
            or distances that overflow float32.

    Example:
        >>> x = np.array([[0.0], [1.0], [3.0]])
        >>> distances, indices = knn_search(x, k=1)
        >>> indices[:, 0].tolist(), distances[:, 0].tolist()
        ([1, 0, 1], [1.0, 1.0, 4.0])
    """
    num_queries, chunks = knn_search_chunks(
        queries, gallery, k=k, metric=metric, index=index, chunk_size=chunk_size, seed=seed
    )
    return _collect(num_queries, k, chunks)


def _collect(
    num_queries: int, k: int, chunks: Iterator[tuple[int, np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    distances = np.empty((num_queries, k), dtype=np.float32)
    indices = np.empty((num_queries, k), dtype=np.int64)
    for start, chunk_distances, chunk_indices in chunks:
        distances[start : start + len(chunk_indices)] = chunk_distances
        indices[start : start + len(chunk_indices)] = chunk_indices
    return distances, indices


def knn_search_index(
    index: faiss.Index, queries: ArrayLike, *, k: int, metric: str, chunk_size: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every query in a filled FAISS index (`build_index`'s, saved and read back).

    The result is what `knn_search(queries, gallery, ...)` returns for the gallery the index holds, with the
    index's kind: a flat index is searched exactly on the CPU by the same code (its rows read back, no
    FAISS search), an IVF or HNSW index after tuning nprobe / efSearch for `k` as `build_index` does (this
    sets them on `index`). For "cosine" the index holds L2-normalised rows and an inner-product metric.

    Args:
        index: a FAISS IndexFlat, IndexIVFFlat or IndexHNSWFlat.
        queries: (Nq, D) numpy array or torch tensor, D = `index.d`.
        k: 1 <= k <= the index's size.
        metric: "l2" or "cosine": must be the index's.
        chunk_size, seed: as in `knn_search`.

    Returns:
        (distances, indices): (Nq, k) float32 squared L2 distances (ascending) or cosine similarities
        (descending), and (Nq, k) int64 positions in the index, nearest first.

    Raises:
        ValueError: queries of another dim than the index, a metric the index does not measure, or `k` out of range.
    """
    metric = check_metric(metric)
    measured = "l2" if index.metric_type == faiss.METRIC_L2 else "cosine"
    if measured != metric:
        raise ValueError(f"metric must be the index's, {measured!r}, got {metric!r}")
    query_array = to_float32_matrix(queries, "queries")
    if query_array.shape[1] != index.d:
        raise ValueError(f"queries must have dim {index.d} like the index, got shape {query_array.shape}")
    k = check_int(k, "k", 1, index.ntotal)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", 1)
    if metric == "cosine":
        query_array = l2_normalized(query_array)
    flat = isinstance(index, faiss.IndexFlat)
    if flat and not (gpu_count() > 0 and k <= GPU_MAX_K):
        gallery = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)
        chunks = _exact_chunks(query_array, gallery, k, metric, chunk_size, check_int(seed, "seed"))
    else:
        set_search_k(index, k)
        size = _chunk_size(k) if chunk_size is None else chunk_size
        chunks = _faiss_chunks(on_gpus(index, k), query_array, k, metric, False, flat, size)
    return _collect(query_array.shape[0], k, chunks)

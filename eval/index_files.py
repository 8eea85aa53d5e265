"""A gallery's FAISS index kept on disk: built as evaluation builds it, turned into bytes and back.

`build_saved_index` chooses and fills the index exactly as `knn_search` would for the same gallery
(`indexes.py`: "auto" is exact up to `AUTO_EXACT_MAX_GALLERY` rows, IVF above; cosine stores L2-normalised
rows under an inner-product metric), always on the CPU so that it can be written; `knn_search_index`
(`knn.py`) searches it with evaluation's conventions. The bytes are FAISS's own format
(`faiss.serialize_index`, what `faiss.write_index` writes), so any FAISS program reads the file.
"""

from __future__ import annotations

import faiss
import numpy as np
from numpy.typing import ArrayLike

from .indexes import build_index, gpu_count, resolve_index
from .inputs import check_int, check_metric, l2_normalized, to_float32_matrix

__all__ = ["build_saved_index", "index_from_bytes", "index_kind", "index_to_bytes"]


def build_saved_index(gallery: ArrayLike, *, metric: str, index: str = "auto", seed: int = 0) -> faiss.Index:
    """A CPU FAISS index over `gallery`, of the kind `knn_search(..., index=index)` would search.

    Args:
        gallery: (N, D) embeddings, numpy array or torch tensor; row i gets id i.
        metric: "l2" (squared L2) or "cosine" (inner product of L2-normalised rows).
        index: "auto", "flat", "ivf" or "hnsw" (see `indexes.resolve_index`).
        seed: seed of IVF training (as in `knn_search`).

    Raises:
        ValueError: bad shape, NaN/Inf, unknown metric or index kind.
    """
    metric = check_metric(metric)
    array = to_float32_matrix(gallery, "gallery")
    kind = resolve_index(index, array.shape[0])
    if metric == "cosine":
        array = l2_normalized(array)
    built = build_index(array, metric, kind, k=1, seed=check_int(seed, "seed"))
    if gpu_count() > 0 and not isinstance(built, faiss.IndexHNSW):
        built = faiss.index_gpu_to_cpu(built)  # build_index puts it on the GPUs FAISS has; a file needs it here
    return built


def index_kind(index: faiss.Index) -> str:
    """"flat", "ivf" or "hnsw" for an index of `build_saved_index`; ValueError for any other FAISS index."""
    for kind, cls in (("flat", faiss.IndexFlat), ("ivf", faiss.IndexIVFFlat), ("hnsw", faiss.IndexHNSWFlat)):
        if isinstance(index, cls):
            return kind
    raise ValueError(f"index must be a FAISS IndexFlat, IndexIVFFlat or IndexHNSWFlat, got {type(index).__name__}")


def index_to_bytes(index: faiss.Index) -> bytes:
    """The index in FAISS's file format (what `faiss.write_index` writes)."""
    return faiss.serialize_index(index).tobytes()


def index_from_bytes(data: bytes, *, what: str = "index") -> faiss.Index:
    """Read an index written by `index_to_bytes` or `faiss.write_index`.

    Raises:
        ValueError: the bytes are not a FAISS index of a kind `index_kind` knows; the message starts with `what`.
    """
    try:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as error:  # FAISS reports a bad or truncated file as a RuntimeError
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{what} is not a readable FAISS index ({first})") from error
    try:  # deserialize_index returns the concrete class (a downcast copy would not own the index)
        index_kind(index)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
    return index

"""The FAISS indexes behind `knn_search`: which one, how it is built and tuned, and where it runs.

"flat" is exact: on the CPU `exact_knn.py` does it (faster than `IndexFlat`, see there); with GPUs it
is a FAISS `IndexFlat` copied onto them. "ivf" (`IndexIVFFlat`) and "hnsw" (`IndexHNSWFlat`) are
approximate; `retrieval_metrics(..., index_recall=True)` measures how close they come. Every index
moves to all GPUs when FAISS has GPU support and sees a GPU (`faiss.get_num_gpus() > 0`), except
HNSW, which FAISS runs on the CPU only; faiss-cpu builds, which lack or zero that function, stay on
the CPU.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

__all__ = [
    "AUTO_EXACT_MAX_GALLERY",
    "GPU_MAX_K",
    "INDEXES",
    "build_index",
    "gpu_count",
    "ivf_nlist",
    "ivf_nprobe",
    "on_gpus",
    "resolve_index",
    "set_search_k",
]

INDEXES = ("auto", "flat", "ivf", "hnsw")
# "auto" searches exactly up to this many gallery rows (1M x 128: ~25 s per 10,000 queries on two
# CPU cores, see results/perf/retrieval.md), and with IVF above it.
AUTO_EXACT_MAX_GALLERY = 1_000_000
# Largest k (and IVF nprobe) that FAISS's GPU k-selection supports.
GPU_MAX_K = 2048
HNSW_M = 32
# HNSW's search beam: efSearch = max(_HNSW_MIN_EF, _HNSW_EF_PER_K * k).
_HNSW_MIN_EF, _HNSW_EF_PER_K = 64, 2
# FAISS's k-means wants at least this many training points per IVF list.
_IVF_MIN_POINTS_PER_LIST = 39
_IVF_TRAIN_POINTS_PER_LIST = 256
_IVF_PROBED_ITEMS_PER_K = 32


def resolve_index(index: str, gallery_size: int) -> str:
    """The concrete index kind ("flat", "ivf" or "hnsw") that `index` means for this gallery size."""
    if index not in INDEXES:
        raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
    if index == "auto":
        return "flat" if gallery_size <= AUTO_EXACT_MAX_GALLERY else "ivf"
    return index


def gpu_count() -> int:
    """GPUs FAISS can use: 0 for faiss-cpu builds (no `get_num_gpus`, or one that returns 0)."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is None or not hasattr(faiss, "index_cpu_to_all_gpus"):
        return 0
    return int(get_num_gpus())


def ivf_nlist(gallery_size: int) -> int:
    """IVF lists: about 4·√N, but never fewer than 39 training points per list."""
    return max(1, min(round(4 * math.sqrt(gallery_size)), gallery_size // _IVF_MIN_POINTS_PER_LIST))


def ivf_nprobe(nlist: int, gallery_size: int, k: int) -> int:
    """Lists probed per query: an eighth of them (at least 16), and enough to hold ~32·k items.

    On 100 overlapping Gaussian classes in 128-D (the perf benchmark's data, hard for IVF), this
    finds ~0.93 of the 9 and ~0.88 of the 565 nearest neighbours at N = 50,000; `index_recall`
    measures it on the data at hand.
    """
    per_list = gallery_size / nlist
    return min(nlist, max(16, math.ceil(nlist / 8), math.ceil(_IVF_PROBED_ITEMS_PER_K * k / per_list)))


def build_index(gallery: np.ndarray, metric: str, kind: str, *, k: int, seed: int = 0) -> faiss.Index:
    """A filled FAISS index of kind "flat", "ivf" or "hnsw" over `gallery`, on the GPUs when there are any.

    Args:
        gallery: (Ng, D) float32 C-contiguous (L2-normalised already for "cosine").
        metric: "l2" (squared L2) or "cosine" (inner product of the normalised rows).
        kind: "flat", "ivf" or "hnsw" (see `resolve_index`).
        k: the number of neighbours that will be asked for: sets HNSW's efSearch and IVF's nprobe,
            and keeps the index on the CPU when k exceeds what the GPU supports.
        seed: seed of the IVF training sample and of its k-means.
    """
    dim = gallery.shape[1]
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexFlat(dim, faiss_metric)
        index.add(gallery)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss_metric)
        index.add(gallery)
        set_search_k(index, k)
        return index  # FAISS has no GPU HNSW
    elif kind == "ivf":
        nlist = ivf_nlist(gallery.shape[0])
        index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, faiss_metric), dim, nlist, faiss_metric)
        index.cp.seed = seed
        train_size = min(gallery.shape[0], _IVF_TRAIN_POINTS_PER_LIST * nlist)
        rows = np.sort(np.random.default_rng(seed).choice(gallery.shape[0], train_size, replace=False))
        index.train(gallery[rows])
        index.add(gallery)
        set_search_k(index, k)
    else:
        raise ValueError(f"kind must be 'flat', 'ivf' or 'hnsw', got {kind!r}")
    return on_gpus(index, k)


def set_search_k(index: faiss.Index, k: int) -> None:
    """Tune an approximate index's search for `k` neighbours: HNSW's efSearch, IVF's nprobe (flat: nothing)."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(_HNSW_MIN_EF, _HNSW_EF_PER_K * k)
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = ivf_nprobe(index.nlist, index.ntotal, k)


def on_gpus(index: faiss.Index, k: int) -> faiss.Index:
    """`index` copied onto every GPU when FAISS has some and supports `k` there; else `index` itself (and HNSW)."""
    if (gpu_count() > 0 and not isinstance(index, faiss.IndexHNSW) and k <= GPU_MAX_K
            and getattr(index, "nprobe", 1) <= GPU_MAX_K):
        return faiss.index_cpu_to_all_gpus(index)
    return index

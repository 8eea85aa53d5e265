"""Seeded 2-D UMAP projections of an embedding, on an exact FAISS kNN graph.

`umap_2d` draws at most `max_points` rows (stratified by class when labels are given), finds each
row's exact nearest neighbours with `knn_search` (the project's one FAISS boundary), or takes them
from the evaluation's own search when every row is projected, and hands that graph to umap-learn,
which then only builds the fuzzy graph and optimises the layout. It returns
coordinates and the rows they belong to, so a benchmark can compute many projections and draw them
in a grid later; drawing lives in `plot_drawing.py`, writing the PNGs in `plot_writers.py`.

Compile time: numba compiling, not fitting, dominates a first UMAP fit in a fresh process. The exact
kNN graph (also exact above 4,096 points, where umap-learn would switch to approximate NN-descent)
skips pynndescent's NN-descent kernels, which it does not cache and which take about 20 s to compile; and
`_enable_numba_disk_cache` gives numba's on-disk cache to the umap-learn kernels a fit compiles
(umap-learn 0.5.12 does not mark them `cache=True`; pynndescent marks its own). Numba keeps the cache
in the package's `__pycache__`, in its user-wide directory (`~/.cache/numba`) when that is not
writable, or under `NUMBA_CACHE_DIR` when set; nothing here sets it. Measured in new processes on the
2-core machine class, importing umap-learn and fitting 300 points takes 1.6 s + 0.3 s with a warm
cache (1.6 s + 8 s when umap-learn is used as it comes) and 12 s + 4 s on an empty cache; 5,000
points take 1.6 s + 4.5 s warm (25-45 s as umap-learn comes, cache or not).
"""

from __future__ import annotations

import importlib
import warnings

import numpy as np
from numpy.typing import ArrayLike

from .inputs import check_int, check_metric, to_float32_matrix, to_int_labels
from .knn import knn_search
from .retrieval_suite import Neighbors

__all__ = ["UMAP_EPOCHS", "UMAP_NEIGHBORS", "sample_rows", "umap_2d"]

# umap-learn's default neighbourhood size.
UMAP_NEIGHBORS = 15
# Layout epochs: umap-learn's default above 10,000 points, used at every size. Its 500 for smaller sets
# made the layout of a 10,000-point sample 60% of a whole evaluation; a map for looking at, not a metric.
UMAP_EPOCHS = 200
# The fewest rows a projection is computed on: umap-learn's spectral initialisation fails on 3.
_MIN_POINTS = 4

# (module, attribute) of the umap-learn numba dispatchers an l2 or cosine fit compiles (measured with
# numba's compile events on umap-learn 0.5.12); a name that a later version lacks is skipped.
_UNCACHED_UMAP_KERNELS = (
    ("umap.umap_", "smooth_knn_dist"),
    ("umap.umap_", "compute_membership_strengths"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"),
    ("umap.distances", "euclidean"),
    ("umap.distances", "cosine"),
)
_disk_cache_enabled = False


def sample_rows(num_rows: int, size: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
    """Seeded random rows, at most `size` of them, stratified by label when labels are given.

    Stratified: each class gets floor(size * n_c / N) rows, and the rows still missing go one each to
    the classes with the largest remainders (ties to the smaller label), so class proportions are kept
    to within one row; a class whose share is below one row may be left out. Within a class, rows are
    drawn uniformly without replacement.

    Args:
        num_rows: N, the number of rows to draw from.
        size: the most rows to return; all N rows (in order) when N <= size.
        seed: seed of `np.random.default_rng`.
        labels: (N,) integer labels, or None for a plain uniform draw without replacement.

    Returns:
        (min(N, size),) int64 row indices, ascending.

    Example:
        >>> sample_rows(6, 3, 0, np.array([0, 0, 0, 0, 1, 1])).size
        3
    """
    if num_rows <= size:
        return np.arange(num_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(num_rows, size=size, replace=False)).astype(np.int64)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = counts.astype(np.int64) * size  # integer arithmetic: exact largest-remainder quotas
    quota = share // num_rows
    by_remainder = np.argsort(-(share % num_rows), kind="stable")
    quota[by_remainder[: size - int(quota.sum())]] += 1
    order = np.lexsort((rng.random(num_rows), inverse))  # rows grouped by class, random within a class
    starts = np.cumsum(counts) - counts
    rank = np.arange(num_rows) - starts[inverse[order]]
    return np.sort(order[rank < quota[inverse[order]]]).astype(np.int64)


def _enable_numba_disk_cache() -> None:
    """Give umap-learn's uncached numba kernels numba's on-disk cache (once per process)."""
    global _disk_cache_enabled
    if _disk_cache_enabled:
        return
    for module_name, name in _UNCACHED_UMAP_KERNELS:
        kernel = getattr(importlib.import_module(module_name), name, None)
        if not callable(getattr(kernel, "enable_caching", None)):
            continue
        try:
            kernel.enable_caching()
        except RuntimeError:  # numba found no writable cache directory: compile each time, as before
            pass
    _disk_cache_enabled = True


def _knn_graph(x: np.ndarray, metric: str, k: int, neighbors: Neighbors | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest rows, itself included, with umap-learn's distances for `metric`.

    From `neighbors` (each row's leave-one-out neighbours from the metrics' search) when they are
    exact and cover k - 1 others: the row itself (distance 0) comes first, then those.
    """
    usable = neighbors is not None and neighbors.indices.shape == (x.shape[0], neighbors.indices.shape[1])
    if usable and neighbors.indices.shape[1] >= k - 1 and (neighbors.indices[:, : k - 1] >= 0).all():
        own = np.arange(x.shape[0])[:, None]
        indices = np.concatenate([own, neighbors.indices[:, : k - 1]], axis=1)
        own_score = np.ones if metric == "cosine" else np.zeros  # set to distance 0 below
        scores = np.concatenate([own_score((x.shape[0], 1), np.float32), neighbors.distances[:, : k - 1]], axis=1)
    else:
        scores, indices = knn_search(x, x, k=k, metric=metric)
    if metric == "cosine":
        distances = 1.0 - scores  # umap-learn's cosine distance; 0 to 2
    else:
        distances = np.sqrt(np.maximum(scores, 0.0))  # FAISS returns squared L2
    # A row's distance to itself is 0 exactly, as in umap-learn's own search. Float rounding in the
    # search leaves ~1e-3 there, which umap-learn would take as the distance to the nearest neighbour
    # (its `rho`, the first non-zero distance) and so connect the row far too weakly to the others.
    distances[indices == np.arange(x.shape[0])[:, None]] = 0.0
    return indices, np.maximum(distances, 0.0).astype(np.float32)


def umap_2d(
    embeddings: ArrayLike,
    *,
    metric: str = "l2",
    seed: int = 0,
    max_points: int = 10_000,
    labels: ArrayLike | None = None,
    neighbors: Neighbors | None = None,
    epochs: int = UMAP_EPOCHS,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded 2-D UMAP projection of at most `max_points` rows of an embedding.

    Above `max_points` rows, `sample_rows(N, max_points, seed, labels)` picks the rows: stratified by
    class when `labels` are given, uniform otherwise. UMAP runs with umap-learn's defaults
    (15 neighbours, min_dist 0.1, spectral initialisation) but `epochs` layout epochs, on the exact
    kNN graph of the kept rows,
    with `random_state=seed` and one thread, so the same input and seed give the same coordinates.

    Args:
        embeddings: (N, D) numpy array or torch tensor, finite in float32, N >= 3.
        metric: "l2" (UMAP's "euclidean") or "cosine" (UMAP's "cosine", 1 - cosine similarity).
        seed: seed of the row sample and of UMAP, >= 0.
        max_points: most rows to project, >= 3.
        labels: optional (N,) integer labels, used only to stratify the sample.
        neighbors: optional leave-one-out neighbours of all N rows from an earlier exact search
            (`retrieval_metrics_and_neighbors(..., nearest=UMAP_NEIGHBORS - 1)`); used instead of a new
            search when every row is projected.
        epochs: layout epochs, >= 1; the default `UMAP_EPOCHS` is umap-learn's own above 10,000 points.

    Returns:
        (coords, kept_rows): (M, 2) float32 coordinates of rows `kept_rows` ((M,) int64, ascending),
        M = min(N, max_points).

    Raises:
        TypeError: if embeddings/labels are not numeric/integer, or seed/max_points not ints.
        ValueError: on bad shapes, NaN/Inf, fewer than 3 rows, an unknown metric or out-of-range ints.
    """
    metric = check_metric(metric)
    x = to_float32_matrix(embeddings, "embeddings")
    if x.shape[0] < _MIN_POINTS:
        raise ValueError(f"embeddings must have at least {_MIN_POINTS} rows for UMAP, got {x.shape[0]}")
    label_array = None if labels is None else to_int_labels(labels, "labels", x.shape[0], "embeddings rows")
    seed = check_int(seed, "seed", 0)
    max_points = check_int(max_points, "max_points", _MIN_POINTS)
    epochs = check_int(epochs, "epochs", 1)

    kept = sample_rows(x.shape[0], max_points, seed, label_array)
    if kept.size < x.shape[0]:
        neighbors = None  # a sample's neighbours are other rows than the full set's
    x = x[kept]
    k = min(UMAP_NEIGHBORS, x.shape[0] - 1)
    knn_indices, knn_distances = _knn_graph(x, metric, k, neighbors)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tensorflow not installed", category=ImportWarning)
        import umap  # deferred: importing umap-learn takes seconds (tens of seconds on a cold numba cache)

    _enable_numba_disk_cache()
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=k,
        metric="cosine" if metric == "cosine" else "euclidean",
        n_epochs=epochs,
        random_state=seed,
        n_jobs=1,
        precomputed_knn=(knn_indices, knn_distances),
    )
    with warnings.catch_warnings():
        # Expected: without pynndescent's index, the fitted reducer cannot `transform` new rows.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        # Well-separated classes give a disconnected kNN graph; umap-learn lays out each component
        # separately, so scikit-learn's warning about spectral embeddings of such graphs does not apply.
        warnings.filterwarnings("ignore", message="Graph is not fully connected", category=UserWarning)
        coords = reducer.fit_transform(x)
    return np.asarray(coords, dtype=np.float32), kept

"""Class-level distance statistics of a labelled embedding: how tight each class is, how far apart.

Everything is O(N * D) time and memory except the (C, C) centroid distances, which are computed
in row blocks of bounded size (O(C^2 * D) time, O(C) memory beyond the blocks), and the silhouette,
which scikit-learn computes on at most `max_silhouette` rows in chunks that `_SILHOUETTE_BYTES`
bounds. Nothing (N, N) or (C, C) is ever built. Inputs are converted
once to float32 by `to_float32_matrix` (as for the kNN search); every computation then runs in float64.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn import config_context
from sklearn.metrics import silhouette_score

from .inputs import check_int, check_metric, l2_normalized, to_float32_matrix, to_int_labels

__all__ = ["class_distance_stats"]

# Centroid-distance entries per row block (32 MiB of float64; a few such temporaries live at once).
_BLOCK_ENTRIES = 2**22
# Bytes of one silhouette chunk: scikit-learn holds a (rows, M) block of distances and a (rows, classes)
# block of per-class sums at once (and a temporary as large as the first). Its own default, 1 GiB of
# distances alone, put both in one chunk: 800 MB + 10,000 x classes x 8 bytes at M = 10,000 rows,
# ~1.3 GB on SOP's 11,316 classes. Each row's silhouette is computed alone, so chunks change no value.
_SILHOUETTE_BYTES = 256 * 2**20


def _class_quantile(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray, q: float) -> np.ndarray:
    """np.percentile's linear interpolation, for every class at once.

    Args:
        values: (N,) values sorted by class, then ascending within each class.
        starts, sizes: (C,) first position and length of each class's run in `values`.
        q: quantile in [0, 1].

    Returns:
        (C,) the q-quantile of each class.
    """
    position = q * (sizes - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, sizes - 1)
    below, above = values[starts + low], values[starts + high]
    return below + (position - low) * (above - below)


def _centroid_pairs(centroids: np.ndarray, spread: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Nearest other centroid, mean distance over centroid pairs, and the Davies-Bouldin index.

    Args:
        centroids: (C, D) float64 class centroids, C >= 2.
        spread: (C,) mean distance of each class's points to its centroid.

    Returns:
        (nearest (C,) int64 row of the nearest other centroid (lowest row on ties), its distance (C,),
        mean distance over ordered pairs of distinct centroids, Davies-Bouldin index as scikit-learn
        defines it, including its 0.0 when all spreads or all centroid distances are ~0).
    """
    num = centroids.shape[0]
    # Distances do not change under translation; centring keeps ||a||^2 + ||b||^2 - 2ab from cancelling.
    centred = centroids - centroids.mean(axis=0)
    squares = np.einsum("ij,ij->i", centred, centred)
    nearest = np.empty(num, dtype=np.int64)
    nearest_dist = np.empty(num)
    worst_ratio = np.empty(num)
    total, largest = 0.0, 0.0
    rows = max(1, _BLOCK_ENTRIES // num)
    for start in range(0, num, rows):
        stop = min(num, start + rows)
        own = (np.arange(stop - start), np.arange(start, stop))
        block = squares[start:stop, None] + squares[None, :] - 2.0 * (centred[start:stop] @ centred.T)
        np.sqrt(np.maximum(block, 0.0, out=block), out=block)
        block[own] = 0.0
        total += float(block.sum())
        largest = max(largest, float(block.max()))
        # scikit-learn's rule: a zero centroid distance (the class itself, or a coincident centroid) counts as inf.
        ratio = (spread[start:stop, None] + spread[None, :]) / np.where(block == 0.0, np.inf, block)
        worst_ratio[start:stop] = ratio.max(axis=1)
        block[own] = np.inf
        nearest[start:stop] = block.argmin(axis=1)
        nearest_dist[start:stop] = block[own[0], nearest[start:stop]]
    degenerate = bool(np.all(np.isclose(spread, 0.0))) or largest <= 1e-8  # np.isclose(d, 0) for all d
    davies_bouldin = 0.0 if degenerate else float(worst_ratio.mean())
    return nearest, nearest_dist, total / (num * (num - 1)), davies_bouldin


def _pair_sqdists(
    class_scatter: np.ndarray, sizes: np.ndarray, centroids: np.ndarray
) -> tuple[float, float]:
    """Mean squared distance over ordered same-label pairs and over different-label pairs, exactly.

    With S_c = sum_{i in c} ||x_i - mu_c||^2, a class's ordered pairs sum to 2 n_c S_c; the pairs
    across classes sum to 2 sum_c S_c (N - n_c) + 2 N sum_c n_c ||mu_c - mu||^2 (mu the global mean),
    which is (all pairs - same-label pairs) written without the subtraction.

    Args:
        class_scatter: (C,) S_c.
        sizes: (C,) n_c.
        centroids: (C, D) mu_c.

    Returns:
        (intra, inter); intra is NaN when every class is a singleton (no same-label pair).
    """
    counts = sizes.astype(np.float64)  # N^2 may not fit in int64
    total = counts.sum()
    global_mean = counts @ centroids / total
    between = float(counts @ ((centroids - global_mean) ** 2).sum(axis=1))
    intra_pairs = float(counts @ (counts - 1))
    inter_pairs = total * total - float(counts @ counts)
    intra_sum = 2.0 * float(counts @ class_scatter)
    inter_sum = 2.0 * float((total - counts) @ class_scatter) + 2.0 * total * between
    intra = intra_sum / intra_pairs if intra_pairs > 0 else float("nan")
    return intra, inter_sum / inter_pairs


def _silhouette(x: np.ndarray, labels: np.ndarray, max_rows: int, seed: int) -> tuple[float, int]:
    """scikit-learn's silhouette on all rows, or on `max_rows` rows drawn without replacement."""
    if x.shape[0] > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], size=max_rows, replace=False))
        x, labels = x[rows], labels[rows]
    used, classes = x.shape[0], np.unique(labels).size
    if not 2 <= classes <= used - 1:  # scikit-learn's own range; undefined outside it
        return float("nan"), used
    # working_memory (MiB) sizes scikit-learn's chunks by their distance rows alone: share the budget
    # out so that distances and per-class sums together stay within it.
    with config_context(working_memory=_SILHOUETTE_BYTES / 2**20 * used / (used + classes)):
        return float(silhouette_score(x, labels, metric="euclidean")), used


def class_distance_stats(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    metric: str = "l2",
    max_silhouette: int = 10_000,
    seed: int = 0,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Per-class spread and separation of a labelled embedding, plus summary statistics.

    Distances are Euclidean. With metric="cosine" the embeddings are first L2-normalised (an all-zero
    row stays at the origin) and every statistic is the Euclidean one on the unit sphere, where
    ||a - b||^2 = 2 - 2 cos(a, b); centroids are means of the normalised vectors (not re-normalised).

    Per-class table (index "label", sorted ascending), about the distances of a class's points to its
    centroid: "size"; "mean_dist", "std_dist" (population, ddof=0), "median_dist", "p90_dist"
    (np.percentile's linear interpolation); "nearest_class" (label of the nearest other centroid, the
    smallest label on ties); "nearest_centroid_dist"; "margin_ratio" = nearest_centroid_dist / mean_dist
    (IEEE division: inf when mean_dist is 0 and the nearest centroid is not coincident, NaN when both are 0).

    Summary: "num_classes", "num_samples" (ints); "intra_mean" (mean over all points of the distance to
    their own centroid); "inter_centroid_mean" (mean distance over pairs of distinct centroids);
    "intra_inter_ratio" = intra_mean / inter_centroid_mean (smaller is tighter); "intra_pair_sqdist" /
    "inter_pair_sqdist" (mean squared distance over ordered pairs i != j with the same / different
    labels, exact via the centroid identity sum_{i,j in c} ||x_i - x_j||^2 = 2 n_c sum_i ||x_i - mu_c||^2);
    "davies_bouldin" (= sklearn.metrics.davies_bouldin_score); "silhouette" (sklearn.metrics.silhouette_score,
    exact when N <= max_silhouette, else on the rows
    `np.random.default_rng(seed).choice(N, size=max_silhouette, replace=False)`; NaN when those rows hold
    fewer than 2 labels or only singletons, where scikit-learn refuses) and "silhouette_sample_size" (int).

    Singleton classes have no same-label pair. A singleton is its own centroid: its row in the table has
    size 1, all four distances 0 and margin_ratio inf; it adds a 0 to intra_mean's average and a 0
    spread to Davies-Bouldin's average (its term is then driven by its neighbour's spread); its centroid
    counts in inter_centroid_mean and as a neighbour of other classes; it adds nothing to
    intra_pair_sqdist (NaN when every class is a singleton) and all its pairs to inter_pair_sqdist; its
    silhouette is 0 (scikit-learn's convention) and counts in the mean.

    Args:
        embeddings: (N, D) numpy array or torch tensor of real numbers, finite in float32.
        labels: (N,) integer labels (any values, not necessarily contiguous), at least 2 distinct.
        metric: "l2" or "cosine".
        max_silhouette: most rows the silhouette may use (its cost is quadratic in them), >= 3.
        seed: seed of the silhouette's row sample, >= 0.

    Returns:
        (summary, table): a dict of Python floats/ints as above, and a (C, 8) DataFrame.

    Raises:
        TypeError: if embeddings or labels are not numeric/integer, or max_silhouette/seed not ints.
        ValueError: on bad shapes, NaN/Inf, fewer than 2 classes, an unknown metric or out-of-range ints.

    Example:
        >>> x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
        >>> summary, table = class_distance_stats(x, np.array([7, 7, 3, 3]))
        >>> summary["intra_inter_ratio"], summary["intra_pair_sqdist"], summary["inter_pair_sqdist"]
        (0.1, 4.0, 102.0)
        >>> table.index.tolist(), table["nearest_class"].tolist(), table["margin_ratio"].tolist()
        ([3, 7], [7, 3], [10.0, 10.0])
    """
    metric = check_metric(metric)
    x = to_float32_matrix(embeddings, "embeddings").astype(np.float64)
    label_array = to_int_labels(labels, "labels", x.shape[0], "embeddings rows")
    max_silhouette = check_int(max_silhouette, "max_silhouette", 3)
    seed = check_int(seed, "seed", 0)
    classes, inverse, sizes = np.unique(label_array, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"labels must contain at least 2 classes, got {classes.size}")
    if metric == "cosine":
        x = l2_normalized(x)

    centroids = np.zeros((classes.size, x.shape[1]))
    np.add.at(centroids, inverse, x)
    centroids /= sizes[:, None]
    squared = ((x - centroids[inverse]) ** 2).sum(axis=1)
    dist = np.sqrt(squared)

    mean_dist = np.bincount(inverse, weights=dist) / sizes
    std_dist = np.sqrt(np.bincount(inverse, weights=(dist - mean_dist[inverse]) ** 2) / sizes)
    by_class = dist[np.lexsort((dist, inverse))]
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    nearest, nearest_dist, inter_centroid_mean, davies_bouldin = _centroid_pairs(centroids, mean_dist)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin_ratio = nearest_dist / mean_dist
    table = pd.DataFrame(
        {
            "size": sizes.astype(np.int64),
            "mean_dist": mean_dist,
            "std_dist": std_dist,
            "median_dist": _class_quantile(by_class, starts, sizes, 0.5),
            "p90_dist": _class_quantile(by_class, starts, sizes, 0.9),
            "nearest_class": classes[nearest],
            "nearest_centroid_dist": nearest_dist,
            "margin_ratio": margin_ratio,
        },
        index=pd.Index(classes, name="label"),
    )

    intra_mean = float(dist.mean())
    intra_pair, inter_pair = _pair_sqdists(np.bincount(inverse, weights=squared), sizes, centroids)
    silhouette, silhouette_rows = _silhouette(x, label_array, max_silhouette, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.float64(intra_mean) / inter_centroid_mean)
    summary = {
        "num_classes": int(classes.size),
        "num_samples": int(x.shape[0]),
        "intra_mean": intra_mean,
        "inter_centroid_mean": float(inter_centroid_mean),
        "intra_inter_ratio": ratio,
        "intra_pair_sqdist": float(intra_pair),
        "inter_pair_sqdist": float(inter_pair),
        "davies_bouldin": davies_bouldin,
        "silhouette": silhouette,
        "silhouette_sample_size": silhouette_rows,
    }
    return summary, table

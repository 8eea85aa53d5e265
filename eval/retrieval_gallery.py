"""Retrieval galleries: queries beside their nearest neighbours, the hardest queries, the most confused class pairs.

Everything is read off the neighbour lists an evaluation has already computed (`Neighbors`, leave-one-out,
positions into the evaluated set): no search, no embeddings. Two groups of queries are shown:

- fixed: `choose_queries`, a seeded choice of positions that depends only on the number of rows and the seed,
  so every loss trained with the same seed and split shows the same queries side by side;
- hardest: the rows with the lowest `neighbor_average_precision`, the fixed ones excluded.

`write_retrieval_gallery` writes `retrievals.png` (the gallery, and the most confused class pairs below it),
`retrievals.json` (the records of `gallery_records`) and `confused_pairs.csv` (`confused_pairs`), renamed into
place together. Drawing is `gallery_drawing.py`'s job.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from metricbench.atomic import json_text, write_files_atomically

from .gallery_drawing import retrieval_gallery_figure
from .inputs import check_int, check_metric, to_int_labels
from .plot_writers import _DPI, ClassNames, _names_for
from .retrieval_suite import Neighbors
from .sprite import uint8_images

__all__ = [
    "GALLERY_FILES",
    "choose_queries",
    "confused_pairs",
    "gallery_records",
    "hardest_queries",
    "neighbor_average_precision",
    "write_retrieval_gallery",
]

# File name of each file `write_retrieval_gallery` writes, by the key of its returned dict.
GALLERY_FILES = {"png": "retrievals.png", "json": "retrievals.json", "pairs_csv": "confused_pairs.csv"}

_QUERY_STREAM = 14  # second word of the fixed queries' seed: their own random stream, whatever else uses `seed`


def choose_queries(num_rows: int, *, seed: int, fixed: int = 8) -> np.ndarray:
    """`fixed` distinct positions in range(num_rows) (all of them when fewer), seeded, sorted.

    Only `num_rows` and `seed` decide them, never the embeddings: runs of every loss with the same seed and
    split show the same queries.

    Example:
        >>> choose_queries(1000, seed=0, fixed=3).tolist() == choose_queries(1000, seed=0, fixed=3).tolist()
        True
        >>> choose_queries(2, seed=0).tolist()
        [0, 1]
    """
    num_rows = check_int(num_rows, "num_rows", 0)
    seed = check_int(seed, "seed", 0)
    fixed = check_int(fixed, "fixed", 0)
    rng = np.random.default_rng([seed, _QUERY_STREAM])
    return np.sort(rng.choice(num_rows, size=min(fixed, num_rows), replace=False)).astype(np.int64)


def neighbor_average_precision(indices: ArrayLike, labels: ArrayLike, *, k_ap: int | None = None) -> np.ndarray:
    """Average precision of each row over its first `k_ap` neighbours (leave-one-out lists).

    AP_i = (1 / R_i) * sum_{j <= k_ap, neighbour j relevant} P_i(j), where P_i(j) is the share of relevant
    items among the first j neighbours, a neighbour is relevant when it shares row i's label, and
    R_i = min(number of rows with row i's label - 1, k_ap). Columns of -1 (an approximate index that found
    fewer) count as not relevant. Rows whose class has no other member (R_i = 0) get NaN.

    Args:
        indices: (N, K) int neighbour positions of every row of the set, nearest first, never the row itself.
        labels: (N,) int labels of the set.
        k_ap: the neighbours counted, 1 <= k_ap <= K; None: all K.

    Returns:
        (N,) float64 AP in [0, 1], NaN where undefined.

    Example:
        >>> neighbor_average_precision(np.array([[1, 2], [0, 2], [0, 1]]), np.array([0, 0, 1])).tolist()
        [1.0, 1.0, nan]
    """
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[1] == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be an int array of shape (num_rows, k >= 1), got {idx.dtype} {idx.shape}")
    label_array = to_int_labels(labels, "labels", idx.shape[0], "indices rows")
    k_ap = idx.shape[1] if k_ap is None else check_int(k_ap, "k_ap", 1, idx.shape[1])
    idx = idx[:, :k_ap]
    relevant = (idx >= 0) & (label_array[np.maximum(idx, 0)] == label_array[:, None])
    _, inverse, counts = np.unique(label_array, return_inverse=True, return_counts=True)
    r = np.minimum(counts[inverse.reshape(-1)] - 1, k_ap)
    precision = np.cumsum(relevant, axis=1) / np.arange(1, k_ap + 1)
    total = (precision * relevant).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, total / r, np.nan)


def hardest_queries(average_precision: ArrayLike, *, hard: int = 8, exclude: ArrayLike = ()) -> np.ndarray:
    """Positions of the `hard` rows with the lowest defined AP, `exclude` left out, ties by position (ascending).

    Example:
        >>> hardest_queries(np.array([0.5, np.nan, 0.1, 0.5, 0.0]), hard=2, exclude=[4]).tolist()
        [2, 0]
    """
    ap = np.asarray(average_precision, dtype=np.float64)
    hard = check_int(hard, "hard", 0)
    candidates = np.flatnonzero(~np.isnan(ap) & ~np.isin(np.arange(ap.size), np.asarray(exclude, dtype=np.int64)))
    order = np.lexsort((candidates, ap[candidates]))  # by AP, then position
    return candidates[order[:hard]]


def confused_pairs(indices: ArrayLike, labels: ArrayLike, *, k: int = 5, top: int = 10) -> pd.DataFrame:
    """The class pairs most often confused among every row's first `k` neighbours.

    Each wrong neighbour (another label than its row's) counts once for the unordered pair {row's label,
    neighbour's label}. share = count / the neighbours (columns not -1) of the rows of either class: the
    fraction of those rows' first k neighbours that are this confusion.

    Args:
        indices: (N, K) int neighbour positions of every row, nearest first; -1 where none was found.
        labels: (N,) int labels.
        k: neighbours per row looked at, 1 <= k <= K.
        top: most pairs returned.

    Returns:
        DataFrame with columns class_a < class_b (labels), count, share; most frequent first, ties by
        (class_a, class_b). Empty when no neighbour is wrong.

    Example:
        >>> confused_pairs(np.array([[1], [0], [1]]), np.array([0, 0, 1]), k=1).to_dict("records")
        [{'class_a': 0, 'class_b': 1, 'count': 1, 'share': 0.3333333333333333}]
    """
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[1] == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be an int array of shape (num_rows, k >= 1), got {idx.dtype} {idx.shape}")
    label_array = to_int_labels(labels, "labels", idx.shape[0], "indices rows")
    k = check_int(k, "k", 1, idx.shape[1])
    top = check_int(top, "top", 0)
    idx = idx[:, :k]
    found = idx >= 0
    query_labels = np.broadcast_to(label_array[:, None], idx.shape)[found]
    neighbor_labels = label_array[idx[found]]
    wrong = query_labels != neighbor_labels
    low = np.minimum(query_labels[wrong], neighbor_labels[wrong])
    high = np.maximum(query_labels[wrong], neighbor_labels[wrong])
    columns = ["class_a", "class_b", "count", "share"]
    if low.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(columns, ("int64", "int64", "int64", "float64"))})
    pairs, counts = np.unique(np.stack([low, high], axis=1), axis=0, return_counts=True)
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -counts))[:top]
    pairs, counts = pairs[order], counts[order]
    classes, slots = np.unique(query_labels, return_counts=True)
    slots_of = dict(zip(classes.tolist(), slots.tolist()))
    share = counts / np.array([slots_of[a] + slots_of[b] for a, b in pairs.tolist()])
    return pd.DataFrame({"class_a": pairs[:, 0].astype(np.int64), "class_b": pairs[:, 1].astype(np.int64),
                         "count": counts.astype(np.int64), "share": share})


def _distances(values: np.ndarray, metric: str) -> np.ndarray:
    """Knn results (squared L2, or cosine similarity) as Euclidean distances (between normalised rows for cosine)."""
    squared = values if metric == "l2" else 2.0 - 2.0 * values
    return np.sqrt(np.maximum(squared.astype(np.float64), 0.0))


def _selection(neighbors: Neighbors, labels: np.ndarray, *, seed: int, fixed: int, hard: int
               ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Query positions (fixed, then hardest), their kinds, and every row's AP."""
    ap = neighbor_average_precision(neighbors.indices, labels)
    chosen = choose_queries(labels.size, seed=seed, fixed=fixed)
    hardest = hardest_queries(ap, hard=hard, exclude=chosen)
    return np.concatenate([chosen, hardest]), ["fixed"] * chosen.size + ["hardest"] * hardest.size, ap


def _check_neighbors(neighbors: Any, labels: ArrayLike) -> tuple[Neighbors, np.ndarray]:
    if not isinstance(neighbors, Neighbors):
        raise TypeError(f"neighbors must be a Neighbors (an evaluation's), got {type(neighbors).__name__}")
    shape = np.shape(neighbors.indices)
    if len(shape) != 2 or shape[1] == 0 or np.shape(neighbors.distances) != shape:
        raise ValueError(f"neighbors must hold (N, k >= 1) indices and distances of one shape, got {shape} and "
                         f"{np.shape(neighbors.distances)}")
    return neighbors, to_int_labels(labels, "labels", shape[0], "neighbors rows")


def _gallery(neighbors: Neighbors, labels: ArrayLike, *, metric: str, seed: int, class_names: ClassNames | None,
             rows: ArrayLike | None, split: str | None, k: int, fixed: int, hard: int
             ) -> tuple[dict[str, Any], list[list[int]]]:
    """`gallery_records`' records, and the positions each query's line shows (the query, then its neighbours)."""
    neighbors, label_array = _check_neighbors(neighbors, labels)
    metric = check_metric(metric)
    k = min(check_int(k, "k", 1), neighbors.indices.shape[1])
    row_array = np.arange(label_array.size) if rows is None else np.asarray(rows)
    if row_array.shape != label_array.shape or row_array.dtype.kind not in "iu":
        raise ValueError(f"rows must be an int array of shape {label_array.shape}, got {row_array.dtype} "
                         f"{row_array.shape}")
    names = _names_for(np.unique(label_array), class_names)
    positions, kinds, ap = _selection(neighbors, label_array, seed=seed, fixed=fixed, hard=hard)
    distances = _distances(np.asarray(neighbors.distances)[positions, :k], metric)

    def item(position: int) -> dict[str, Any]:
        label = int(label_array[position])
        return {"row": int(row_array[position]), "label": label, "class_name": names[label]}

    queries = []
    for i, (position, kind) in enumerate(zip(positions.tolist(), kinds)):
        found = [(int(n), float(d)) for n, d in zip(neighbors.indices[position, :k], distances[i]) if n >= 0]
        queries.append({
            **item(position), "kind": kind,
            "average_precision": None if np.isnan(ap[position]) else float(ap[position]),
            "neighbors": [{**item(n), "distance": round(d, 6), "correct": bool(label_array[n] == label_array[position])}
                          for n, d in found],
        })
    shown = [[p, *(n for n in neighbors.indices[p, :k].tolist() if n >= 0)] for p in positions.tolist()]
    return {"metric": metric, "k": k, "split": split, "queries": queries}, shown


def gallery_records(
    neighbors: Neighbors,
    labels: ArrayLike,
    *,
    metric: str,
    seed: int,
    class_names: ClassNames | None = None,
    rows: ArrayLike | None = None,
    split: str | None = None,
    k: int = 5,
    fixed: int = 8,
    hard: int = 8,
) -> dict[str, Any]:
    """The gallery as JSON-ready records (what `retrievals.json` holds).

    Queries: `choose_queries(N, seed=seed, fixed=fixed)` ("fixed"), then the `hard` rows of lowest
    `neighbor_average_precision` over all K columns of `neighbors`, the fixed ones excluded ("hardest").

    Args:
        neighbors: every row's leave-one-out neighbours (an evaluation's): (N, K) positions, -1 for none found.
        labels: (N,) int labels.
        metric: "l2" or "cosine", the metric of `neighbors`' distances.
        seed: seed of the fixed queries, >= 0.
        class_names: display names, `class_names[label]`; None shows the labels.
        rows: (N,) dataset row of each position (a split's rows); None: the positions themselves.
        split: the split's name, or None.
        k: neighbours shown per query, at most K (fewer when K is smaller).
        fixed, hard: number of fixed and hardest queries.

    Returns:
        {"metric", "k", "split", "queries": [{"row", "label", "class_name", "kind", "average_precision" (None when
        the row's class has no other member), "neighbors": [{"row", "label", "class_name", "distance",
        "correct"}]}]}, rows being dataset rows. `distance` is Euclidean, between L2-normalised embeddings
        for cosine (= sqrt(2 - 2 cos), as in distances.png); `correct`: the neighbour has the query's label.
    """
    return _gallery(neighbors, labels, metric=metric, seed=seed, class_names=class_names, rows=rows, split=split,
                    k=k, fixed=fixed, hard=hard)[0]


def _tiles(records: dict[str, Any], positions: list[list[int]], images: Callable[[np.ndarray], Any]
           ) -> np.ndarray | None:
    """(Q, 1 + k, H, W, 3) uint8 thumbnails of every query and neighbour shown (black where none), or None."""
    shown = np.unique(np.concatenate([np.asarray(p, dtype=np.int64) for p in positions]))
    found = images(shown)
    if found is None:
        return None
    array = uint8_images(found, shown.size)
    array = np.repeat(array, 3, axis=1) if array.shape[1] == 1 else array
    array = array.transpose(0, 2, 3, 1)
    tiles = np.zeros((len(positions), 1 + records["k"], *array.shape[1:]), dtype=np.uint8)
    for i, group in enumerate(positions):
        tiles[i, : len(group)] = array[np.searchsorted(shown, group)]
    return tiles


def write_retrieval_gallery(
    plots_dir: str | os.PathLike[str],
    neighbors: Neighbors,
    labels: ArrayLike,
    *,
    metric: str,
    seed: int,
    class_names: ClassNames | None = None,
    rows: ArrayLike | None = None,
    split: str | None = None,
    images: Callable[[np.ndarray], ArrayLike | None] | None = None,
    k: int = 5,
    fixed: int = 8,
    hard: int = 8,
) -> dict[str, Path]:
    """Write retrievals.png, retrievals.json and confused_pairs.csv into `plots_dir`.

    retrievals.json is `gallery_records(...)`; retrievals.png draws it, one row per query (fixed, then
    hardest), the query then its neighbours, each framed green (same class) or red; as thumbnails when
    `images` gives them, else as a table of coloured cells. confused_pairs.csv is `confused_pairs(indices,
    labels, k=k)` with class names (columns class_a, class_b, count, share), drawn as bars below the gallery.
    Everything is computed and drawn before the first file is written; the files are renamed into place together.

    Args:
        plots_dir: output directory (created if missing).
        neighbors, labels, metric, seed, class_names, rows, split, k, fixed, hard: as `gallery_records`.
        images: called once with the sorted positions of the rows shown (a few dozen), returns their
            thumbnails ((n, C, H, W), C = 1 or 3, uint8 or float in [0, 1]), or None for vectors; None: vectors.

    Returns:
        The paths written, by the keys of GALLERY_FILES.
    """
    if not isinstance(plots_dir, (str, os.PathLike)):
        raise TypeError(f"plots_dir must be a str or os.PathLike, got {type(plots_dir).__name__}")
    records, shown = _gallery(neighbors, labels, metric=metric, seed=seed, class_names=class_names, rows=rows,
                              split=split, k=k, fixed=fixed, hard=hard)
    _, label_array = _check_neighbors(neighbors, labels)
    tiles = None if images is None or not shown else _tiles(records, shown, images)
    names = _names_for(np.unique(label_array), class_names)
    pairs = confused_pairs(neighbors.indices, label_array, k=records["k"])
    table = pd.DataFrame({"class_a": [names[a] for a in pairs["class_a"].tolist()],
                          "class_b": [names[b] for b in pairs["class_b"].tolist()],
                          "count": pairs["count"], "share": pairs["share"]})
    gallery = retrieval_gallery_figure(records, tiles, table, k_ap=neighbors.indices.shape[1],
                                       num_rows=label_array.size, dpi=_DPI)
    paths = {key: Path(plots_dir) / name for key, name in GALLERY_FILES.items()}
    Path(plots_dir).mkdir(parents=True, exist_ok=True)
    write_files_atomically({
        paths["png"]: functools.partial(gallery.savefig, format="png", dpi=_DPI),
        paths["pairs_csv"]: lambda f: table.to_csv(f, index=False, float_format="%.6g"),
        paths["json"]: json_text(records).encode("utf-8"),
    })
    return paths

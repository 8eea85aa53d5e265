"""Distances of same-class and different-class pairs of points: all of them, or a seeded sample.

The histogram in `plot_drawing.py` compares the two populations. Exact enumeration is used while the
number of pairs is within budget; beyond it, each population gets its own share of the budget and
is sampled uniformly without replacement, so a rare population (same-class pairs when there are
many classes) is still seen in full detail. Memory is bounded by the budget and fixed-size distance
blocks; nothing (N, N) is ever built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .inputs import check_int, check_metric, l2_normalized, to_float32_matrix, to_int_labels

__all__ = ["PairDistances", "pair_distances"]

# n -> (first rows, second rows) of n random pairs.
PairDraw = Callable[[int], tuple[np.ndarray, np.ndarray]]

# Coordinates per block of pair differences (32 MiB of float64).
_BLOCK_VALUES = 2**22


@dataclass(frozen=True)
class PairDistances:
    """Distances of same-class (intra) and different-class (inter) pairs.

    Attributes:
        intra: (I,) float64 distances of same-class pairs.
        inter: (J,) float64 distances of different-class pairs.
        intra_total: number of unordered same-class pairs in the data.
        inter_total: number of unordered different-class pairs in the data.
    """

    intra: np.ndarray
    inter: np.ndarray
    intra_total: int
    inter_total: int

    @property
    def intra_exact(self) -> bool:
        """True when `intra` holds every same-class pair once (no sampling)."""
        return self.intra.size == self.intra_total

    @property
    def inter_exact(self) -> bool:
        """True when `inter` holds every different-class pair once (no sampling)."""
        return self.inter.size == self.inter_total


def _distances(x: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Euclidean distances of rows first[p] and second[p], in float64, in bounded blocks."""
    out = np.empty(first.size)
    step = max(1, _BLOCK_VALUES // x.shape[1])
    for start in range(0, first.size, step):
        stop = start + step
        diff = x[first[start:stop]].astype(np.float64) - x[second[start:stop]]
        out[start:stop] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def _all_intra(order: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered same-class pair (rows sorted by class in `order`)."""
    firsts, seconds = [], []
    for start, size in zip(starts.tolist(), sizes.tolist()):
        a, b = np.triu_indices(size, k=1)
        firsts.append(order[start + a])
        seconds.append(order[start + b])
    return np.concatenate(firsts), np.concatenate(seconds)


def _all_inter(order: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered different-class pair: each class's rows with the rows of all later classes."""
    firsts, seconds = [], []
    for start, size in zip(starts.tolist(), sizes.tolist()):
        later = order[start + size :]
        firsts.append(np.repeat(order[start : start + size], later.size))
        seconds.append(np.tile(later, size))
    return np.concatenate(firsts), np.concatenate(seconds)


def _intra_draws(
    rng: np.random.Generator, order: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> PairDraw:
    """A function drawing n same-class pairs, iid uniform over unordered pairs."""
    pair_counts = sizes * (sizes - 1.0)
    weights = pair_counts / pair_counts.sum()

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        cls = rng.choice(sizes.size, size=n, p=weights)
        first = rng.integers(0, sizes[cls])
        second = (first + 1 + rng.integers(0, sizes[cls] - 1)) % sizes[cls]  # another member
        return order[starts[cls] + first], order[starts[cls] + second]

    return draw


def _inter_draws(
    rng: np.random.Generator, order: np.ndarray, inverse: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> PairDraw:
    """A function drawing n different-class pairs, iid uniform over unordered pairs."""
    others = order.size - sizes[inverse]  # rows of other classes, per row
    weights = others / others.sum()

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        first = rng.choice(order.size, size=n, p=weights)
        cls = inverse[first]
        position = rng.integers(0, others[first])  # among the rows outside `cls`, in class order
        position = np.where(position < starts[cls], position, position + sizes[cls])
        return first, order[position]

    return draw


def _distinct_pairs(draw: PairDraw, count: int, total: int, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` distinct unordered pairs out of `total`: iid draws, keeping first occurrences in draw order.

    Keeping the first `count` distinct pairs of an iid uniform sequence is a uniform sample without
    replacement. Each round draws about as many pairs as the missing ones are expected to take.
    """
    codes = np.empty(0, dtype=np.int64)
    while codes.size < count:
        missing = count - codes.size
        first, second = draw(int(1.2 * missing * total / (total - codes.size)) + 64)
        new = np.minimum(first, second) * num_rows + np.maximum(first, second)
        merged = np.concatenate([codes, new])
        _, where = np.unique(merged, return_index=True)
        codes = merged[np.sort(where)[:count]]
    return codes // num_rows, codes % num_rows


def pair_distances(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    metric: str = "l2",
    max_pairs: int = 200_000,
    seed: int = 0,
) -> PairDistances:
    """Distances of same-class and different-class pairs, exact when small, else a seeded sample.

    With P_intra and P_inter unordered pairs of each kind: when P_intra + P_inter <= max_pairs, every
    pair is used once. Otherwise same-class pairs get max_pairs // 2 of the budget (all of them when
    fewer) and different-class pairs the rest; a population larger than its share is sampled
    uniformly without replacement (distinct unordered pairs) with `np.random.default_rng(seed)`.
    Distances are Euclidean; with metric="cosine" they are Euclidean between L2-normalised rows
    (sqrt(2 - 2 cos)), as in `class_distance_stats`.

    Args:
        embeddings: (N, D) numpy array or torch tensor, finite in float32.
        labels: (N,) integer labels with at least 2 classes and one class of 2 or more rows.
        metric: "l2" or "cosine".
        max_pairs: most pairs to return in total, >= 2.
        seed: seed of the sample, >= 0.

    Returns:
        PairDistances with the two distance arrays and the two population sizes.

    Raises:
        TypeError: if embeddings/labels are not numeric/integer, or max_pairs/seed not ints.
        ValueError: on bad shapes, NaN/Inf, an unknown metric, out-of-range ints, or labels without
            both kinds of pair.

    Example:
        >>> x = np.array([[0.0], [1.0], [5.0]])
        >>> pairs = pair_distances(x, np.array([0, 0, 1]))
        >>> pairs.intra.tolist(), sorted(pairs.inter.tolist()), pairs.intra_exact
        ([1.0], [4.0, 5.0], True)
    """
    metric = check_metric(metric)
    x = to_float32_matrix(embeddings, "embeddings")
    label_array = to_int_labels(labels, "labels", x.shape[0], "embeddings rows")
    max_pairs = check_int(max_pairs, "max_pairs", 2)
    seed = check_int(seed, "seed", 0)
    classes, inverse, sizes = np.unique(label_array, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"labels must contain at least 2 classes, got {classes.size}")
    if sizes.max() < 2:
        raise ValueError("labels must have a class with at least 2 rows (for same-class pairs), got none")
    if metric == "cosine":
        x = l2_normalized(x)

    counts = sizes.astype(np.float64)  # N^2 may not fit in int64 for the products below
    intra_total = int(np.sum(sizes * (sizes - 1) // 2))
    inter_total = int(round((counts.sum() ** 2 - float(counts @ counts)) / 2))
    order = np.argsort(inverse, kind="stable")
    starts = np.cumsum(sizes) - sizes
    rng = np.random.default_rng(seed)

    exact = intra_total + inter_total <= max_pairs
    intra_budget = intra_total if exact else min(intra_total, max_pairs // 2)
    inter_budget = inter_total if exact else max_pairs - intra_budget
    if intra_budget == intra_total:
        intra_pairs = _all_intra(order, starts, sizes)
    else:
        draw = _intra_draws(rng, order, starts, sizes)
        intra_pairs = _distinct_pairs(draw, intra_budget, intra_total, x.shape[0])
    if inter_budget >= inter_total:
        inter_pairs = _all_inter(order, starts, sizes)
    else:
        draw = _inter_draws(rng, order, inverse, starts, sizes)
        inter_pairs = _distinct_pairs(draw, inter_budget, inter_total, x.shape[0])
    return PairDistances(
        intra=_distances(x, *intra_pairs),
        inter=_distances(x, *inter_pairs),
        intra_total=intra_total,
        inter_total=inter_total,
    )

"""Verification metrics: is a pair of points the same class? ROC AUC, TAR at fixed FAR, EER, best threshold.

The face-verification protocol (LFW, IJB, MegaFace; Wen et al.'s center loss was made for it) scores
pairs, not rankings: a pair is accepted as "same" when its distance is at most a threshold. The true
accept rate TAR (= TPR) is the share of positive (same-label) pairs accepted, the false accept rate
FAR (= FPR) the share of negative pairs accepted; the ROC is TAR against FAR over all thresholds, with
similarity = -distance as the score.

Distances follow `eval.metric` as the neighbour search reports it: "l2" is the squared Euclidean
distance, "cosine" the cosine distance 1 - cos(a, b) of L2-normalised rows (an all-zero row has
cos 0, distance 1, to everything), so `search` can compare a neighbour's distance (1 - similarity
for cosine) with a threshold from here. Distances are computed in float64 from the float32 rows, in
blocks of bounded size. Every quantity is a function of the sorted pair distances: O((P + Q) log(P + Q))
time and O(P + Q) memory for P positive and Q negative pairs, both capped (1,000,000 each by default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .inputs import check_int, check_metric, l2_normalized, to_float32_matrix, to_int_labels
from .pairs import _all_inter, _all_intra, _distinct_pairs, _inter_draws, _intra_draws

__all__ = ["FAR_TARGETS", "VerificationPairs", "far_key", "verification_metrics", "verification_pairs"]

FAR_TARGETS = (1e-2, 1e-3, 1e-4)  # the false accept rates TAR is reported at (the face-verification ones)
MAX_PAIRS = 1_000_000  # default cap on each kind of pair

# Coordinates per block of pair differences (32 MiB of float64).
_BLOCK_VALUES = 2**22


@dataclass(frozen=True)
class VerificationPairs:
    """The positive (same-label) and negative pairs a verification is scored on.

    Attributes:
        positive: (P, 2) int64 row indices (i, j), i < j, sorted, distinct.
        negative: (Q, 2) int64 row indices (i, j), i < j, sorted, distinct.
        positive_total: number of positive pairs in the data (P when none were left out).
        negative_total: number of negative pairs in the data (Q when none were left out).
    """

    positive: np.ndarray
    negative: np.ndarray
    positive_total: int
    negative_total: int

    @property
    def positives_sampled(self) -> bool:
        """True when `positive` is a sample, not every positive pair."""
        return len(self.positive) < self.positive_total

    @property
    def negatives_sampled(self) -> bool:
        """True when `negative` is a sample, not every negative pair."""
        return len(self.negative) < self.negative_total


def far_key(target: float) -> str:
    """The metrics key of TAR at FAR `target`: 1e-3 -> "tar_at_far_1e-3", 0.025 -> "tar_at_far_2.5e-2"."""
    mantissa, exponent = f"{target:.6e}".split("e")
    return f"tar_at_far_{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _check_labels(labels: Any) -> np.ndarray:
    array = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must have shape (num_points,), got {array.shape}")
    return to_int_labels(array, "labels", array.shape[0], "its own length")


def _check_queries(queries: Any, num_rows: int) -> np.ndarray:
    mask = queries.detach().cpu().numpy() if hasattr(queries, "detach") else np.asarray(queries)
    if mask.dtype != bool or mask.shape != (num_rows,):
        raise ValueError(f"queries must be a bool mask of shape ({num_rows},) like labels, got {mask.dtype} "
                         f"{mask.shape}")
    if mask.all() or not mask.any():
        raise ValueError(f"queries must mark some rows but not all (the others are the gallery), got "
                         f"{int(mask.sum())} of {num_rows}")
    return mask


def _as_pairs(first: np.ndarray, second: np.ndarray, num_rows: int) -> np.ndarray:
    """(n, 2) int64 pairs (min, max), sorted by (i, j)."""
    codes = np.sort(np.minimum(first, second).astype(np.int64) * num_rows + np.maximum(first, second))
    return np.stack([codes // num_rows, codes % num_rows], axis=1)


def _cross_pairs(inverse: np.ndarray, queries: np.ndarray, num_classes: int, rng_pos: np.random.Generator,
                 rng_neg: np.random.Generator, max_positive: int,
                 max_negative: int) -> tuple[int, tuple[np.ndarray, np.ndarray], int, tuple[np.ndarray, np.ndarray]]:
    """Query-gallery pairs: every one when within its cap, else `_distinct_pairs` of iid uniform draws.

    Returns:
        (positive total, (first, second) rows of the positives, negative total, those of the negatives).
    """
    num_rows = inverse.size
    query_rows = np.flatnonzero(queries)
    gallery_rows = np.flatnonzero(~queries)
    gallery = gallery_rows[np.argsort(inverse[gallery_rows], kind="stable")]  # by class, then row
    sizes = np.bincount(inverse[gallery_rows], minlength=num_classes)
    starts = np.cumsum(sizes) - sizes
    query_class = inverse[query_rows]
    same = sizes[query_class]  # gallery rows of each query's class
    other = gallery.size - same

    def positive_at(query: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return query_rows[query], gallery[starts[query_class[query]] + position]

    def negative_at(query: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cls = query_class[query]
        return query_rows[query], gallery[np.where(position < starts[cls], position, position + sizes[cls])]

    def select(counts: np.ndarray, at, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        total = int(counts.sum())
        if total <= cap:  # every pair: each query with each of its `counts` gallery positions
            query = np.repeat(np.arange(counts.size), counts)
            position = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            return at(query, position)
        weights = counts / total

        def draw(n: int) -> tuple[np.ndarray, np.ndarray]:  # iid uniform over the pairs
            query = rng.choice(counts.size, size=n, p=weights)
            return at(query, rng.integers(0, counts[query]))

        return _distinct_pairs(draw, cap, total, num_rows)

    return (int(same.sum()), select(same, positive_at, max_positive, rng_pos),
            int(other.sum()), select(other, negative_at, max_negative, rng_neg))


def verification_pairs(
    labels: ArrayLike,
    *,
    queries: ArrayLike | None = None,
    max_positive_pairs: int = MAX_PAIRS,
    max_negative_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> VerificationPairs:
    """The positive and negative pairs to score: all of them when few, else a seeded uniform sample.

    Pairs are unordered pairs of distinct rows, (i, j) with i < j: every pair of rows (leave-one-out),
    or with a `queries` mask, every pair of a query row and a gallery row (In-Shop's protocol: a query
    is verified against the gallery, never against another query). Positive pairs share a label.

    Each kind is exact when its count is at most its cap. Above it, `max_*_pairs` distinct pairs are
    drawn uniformly without replacement: pairs are drawn iid uniformly from that kind's population
    directly (leave-one-out negatives: a row with probability proportional to its number of
    other-label rows, then one of those uniformly; positives: a class with probability proportional
    to its pair count, then two distinct members; with queries: a query in proportion to its matching
    gallery rows, then one of them), so no draw is ever rejected for being of the other kind. The
    first occurrences are kept in draw order, more rounds are drawn until the cap is reached, and the
    first `max_*_pairs` distinct pairs are the sample (the first k distinct values of an iid uniform
    sequence are a uniform sample without replacement). Positives and negatives come from independent
    streams of `np.random.SeedSequence(seed)`: the negative sample does not depend on the positives'.
    Memory is O(N + caps), never O(N²): SOP's 60,502 test rows with the default caps hold ~1.1M pairs.

    Args:
        labels: (N,) integer labels.
        queries: (N,) bool mask of the query rows (the rest is the gallery); None: all pairs of rows.
        max_positive_pairs: most positive pairs, >= 1.
        max_negative_pairs: most negative pairs, >= 1.
        seed: seed of the samples, >= 0.

    Returns:
        VerificationPairs, each kind sorted by (i, j).

    Raises:
        TypeError: labels not integers, or a cap/seed not an int.
        ValueError: labels not 1-D, a bad `queries` mask, caps or seed out of range, or labels that give
            no positive pair (every label unique; no query label in the gallery) or no negative pair
            (a single class; every query's gallery rows share its label).

    Example:
        >>> pairs = verification_pairs(np.array([0, 0, 1]))
        >>> pairs.positive.tolist(), pairs.negative.tolist(), pairs.negatives_sampled
        ([[0, 1]], [[0, 2], [1, 2]], False)
    """
    label_array = _check_labels(labels)
    max_positive_pairs = check_int(max_positive_pairs, "max_positive_pairs", 1)
    max_negative_pairs = check_int(max_negative_pairs, "max_negative_pairs", 1)
    seed = check_int(seed, "seed", 0)
    num_rows = label_array.size
    classes, inverse, sizes = np.unique(label_array, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)  # numpy 2.0.x gave it the input's shape
    rng_pos, rng_neg = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if queries is not None:
        mask = _check_queries(queries, num_rows)
        positive_total, positive, negative_total, negative = _cross_pairs(
            inverse, mask, classes.size, rng_pos, rng_neg, max_positive_pairs, max_negative_pairs)
        where = "between query and gallery rows"
    else:
        counts = sizes.astype(np.float64)  # N^2 may not fit in int64 for the products below
        positive_total = int(np.sum(sizes * (sizes - 1) // 2))
        negative_total = int(round((counts.sum() ** 2 - float(counts @ counts)) / 2))
        order = np.argsort(inverse, kind="stable")
        starts = np.cumsum(sizes) - sizes
        positive = negative = (np.empty(0, np.int64), np.empty(0, np.int64))
        if 0 < positive_total <= max_positive_pairs:
            positive = _all_intra(order, starts, sizes)
        elif positive_total:
            positive = _distinct_pairs(_intra_draws(rng_pos, order, starts, sizes), max_positive_pairs,
                                       positive_total, num_rows)
        if 0 < negative_total <= max_negative_pairs:
            negative = _all_inter(order, starts, sizes)
        elif negative_total:
            negative = _distinct_pairs(_inter_draws(rng_neg, order, inverse, starts, sizes), max_negative_pairs,
                                       negative_total, num_rows)
        where = "between rows"
    if positive_total == 0:
        raise ValueError(f"labels must give at least one positive (same-label) pair {where}, got none "
                         f"({num_rows} rows, {classes.size} distinct labels)")
    if negative_total == 0:
        raise ValueError(f"labels must give at least one negative (different-label) pair {where}, got none "
                         f"({num_rows} rows, {classes.size} distinct labels)")
    return VerificationPairs(_as_pairs(*positive, num_rows), _as_pairs(*negative, num_rows), positive_total,
                             negative_total)


def _check_pairs(pairs: Any, labels: np.ndarray) -> VerificationPairs:
    if not isinstance(pairs, VerificationPairs):
        raise TypeError(f"pairs must be a VerificationPairs (from verification_pairs), got {type(pairs).__name__}")
    for name, rows, same in (("positive", pairs.positive, True), ("negative", pairs.negative, False)):
        if rows.ndim != 2 or rows.shape[1] != 2 or rows.shape[0] == 0 or rows.dtype.kind not in "iu":
            raise ValueError(f"pairs.{name} must be a non-empty (n, 2) int array, got {rows.dtype} {rows.shape}")
        if rows.min() < 0 or rows.max() >= labels.size:
            raise ValueError(f"pairs.{name} must index rows 0..{labels.size - 1} of labels, got "
                             f"{rows.min()}..{rows.max()}")
        if np.any((labels[rows[:, 0]] == labels[rows[:, 1]]) != same):
            raise ValueError(f"pairs.{name} must hold only {'same' if same else 'different'}-label pairs of "
                             "these labels, got others (pairs of other labels?)")
    return pairs


def _pair_distances(x: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """(n,) float64 distance of each pair rows[p] of (N, D) `x` (already normalised for cosine)."""
    x = x.astype(np.float64)  # once: N * D values, far fewer than the pairs' gathered rows
    out = np.empty(len(rows))
    step = max(1, _BLOCK_VALUES // x.shape[1])
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        a, b = x[block[:, 0]], x[block[:, 1]]
        if metric == "l2":
            a -= b
            out[start : start + step] = np.einsum("ij,ij->i", a, a)
        else:
            out[start : start + step] = 1.0 - np.einsum("ij,ij->i", a, b)
    return out


def _accepted(sorted_distances: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many distances are <= each threshold."""
    return np.searchsorted(sorted_distances, thresholds, side="right")


def _tar_at_far(positive: np.ndarray, negative: np.ndarray, target: float) -> float:
    """TAR at the largest threshold with FAR <= target (max TPR over ROC points with FPR <= target);
    NaN when fewer than 1 / target negatives leave FAR = 0 as the only reachable value <= target."""
    q = negative.size
    allowed = min(q, math.floor(target * q))  # false accepts allowed: the largest k with k / q <= target
    while allowed < q and (allowed + 1) / q <= target:
        allowed += 1
    while allowed > 0 and allowed / q > target:
        allowed -= 1
    if allowed == 0:
        return math.nan
    if allowed == q:
        return 1.0
    # Accept every distance below the (allowed + 1)-th smallest negative one (ties with it included).
    return float(np.searchsorted(positive, negative[allowed], side="left") / positive.size)


def _eer(fpr: np.ndarray, fnr: np.ndarray) -> float:
    """FAR where it equals FRR, linearly interpolated between the two ROC points around the crossing."""
    gap = fpr - fnr  # nondecreasing from -1 (accept nothing) to +1 (accept everything)
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0:
        return float(fpr[i])
    w = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def verification_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike,
    *,
    metric: str,
    queries: ArrayLike | None = None,
    pairs: VerificationPairs | None = None,
    far_targets: Sequence[float] = FAR_TARGETS,
    threshold: float | None = None,
    max_positive_pairs: int = MAX_PAIRS,
    max_negative_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> dict[str, Any]:
    """Pair-verification scores of a labelled embedding: ROC AUC, TAR@FAR, EER and the best threshold.

    A pair is accepted as "same" when its distance d (see the module: squared L2, or 1 - cos) is at
    most a threshold t. TPR(t) = TAR(t) is the share of positive pairs accepted, FPR(t) = FAR(t) of
    negative pairs accepted, FNR(t) = FRR(t) = 1 - TAR(t); the ROC has one point per distinct distance
    (scikit-learn's `roc_curve` of scores -d with drop_intermediate=False), plus (0, 0).

    Keys of the result:
        roc_auc: area under the ROC (= sklearn.metrics.roc_auc_score(same, -d): a tie counts 1/2).
        tar_at_far_<target> (one per `far_targets`, keys by `far_key`: tar_at_far_1e-2, ...): TAR at the
            largest threshold whose FAR <= target (= the largest TPR of a ROC point with FPR <= target).
            NaN (null in metrics.json) when there are fewer than 1 / target negative pairs (10,000 for
            1e-4): then only FAR = 0 is reachable and the value would not be TAR at that FAR.
        eer: equal error rate, where FAR = FRR on the ROC, interpolated linearly between the last point
            with FAR < FRR and the first with FAR >= FRR (lower is better).
        best_accuracy: the largest balanced accuracy (TAR + TNR) / 2 over the ROC points (balanced, so
            that the usually far more numerous negatives do not dominate; always >= 0.5).
        best_threshold: a threshold reaching it: halfway between the largest accepted distance and the next
            distinct one (the smallest such distance on ties; the largest distance when it accepts all).
        accuracy_at_threshold: only when `threshold` is given: balanced accuracy with d <= threshold accepted.
        positive_pairs, negative_pairs: pairs scored (ints); positives_sampled, negatives_sampled: whether
            each kind is a sample (bools; see `verification_pairs`).

    Args:
        embeddings: (N, D) numpy array or torch tensor, finite in float32.
        labels: (N,) integer labels.
        metric: "l2" or "cosine".
        queries: (N,) bool query mask: score query-gallery pairs only (see `verification_pairs`).
        pairs: pairs to score (from `verification_pairs` on these labels); then queries, the caps and
            seed are not used.
        far_targets: FAR values in (0, 1] to report TAR at.
        threshold: a distance threshold chosen elsewhere (on validation rows) to report accuracy at.
        max_positive_pairs, max_negative_pairs, seed: see `verification_pairs`.

    Returns:
        dict of Python floats, ints and bools as above.

    Raises:
        TypeError: non-numeric embeddings, non-integer labels, `pairs` not a VerificationPairs, ints not ints.
        ValueError: bad shapes, NaN/Inf, an unknown metric, a FAR target outside (0, 1], a non-finite
            threshold, pairs that do not fit the labels, or labels without both kinds of pair.

    Example:
        >>> x = np.array([[0.0], [1.0], [3.0], [3.5]])
        >>> scores = verification_metrics(x, np.array([0, 0, 1, 1]), metric="l2", far_targets=(0.25,))
        >>> scores["roc_auc"], scores["tar_at_far_2.5e-1"], scores["eer"], scores["best_threshold"]
        (1.0, 1.0, 0.0, 2.5)
    """
    metric = check_metric(metric)
    x = to_float32_matrix(embeddings, "embeddings")
    label_array = to_int_labels(labels, "labels", x.shape[0], "embeddings rows")
    targets = tuple(far_targets)
    for target in targets:
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
            raise ValueError(f"far_targets must be numbers in (0, 1], got {target!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    if pairs is None:
        pairs = verification_pairs(label_array, queries=queries, max_positive_pairs=max_positive_pairs,
                                   max_negative_pairs=max_negative_pairs, seed=seed)
    else:
        pairs = _check_pairs(pairs, label_array)
    if metric == "cosine":
        x = l2_normalized(x)
    positive = np.sort(_pair_distances(x, pairs.positive, metric))
    negative = np.sort(_pair_distances(x, pairs.negative, metric))

    # AUC = P(d_pos < d_neg) + P(d_pos = d_neg) / 2 (Mann-Whitney), summed over the positives.
    below = negative.size - _accepted(negative, positive)
    ties = _accepted(negative, positive) - np.searchsorted(negative, positive, side="left")
    roc_auc = float((below.sum() + 0.5 * ties.sum()) / (positive.size * negative.size))

    distinct = np.unique(np.concatenate([positive, negative]))
    tpr = _accepted(positive, distinct) / positive.size
    fpr = _accepted(negative, distinct) / negative.size
    balanced = (tpr + 1.0 - fpr) / 2
    best = int(np.argmax(balanced))
    best_threshold = distinct[best] if best + 1 == distinct.size else (distinct[best] + distinct[best + 1]) / 2
    scores: dict[str, Any] = {"roc_auc": roc_auc}
    scores.update({far_key(t): _tar_at_far(positive, negative, float(t)) for t in targets})
    scores.update(eer=_eer(np.concatenate([[0.0], fpr]), np.concatenate([[1.0], 1.0 - tpr])),
                  best_accuracy=float(balanced[best]), best_threshold=float(best_threshold))
    if threshold is not None:
        tar = _accepted(positive, np.array([threshold]))[0] / positive.size
        tnr = 1.0 - _accepted(negative, np.array([threshold]))[0] / negative.size
        scores["accuracy_at_threshold"] = float((tar + tnr) / 2)
    scores.update(positive_pairs=int(positive.size), negative_pairs=int(negative.size),
                  positives_sampled=pairs.positives_sampled, negatives_sampled=pairs.negatives_sampled)
    return scores

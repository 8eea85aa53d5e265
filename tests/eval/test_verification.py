"""Verification metrics against scikit-learn's ROC and plain loops over every pair; the pair sample's properties."""

import doctest
import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

import metricbench.eval.verification as verification_module
from metricbench.eval.verification import far_key, verification_metrics, verification_pairs

TARGETS = (0.1, 0.05, 0.01, 1e-3)


def _blobs(n=60, classes=5, dim=4, seed=0, spread=1.2):
    """Overlapping Gaussian blobs (so the ROC is not trivial), unbalanced labels, rows shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(classes, size=n, p=np.arange(1, classes + 1) / (classes * (classes + 1) / 2)) * 3 - 4
    centers = {c: rng.standard_normal(dim) * 2 for c in np.unique(labels)}
    x = np.stack([centers[c] + spread * rng.standard_normal(dim) for c in labels]).astype(np.float32)
    return x, labels


def _loop_distance(a, b, metric):
    a, b = [float(v) for v in a], [float(v) for v in b]
    if metric == "l2":
        return sum((u - v) ** 2 for u, v in zip(a, b))
    norm_a, norm_b = math.sqrt(sum(u * u for u in a)), math.sqrt(sum(v * v for v in b))
    return 1.0 - sum(u * v for u, v in zip(a, b)) / (norm_a * norm_b)


def _loop_pairs(labels, queries=None):
    """Every scored pair (i < j) by plain loops: all pairs, or query-gallery pairs."""
    positive, negative = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        if queries is not None and queries[i] == queries[j]:
            continue
        (positive if labels[i] == labels[j] else negative).append((i, j))
    return positive, negative


def _sklearn_reference(x, labels, metric, queries=None):
    """(same, scores) of every pair, by loops, as scikit-learn wants them (score = -distance)."""
    positive, negative = _loop_pairs(labels, queries)
    rows = positive + negative
    same = np.array([1] * len(positive) + [0] * len(negative))
    scores = np.array([-_loop_distance(x[i], x[j], metric) for i, j in rows])
    return same, scores


def _roc_tar(same, scores, target):
    fpr, tpr, _ = roc_curve(same, scores, drop_intermediate=False)
    return float(tpr[fpr <= target].max())


def _roc_eer(same, scores):
    """Where the polyline of (FAR, FRR) = (fpr, 1 - tpr) crosses FAR = FRR, segment by segment."""
    fpr, tpr, _ = roc_curve(same, scores)
    fnr = 1 - tpr
    for (f1, n1), (f2, n2) in zip(zip(fpr, fnr), zip(fpr[1:], fnr[1:])):
        if f1 - n1 <= 0 <= f2 - n2:
            if f1 == n1:
                return f1
            w = (n1 - f1) / ((f2 - f1) - (n2 - n1))
            return f1 + w * (f2 - f1)
    raise AssertionError("no crossing")


def test_doctests():
    assert doctest.testmod(verification_module, raise_on_error=True).attempted >= 2


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("with_queries", [False, True])
def test_scores_match_scikit_learn_on_every_pair(metric, with_queries):
    x, labels = _blobs()
    queries = np.random.default_rng(1).random(len(labels)) < 0.4 if with_queries else None
    same, scores = _sklearn_reference(x, labels, metric, queries)
    result = verification_metrics(x, labels, metric=metric, queries=queries, far_targets=TARGETS)

    assert result["roc_auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    negatives = int((same == 0).sum())
    for target in TARGETS:
        if negatives * target >= 1:
            assert result[far_key(target)] == pytest.approx(_roc_tar(same, scores, target), abs=1e-12)
        else:  # fewer than 1 / target negative pairs: FAR = target is out of reach
            assert math.isnan(result[far_key(target)])
    assert result["eer"] == pytest.approx(_roc_eer(same, scores), abs=1e-9)
    assert (result["positive_pairs"], result["negative_pairs"]) == (int(same.sum()), negatives)
    assert result["negatives_sampled"] is False and result["positives_sampled"] is False


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_best_threshold_is_the_best_balanced_accuracy_of_any_threshold(metric):
    x, labels = _blobs(seed=3)
    same, scores = _sklearn_reference(x, labels, metric)
    distances = -scores

    def balanced(t):
        accepted = distances <= t
        return (accepted[same == 1].mean() + (~accepted[same == 0]).mean()) / 2

    brute = max(balanced(t) for t in distances)
    first = verification_metrics(x, labels, metric=metric)
    result = verification_metrics(x, labels, metric=metric, threshold=first["best_threshold"])
    assert result["best_accuracy"] == pytest.approx(brute, abs=1e-12)
    assert balanced(result["best_threshold"]) == pytest.approx(brute, abs=1e-12)
    assert result["accuracy_at_threshold"] == pytest.approx(brute, abs=1e-12)  # its own threshold
    # The threshold lies strictly between the last accepted distance and the first rejected one.
    assert not np.any(np.isclose(distances, result["best_threshold"], rtol=0, atol=1e-12))
    assert verification_metrics(x, labels, metric=metric, threshold=-1.0)["accuracy_at_threshold"] == 0.5


def test_known_numbers():
    # 1-D: positives at squared distances 1 and 0.25; negatives 4, 6.25, 9, 12.25.
    x = np.array([[0.0], [1.0], [3.0], [3.5]])
    result = verification_metrics(x, np.array([0, 0, 1, 1]), metric="l2", far_targets=(0.25, 0.5, 1.0, 0.2))
    assert result["roc_auc"] == 1.0 and result["eer"] == 0.0 and result["best_accuracy"] == 1.0
    assert result["best_threshold"] == 2.5
    assert result["tar_at_far_2.5e-1"] == 1.0 and result["tar_at_far_1e0"] == 1.0
    assert math.isnan(result["tar_at_far_2e-1"])  # 4 negatives: the smallest FAR above 0 is 0.25
    # Other labels: positives at 4 and 12.25, negatives at 0.25, 1, 6.25, 9; 2 of the 8 (pos, neg) are ordered.
    other = verification_metrics(x, np.array([0, 1, 1, 0]), metric="l2", far_targets=(0.5,))
    assert other["roc_auc"] == 0.25 and other["eer"] == 0.5
    assert other["tar_at_far_5e-1"] == 0.5  # below the third negative (6.25): the positive at 4
    assert other["best_accuracy"] == 0.5 and other["best_threshold"] == (4 + 6.25) / 2


def test_far_key_names():
    assert [far_key(t) for t in (1e-2, 1e-3, 1e-4, 0.025, 0.5, 1.0)] == [
        "tar_at_far_1e-2", "tar_at_far_1e-3", "tar_at_far_1e-4", "tar_at_far_2.5e-2", "tar_at_far_5e-1",
        "tar_at_far_1e0"]


@pytest.mark.parametrize("with_queries", [False, True])
def test_exact_pairs_are_every_pair_of_the_loops(with_queries):
    _, labels = _blobs(n=40)
    queries = np.arange(40) % 3 == 0 if with_queries else None
    positive, negative = _loop_pairs(labels, queries)
    pairs = verification_pairs(labels, queries=queries)
    assert pairs.positive.tolist() == [list(p) for p in positive]
    assert pairs.negative.tolist() == [list(p) for p in negative]
    assert (pairs.positive_total, pairs.negative_total) == (len(positive), len(negative))
    assert not pairs.positives_sampled and not pairs.negatives_sampled


@pytest.mark.parametrize("with_queries", [False, True])
def test_sample_is_seeded_distinct_of_the_right_kind_and_capped(with_queries):
    _, labels = _blobs(n=300, classes=8)
    queries = np.arange(300) % 2 == 0 if with_queries else None
    pairs = verification_pairs(labels, queries=queries, max_negative_pairs=2_000, max_positive_pairs=500, seed=4)
    assert pairs.negatives_sampled and pairs.positives_sampled
    assert len(pairs.negative) == 2_000 and len(pairs.positive) == 500
    for rows, same in ((pairs.negative, False), (pairs.positive, True)):
        assert np.all(rows[:, 0] < rows[:, 1])
        assert len(np.unique(rows, axis=0)) == len(rows)  # no duplicates
        assert np.all((labels[rows[:, 0]] == labels[rows[:, 1]]) == same)  # no positive among the negatives
        if with_queries:
            assert np.all(queries[rows[:, 0]] != queries[rows[:, 1]])  # one query and one gallery row
    again = verification_pairs(labels, queries=queries, max_negative_pairs=2_000, max_positive_pairs=500, seed=4)
    assert np.array_equal(again.negative, pairs.negative) and np.array_equal(again.positive, pairs.positive)
    other = verification_pairs(labels, queries=queries, max_negative_pairs=2_000, max_positive_pairs=500, seed=5)
    assert not np.array_equal(other.negative, pairs.negative) and not np.array_equal(other.positive, pairs.positive)
    # The negative sample does not depend on how the positives were chosen.
    whole = verification_pairs(labels, queries=queries, max_negative_pairs=2_000, seed=4)
    assert not whole.positives_sampled and np.array_equal(whole.negative, pairs.negative)


@pytest.mark.parametrize("with_queries", [False, True])
def test_sample_is_uniform_over_the_negative_pairs(with_queries):
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    queries = np.arange(10) % 2 == 1 if with_queries else None
    _, negative = _loop_pairs(labels, queries)
    cap, draws = len(negative) // 3, 3_000
    counts = dict.fromkeys(negative, 0)
    for seed in range(draws):
        for pair in verification_pairs(labels, queries=queries, max_negative_pairs=cap, seed=seed).negative.tolist():
            counts[tuple(pair)] += 1
    expected = draws * cap / len(negative)
    spread = 5 * math.sqrt(expected * (1 - cap / len(negative)))  # 5 binomial standard deviations
    assert all(abs(count - expected) < spread for count in counts.values()), counts


def test_sop_sized_split_stays_bounded():
    labels = np.random.default_rng(0).integers(0, 11_000, size=60_000)
    pairs = verification_pairs(labels, max_negative_pairs=100_000, max_positive_pairs=50_000)
    assert len(pairs.negative) == 100_000 and pairs.negative_total > 1_000_000_000
    assert len(pairs.positive) == 50_000 and pairs.positives_sampled


def test_given_pairs_and_torch_inputs_give_the_same_numbers():
    x, labels = _blobs()
    pairs = verification_pairs(labels, max_negative_pairs=500, seed=2)
    direct = verification_metrics(x, labels, metric="cosine", max_negative_pairs=500, seed=2)
    assert verification_metrics(x, labels, metric="cosine", pairs=pairs) == direct
    assert verification_metrics(torch.from_numpy(x), torch.from_numpy(labels), metric="cosine", pairs=pairs) == direct
    assert direct["negatives_sampled"] is True and direct["negative_pairs"] == 500


def test_bad_input_names_the_argument():
    x, labels = _blobs(n=20)
    bad = x.copy()
    bad[3, 1] = np.nan
    cases = [
        (dict(embeddings=bad), "embeddings"),
        (dict(embeddings=x[:, 0]), "embeddings"),
        (dict(labels=labels[:-1]), "labels"),
        (dict(labels=np.zeros(20, dtype=int)), "negative"),  # a single class: no different-label pair
        (dict(labels=np.arange(20)), "positive"),  # every label unique: no same-label pair
        (dict(metric="euclid"), "metric"),
        (dict(far_targets=(0.0,)), "far_targets"),
        (dict(far_targets=(1.5,)), "far_targets"),
        (dict(threshold=float("nan")), "threshold"),
        (dict(queries=np.ones(20, dtype=bool)), "queries"),
        (dict(queries=np.zeros(19, dtype=bool)), "queries"),
        (dict(max_negative_pairs=0), "max_negative_pairs"),
        (dict(pairs=verification_pairs(labels[::-1].copy())), "pairs"),
    ]
    for change, name in cases:
        arguments = dict(embeddings=x, labels=labels, metric="l2") | change
        with pytest.raises(ValueError, match=name):
            verification_metrics(**arguments)
    with pytest.raises(ValueError, match="labels"):
        verification_pairs(labels.reshape(4, 5))
    with pytest.raises(ValueError, match="positive"):  # no query's label is in the gallery
        verification_pairs(np.array([0, 0, 1, 1]), queries=np.array([True, True, False, False]))
    with pytest.raises(TypeError, match="labels"):
        verification_pairs(np.linspace(0, 1, 5))

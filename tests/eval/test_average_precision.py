"""Full-ranking mean average precision against a plain loop, scikit-learn and pytorch-metric-learning."""

import doctest

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from sklearn.metrics import average_precision_score

import metricbench.eval.average_precision as average_precision_module
from metricbench.eval import mean_average_precision, retrieval_metrics


def _clusters(sizes, dim, seed, spread=1.5):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.standard_normal((len(sizes), dim))[labels] * spread + rng.standard_normal((len(labels), dim))
    order = rng.permutation(len(labels))
    return x[order].astype(np.float32), labels[order]


def _scores(queries, gallery, metric):
    """(Nq, Ng) float64 "higher is nearer" scores."""
    q, g = queries.astype(np.float64), gallery.astype(np.float64)
    if metric == "cosine":
        q, g = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
        return q @ g.T
    return -((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)


def _loop_map(queries, query_labels, gallery, gallery_labels, metric, leave_one_out):
    """Precision at the rank of each relevant item, averaged, with plain loops (no ties in the data)."""
    scores = _scores(queries, gallery, metric)
    aps = []
    for i in range(len(queries)):
        ranked = [j for j in np.argsort(-scores[i], kind="stable") if not (leave_one_out and j == i)]
        relevant = [gallery_labels[j] == query_labels[i] for j in ranked]
        if not any(relevant):
            continue
        hits, precisions = 0, []
        for rank, is_relevant in enumerate(relevant, start=1):
            if is_relevant:
                hits += 1
                precisions.append(hits / rank)
        aps.append(np.mean(precisions))
    return float(np.mean(aps))


def _sklearn_map(queries, query_labels, gallery, gallery_labels, metric, leave_one_out):
    scores = _scores(queries, gallery, metric)
    aps = []
    for i in range(len(queries)):
        keep = np.arange(len(gallery)) != i if leave_one_out else np.ones(len(gallery), bool)
        relevant = gallery_labels[keep] == query_labels[i]
        if relevant.any():
            aps.append(average_precision_score(relevant, scores[i][keep]))
    return float(np.mean(aps))


SETS = {
    "balanced": ([12] * 8, 5, 0),
    "unbalanced_with_singletons": ([1, 1, 2, 3, 5, 40, 90], 4, 1),
    "one_dominant_class": ([150] + [1] * 8 + [2] * 6, 6, 2),
}


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("name", sorted(SETS))
def test_leave_one_out_matches_loops_sklearn_and_pml(name, metric):
    x, y = _clusters(*SETS[name])
    ours = mean_average_precision(x, y, metric=metric)
    assert ours == pytest.approx(_loop_map(x, y, x, y, metric, True), abs=1e-9)
    assert ours == pytest.approx(_sklearn_map(x, y, x, y, metric, True), abs=1e-9)
    # PML's mean_average_precision over the whole reference set (k=None) is the same quantity.
    knn_func = CustomKNN(CosineSimilarity()) if metric == "cosine" else None
    calculator = AccuracyCalculator(include=("mean_average_precision",), k=None, device=torch.device("cpu"),
                                    knn_func=knn_func)
    assert ours == pytest.approx(calculator.get_accuracy(x, y)["mean_average_precision"], abs=1e-6)
    assert 0.0 < ours < 1.0


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_query_gallery_matches_loops_and_sklearn(metric):
    gallery, gallery_labels = _clusters([1, 2, 30, 60, 4, 9], 5, seed=3)
    queries, query_labels = _clusters([3, 5, 12, 20, 2, 1, 6], 5, seed=4)  # label 6 is not in the gallery
    ours = mean_average_precision(gallery, gallery_labels, metric=metric,
                                  query_embeddings=queries, query_labels=query_labels)
    assert ours == pytest.approx(_loop_map(queries, query_labels, gallery, gallery_labels, metric, False), abs=1e-9)
    assert ours == pytest.approx(_sklearn_map(queries, query_labels, gallery, gallery_labels, metric, False), abs=1e-9)


def test_tied_distances_count_as_one_block_as_in_sklearn():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 3, size=(60, 2)).astype(np.float32)  # many exact duplicates
    y = rng.integers(0, 3, size=60)
    # sklearn ranks by score, so feed it exact integer distances (ties stay ties).
    distances = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    expected = []
    for i in range(60):
        keep = np.arange(60) != i
        relevant = y[keep] == y[i]
        if relevant.any():
            expected.append(average_precision_score(relevant, -distances[i][keep]))
    assert mean_average_precision(x, y) == pytest.approx(np.mean(expected), abs=1e-12)


def test_streaming_in_small_chunks_gives_the_same_number(monkeypatch):
    x, y = _clusters([7, 20, 33], 4, seed=6)
    whole = mean_average_precision(x, y)
    monkeypatch.setattr(average_precision_module, "_CHUNK_BYTES", 1)  # one query per product
    assert mean_average_precision(x, y) == pytest.approx(whole, abs=1e-12)


def test_retrieval_metrics_reports_it_as_map():
    x, y = _clusters([10, 15, 2, 1], 3, seed=7)
    assert retrieval_metrics(x, y, full_map=True, ks=(1,))["map"] == mean_average_precision(x, y)


def test_nan_without_any_relevant_item_and_errors():
    x = np.random.default_rng(8).standard_normal((4, 2))
    assert np.isnan(mean_average_precision(x, np.arange(4)))
    with pytest.raises(ValueError, match="metric must be one of"):
        mean_average_precision(x, np.arange(4), metric="dot")
    with pytest.raises(ValueError, match="must be given together"):
        mean_average_precision(x, np.arange(4), query_embeddings=x)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        mean_average_precision(x, np.arange(3))
    with pytest.raises(ValueError, match="query_embeddings must have dim 2"):
        mean_average_precision(x, np.arange(4), query_embeddings=np.zeros((2, 3)), query_labels=[0, 1])


def test_doctests():
    result = doctest.testmod(average_precision_module)
    assert result.attempted > 0 and result.failed == 0

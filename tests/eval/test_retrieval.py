"""Retrieval metrics against pytorch-metric-learning's AccuracyCalculator, plain loops and a hand example."""

import doctest

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

import metricbench.eval.knn as knn_module
import metricbench.eval.retrieval as retrieval_module
from metricbench.eval import map_at_r, precision_at_1, r_precision, recall_at_k, retrieval_metrics

PML_NAMES = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "map_at_r": "mean_average_precision_at_r",
}


def _clusters(sizes, dim, seed, spread=1.5):
    """Gaussian blobs that overlap enough for the metrics to land strictly between 0 and 1."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((len(sizes), dim)) * spread
    labels = np.repeat(np.arange(len(sizes)), sizes)
    embeddings = centers[labels] + rng.standard_normal((len(labels), dim))
    order = rng.permutation(len(labels))
    return embeddings[order].astype(np.float32), labels[order]


def _pml(metric, query, query_labels, reference=None, reference_labels=None):
    knn_func = CustomKNN(CosineSimilarity()) if metric == "cosine" else None
    calculator = AccuracyCalculator(
        include=tuple(PML_NAMES.values()), k="max_bin_count", device=torch.device("cpu"), knn_func=knn_func
    )
    if reference is None:
        return calculator.get_accuracy(query, query_labels)
    return calculator.get_accuracy(query, query_labels, reference, reference_labels, ref_includes_query=False)


def _loop_recall(queries, query_labels, gallery, gallery_labels, k, leave_one_out, metric):
    """Recall@k with plain loops; queries with no same-label gallery item are skipped."""
    hits = []
    for i in range(len(queries)):
        candidates = [j for j in range(len(gallery)) if not (leave_one_out and j == i)]
        if not any(gallery_labels[j] == query_labels[i] for j in candidates):
            continue
        if metric == "cosine":
            q = queries[i] / np.linalg.norm(queries[i])
            score = [-float(q @ (gallery[j] / np.linalg.norm(gallery[j]))) for j in candidates]
        else:
            score = [float(((queries[i].astype(np.float64) - gallery[j]) ** 2).sum()) for j in candidates]
        nearest = [candidates[j] for j in np.argsort(score, kind="stable")[:k]]
        hits.append(any(gallery_labels[j] == query_labels[i] for j in nearest))
    return float(np.mean(hits))


LEAVE_ONE_OUT_SETS = {
    "balanced": ([15] * 12, 6, 0),
    "unbalanced_with_singletons": ([1, 1, 1, 2, 3, 5, 40, 120], 5, 1),
    "many_small_classes": ([1, 2, 3] * 20, 4, 2),
}


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("name", sorted(LEAVE_ONE_OUT_SETS))
def test_leave_one_out_matches_accuracy_calculator(name, metric):
    x, y = _clusters(*LEAVE_ONE_OUT_SETS[name])
    ours = retrieval_metrics(x, y, ks=(1, 2, 4, 8), metric=metric)
    theirs = _pml(metric, x, y)
    for key, pml_key in PML_NAMES.items():
        assert ours[key] == pytest.approx(theirs[pml_key], abs=1e-6), key
    assert 0.0 < ours["map_at_r"] < 1.0  # the data is not trivially separable
    for k in (1, 2, 4, 8):
        assert ours[f"recall_at_{k}"] == pytest.approx(_loop_recall(x, y, x, y, k, True, metric), abs=1e-12)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_query_gallery_matches_accuracy_calculator(metric):
    gallery, gallery_labels = _clusters([1, 2, 30, 60, 4, 9], 5, seed=3)
    queries, query_labels = _clusters([3, 5, 12, 20, 2, 1, 6], 5, seed=4)  # label 6 is not in the gallery
    ours = retrieval_metrics(
        gallery, gallery_labels, ks=(1, 3, 10), metric=metric,
        query_embeddings=queries, query_labels=query_labels,
    )
    theirs = _pml(metric, queries, query_labels, gallery, gallery_labels)
    for key, pml_key in PML_NAMES.items():
        assert ours[key] == pytest.approx(theirs[pml_key], abs=1e-6), key
    for k in (1, 3, 10):
        expected = _loop_recall(queries, query_labels, gallery, gallery_labels, k, False, metric)
        assert ours[f"recall_at_{k}"] == pytest.approx(expected, abs=1e-12)


def test_hand_computed_example():
    # 1-D points; label 2 is a singleton, so its query is left out and 5 queries are averaged.
    # Neighbour labels (nearest first) and R:  q0 [0,1,0,1,2] R=2   q1 [0,1,0,1,2] R=2
    #   q2 [0,0,0,1,2] R=1   q3 [1,0,0,1,2] R=2   q4 [2,0,1,0,0] R=1
    x = np.array([[0.0], [1.0], [3.0], [7.0], [20.0], [30.0]])
    y = np.array([0, 0, 1, 0, 1, 2])
    result = retrieval_metrics(x, y, ks=(1, 2, 4))
    expected = {
        "recall_at_1": 2 / 5,
        "recall_at_2": 3 / 5,
        "recall_at_4": 1.0,
        "precision_at_1": 2 / 5,
        "r_precision": (0.5 + 0.5 + 0 + 0.5 + 0) / 5,
        "map_at_r": (0.5 + 0.5 + 0 + 0.25 + 0) / 5,
    }
    assert result == pytest.approx(expected, abs=1e-12)
    assert list(result) == list(expected)


def test_pure_functions_on_neighbour_labels():
    neighbors = np.array([[1, 0, 0, 0], [2, 2, 1, 2]])
    queries = np.array([0, 2])
    r = np.array([3, 2])
    assert precision_at_1(neighbors, queries) == 0.5
    assert recall_at_k(neighbors, queries, 1) == 0.5
    assert recall_at_k(neighbors, queries, 2) == 1.0
    assert r_precision(neighbors, queries, r) == pytest.approx((2 / 3 + 1.0) / 2)
    # q0: hits at ranks 2 and 3 -> (1/2 + 2/3) / 3; q1: hits at ranks 1 and 2 -> (1 + 1) / 2
    assert map_at_r(neighbors, queries, r) == pytest.approx(((1 / 2 + 2 / 3) / 3 + 1.0) / 2)


def test_queries_without_a_match_count_in_no_average():
    x, y = _clusters([10, 10], 3, seed=5)
    base = retrieval_metrics(x, y, ks=(1, 4))
    lone = np.concatenate([x, x[:3] + 100.0])
    lone_labels = np.concatenate([y, [7, 8, 9]])  # three singleton classes far away
    assert retrieval_metrics(lone, lone_labels, ks=(1, 4)) == pytest.approx(base, abs=1e-12)


def test_every_metric_is_nan_when_no_query_can_be_answered():
    x = np.random.default_rng(6).standard_normal((5, 2))
    result = retrieval_metrics(x, np.arange(5), ks=(1, 2))
    assert list(result) == ["recall_at_1", "recall_at_2", "precision_at_1", "r_precision", "map_at_r"]
    assert all(np.isnan(value) for value in result.values())
    disjoint = retrieval_metrics(x, np.zeros(5, int), ks=(1,), query_embeddings=x[:2], query_labels=[1, 1])
    assert all(np.isnan(value) for value in disjoint.values())


@pytest.mark.parametrize("query_gallery", [False, True])
def test_metrics_averaged_over_many_search_chunks_equal_one_chunk(monkeypatch, query_gallery):
    x, y = _clusters([1, 3, 9, 25, 40], 4, seed=9)
    kwargs = {"query_embeddings": x[:50], "query_labels": y[:50]} if query_gallery else {}
    whole = retrieval_metrics(x, y, ks=(1, 5), **kwargs)
    monkeypatch.setattr(knn_module, "_CHUNK_BUDGET_BYTES", 1)  # one query per FAISS call
    assert knn_module._chunk_size(40) == 1
    assert retrieval_metrics(x, y, ks=(1, 5), **kwargs) == pytest.approx(whole, abs=1e-12)


def test_torch_inputs_give_the_same_numbers():
    x, y = _clusters([8, 12, 20], 4, seed=7)
    expected = retrieval_metrics(x, y)
    assert retrieval_metrics(torch.from_numpy(x), torch.from_numpy(y)) == expected
    assert all(isinstance(value, float) for value in expected.values())


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"labels": np.zeros(9, int)}, ValueError, r"labels must have shape \(10,\)"),
        ({"labels": np.zeros(10)}, TypeError, "labels must hold integers"),
        ({"ks": (1, 0)}, ValueError, r"ks must hold ints in \[1, 9\]"),
        ({"ks": (10,)}, ValueError, r"ks must hold ints in \[1, 9\]"),
        ({"ks": 4}, TypeError, "ks must be a non-empty sequence"),
        ({"ks": ()}, TypeError, "ks must be a non-empty sequence"),
        ({"metric": "dot"}, ValueError, "metric must be one of"),
        ({"query_embeddings": np.zeros((2, 3))}, ValueError, "must be given together"),
        ({"query_embeddings": np.zeros((2, 2)), "query_labels": [0, 1]}, ValueError, "query_embeddings .* dim 3"),
        ({"query_embeddings": np.zeros((2, 3)), "query_labels": [0]}, ValueError, r"query_labels .* \(2,\)"),
        ({"embeddings": np.zeros((1, 3)), "labels": [0]}, ValueError, "at least 2 rows for leave-one-out"),
        ({"embeddings": np.full((10, 3), np.nan)}, ValueError, "embeddings must be finite"),
    ],
)
def test_entry_point_errors_name_the_argument(kwargs, error, words):
    arguments = {"embeddings": np.random.default_rng(8).standard_normal((10, 3)), "labels": np.arange(10) % 2}
    arguments.update(kwargs)
    with pytest.raises(error, match=words):
        retrieval_metrics(arguments.pop("embeddings"), arguments.pop("labels"), **arguments)


def test_pure_function_errors():
    neighbors, queries = np.array([[0, 1], [1, 1]]), np.array([0, 1])
    with pytest.raises(ValueError, match=r"num_relevant must lie in \[1, k=2\]"):
        r_precision(neighbors, queries, np.array([3, 1]))
    with pytest.raises(ValueError, match=r"num_relevant must lie in"):
        map_at_r(neighbors, queries, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 2\]"):
        recall_at_k(neighbors, queries, 3)
    with pytest.raises(ValueError, match=r"query_labels must have shape \(2,\)"):
        precision_at_1(neighbors, queries[:1])


def test_doctests():
    result = doctest.testmod(retrieval_module)
    assert result.attempted > 0 and result.failed == 0

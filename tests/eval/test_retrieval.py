"""Retrieval metrics against pytorch-metric-learning's AccuracyCalculator, plain loops and a hand example."""

import doctest

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

import metricbench.eval.exact_knn as exact_knn
import metricbench.eval.index_recall as index_recall_module
import metricbench.eval.retrieval as retrieval_module
import metricbench.eval.retrieval_suite as suite_module
from metricbench.eval import (
    ami,
    kmeans_assignment,
    knn_search,
    map_at_r,
    nmi,
    precision_at_1,
    r_precision,
    recall_at_k,
    retrieval_metrics,
)

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
    "one_dominant_class": ([300] + [1] * 10 + [2] * 10 + [4] * 5, 8, 3),
}


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("name", sorted(LEAVE_ONE_OUT_SETS))
def test_leave_one_out_matches_accuracy_calculator(name, metric):
    x, y = _clusters(*LEAVE_ONE_OUT_SETS[name])
    ours = retrieval_metrics(x, y, ks=(1, 2, 4, 8), metric=metric, clustering=False)
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
        query_embeddings=queries, query_labels=query_labels, clustering=False,
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
    result = retrieval_metrics(x, y, ks=(1, 2, 4), clustering=False)
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
    base = retrieval_metrics(x, y, ks=(1, 4), full_map=True, clustering=False)
    lone = np.concatenate([x, x[:3] + 100.0])
    lone_labels = np.concatenate([y, [7, 8, 9]])  # three singleton classes far away
    assert retrieval_metrics(lone, lone_labels, ks=(1, 4), full_map=True, clustering=False) == pytest.approx(
        base, abs=1e-12
    )


def test_neighbour_metrics_are_nan_when_no_query_can_be_answered():
    x = np.random.default_rng(6).standard_normal((5, 2))
    result = retrieval_metrics(x, np.arange(5), ks=(1, 2), full_map=True)
    neighbour_keys = ["recall_at_1", "recall_at_2", "precision_at_1", "r_precision", "map_at_r", "map"]
    assert list(result) == neighbour_keys + ["nmi", "ami"]
    assert all(np.isnan(result[key]) for key in list(result)[:6])
    assert result["nmi"] == 1.0  # five singleton classes, five clusters of one point: clustering needs no match
    disjoint = retrieval_metrics(
        x, np.zeros(5, int), ks=(1,), query_embeddings=x[:2], query_labels=[1, 1], clustering=False
    )
    assert all(np.isnan(value) for value in disjoint.values())


@pytest.mark.parametrize("query_gallery", [False, True])
def test_metrics_averaged_over_many_search_chunks_equal_one_chunk(monkeypatch, query_gallery):
    x, y = _clusters([1, 3, 9, 25, 40], 4, seed=9)
    kwargs = {"query_embeddings": x[:50], "query_labels": y[:50]} if query_gallery else {}
    whole = retrieval_metrics(x, y, ks=(1, 5), **kwargs)
    monkeypatch.setattr(exact_knn, "_BUDGET_BYTES", 1)  # one query per exact search block...
    monkeypatch.setattr(exact_knn, "_CHUNK_ELEMENTS", 1)  # ...and per yielded chunk
    monkeypatch.setattr(suite_module, "_REDUCE_ELEMENTS", 1)  # one query per reduction
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
        ({"ks": (1, 0)}, ValueError, r"each of ks must be in \[1, 9\]"),
        ({"ks": (10,)}, ValueError, r"each of ks must be in \[1, 9\]"),
        ({"ks": 4}, TypeError, "ks must be a non-empty sequence"),
        ({"ks": ()}, TypeError, "ks must be a non-empty sequence"),
        ({"metric": "dot"}, ValueError, "metric must be one of"),
        ({"query_embeddings": np.zeros((2, 3))}, ValueError, "must be given together"),
        ({"query_embeddings": np.zeros((2, 2)), "query_labels": [0, 1]}, ValueError, "query_embeddings .* dim 3"),
        ({"query_embeddings": np.zeros((2, 3)), "query_labels": [0]}, ValueError, r"query_labels .* \(2,\)"),
        ({"embeddings": np.zeros((1, 3)), "labels": [0]}, ValueError, "at least 2 rows for leave-one-out"),
        ({"embeddings": np.full((10, 3), np.nan)}, ValueError, "embeddings must be finite"),
        ({"index": "exact"}, ValueError, "index must be one of"),
        ({"full_map": 1}, TypeError, "full_map must be a bool"),
        ({"clustering": "yes"}, TypeError, "clustering must be a bool"),
        ({"index_recall": None}, TypeError, "index_recall must be a bool"),
        ({"seed": 0.5}, TypeError, "seed must be an int"),
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
    with pytest.raises(ValueError, match=r"k must be in \[1, 2\]"):
        recall_at_k(neighbors, queries, 3)
    with pytest.raises(ValueError, match=r"query_labels must have shape \(2,\)"):
        precision_at_1(neighbors, queries[:1])


def test_doctests():
    for module in (retrieval_module, suite_module, index_recall_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


# --- The full default suite: keys, clustering scores, approximate indexes -----------------------------------


def test_default_keys_and_optional_ones():
    x, y = _clusters([20] * 5, 4, seed=11)
    assert list(retrieval_metrics(x, y)) == [
        "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8",
        "precision_at_1", "r_precision", "map_at_r", "nmi", "ami",
    ]
    every = retrieval_metrics(x, y, ks=(1,), full_map=True, index="hnsw", index_recall=True)
    assert list(every) == [
        "recall_at_1", "precision_at_1", "r_precision", "map_at_r", "map", "nmi", "ami", "index_recall",
    ]
    assert "index_recall" not in retrieval_metrics(x, y, index="flat", index_recall=True)  # exact: nothing to measure
    assert all(isinstance(value, float) for value in every.values())


CLUSTERING_SETS = {
    "balanced": ([15] * 12, 6, 0),
    "unbalanced_with_singletons": ([1, 1, 1, 2, 3, 5, 40, 120], 5, 1),
    "one_dominant_class": ([300] + [1] * 10 + [2] * 10 + [4] * 5, 8, 3),
}


@pytest.mark.parametrize("name", sorted(CLUSTERING_SETS))
def test_nmi_and_ami_equal_accuracy_calculator_with_its_kmeans_seed(name):
    # PML runs faiss.Kmeans(niter=20) with FAISS's default seed, 1234, on the query embeddings.
    x, y = _clusters(*CLUSTERING_SETS[name])
    calculator = AccuracyCalculator(include=("NMI", "AMI"), device=torch.device("cpu"))
    theirs = calculator.get_accuracy(x, y)
    ours = retrieval_metrics(x, y, seed=1234)
    assert ours["nmi"] == pytest.approx(theirs["NMI"], abs=1e-12)
    assert ours["ami"] == pytest.approx(theirs["AMI"], abs=1e-12)
    gallery, gallery_labels = _clusters([5, 9, 30], x.shape[1], seed=4)
    theirs = calculator.get_accuracy(x, y, gallery, gallery_labels, False)
    ours = retrieval_metrics(gallery, gallery_labels, query_embeddings=x, query_labels=y, seed=1234)
    assert (ours["nmi"], ours["ami"]) == pytest.approx((theirs["NMI"], theirs["AMI"]), abs=1e-12)


def test_nmi_and_ami_are_pmls_functions_of_the_same_assignment():
    x, y = _clusters([10, 20, 30, 3, 1], 4, seed=12)
    assignment = kmeans_assignment(x, 5, seed=0)
    calculator = AccuracyCalculator(include=("NMI", "AMI"), device=torch.device("cpu"))
    ours = retrieval_metrics(x, y, ks=(1,), seed=0)
    pml_labels, pml_clusters = torch.from_numpy(y).float(), torch.from_numpy(assignment)
    assert ours["nmi"] == pytest.approx(calculator.calculate_NMI(pml_labels, pml_clusters), abs=1e-12)
    assert ours["ami"] == pytest.approx(calculator.calculate_AMI(pml_labels, pml_clusters), abs=1e-12)


def test_cosine_clusters_the_normalised_embeddings():
    x, y = _clusters([20] * 6, 5, seed=13)
    scaled = x * np.random.default_rng(0).uniform(0.1, 10.0, size=(len(x), 1)).astype(np.float32)
    ours = retrieval_metrics(scaled, y, metric="cosine", ks=(1,))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assignment = kmeans_assignment(np.ascontiguousarray(unit, dtype=np.float32), 6, seed=0)
    assert ours["nmi"] == pytest.approx(nmi(y, assignment), abs=1e-6)
    assert ours["ami"] == pytest.approx(ami(y, assignment), abs=1e-6)


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
@pytest.mark.parametrize("leave_one_out", [True, False])
def test_approximate_indexes_give_close_metrics_and_report_their_recall(index, leave_one_out):
    x, y = _clusters([150] * 20, 16, seed=14, spread=2.0)
    kwargs = {} if leave_one_out else {"query_embeddings": x[:500] + 0.1, "query_labels": y[:500]}
    exact = retrieval_metrics(x, y, clustering=False, **kwargs)
    approximate = retrieval_metrics(x, y, clustering=False, index=index, index_recall=True, **kwargs)
    assert 0.85 < approximate.pop("index_recall") <= 1.0
    assert approximate == pytest.approx(exact, abs=0.05)


def test_index_recall_sample_is_seeded_and_bounded():
    rows = index_recall_module.index_recall_rows(5000, seed=3)
    assert len(rows) == index_recall_module.INDEX_RECALL_QUERIES and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, index_recall_module.index_recall_rows(5000, seed=3))
    assert len(index_recall_module.index_recall_rows(40, seed=3)) == 40
    x = _clusters([30] * 4, 3, seed=15)[0]
    exact = knn_search(x, k=6)[1]
    perfect = {row: exact[row] for row in (0, 5, 9)}
    assert index_recall_module.neighbor_recall(perfect, x, None, "l2") == 1.0
    half = {row: np.concatenate([exact[row][:3], [-1, -1, -1]]) for row in (0, 5, 9)}
    assert index_recall_module.neighbor_recall(half, x, None, "l2") == 0.5

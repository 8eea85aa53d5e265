"""k-means assignment and NMI/AMI against scikit-learn and pytorch-metric-learning's AccuracyCalculator."""

import doctest

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

import metricbench.eval.clustering as clustering_module
from metricbench.eval import ami, kmeans_assignment, nmi


def _blobs(sizes, dim, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    x = rng.standard_normal((len(sizes), dim))[labels] * 2 + rng.standard_normal((len(labels), dim))
    return np.ascontiguousarray(x, dtype=np.float32), labels


def test_assignment_is_seeded_and_shaped():
    x, _ = _blobs([30, 40, 50], 5, seed=0)
    first = kmeans_assignment(x, 3, seed=7)
    assert first.shape == (120,) and first.dtype == np.int64 and set(first.tolist()) <= {0, 1, 2}
    np.testing.assert_array_equal(first, kmeans_assignment(x, 3, seed=7))


def test_assignment_with_seed_1234_is_pmls_faiss_kmeans():
    x, y = _blobs([3, 7, 40, 90, 1, 1], 6, seed=1)
    theirs = FaissKMeans(niter=20)(torch.from_numpy(x), 6).numpy()
    np.testing.assert_array_equal(kmeans_assignment(x, 6, seed=1234), theirs)


def test_one_cluster_and_one_point_per_cluster():
    x, _ = _blobs([4, 4], 3, seed=2)
    assert (kmeans_assignment(x, 1) == 0).all()
    assert sorted(kmeans_assignment(x, 8).tolist()) == list(range(8))


@pytest.mark.parametrize("clusters", [0, 9])
def test_cluster_count_out_of_range_is_an_error(clusters):
    with pytest.raises(ValueError, match=r"num_clusters must be in \[1, 8\]"):
        kmeans_assignment(np.zeros((8, 2), dtype=np.float32), clusters)


def test_scores_are_sklearns_and_pmls():
    rng = np.random.default_rng(3)
    labels, clusters = rng.integers(0, 5, 200), rng.integers(0, 7, 200)
    clusters[:150] = labels[:150]  # mostly agreeing, not perfectly
    assert nmi(labels, clusters) == normalized_mutual_info_score(labels, clusters)
    assert ami(labels, clusters) == adjusted_mutual_info_score(labels, clusters)
    calculator = AccuracyCalculator(include=("NMI", "AMI"), device=torch.device("cpu"))
    query_labels = torch.from_numpy(labels).float()  # PML hands sklearn float labels
    assert nmi(labels, clusters) == pytest.approx(calculator.calculate_NMI(query_labels, torch.from_numpy(clusters)))
    assert ami(labels, clusters) == pytest.approx(calculator.calculate_AMI(query_labels, torch.from_numpy(clusters)))
    assert 0.0 < ami(labels, clusters) < nmi(labels, clusters) < 1.0



@pytest.mark.parametrize(
    "num, classes, clusters, agreeing",
    [(3000, 300, 250, 0.5), (2000, 40, 7, 0.0), (500, 3, 2, 0.9), (1200, 600, 600, 1.0), (400, 2, 390, 0.3)],
)
def test_grouped_ami_above_the_pair_limit_equals_sklearns(monkeypatch, num, classes, clusters, agreeing):
    rng = np.random.default_rng(num + classes)
    labels = rng.integers(0, classes, num)
    assignment = np.where(rng.random(num) < agreeing, labels % clusters, rng.integers(0, clusters, num))
    expected = adjusted_mutual_info_score(labels, assignment)
    monkeypatch.setattr(clustering_module, "AMI_SKLEARN_MAX_PAIRS", 0)
    assert ami(labels, assignment) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    monkeypatch.setattr(clustering_module, "_EMI_TERMS_PER_BLOCK", 5)  # many blocks, one pair may span several
    assert ami(labels, assignment) == pytest.approx(expected, rel=1e-9, abs=1e-12)

def test_doctests():
    result = doctest.testmod(clustering_module)
    assert result.attempted > 0 and result.failed == 0

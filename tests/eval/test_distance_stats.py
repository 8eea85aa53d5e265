"""class_distance_stats against plain loops over every pair, scikit-learn, and hand-checked cases."""

import doctest
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import davies_bouldin_score, silhouette_score

import metricbench.eval.distance_stats as distance_stats_module
from metricbench.eval import class_distance_stats

LABEL_SIZES = {-3: 25, 2: 15, 7: 12, 10: 7, 42: 1}  # unbalanced, non-contiguous, one singleton
FLOAT_KEYS = (
    "intra_mean",
    "inter_centroid_mean",
    "intra_inter_ratio",
    "intra_pair_sqdist",
    "inter_pair_sqdist",
    "davies_bouldin",
    "silhouette",
)
COLUMNS = ["size", "mean_dist", "std_dist", "median_dist", "p90_dist", "nearest_class",
           "nearest_centroid_dist", "margin_ratio"]


def _blobs(seed=0, dim=5):
    """60 float32 points in overlapping Gaussian blobs away from the origin, rows shuffled."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(list(LABEL_SIZES), list(LABEL_SIZES.values()))
    centers = {label: rng.standard_normal(dim) * 2.0 + 1.0 for label in LABEL_SIZES}
    x = np.stack([centers[label] + rng.standard_normal(dim) for label in labels])
    order = rng.permutation(len(labels))
    return x[order].astype(np.float32), labels[order]


def _prepared(x, metric):
    """The float64 points the statistics are defined on: normalised row by row for cosine."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        x = np.array([row / math.sqrt(sum(v * v for v in row)) for row in x])
    return x


def _loop_stats(x, labels, metric):
    """Every statistic from explicit distances between points, pair by pair."""
    x = _prepared(x, metric)
    n = len(labels)

    def dist(a, b):
        return math.sqrt(sum((float(u) - float(v)) ** 2 for u, v in zip(a, b)))

    classes = sorted(set(labels.tolist()))
    members = {c: [i for i in range(n) if labels[i] == c] for c in classes}
    centroid = {c: sum(x[i] for i in members[c]) / len(members[c]) for c in classes}
    own = {c: [dist(x[i], centroid[c]) for i in members[c]] for c in classes}
    spread = {c: sum(own[c]) / len(own[c]) for c in classes}

    rows = {}
    for c in classes:
        nearest_dist, nearest = min((dist(centroid[c], centroid[o]), o) for o in classes if o != c)
        d, mean = own[c], spread[c]
        rows[c] = {
            "size": len(d),
            "mean_dist": mean,
            "std_dist": math.sqrt(sum((v - mean) ** 2 for v in d) / len(d)),
            "median_dist": float(np.percentile(d, 50)),
            "p90_dist": float(np.percentile(d, 90)),
            "nearest_class": nearest,
            "nearest_centroid_dist": nearest_dist,
            "margin_ratio": nearest_dist / mean if mean > 0 else math.inf,
        }

    intra_sq, inter_sq = [], []
    for i in range(n):
        for j in range(n):
            if i != j:
                (intra_sq if labels[i] == labels[j] else inter_sq).append(dist(x[i], x[j]) ** 2)
    centroid_pairs = [dist(centroid[a], centroid[b]) for a in classes for b in classes if a != b]
    all_own = [v for c in classes for v in own[c]]
    davies_bouldin = np.mean([
        max((spread[c] + spread[o]) / dist(centroid[c], centroid[o]) for o in classes if o != c)
        for c in classes
    ])
    silhouettes = []
    for i in range(n):
        same = [dist(x[i], x[j]) for j in members[labels[i]] if j != i]
        if not same:
            silhouettes.append(0.0)
            continue
        a = sum(same) / len(same)
        b = min(sum(dist(x[i], x[j]) for j in members[o]) / len(members[o]) for o in classes if o != labels[i])
        silhouettes.append((b - a) / max(a, b))

    summary = {
        "num_classes": len(classes),
        "num_samples": n,
        "intra_mean": sum(all_own) / n,
        "inter_centroid_mean": sum(centroid_pairs) / len(centroid_pairs),
        "intra_pair_sqdist": sum(intra_sq) / len(intra_sq),
        "inter_pair_sqdist": sum(inter_sq) / len(inter_sq),
        "davies_bouldin": float(davies_bouldin),
        "silhouette": sum(silhouettes) / n,
        "silhouette_sample_size": n,
    }
    summary["intra_inter_ratio"] = summary["intra_mean"] / summary["inter_centroid_mean"]
    return summary, pd.DataFrame.from_dict(rows, orient="index")


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_every_statistic_matches_pairwise_loops(metric):
    x, labels = _blobs()
    summary, table = class_distance_stats(x, labels, metric=metric)
    expected_summary, expected_table = _loop_stats(x, labels, metric)

    assert summary.keys() == expected_summary.keys()
    for key in ("num_classes", "num_samples", "silhouette_sample_size"):
        assert summary[key] == expected_summary[key]
    for key in FLOAT_KEYS:
        assert summary[key] == pytest.approx(expected_summary[key], rel=1e-9), key

    assert list(table.columns) == COLUMNS
    assert table.index.name == "label" and table.index.tolist() == sorted(LABEL_SIZES)
    assert table["size"].tolist() == [LABEL_SIZES[c] for c in sorted(LABEL_SIZES)]
    assert table["nearest_class"].tolist() == expected_table["nearest_class"].tolist()
    for column in ("mean_dist", "std_dist", "median_dist", "p90_dist", "nearest_centroid_dist", "margin_ratio"):
        np.testing.assert_allclose(table[column], expected_table[column], rtol=1e-9, atol=1e-12, err_msg=column)

    singleton = table.loc[42]
    assert singleton[["mean_dist", "std_dist", "median_dist", "p90_dist"]].tolist() == [0.0] * 4
    assert singleton["margin_ratio"] == math.inf


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_davies_bouldin_and_silhouette_match_sklearn(metric):
    x, labels = _blobs(seed=1)
    summary, _ = class_distance_stats(x, labels, metric=metric)
    points = _prepared(x, metric)
    assert summary["davies_bouldin"] == pytest.approx(davies_bouldin_score(points, labels), rel=1e-9)
    assert summary["silhouette"] == pytest.approx(silhouette_score(points, labels), rel=1e-9)
    assert summary["silhouette_sample_size"] == len(labels)


def test_cosine_is_euclidean_on_the_unit_sphere():
    x, labels = _blobs(seed=2)
    summary, _ = class_distance_stats(x, labels, metric="cosine")
    unit = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    different = labels[:, None] != labels[None, :]
    assert summary["intra_pair_sqdist"] == pytest.approx(np.mean(2 - 2 * cosine[same]), rel=1e-9)
    assert summary["inter_pair_sqdist"] == pytest.approx(np.mean(2 - 2 * cosine[different]), rel=1e-9)
    scaled, _ = class_distance_stats(x * 7.5, labels, metric="cosine")
    assert scaled["intra_inter_ratio"] == pytest.approx(summary["intra_inter_ratio"], rel=1e-6)


def test_sampled_silhouette_is_seeded_and_reports_its_size():
    x, labels = _blobs(seed=3)
    full, full_table = class_distance_stats(x, labels)
    first, first_table = class_distance_stats(x, labels, max_silhouette=25, seed=5)
    again, _ = class_distance_stats(x, labels, max_silhouette=25, seed=5)
    other, _ = class_distance_stats(x, labels, max_silhouette=25, seed=6)

    assert full["silhouette_sample_size"] == 60 and first["silhouette_sample_size"] == 25
    assert first == again
    assert first["silhouette"] != other["silhouette"]
    rows = np.random.default_rng(5).choice(60, size=25, replace=False)
    expected = silhouette_score(x[rows].astype(np.float64), labels[rows])
    assert first["silhouette"] == pytest.approx(expected, rel=1e-9)
    # Only the silhouette is sampled.
    assert {k: v for k, v in first.items() if "silhouette" not in k} == {
        k: v for k, v in full.items() if "silhouette" not in k
    }
    pd.testing.assert_frame_equal(first_table, full_table)


def test_tighter_embedding_has_smaller_intra_inter_ratio():
    x, labels = _blobs(seed=4)
    x = x.astype(np.float64)
    centroids = {c: x[labels == c].mean(axis=0) for c in LABEL_SIZES}
    centre = np.stack([centroids[c] for c in labels])
    tight = centre + 0.5 * (x - centre)

    loose_summary, _ = class_distance_stats(x, labels)
    tight_summary, tight_table = class_distance_stats(tight, labels)
    assert tight_summary["intra_inter_ratio"] < loose_summary["intra_inter_ratio"]
    assert tight_summary["intra_inter_ratio"] == pytest.approx(0.5 * loose_summary["intra_inter_ratio"], rel=1e-5)
    assert tight_summary["inter_centroid_mean"] == pytest.approx(loose_summary["inter_centroid_mean"], rel=1e-5)
    assert tight_summary["intra_pair_sqdist"] == pytest.approx(0.25 * loose_summary["intra_pair_sqdist"], rel=1e-5)
    assert tight_summary["davies_bouldin"] == pytest.approx(0.5 * loose_summary["davies_bouldin"], rel=1e-5)
    assert tight_summary["silhouette"] > loose_summary["silhouette"]


def test_torch_input_gives_the_numpy_result():
    x, labels = _blobs(seed=5)
    summary, table = class_distance_stats(x, labels, metric="cosine")
    for tensor in (torch.from_numpy(x), torch.from_numpy(x).double().requires_grad_()):
        torch_summary, torch_table = class_distance_stats(tensor, torch.from_numpy(labels), metric="cosine")
        assert torch_summary == summary
        pd.testing.assert_frame_equal(torch_table, table)


def test_summary_holds_plain_python_numbers():
    x, labels = _blobs()
    summary, _ = class_distance_stats(x, labels)
    assert all(type(summary[key]) is float for key in FLOAT_KEYS)
    assert all(type(summary[key]) is int for key in ("num_classes", "num_samples", "silhouette_sample_size"))


def test_many_centroid_blocks_give_the_single_block_result(monkeypatch):
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 40, size=300)
    x = rng.standard_normal((300, 4)).astype(np.float32) + labels[:, None].astype(np.float32) * 0.1
    summary, table = class_distance_stats(x, labels)
    monkeypatch.setattr(distance_stats_module, "_BLOCK_ENTRIES", 7 * 40)  # 7 centroid rows per block
    blocked_summary, blocked_table = class_distance_stats(x, labels)
    assert blocked_summary == pytest.approx(summary, rel=1e-12)
    pd.testing.assert_frame_equal(blocked_table, table, rtol=1e-12)



def test_silhouette_chunks_give_sklearns_single_chunk_value(monkeypatch):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 45, size=400)
    x = rng.standard_normal((400, 6)) + labels[:, None] * 0.05
    summary, _ = class_distance_stats(x, labels)
    monkeypatch.setattr(distance_stats_module, "_SILHOUETTE_BYTES", 400 * 8 * 9)  # ~8 distance rows per chunk
    chunked, _ = class_distance_stats(x, labels)
    expected = silhouette_score(x.astype(np.float32).astype(np.float64), labels)  # the float32 input, as ours
    assert chunked["silhouette"] == summary["silhouette"] == expected

def test_only_singletons():
    x = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    summary, table = class_distance_stats(x, np.array([5, 1, 9]))
    assert math.isnan(summary["intra_pair_sqdist"]) and math.isnan(summary["silhouette"])
    assert summary["silhouette_sample_size"] == 3
    assert summary["inter_pair_sqdist"] == pytest.approx((9 + 16 + 25) * 2 / 6)
    assert summary["intra_mean"] == 0.0 and summary["davies_bouldin"] == 0.0
    assert table["nearest_class"].tolist() == [5, 1, 5]
    assert table["nearest_centroid_dist"].tolist() == [3.0, 3.0, 4.0]
    assert (table["margin_ratio"] == math.inf).all()


def test_nearest_class_ties_go_to_the_smallest_label():
    x = np.array([[0.0], [0.2], [-0.2], [5.0], [5.0], [-5.0], [-5.0]])
    _, table = class_distance_stats(x, np.array([0, 0, 0, 8, 8, 3, 3]))
    assert table.loc[0, "nearest_class"] == 3 and table.loc[0, "nearest_centroid_dist"] == 5.0


X, Y = _blobs()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"labels": np.zeros(60, dtype=np.int64)}, ValueError, r"labels must contain at least 2 classes, got 1"),
        ({"labels": Y[:-1]}, ValueError, r"labels must have shape \(60,\) to match embeddings rows, got \(59,\)"),
        ({"labels": Y[:, None]}, ValueError, r"labels must have shape \(60,\)"),
        ({"labels": Y.astype(np.float32)}, TypeError, r"labels must hold integers, got dtype float32"),
        ({"labels": torch.from_numpy(Y).float()}, TypeError, r"labels must hold integers"),
        ({"embeddings": np.where(np.arange(60)[:, None] == 3, np.nan, X)}, ValueError,
         r"embeddings must be finite .* row 3"),
        ({"embeddings": X[:, 0]}, ValueError, r"embeddings must have shape \(num_points, dim\)"),
        ({"embeddings": X.astype(str)}, TypeError, r"embeddings must hold real numbers"),
        ({"metric": "euclidean"}, ValueError, r"metric must be one of l2, cosine, got 'euclidean'"),
        ({"max_silhouette": 2}, ValueError, r"max_silhouette must be >= 3, got 2"),
        ({"max_silhouette": 100.0}, TypeError, r"max_silhouette must be an int, got float"),
        ({"seed": -1}, ValueError, r"seed must be >= 0, got -1"),
        ({"seed": True}, TypeError, r"seed must be an int, got bool"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, error, match):
    arguments = {"embeddings": X, "labels": Y, **kwargs}
    with pytest.raises(error, match=match):
        class_distance_stats(arguments.pop("embeddings"), arguments.pop("labels"), **arguments)


def test_doctests():
    result = doctest.testmod(distance_stats_module)
    assert result.attempted > 0 and result.failed == 0

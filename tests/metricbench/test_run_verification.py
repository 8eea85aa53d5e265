"""`eval.verification` through evaluate() and a whole run: the metrics block, verification.json and its threshold."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.metrics import roc_auc_score

from metricbench.cli import main
from metricbench.config import EvalConfig
from metricbench.eval import verification_metrics
from metricbench.evaluation import evaluate
from metricbench.run import _check_verifiable, load_run
from metricbench.run_dir import RunDir

FAST = ["--no-progress", "--set", "train.batch_size=64", "--set", "eval.plots=false", "--set", "eval.export=false"]


def _blobs(n=90, classes=3, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    return (rng.normal(size=(classes, dim))[labels] * 2 + rng.normal(size=(n, dim))).astype(np.float32), labels


def train(out, *extra):
    return main(["train", "--out", str(out), "--dataset", "digits", *FAST, *extra])


def test_evaluate_adds_verification_only_when_asked():
    x, labels = _blobs()
    assert "verification" not in evaluate(x, labels, EvalConfig(plots=False)).metrics
    metrics = evaluate(x, labels, EvalConfig(verification=True, metric="cosine")).metrics
    assert metrics["verification"] == verification_metrics(x, labels, metric="cosine")
    with_threshold = evaluate(x, labels, EvalConfig(verification=True), verification_threshold=3.0).metrics
    assert with_threshold["verification"]["accuracy_at_val_threshold"] == verification_metrics(
        x, labels, metric="l2", threshold=3.0)["accuracy_at_threshold"]


def test_evaluate_with_queries_scores_query_gallery_pairs_only():
    x, labels = _blobs()
    queries = np.arange(len(labels)) < 30
    metrics = evaluate(x, labels, EvalConfig(verification=True, verification_negatives=500), queries=queries).metrics
    expected = verification_metrics(x, labels, metric="l2", queries=queries, max_negative_pairs=500)
    assert metrics["verification"] == expected
    assert expected["positive_pairs"] == sum(int(((labels[~queries]) == c).sum()) for c in labels[queries])
    assert expected["negative_pairs"] == 500 and expected["negatives_sampled"]


def test_test_rows_without_both_kinds_of_pair_are_refused():
    with pytest.raises(ValueError, match="eval.verification: the 4 test rows' labels must give at least one negative"):
        _check_verifiable(np.zeros(4, dtype=int), None)
    _check_verifiable(np.array([0, 0, 1]), None)


@pytest.mark.parametrize("selection", [["--epochs", "1"], ["--epochs", "3", "--set", "train.select_by='map_at_r'"]])
def test_a_run_writes_the_threshold_chosen_on_validation_rows(tmp_path, selection):
    # load_run embeds with the tested model: the last epoch's, or with select_by the selected epoch's.
    out = tmp_path / "run"
    assert train(out, *selection, "--set", "eval.verification=true") == 0
    metrics = RunDir(out).read_metrics()
    block = metrics["test"]["verification"]
    run = load_run(out, device="cpu")
    split, y = run.split, run.data.y

    # ROC AUC over every pair of the embedded test rows (few enough: no sample), by scikit-learn.
    test = run.embed(split.test)
    first, second = np.triu_indices(len(split.test), k=1)
    same = y[split.test][first] == y[split.test][second]
    distances = pdist(test.astype(np.float64), "sqeuclidean")
    assert not block["negatives_sampled"] and block["negative_pairs"] == int((~same).sum())
    assert block["roc_auc"] == pytest.approx(roc_auc_score(same, -distances), abs=1e-6)

    # The threshold is the best one on the validation rows' pairs, and its test accuracy is reported.
    val = verification_metrics(run.embed(split.val), y[split.val], metric="l2")
    record = json.loads(RunDir(out).verification.read_text())
    assert record["chosen_on"] == "validation" and record["metric"] == "l2"
    assert record["threshold"] == pytest.approx(val["best_threshold"], rel=1e-6)
    assert record["val_best_accuracy"] == pytest.approx(val["best_accuracy"])
    accepted = distances <= record["threshold"]
    balanced = (accepted[same].mean() + (~accepted[~same]).mean()) / 2
    assert block["accuracy_at_val_threshold"] == pytest.approx(balanced, abs=1e-3)
    assert record["test_accuracy_at_threshold"] == block["accuracy_at_val_threshold"]


def test_without_validation_rows_the_threshold_is_chosen_on_the_test_rows(tmp_path):
    out = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="chosen on the test rows"):
        assert train(out, "--epochs", "1", "--set", "eval.verification=true", "--set", "data.val_fraction=0",
                     "--set", "eval.metric='cosine'") == 0
    block = RunDir(out).read_metrics()["test"]["verification"]
    record = json.loads(RunDir(out).verification.read_text())
    assert record["chosen_on"] == "test" and record["distance"] == "1 - cosine similarity"
    assert record["threshold"] == block["best_threshold"] and "accuracy_at_val_threshold" not in block


def test_a_run_without_the_option_has_no_verification(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--epochs", "1") == 0
    assert "verification" not in RunDir(out).read_metrics()["test"]
    assert not RunDir(out).verification.exists()

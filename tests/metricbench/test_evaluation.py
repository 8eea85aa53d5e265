"""Evaluating a run: each quantity computed once and shared, refusals that name the argument, valid JSON."""

import json

import numpy as np
import pandas as pd
import pytest

import metricbench.eval.distance_stats as distance_stats_module
import metricbench.eval.knn as knn_module
from metricbench.cli import main
from metricbench.config import EvalConfig
from metricbench.eval import class_distance_stats, knn_search, retrieval_metrics
from metricbench.evaluation import DEFAULT_KS, check_evaluable, evaluate, write_evaluation
from metricbench.run_dir import RunDir


def _blobs(n=120, classes=4, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    return (rng.normal(size=(classes, dim))[labels] * 3 + rng.normal(size=(n, dim))).astype(np.float32), labels


def _count_calls(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def test_one_search_and_one_distance_statistics_serve_metrics_projector_and_plots(tmp_path, monkeypatch):
    x, labels = _blobs()
    searches = _count_calls(monkeypatch, knn_module, "exact_knn_blocks")
    statistics = _count_calls(monkeypatch, distance_stats_module, "_silhouette")
    config = EvalConfig()
    evaluation = evaluate(x, labels, config)
    write_evaluation(tmp_path, evaluation, config, class_names=list("abcd"), progress=False)
    assert len(searches) == 1 and len(statistics) == 1
    # The shared results are the ones each consumer would have computed itself.
    assert evaluation.metrics == {**retrieval_metrics(x, labels, ks=DEFAULT_KS), "distances": class_distance_stats(x, labels)[0]}
    _, nearest = knn_search(x, k=1)
    metadata = pd.read_csv(RunDir(tmp_path).export / "metadata.tsv", sep="\t")
    np.testing.assert_array_equal(metadata["nearest_label"], np.array(list("abcd"))[labels[nearest[:, 0]]])
    table = pd.read_csv(RunDir(tmp_path).class_stats, index_col="label")
    np.testing.assert_allclose(table["margin_ratio"], class_distance_stats(x, labels)[1]["margin_ratio"], rtol=1e-5)
    assert {p.name for p in RunDir(tmp_path).plots.iterdir()} == {
        "umap.png", "distances.png", "margins.png", "umap.npz", "retrievals.png", "retrievals.json", "confused_pairs.csv"}


def test_check_evaluable_names_the_argument():
    with pytest.raises(ValueError, match=r"--labels must have at least one class with 2 or more rows.*5 rows with 5 distinct"):
        check_evaluable(np.arange(5), (1,), labels_name="--labels")
    with pytest.raises(ValueError, match=r"--ks must be at most 4 \(each of the 5 rows.*got 8"):
        check_evaluable(np.array([0, 0, 1, 1, 1]), (1, 8), ks_name="--ks")
    check_evaluable(np.array([0, 0, 1, 1, 1]), (1, 4))


def _write_embeddings(tmp_path, x, labels):
    np.save(tmp_path / "emb.npy", x)
    np.save(tmp_path / "labels.npy", labels)
    return ["eval", "--embeddings", str(tmp_path / "emb.npy"), "--labels", str(tmp_path / "labels.npy"), "--no-plots"]


def test_eval_ks_beyond_the_gallery_is_refused_and_writes_nothing(tmp_path, capsys):
    x, labels = _blobs(n=8, classes=2)
    args = _write_embeddings(tmp_path, x, labels)
    assert main([*args, "--ks", "1", "8", "--out", str(tmp_path / "out")]) == 2
    assert "--ks must be at most 7" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_all_unique_labels_is_refused_and_writes_nothing(tmp_path, capsys):
    x, _ = _blobs(n=8, classes=2)
    args = _write_embeddings(tmp_path, x, np.arange(8))
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "--labels must have at least one class with 2 or more rows" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_writes_strict_json_where_a_statistic_is_undefined(tmp_path, capsys):
    # Every point at the origin: the ratio of within- to between-class distances is 0 / 0, NaN in Python.
    x = np.zeros((6, 2), dtype=np.float32)
    args = _write_embeddings(tmp_path, x, np.array([0, 0, 0, 1, 1, 1]))
    assert main([*args, "--ks", "1", "--out", str(tmp_path / "out")]) == 0

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    metrics = json.loads(RunDir(tmp_path / "out").metrics.read_text(), parse_constant=refuse)
    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert printed == metrics and metrics["distances"]["intra_inter_ratio"] is None
    assert metrics["distances"]["num_samples"] == 6


def test_eval_refuses_a_run_whose_data_changed(tmp_path, capsys):
    x, labels = _blobs(n=80, classes=4, dim=4)
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=labels)
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"npz:{data}", "--epochs", "1", "--out", str(run), "--no-progress",
                 "--set", "eval.plots=false", "--set", "eval.export=false"]) == 0
    assert main(["eval", str(run), "--no-plots"]) == 0
    x[3, 1] += 1.0  # same rows, one value changed
    np.savez(data, x=x, y=labels)
    capsys.readouterr()
    assert main(["eval", str(run), "--no-plots"]) == 2
    assert "changed since this run was made" in capsys.readouterr().err
    assert main(["export", str(run)]) == 2
    assert main(["train", "--resume", "--out", str(run)]) == 2


@pytest.mark.slow
def test_runs_and_eval_write_retrieval_galleries_of_dataset_rows(tmp_path):
    from metricbench.data import load_dataset, load_split

    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(run), "--no-progress",
                 "--set", "eval.export=false"]) == 0
    plots = RunDir(run).plots
    assert {"retrievals.png", "retrievals.json", "confused_pairs.csv"} <= {p.name for p in plots.iterdir()}
    records = json.loads((plots / "retrievals.json").read_text())
    test, y = load_split(RunDir(run).split).test, load_dataset("digits").y
    assert (records["split"], records["k"], len(records["queries"])) == ("test", 5, 16)
    for query in records["queries"]:
        assert query["row"] in test and query["label"] == y[query["row"]]
        for neighbor in query["neighbors"]:
            assert neighbor["row"] in test and neighbor["label"] == y[neighbor["row"]]
            assert neighbor["correct"] == (neighbor["label"] == query["label"])
    # `metricbench eval` of the run shows the same gallery (same seed, split and embeddings).
    assert main(["eval", str(run), "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((RunDir(tmp_path / "eval").plots / "retrievals.json").read_text()) == records
    off = tmp_path / "off"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--out", str(off), "--no-progress",
                 "--set", "eval.export=false", "--set", "eval.plots=false"]) == 0
    assert not RunDir(off).plots.exists()


def test_eval_of_embeddings_writes_a_table_gallery_of_positions(tmp_path):
    x, labels = _blobs()
    args = _write_embeddings(tmp_path, x, labels)[:-1]  # plots on
    assert main([*args, "--ks", "1", "--out", str(tmp_path / "out")]) == 0
    records = json.loads((RunDir(tmp_path / "out").plots / "retrievals.json").read_text())
    assert records["split"] is None and records["metric"] == "l2"
    for query in records["queries"]:
        assert query["label"] == labels[query["row"]]  # rows are positions in the embeddings file
        assert all(n["label"] == labels[n["row"]] for n in query["neighbors"])
    assert (RunDir(tmp_path / "out").plots / "retrievals.png").stat().st_size > 10_000


def test_eval_of_an_embeddings_file_defaults_to_the_usual_recall_ks(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "e.npy", rng.normal(size=(40, 4)).astype(np.float32))
    np.save(tmp_path / "l.npy", np.repeat(np.arange(4), 10))
    out = tmp_path / "out"
    assert main(["eval", "--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "l.npy"), "--no-plots",
                 "--out", str(out)]) == 0
    assert [k for k in json.loads((out / "metrics.json").read_text()) if k.startswith("recall_at_")] == \
        ["recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"]

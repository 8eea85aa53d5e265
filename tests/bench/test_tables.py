"""Tables of a benchmark: mean, std, Student-t interval and the best loss against hand computation;
each finished run's metrics.json parsed once per aggregation."""

import builtins
import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metricbench.bench import aggregate, load_spec
from metricbench.bench.grid import cells
from metricbench.bench.tables import best_rows, summarize
from metricbench.config import save_config
from metricbench.run_dir import RunDir

T_975 = {2: 12.706204736174694, 3: 4.302652729749464}  # Student-t 97.5% quantiles for 1 and 2 degrees of freedom


def runs_table():
    rows = []
    for loss, maps, ratios in [("a", [0.50, 0.60, 0.70], [0.3, 0.4, 0.5]), ("b", [0.80, 0.82], [0.6, 0.6]),
                               ("c", [0.40], [0.1])]:
        for seed, (m, r) in enumerate(zip(maps, ratios)):
            rows.append({"dataset": "d", "protocol": "open", "loss": loss, "seed": seed, "map_at_r": m,
                         "intra_inter_ratio": r})
    return pd.DataFrame(rows)


def test_summary_matches_hand_computation():
    summary = summarize(runs_table()).set_index(["loss", "metric"])
    a = summary.loc[("a", "map_at_r")]
    values = np.array([0.5, 0.6, 0.7])
    std = math.sqrt(((values - 0.6) ** 2).sum() / 2)
    assert (a["n"], a["mean"], a["std"]) == (3, pytest.approx(0.6), pytest.approx(std))
    assert a["ci95_low"] == pytest.approx(0.6 - T_975[3] * std / math.sqrt(3))
    assert a["ci95_high"] == pytest.approx(0.6 + T_975[3] * std / math.sqrt(3))
    b = summary.loc[("b", "map_at_r")]
    assert b["ci95_high"] - b["mean"] == pytest.approx(T_975[2] * b["std"] / math.sqrt(2))
    c = summary.loc[("c", "map_at_r")]  # one seed: no spread to report
    assert c["n"] == 1 and math.isnan(c["std"]) and math.isnan(c["ci95_low"])
    assert list(dict.fromkeys(summary.index.get_level_values("loss"))) == ["a", "b", "c"]  # spec order kept


def test_best_is_the_highest_mean_or_the_lowest_for_intra_inter():
    summary = summarize(runs_table())
    best = summary[best_rows(summary)]
    assert set(zip(best["metric"], best["loss"])) == {("map_at_r", "b"), ("intra_inter_ratio", "c")}


def test_ties_are_all_best_and_groups_are_separate():
    table = pd.concat([runs_table(), runs_table().assign(protocol="closed", map_at_r=0.5)])
    summary = summarize(table)
    best = summary[best_rows(summary) & (summary["metric"] == "map_at_r")]
    assert set(zip(best["protocol"], best["loss"])) == {("open", "b"), ("closed", "a"), ("closed", "b"),
                                                        ("closed", "c")}


SPEC = """
name = "parsed-once"
datasets = ["digits"]
protocols = ["closed", "open"]
seeds = [0, 1]
[base]
train.epochs = 2
[[losses]]
name = "softmax"
[[losses]]
name = "triplet-semihard"
"""


def finish(run_dir: RunDir, config, seed: int) -> None:
    """A finished run as the bench sees one (its config and metrics.json), without training it."""
    run_dir.path.mkdir(parents=True)
    save_config(config, run_dir.config)
    test = {"map_at_r": 0.5 + seed / 10, "precision_at_1": 0.9, "r_precision": 0.6,
            "distances": {"intra_inter_ratio": 0.3, "intra_pair_sqdist": 1.0, "inter_pair_sqdist": 3.0}}
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_map_at_r": 0.4 + e / 10} for e in (1, 2)]
    run_dir.metrics.write_text(json.dumps({"test": test, "history": history, "train_seconds_this_call": 1.0}))


def test_each_metrics_json_is_parsed_once_per_aggregation(tmp_path, monkeypatch):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    spec = load_spec(spec_file)
    runs, out = tmp_path / "runs", tmp_path / "out"
    grid = cells(spec)
    unfinished = grid[-1]  # a config but no metrics.json: never read
    for cell in grid[:-1]:
        finish(RunDir(runs / cell.key), cell.config, cell.seed)
    RunDir(runs / unfinished.key).path.mkdir(parents=True)
    save_config(unfinished.config, RunDir(runs / unfinished.key).config)

    # Count opens of metrics.json files by any route (RunDir.read_metrics, Path.read_text, open), by run.
    reads = Counter()
    name = RunDir(runs).metrics.name
    path_open, builtin_open = Path.open, builtins.open

    def counted(file):
        if isinstance(file, (str, os.PathLike)) and Path(file).name == name:
            reads[Path(file).parent.relative_to(runs).as_posix()] += 1

    def counting_path_open(self, *args, **kwargs):
        counted(self)
        return path_open(self, *args, **kwargs)

    def counting_open(file, *args, **kwargs):
        counted(file)
        return builtin_open(file, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_path_open)
    monkeypatch.setattr(builtins, "open", counting_open)
    table = aggregate(spec, out=out, runs=runs, command="pytest")
    monkeypatch.undo()

    assert reads == Counter({cell.key: 1 for cell in grid[:-1]})
    assert sorted(table["run"]) == sorted(cell.key for cell in grid[:-1])
    assert {"metrics.png", "distances.png", "curves.png", "summary.md"} <= {p.name for p in out.iterdir()}


def test_verification_scores_are_columns_and_rows_only_when_runs_have_them(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    spec = load_spec(spec_file)
    runs, grid = tmp_path / "runs", cells(spec)
    for cell in grid:
        finish(RunDir(runs / cell.key), cell.config, cell.seed)
    without = aggregate(spec, out=tmp_path / "without", runs=runs, command="pytest")
    assert not {"roc_auc", "tar_at_far_1e-3", "eer"} & set(without.columns)
    assert "EER" not in (tmp_path / "without" / "summary.md").read_text()

    for cell in grid:  # softmax verifies better: higher AUC and TAR, lower EER
        run_dir = RunDir(runs / cell.key)
        metrics = run_dir.read_metrics()
        good = cell.loss == "softmax"
        metrics["test"]["verification"] = {"roc_auc": 0.9 if good else 0.8, "tar_at_far_1e-3": 0.5 if good else None,
                                           "tar_at_far_1e-4": None, "eer": 0.1 if good else 0.2, "best_accuracy": 0.8}
        run_dir.metrics.write_text(json.dumps(metrics))
    table = aggregate(spec, out=tmp_path / "with", runs=runs, command="pytest")
    assert {"roc_auc", "tar_at_far_1e-3", "eer"} <= set(table.columns) and "best_accuracy" not in table
    runs_csv = pd.read_csv(tmp_path / "with" / "runs.csv")
    assert runs_csv.loc[runs_csv["loss"] == "softmax", "eer"].tolist() == [0.1] * 4
    summary = summarize(table)
    best = summary[best_rows(summary)]
    assert {m: set(best.loc[best["metric"] == m, "loss"]) for m in ("roc_auc", "tar_at_far_1e-3", "eer")} == {
        "roc_auc": {"softmax"}, "tar_at_far_1e-3": {"softmax"}, "eer": {"softmax"}}  # EER: the lowest is best
    text = (tmp_path / "with" / "summary.md").read_text()
    assert "| ROC AUC | TAR@FAR=1e-3 | EER ↓ |" in text and "lowest for EER" in text

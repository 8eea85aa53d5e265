"""Aggregation: mean, std, Student-t interval and the best loss, against hand computation."""

import math

import numpy as np
import pandas as pd
import pytest

from metricbench.bench.aggregate import best_rows, summarize

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

"""From finished run directories to tables: one row per run, then mean ± std and a 95% CI per loss.

Only `metrics.json` files of runs whose saved config is the cell's config are read (see
`RunDir.state`), so a half-finished or stale run never reaches a table. Each one is parsed once:
`collect_runs` also hands over the validation histories that the training curves draw.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..config import config_to_dict
from ..run_dir import RunDir
from .grid import Cell

__all__ = ["HIGHER_IS_BETTER", "REPORTED_SCORES", "best_rows", "collect_runs", "summarize"]

#: Reported scores in report order (MAP@R first) and whether higher is better.
HIGHER_IS_BETTER = {
    "map_at_r": True, "precision_at_1": True, "r_precision": True, "recall_at_4": True, "nmi": True, "ami": True,
    "intra_inter_ratio": False, "silhouette": True,
    "roc_auc": True, "tar_at_far_1e-3": True, "eer": False,  # with eval.verification only
}
REPORTED_SCORES = tuple(HIGHER_IS_BETTER)
_VERIFICATION = ("roc_auc", "tar_at_far_1e-3", "eer")  # the scores of test.verification that runs.csv shows
_RECALL = "recall_at_"
_KEYS = ["dataset", "protocol", "loss"]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return flat


def collect_runs(cells: list[Cell], runs: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The finished cells' results, from one read of each run's metrics.json.

    Returns:
        The runs table: one row per finished cell with its keys, every score, timing, and the config
        fields that vary (unfinished cells are left out; compare the row count with `len(cells)`).
        The histories: one row per finished cell and epoch (`run`, `epoch`, `train_*`, `val_*`).
    """
    rows, configs, histories = [], [], []
    for cell in cells:
        run_dir = RunDir(runs / cell.key)
        if run_dir.state(cell.config) != "done":
            continue
        metrics = run_dir.read_metrics()
        test = metrics["test"]
        distances = test.get("distances", {})
        row = {"dataset": cell.dataset, "protocol": cell.protocol, "loss": cell.loss, "seed": cell.seed,
               "tuned": cell.tuned, "run": cell.key}
        row.update({k: v for k, v in test.items() if not isinstance(v, dict)})
        row.update({k: distances[k] for k in ("intra_inter_ratio", "intra_pair_sqdist", "inter_pair_sqdist",
                                              "silhouette", "davies_bouldin") if k in distances})
        verification = test.get("verification", {})
        row.update({k: verification[k] for k in _VERIFICATION if k in verification})
        row["train_seconds"] = metrics.get("train_seconds_this_call")
        rows.append(row)
        configs.append(_flatten(config_to_dict(cell.config)))
        histories.append(pd.DataFrame(metrics["history"]).assign(run=cell.key))
    table = pd.DataFrame(rows)
    if table.empty:
        return table, pd.DataFrame()
    config_table = pd.DataFrame(configs).add_prefix("config.")
    varying = [c for c in config_table if config_table[c].astype(str).nunique(dropna=False) > 1]
    return pd.concat([table, config_table[varying]], axis=1), pd.concat(histories, ignore_index=True)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol, loss) and score: n, mean, std (ddof 1) and the 95% Student-t interval.

    Rows keep the order of first appearance (the spec's order). With one seed, std and the interval are NaN.
    """
    records = []
    for keys, group in table.groupby(_KEYS, sort=False):
        for metric in _reported_scores(group):
            values = group[metric].to_numpy(dtype=float)
            n, mean = len(values), float(values.mean())
            std = float(values.std(ddof=1)) if n > 1 else math.nan
            half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
            records.append({**dict(zip(_KEYS, keys)), "metric": metric, "n": n, "mean": mean, "std": std,
                            "ci95_low": mean - half, "ci95_high": mean + half})
    return pd.DataFrame(records)


def _reported_scores(group: pd.DataFrame) -> list[str]:
    """REPORTED_SCORES that the runs have; where Recall@4 is not among a dataset's Recall@K (SOP's 1/10/100/1000,
    In-Shop's 1/10/.../50), that dataset's own Recall@K above 1 take its place (Recall@1 is precision_at_1)."""
    present = [m for m in REPORTED_SCORES if m in group and group[m].notna().any()]
    if f"{_RECALL}4" in present:
        return present
    recalls = sorted((c for c in group if c.startswith(_RECALL) and c != f"{_RECALL}1" and group[c].notna().any()),
                     key=lambda c: int(c[len(_RECALL):]))
    position = present.index("r_precision") + 1 if "r_precision" in present else len(present)
    return present[:position] + recalls + present[position:]


def best_rows(summary: pd.DataFrame) -> pd.Series:
    """True where a loss has the best mean of its (dataset, protocol, metric) group (ties: all of them)."""
    score = summary["mean"] * summary["metric"].map(
        lambda m: 1.0 if HIGHER_IS_BETTER.get(m, m.startswith(_RECALL)) else -1.0)
    top = score.groupby([summary["dataset"], summary["protocol"], summary["metric"]]).transform("max")
    return pd.Series(np.isclose(score, top, rtol=0, atol=1e-12), index=summary.index)

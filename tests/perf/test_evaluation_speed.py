"""A run's evaluation: one pass (`metricbench.evaluation`) against the separate passes it replaced.

Before issue 11 an evaluation searched neighbours three times (the retrieval metrics, the projector's
nearest neighbour, UMAP's graph), computed `class_distance_stats` (silhouette included) twice, and laid
UMAP out for umap-learn's 500 epochs below 10,000 points. `_separate_passes` rebuilds that pipeline
from the same public functions, so both columns run the same code apart from what the issue changed.
Cases: the mnist5k test split (1,000 rows) embedded by a briefly trained run, and 50,000 synthetic rows
in 100 classes. Export and plots are on, as in `metricbench train`.
"""

import functools
import time
from pathlib import Path

import numpy as np
import pandas as pd

from metricbench.atomic import atomic_write, write_files_atomically
from metricbench.config import EvalConfig, load_config
from metricbench.eval import class_distance_stats, export_projector, knn_search, pair_distances, retrieval_metrics
from metricbench.eval.plot_drawing import class_margin_figure, distance_histogram_figure, umap_figure
from metricbench.eval.umap_projection import umap_2d
from metricbench.evaluation import evaluate, projector_metadata, write_evaluation
from metricbench.run import load_run, train_run
from metricbench.run_dir import RunDir

from .conftest import best_of

CONFIG = EvalConfig(ks=(1, 2, 4, 8))  # l2, export and plots on


def _separate_passes(out: Path, x: np.ndarray, y: np.ndarray, names: list[str], images) -> dict:
    """The evaluation as it was before issue 11, from the same public functions."""
    metrics = retrieval_metrics(x, y, ks=CONFIG.ks, metric=CONFIG.metric)  # search 1
    summary, table = class_distance_stats(x, y, metric=CONFIG.metric)  # statistics 1
    metrics["distances"] = summary
    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    named = table.assign(class_name=[names[i] for i in table.index],
                         nearest_class_name=[names[i] for i in table["nearest_class"]])
    atomic_write(run.class_stats, lambda f: named.to_csv(f, float_format="%.6g"))
    _, nearest = knn_search(x, k=1, metric=CONFIG.metric)  # search 2
    export_projector(run.export, x, projector_metadata(y, nearest[:, 0], names, rows=None, split=None), images=images)
    _, table = class_distance_stats(x, y, metric=CONFIG.metric)  # statistics 2
    pairs = pair_distances(x, y, metric=CONFIG.metric)
    coords, kept = umap_2d(x, metric=CONFIG.metric, labels=y, epochs=500)  # search 3 (umap-learn's 500 epochs)
    label_names = dict(enumerate(names))
    figures = {"umap.png": umap_figure(coords, y[kept], label_names, total_points=y.size, metric=CONFIG.metric, seed=0),
               "distances.png": distance_histogram_figure(pairs, metric=CONFIG.metric, seed=0),
               "margins.png": class_margin_figure(table, label_names, max_classes=50)}
    run.plots.mkdir(exist_ok=True)
    write_files_atomically({run.plots / name: functools.partial(fig.savefig, format="png", dpi=150)
                            for name, fig in figures.items()})
    return metrics


def _one_pass(out: Path, x: np.ndarray, y: np.ndarray, names: list[str], images) -> dict:
    evaluation = evaluate(x, y, CONFIG)
    write_evaluation(out, evaluation, CONFIG, class_names=names, images=images, progress=False)
    return evaluation.metrics


def _mnist5k_test_split(tmp_path: Path):
    config = load_config(overrides=["train.epochs=2", "eval.plots=false", "eval.export=false"])
    train_run(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run", device="cpu")
    rows = run.split.test
    with __import__("torch").no_grad():
        x = run.model(__import__("torch").from_numpy(run.data.x[rows])).numpy()
    return x, run.data.y[rows], list(run.data.class_names), run.data.x[rows]


def _blobs(num: int, classes: int, dim: int = 64):
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, num)
    x = (rng.normal(size=(classes, dim)) * 2)[y] + rng.normal(size=(num, dim))
    return x.astype(np.float32), y, [f"class {i}" for i in range(classes)], None


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def test_one_evaluation_pass_vs_separate_passes(record, tmp_path):
    cases = {"mnist5k test split (1,000 x 64, 10 classes)": _mnist5k_test_split(tmp_path),
             "synthetic (50,000 x 64, 100 classes)": _blobs(50_000, 100)}
    x, y, names, images = cases["synthetic (50,000 x 64, 100 classes)"]
    _one_pass(tmp_path / "warm", x[:2000], y[:2000], names, None)  # numba compiles and caches once, not per case
    _separate_passes(tmp_path / "warm", x[:2000], y[:2000], names, None)
    rows = []
    for case, (x, y, names, images) in cases.items():
        repeats = 3 if len(y) < 10_000 else 1
        before = best_of(lambda: _separate_passes(tmp_path / "before", x, y, names, images), repeats=repeats)
        after = best_of(lambda: _one_pass(tmp_path / "after", x, y, names, images), repeats=repeats)
        evaluate_only, _ = _timed(lambda: evaluate(x, y, CONFIG))
        rows.append({"case": case, "separate passes s": round(before, 2), "one pass s": round(after, 2),
                     "of which evaluate() s": round(evaluate_only, 2), "speedup": round(before / after, 2)})
        # Same numbers, same tables and projector metadata: only the work was shared.
        old = _separate_passes(tmp_path / "before", x, y, names, images)
        new = _one_pass(tmp_path / "after", x, y, names, images)
        assert old.keys() == new.keys() and old["distances"] == new["distances"]
        assert all(np.isclose(old[k], new[k], rtol=1e-12) for k in old if k != "distances")
        before_run, after_run = RunDir(tmp_path / "before"), RunDir(tmp_path / "after")
        pd.testing.assert_frame_equal(pd.read_csv(before_run.class_stats), pd.read_csv(after_run.class_stats))
        assert (before_run.export / "metadata.tsv").read_bytes() == (after_run.export / "metadata.tsv").read_bytes()
    note = ("Wall time of one evaluation with projector export and plots (`EvalConfig()` defaults: l2, "
            "Recall@1/2/4/8; best of 3 for the mnist5k case, one run for 50,000 rows), after a warm-up that "
            "compiles numba's kernels. `separate passes` is the pipeline before issue 11: 3 neighbour searches, "
            "2 `class_distance_stats` (silhouette included), UMAP for 500 epochs; `one pass` is "
            "`metricbench.evaluation`: one search whose first columns serve the projector and (up to 10,000 rows) "
            "UMAP's graph, one `class_distance_stats`, UMAP for 200 epochs. Above 10,000 rows UMAP projects a "
            "10,000-row sample, whose graph needs its own search. Both give identical metrics, class table and "
            "projector metadata (asserted).")
    record("evaluation", rows, note)
    assert all(row["speedup"] > 1 for row in rows)

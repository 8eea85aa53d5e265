"""Evaluation plots: valid PNGs written atomically, seeded sampling within its caps, clear input errors."""

import doctest
import itertools
import math
import os

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

import metricbench.eval.pairs as pairs_module
import metricbench.eval.umap_projection as umap_projection_module
from metricbench.eval import (
    class_distance_stats,
    knn_search,
    pair_distances,
    plot_class_margins,
    plot_distance_histograms,
    plot_umap,
    retrieval_metrics_and_neighbors,
    umap_2d,
    write_eval_plots,
)
from metricbench.eval.plot_drawing import class_margin_figure, distance_histogram_figure, umap_figure
from metricbench.eval.umap_projection import sample_rows

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _blobs(n=300, classes=10, dim=8, seed=0):
    """Rows in Gaussian blobs, labels 0..classes-1 shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % classes)
    centers = rng.standard_normal((classes, dim)) * 3.0
    return (centers[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


def _check_png(path, min_width=800, min_height=400):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert min_width <= width <= 4000 and min_height <= height <= 6000
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10  # not blank


def _files(directory):
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


# ----- end to end --------------------------------------------------------------------------------


def test_write_eval_plots_writes_three_valid_pngs_the_umap_points_and_nothing_else(tmp_path):
    x, labels = _blobs()
    out = tmp_path / "run" / "plots"
    paths = write_eval_plots(out, x, labels, class_names=NAMES)
    assert set(paths) == {"umap", "distances", "margins"}
    assert {p.name for p in paths.values()} == {"umap.png", "distances.png", "margins.png"}
    for path in paths.values():
        assert path.parent == out
        _check_png(path)
    assert _files(out) == ["distances.png", "margins.png", "umap.npz", "umap.png"]  # no temporary files left
    with np.load(out / "umap.npz") as points:
        np.testing.assert_array_equal(points["rows"], np.arange(len(labels)))  # all 300 rows kept
        np.testing.assert_array_equal(points["labels"], labels)
        coords, _ = umap_2d(x, seed=0, labels=labels)
        np.testing.assert_array_equal(points["coords"], coords)  # the projection umap.png shows


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_each_plot_function_returns_its_path(tmp_path, metric):
    x, labels = _blobs(n=200, classes=4)
    names = {label: f"class {label}" for label in range(4)}
    umap_path = plot_umap(x, labels, str(tmp_path / "u.png"), class_names=names, metric=metric, title="Demo")
    hist_path = plot_distance_histograms(x, labels, tmp_path / "h.png", metric=metric, max_pairs=5_000)
    _, table = class_distance_stats(x, labels, metric=metric)
    margin_path = plot_class_margins(table, tmp_path / "m.png", class_names=names)
    assert (umap_path, hist_path, margin_path) == (tmp_path / "u.png", tmp_path / "h.png", tmp_path / "m.png")
    for path in (umap_path, hist_path, margin_path):
        _check_png(path, min_height=300)
    assert _files(tmp_path) == ["h.png", "m.png", "u.png"]


# ----- atomic writes -----------------------------------------------------------------------------


def test_a_failed_write_leaves_nothing_and_keeps_old_files(tmp_path, monkeypatch):
    x, labels = _blobs(n=120, classes=3)
    out = tmp_path / "plots"
    out.mkdir()
    (out / "umap.png").write_bytes(b"old")
    real_savefig = Figure.savefig
    calls = []
    fail_at = [2]  # the second figure: the first one's temporary file already exists

    def savefig_then_fail(self, file, **kwargs):
        calls.append(file)
        if len(calls) == fail_at[0]:
            file.write(b"partial")
            raise OSError("disk full")
        real_savefig(self, file, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_eval_plots(out, x, labels)
    assert _files(out) == ["umap.png"]
    assert (out / "umap.png").read_bytes() == b"old"
    fail_at[0] = len(calls) + 1
    with pytest.raises(OSError, match="disk full"):
        plot_distance_histograms(x, labels, tmp_path / "new" / "dirs" / "h.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots"]  # the directories it made are gone


def test_bad_input_creates_no_directory(tmp_path):
    x, labels = _blobs(n=50, classes=3)
    x[7, 2] = np.nan
    with pytest.raises(ValueError, match="embeddings must be finite"):
        write_eval_plots(tmp_path / "never", x, labels)
    with pytest.raises(ValueError, match="embeddings must be finite"):
        plot_umap(x, labels, tmp_path / "never" / "u.png")
    assert not (tmp_path / "never").exists()


# ----- UMAP projection ---------------------------------------------------------------------------


def test_umap_2d_caps_rows_and_is_deterministic_for_a_seed():
    x, labels = _blobs(n=600, classes=6)
    coords, kept = umap_2d(x, max_points=200, seed=3, labels=labels)
    assert coords.shape == (200, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert kept.shape == (200,) and kept.dtype == np.int64
    assert np.all(np.diff(kept) > 0) and kept[0] >= 0 and kept[-1] < 600
    np.testing.assert_array_equal(np.bincount(labels[kept]), [200 // 6 + (i < 200 % 6) for i in range(6)])
    again, kept_again = umap_2d(x, max_points=200, seed=3, labels=labels)
    np.testing.assert_array_equal(kept_again, kept)
    np.testing.assert_array_equal(again, coords)
    _, other_rows = umap_2d(x, max_points=200, seed=4, labels=labels)
    assert not np.array_equal(other_rows, kept)


def test_umap_2d_projects_every_row_below_the_cap():
    x, _ = _blobs(n=40, classes=2)
    coords, kept = umap_2d(x, max_points=40)
    np.testing.assert_array_equal(kept, np.arange(40))
    assert coords.shape == (40, 2)


@pytest.mark.parametrize(("metric", "umap_metric"), [("l2", "euclidean"), ("cosine", "cosine")])
def test_umap_2d_passes_the_metric_and_an_exact_knn_graph(monkeypatch, metric, umap_metric):
    import umap

    seen = {}

    class FakeUMAP:
        def __init__(self, **kwargs):
            seen.update(kwargs)

        def fit_transform(self, x):
            return np.zeros((x.shape[0], 2))

    monkeypatch.setattr(umap, "UMAP", FakeUMAP)
    x = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 3.0], [0.1, 1.0], [-1.0, -1.0]])
    umap_2d(x, metric=metric, seed=5)
    assert seen["metric"] == umap_metric and seen["random_state"] == 5 and seen["n_neighbors"] == 4
    indices, distances = seen["precomputed_knn"]
    assert indices.shape == distances.shape == (5, 4)
    if metric == "l2":
        expected = np.sort(np.linalg.norm(x[:, None] - x[None], axis=2), axis=1)[:, :4]
    else:
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        expected = np.sort(1.0 - unit @ unit.T, axis=1)[:, :4]
    np.testing.assert_allclose(distances, expected, atol=1e-5)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_umap_2d_reuses_the_metrics_neighbours_exactly(monkeypatch, metric):
    """The graph built from an evaluation's leave-one-out neighbours equals UMAP's own exact search, so
    one search serves both; a sample (rows above max_points) searches its own rows. Each row is its own
    nearest neighbour at distance 0 exactly, as in umap-learn's own search."""
    import umap

    graphs = []

    class RecordingUMAP(umap.UMAP):
        def __init__(self, **kwargs):
            graphs.append(kwargs["precomputed_knn"])
            super().__init__(**kwargs)

    monkeypatch.setattr(umap, "UMAP", RecordingUMAP)
    x, labels = _blobs(n=60, classes=3)
    _, neighbors = retrieval_metrics_and_neighbors(x, labels, metric=metric, nearest=14, clustering=False)
    searched, _ = umap_2d(x, metric=metric, seed=3)
    reused, _ = umap_2d(x, metric=metric, seed=3, neighbors=neighbors)
    np.testing.assert_array_equal(graphs[0][0], graphs[1][0])
    np.testing.assert_array_equal(graphs[0][0][:, 0], np.arange(60))
    np.testing.assert_allclose(graphs[0][1], graphs[1][1], atol=1e-5)
    assert (graphs[0][1][:, 0] == 0).all() and (graphs[1][1][:, 0] == 0).all()
    np.testing.assert_allclose(searched, reused, atol=1e-3)
    calls = []
    monkeypatch.setattr(umap_projection_module, "knn_search", lambda *a, **k: calls.append(1) or knn_search(*a, **k))
    umap_2d(x, metric=metric, seed=3, neighbors=neighbors)
    umap_2d(x, metric=metric, seed=3, neighbors=neighbors, max_points=30)
    assert len(calls) == 1  # only the sample searched


def test_sample_rows_is_stratified_seeded_and_sorted():
    labels = np.repeat([4, 9, 20], [500, 300, 200])
    rows = sample_rows(1000, 100, 0, labels)
    np.testing.assert_array_equal(np.unique(labels[rows], return_counts=True)[1], [50, 30, 20])
    np.testing.assert_array_equal(rows, sample_rows(1000, 100, 0, labels))
    assert np.all(np.diff(rows) > 0)
    # 7 rows over classes of 5, 3 and 2: quotas 3.5, 2.1, 1.4 -> 3 + 2 + 1, plus one for the largest remainder
    rows = sample_rows(10, 7, 1, np.repeat([0, 1, 2], [5, 3, 2]))
    np.testing.assert_array_equal(np.bincount(np.repeat([0, 1, 2], [5, 3, 2])[rows]), [4, 2, 1])
    assert sample_rows(10, 4, 2).size == 4
    np.testing.assert_array_equal(sample_rows(5, 10, 0), np.arange(5))


# ----- pair distances ----------------------------------------------------------------------------


def _loop_pairs(x, labels, metric):
    if metric == "cosine":
        x = [row / math.sqrt(sum(v * v for v in row)) for row in np.asarray(x, dtype=np.float64)]
    intra, inter = [], []
    for i, j in itertools.combinations(range(len(labels)), 2):
        d = math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(x[i], x[j])))
        (intra if labels[i] == labels[j] else inter).append(d)
    return sorted(intra), sorted(inter)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_pair_distances_enumerates_every_pair_when_small(metric):
    x, labels = _blobs(n=30, classes=4, dim=3)
    pairs = pair_distances(x, labels, metric=metric, max_pairs=435)  # 30 * 29 / 2 pairs
    intra, inter = _loop_pairs(x, labels, metric)
    assert pairs.intra_exact and pairs.inter_exact
    assert (pairs.intra_total, pairs.inter_total) == (len(intra), len(inter))
    np.testing.assert_allclose(np.sort(pairs.intra), intra, rtol=1e-6)
    np.testing.assert_allclose(np.sort(pairs.inter), inter, rtol=1e-6)


def test_pair_distances_sample_is_capped_distinct_and_deterministic():
    x, labels = _blobs(n=400, classes=5, dim=3)
    pairs = pair_distances(x, labels, max_pairs=1_000, seed=7)
    assert pairs.intra.size == 500 and pairs.inter.size == 500
    assert not pairs.intra_exact and not pairs.inter_exact
    assert pairs.intra_total + pairs.inter_total == 400 * 399 // 2
    assert np.unique(pairs.intra).size == 500 and np.unique(pairs.inter).size == 500  # no pair twice
    again = pair_distances(x, labels, max_pairs=1_000, seed=7)
    np.testing.assert_array_equal(again.intra, pairs.intra)
    np.testing.assert_array_equal(again.inter, pairs.inter)
    assert not np.array_equal(pair_distances(x, labels, max_pairs=1_000, seed=8).inter, pairs.inter)


def test_pair_distances_samples_each_population_from_the_right_pairs():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(8), 40)
    x = labels[:, None] * 100.0 + rng.random((320, 2))  # same class: < 1.5 apart; different: > 98
    pairs = pair_distances(x, labels, max_pairs=2_000)
    assert pairs.intra.max() < 1.5 and pairs.inter.min() > 98


def test_pair_distances_takes_a_small_population_whole():
    labels = np.r_[np.zeros(300, dtype=int), 1, 2]  # 44,850 same-class pairs, only 601 different-class ones
    x = np.random.default_rng(1).standard_normal((302, 2))
    pairs = pair_distances(x, labels, max_pairs=10_000)
    assert pairs.inter_exact and pairs.inter.size == 601
    assert pairs.intra.size == 5_000 and not pairs.intra_exact


# ----- figures (no UMAP fit) ---------------------------------------------------------------------


def test_umap_figure_legend_up_to_20_classes_colorbar_above():
    rng = np.random.default_rng(0)
    for classes, legend_entries, axes in ((10, 10, 1), (20, 20, 1), (25, 0, 2)):
        labels = np.arange(200) % classes
        names = {c: str(c) for c in range(classes)}
        fig = umap_figure(rng.random((200, 2)), labels, names, total_points=1_000, metric="l2", seed=0)
        legend = fig.axes[0].get_legend()
        assert (len(legend.get_texts()) if legend else 0) == legend_entries
        assert len(fig.axes) == axes
        assert "200 of 1,000 points" in fig.axes[0].get_title()


def test_distance_histogram_title_states_the_sample_size():
    x, labels = _blobs(n=200, classes=4)
    fig = distance_histogram_figure(pair_distances(x, labels, max_pairs=600), metric="l2", seed=0)
    title = fig.axes[0].get_title()
    assert "300 of" in title and "same-class" in title and "different-class" in title
    small = pair_distances(x[:20], labels[:20])  # 190 pairs: all of them
    lines = distance_histogram_figure(small, metric="cosine", seed=0).axes[0].get_title().splitlines()
    assert lines == [
        f"all {small.intra_total:,} same-class pairs",
        f"all {small.inter_total:,} different-class pairs",
    ]


def test_margin_figure_shows_worst_and_best_when_there_are_many_classes():
    ratios = np.linspace(0.5, 3.0, 120)[np.random.default_rng(0).permutation(120)]
    table = pd.DataFrame({"margin_ratio": ratios}, index=pd.Index(np.arange(120), name="label"))
    fig = class_margin_figure(table, {c: f"c{c}" for c in range(120)}, max_classes=10)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    worst = [f"c{c}" for c in np.argsort(ratios)[:5]]
    best = [f"c{c}" for c in np.argsort(ratios)[-5:]]
    assert ticks == worst + ["… 110 classes not shown …"] + best


def test_margin_plot_draws_infinite_and_skips_undefined_ratios(tmp_path):
    table = pd.DataFrame(
        {"margin_ratio": [0.5, np.inf, np.nan, 2.0], "nearest_class": [1, 0, 0, 0]},
        index=pd.Index([0, 1, 2, 3], name="label"),
    )
    fig = class_margin_figure(table, {c: str(c) for c in range(4)}, max_classes=50)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["0  (nearest: 1)", "3  (nearest: 0)", "1  (nearest: 0)"]
    assert "1 class(es) with an undefined ratio" in fig.axes[0].get_title()
    _check_png(plot_class_margins(table, tmp_path / "m.png", class_names=np.array(list("abcd"))), min_height=300)


# ----- input errors ------------------------------------------------------------------------------


def _table():
    x, labels = _blobs(n=60, classes=3)
    return class_distance_stats(x, labels)[1]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda x, y, p: plot_umap(x, y, p / "u.jpg"), ValueError, "path must end with .png"),
        (lambda x, y, p: plot_umap(x, y, 5), TypeError, "path must be a str"),
        (lambda x, y, p: plot_umap(x, y.astype(float), p / "u.png"), TypeError, "labels must hold integers"),
        (lambda x, y, p: plot_umap(x, y[:-1], p / "u.png"), ValueError, "labels must have shape"),
        (lambda x, y, p: plot_umap(x, y, p / "u.png", metric="ip"), ValueError, "metric must be one of"),
        (lambda x, y, p: plot_umap(x, y, p / "u.png", max_points=3), ValueError, "max_points must be >= 4"),
        (lambda x, y, p: plot_umap(x, y, p / "u.png", max_points=True), TypeError, "max_points must be an"),
        (lambda x, y, p: plot_umap(x, y, p / "u.png", seed=-1), ValueError, "seed must be >= 0"),
        (lambda x, y, p: plot_umap(x, y, p / "u.png", class_names=["a"]), ValueError, "must name every"),
        (lambda x, y, p: plot_umap(x, y, p / "u.png", class_names="abc"), TypeError, "class_names must be"),
        (lambda x, y, p: plot_umap(x, y, p / "u.png", title=3), TypeError, "title must be a str"),
        (lambda x, y, p: plot_umap(x[:3], y[:3], p / "u.png"), ValueError, "at least 4 rows"),
        (lambda x, y, p: plot_distance_histograms(x, y * 0, p / "h.png"), ValueError, "at least 2 classes"),
        (lambda x, y, p: plot_distance_histograms(x[:3], [0, 1, 2], p / "h.png"), ValueError, "2 rows"),
        (lambda x, y, p: plot_distance_histograms(x, y, p / "h.png", max_pairs=1), ValueError, "max_pairs"),
        (lambda x, y, p: plot_distance_histograms(x, y, p / "h.png", metric="dot"), ValueError, "metric"),
        (lambda x, y, p: plot_class_margins({"margin_ratio": [1.0]}, p / "m.png"), TypeError, "DataFrame"),
        (lambda x, y, p: plot_class_margins(_table().drop(columns="margin_ratio"), p / "m.png"), ValueError,
         "'margin_ratio' column"),
        (lambda x, y, p: plot_class_margins(_table().assign(margin_ratio=np.nan), p / "m.png"), ValueError,
         "non-NaN margin_ratio"),
        (lambda x, y, p: plot_class_margins(_table(), p / "m.png", max_classes=1), ValueError, "max_classes"),
        (lambda x, y, p: write_eval_plots(p, x, y, metric="l1"), ValueError, "metric must be one of"),
        (lambda x, y, p: write_eval_plots(None, x, y), TypeError, "out_dir must be"),
    ],
)
def test_bad_input_raises_and_writes_nothing(tmp_path, call, error, message):
    x, labels = _blobs(n=60, classes=3)
    with pytest.raises(error, match=message):
        call(x, labels, tmp_path)
    assert os.listdir(tmp_path) == []


def test_doctests():
    for module in (pairs_module, umap_projection_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__

"""Retrieval galleries: seeded fixed queries, lowest-AP hardest queries, right/wrong flags, confused pairs, valid
PNGs for image and vector data, and nothing written on bad input."""

import doctest
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import metricbench.eval.retrieval_gallery as gallery_module
from metricbench.eval import GALLERY_FILES, Neighbors, gallery_records, knn_search, write_retrieval_gallery
from metricbench.eval.retrieval_gallery import (choose_queries, confused_pairs, hardest_queries,
                                                neighbor_average_precision)

K_AP = 14  # the neighbour columns an evaluation keeps (UMAP_NEIGHBORS - 1)


def _blobs(n=300, classes=10, dim=8, seed=0, spread=1.5):
    """Overlapping Gaussian blobs (so some neighbours are wrong), labels shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % classes)
    centers = rng.standard_normal((classes, dim)) * 2.0
    return (centers[labels] + spread * rng.standard_normal((n, dim))).astype(np.float32), labels


def _neighbors(x, metric="l2", k=K_AP):
    return Neighbors(*knn_search(x, k=k, metric=metric))


def _brute_force_ap(indices, labels, k_ap):
    ap = np.full(len(labels), np.nan)
    for i in range(len(labels)):
        r = min(int((labels == labels[i]).sum()) - 1, k_ap)
        if r == 0:
            continue
        hits, total = 0, 0.0
        for j in range(k_ap):
            if indices[i, j] >= 0 and labels[indices[i, j]] == labels[i]:
                hits += 1
                total += hits / (j + 1)
        ap[i] = total / r
    return ap


def test_fixed_queries_depend_on_the_rows_and_seed_not_on_the_embeddings():
    x, labels = _blobs()
    other, _ = _blobs(seed=5)  # another embedding of the same rows
    records = [gallery_records(_neighbors(e), labels, metric="l2", seed=3) for e in (x, other)]
    fixed = [[q["row"] for q in r["queries"] if q["kind"] == "fixed"] for r in records]
    assert fixed[0] == fixed[1] == choose_queries(len(labels), seed=3).tolist()
    assert len(fixed[0]) == 8 and fixed[0] == sorted(set(fixed[0]))
    assert choose_queries(len(labels), seed=4).tolist() != fixed[0]
    assert choose_queries(5, seed=0, fixed=8).tolist() == [0, 1, 2, 3, 4]


def test_average_precision_equals_a_brute_force_loop():
    x, labels = _blobs()
    labels[0] = 99  # a class of one row: AP undefined
    indices = _neighbors(x).indices.copy()
    indices[1, -3:] = -1  # an approximate index that found fewer
    expected = _brute_force_ap(indices, labels, K_AP)
    np.testing.assert_allclose(neighbor_average_precision(indices, labels), expected, rtol=1e-12)
    np.testing.assert_allclose(neighbor_average_precision(indices, labels, k_ap=4),
                               _brute_force_ap(indices, labels, 4), rtol=1e-12)
    assert np.isnan(neighbor_average_precision(indices, labels)[0])


def test_hardest_queries_are_the_lowest_ap_rows_after_the_fixed_ones():
    x, labels = _blobs(spread=3.0)
    neighbors = _neighbors(x)
    records = gallery_records(neighbors, labels, metric="l2", seed=0)
    fixed = choose_queries(len(labels), seed=0)
    ap = _brute_force_ap(neighbors.indices, labels, K_AP)
    ranked = sorted((value, row) for row, value in enumerate(ap) if row not in fixed and not np.isnan(value))
    hardest = [q for q in records["queries"] if q["kind"] == "hardest"]
    assert [q["row"] for q in hardest] == [row for _, row in ranked[:8]]
    assert [q["average_precision"] for q in hardest] == pytest.approx([value for value, _ in ranked[:8]])
    assert [q["kind"] for q in records["queries"]] == ["fixed"] * 8 + ["hardest"] * 8
    assert hardest_queries(np.array([0.2, 0.2, 0.1, np.nan]), hard=3).tolist() == [2, 0, 1]  # ties by position


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_records_map_positions_to_dataset_rows_and_flag_right_neighbours(metric):
    x, labels = _blobs(spread=3.0)
    neighbors = _neighbors(x, metric)
    rows = np.arange(len(labels)) * 7 + 1000  # the dataset rows of the evaluated split
    names = [f"class {c}" for c in range(10)]
    records = gallery_records(neighbors, labels, metric=metric, seed=1, class_names=names, rows=rows, split="test")
    assert (records["metric"], records["k"], records["split"]) == (metric, 5, "test")
    position = {row: p for p, row in enumerate(rows.tolist())}
    unit = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    flags = []
    for query in records["queries"]:
        q = position[query["row"]]
        assert (query["label"], query["class_name"]) == (labels[q], names[labels[q]])
        assert [position[n["row"]] for n in query["neighbors"]] == neighbors.indices[q, :5].tolist()
        for n in query["neighbors"]:
            p = position[n["row"]]
            assert (n["label"], n["class_name"]) == (labels[p], names[labels[p]])
            assert n["correct"] == (labels[p] == labels[q])
            assert n["distance"] == pytest.approx(np.linalg.norm(unit[p] - unit[q]), abs=1e-4)
            flags.append(n["correct"])
    assert True in flags and False in flags  # both colours are exercised


def test_confused_pairs_equal_a_brute_force_count():
    x, labels = _blobs(spread=3.0)
    indices = _neighbors(x).indices
    counts, slots = {}, {}
    for i in range(len(labels)):
        for j in indices[i, :5]:
            slots[labels[i]] = slots.get(labels[i], 0) + 1
            if labels[j] != labels[i]:
                pair = (min(labels[i], labels[j]), max(labels[i], labels[j]))
                counts[pair] = counts.get(pair, 0) + 1
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:10]
    table = confused_pairs(indices, labels, k=5)
    assert list(table.columns) == ["class_a", "class_b", "count", "share"]
    assert [((a, b), c) for a, b, c in zip(table["class_a"], table["class_b"], table["count"])] == expected
    np.testing.assert_allclose(table["share"], [c / (slots[a] + slots[b]) for (a, b), c in expected])
    assert confused_pairs(np.array([[1], [0]]), np.array([0, 0]), k=1).empty


def _gallery_files(tmp_path, x, labels, **kwargs):
    paths = write_retrieval_gallery(tmp_path / "plots", _neighbors(x), labels, metric="l2", seed=0,
                                    class_names=[f"digit {c}" for c in range(10)], split="test", **kwargs)
    assert paths == {key: tmp_path / "plots" / name for key, name in GALLERY_FILES.items()}
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(GALLERY_FILES.values())
    with Image.open(paths["png"]) as image:
        image.verify()
    with Image.open(paths["png"]) as image:
        size = image.size
    return paths, json.loads(paths["json"].read_text()), size


def test_image_gallery_is_a_valid_png_and_decodes_only_the_rows_shown(tmp_path):
    x, labels = _blobs()
    thumbnails = np.random.default_rng(0).integers(0, 256, size=(len(labels), 1, 28, 28), dtype=np.uint8)
    calls = []
    paths, records, (width, height) = _gallery_files(
        tmp_path, x, labels, images=lambda positions: calls.append(positions) or thumbnails[positions])
    shown = {q["row"] for q in records["queries"]} | {n["row"] for q in records["queries"] for n in q["neighbors"]}
    assert len(calls) == 1 and calls[0].tolist() == sorted(shown)
    assert 800 <= width <= 1400 and 16 * 150 <= height <= 4000  # 16 lines of 6 thumbnails, pair bars below
    assert records == gallery_records(_neighbors(x), labels, metric="l2", seed=0,
                                      class_names=[f"digit {c}" for c in range(10)], split="test")
    pairs = pd.read_csv(paths["pairs_csv"])
    assert list(pairs.columns) == ["class_a", "class_b", "count", "share"] and len(pairs) == 10
    assert pairs["class_a"].str.startswith("digit ").all()


def test_vector_gallery_is_drawn_as_a_table(tmp_path):
    x, labels = _blobs()
    for images in (None, lambda positions: None):  # no thumbnails at all, or a source that has none (vectors)
        _, records, (width, height) = _gallery_files(tmp_path, x, labels, images=images)
        assert len(records["queries"]) == 16
        assert 800 <= width <= 1400 and 16 * 60 <= height <= 3000


def test_rgb_float_thumbnails_and_tiny_sets(tmp_path):
    x, labels = _blobs(n=6, classes=2)  # 5 neighbours at most: every row is a fixed query, none is left to be hardest
    images = np.random.default_rng(0).random((6, 3, 20, 10))  # floats in [0, 1], not square
    neighbors = _neighbors(x, k=5)
    paths = write_retrieval_gallery(tmp_path, neighbors, labels, metric="cosine", seed=0, images=lambda p: images[p],
                                    k=8)
    records = json.loads(paths["json"].read_text())
    assert records["k"] == 5 and [q["kind"] for q in records["queries"]] == ["fixed"] * 6
    with Image.open(paths["png"]) as image:
        image.verify()


def test_bad_thumbnails_raise_and_write_nothing(tmp_path):
    x, labels = _blobs()
    with pytest.raises(ValueError, match="images must have"):
        write_retrieval_gallery(tmp_path / "plots", _neighbors(x), labels, metric="l2", seed=0,
                                images=lambda positions: np.zeros((2, 1, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="metric must be one of"):
        write_retrieval_gallery(tmp_path / "plots", _neighbors(x), labels, metric="dot", seed=0)
    assert not (tmp_path / "plots").exists()


def test_doctests():
    assert doctest.testmod(gallery_module).failed == 0

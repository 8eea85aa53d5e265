"""Tests for closed- and open-set splits and their files."""

import dataclasses

import numpy as np
import pytest

from metricbench.data import Split, load_split, make_split, save_split

# Uneven class sizes, shuffled, with non-contiguous ids: 50, 37, 20, 11, 3 and 1 rows.
SIZES = {0: 50, 3: 37, 4: 20, 7: 11, 8: 3, 9: 1}
LABELS = np.random.default_rng(1).permutation(np.repeat(list(SIZES), list(SIZES.values())))


def _check_partition(split: Split, n: int) -> None:
    for rows in (split.train, split.val, split.test):
        assert rows.dtype == np.int64
        assert np.all(np.diff(rows) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.sort(np.concatenate([split.train, split.val, split.test])), np.arange(n))


def test_closed_is_stratified_disjoint_and_covering():
    split = make_split(LABELS, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert split.protocol == "closed" and split.seed == 3
    _check_partition(split, LABELS.size)
    for cls, n in SIZES.items():
        n_val = np.sum(LABELS[split.val] == cls)
        n_test = np.sum(LABELS[split.test] == cls)
        assert abs(n_val - 0.1 * n) <= 1 and abs(n_test - 0.2 * n) <= 1, (cls, n_val, n_test)
        assert np.sum(LABELS[split.train] == cls) >= 1
    assert np.sum(LABELS[split.test] == 0) == 10  # 50 rows -> exactly 10 test rows


def test_closed_keeps_a_training_row_when_fractions_take_everything():
    labels = np.array([0, 0, 1, 1])
    split = make_split(labels, val_fraction=0.45, test_fraction=0.5)
    # Each class: round(0.9) = 1 val and round(1.0) = 1 test would leave no train row; val gives it back.
    assert split.val.size == 0 and split.test.size == 2
    np.testing.assert_array_equal(np.unique(labels[split.train]), [0, 1])


def test_single_row_class_is_train_only():
    # round(0.5) = 1 test row (halves round up) would leave the 1-row class 9 nothing to train on.
    split = make_split(LABELS, val_fraction=0.45, test_fraction=0.5)
    assert np.sum(LABELS[split.train] == 9) == 1
    # Class 8 (3 rows): round(1.35) = 1 val + round(1.5) = 2 test leave no train row; val gives its row back.
    assert [np.sum(LABELS[p] == 8) for p in (split.train, split.val, split.test)] == [1, 0, 2]


def test_same_seed_same_split_and_different_seed_different_split():
    a, b, c = (make_split(LABELS, seed=s) for s in (5, 5, 6))
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.test, c.test)


def test_open_has_disjoint_class_halves():
    labels = np.repeat(np.arange(10), 20)
    split = make_split(labels, protocol="open", val_fraction=0.1, test_fraction=0.5)
    _check_partition(split, labels.size)
    np.testing.assert_array_equal(np.unique(labels[split.train]), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(np.unique(labels[split.val]), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(np.unique(labels[split.test]), [5, 6, 7, 8, 9])
    assert split.test.size == 100  # every row of the held-out classes; test_fraction is ignored
    np.testing.assert_array_equal(np.bincount(labels[split.val]), [2] * 5)


def test_open_odd_class_count_trains_on_the_larger_half():
    labels = np.repeat([2, 4, 6, 8, 10], 4)  # ids need not be contiguous; sorted by id
    split = make_split(labels, protocol="open", val_fraction=0.0)
    np.testing.assert_array_equal(np.unique(labels[split.train]), [2, 4, 6])
    np.testing.assert_array_equal(np.unique(labels[split.test]), [8, 10])
    assert split.val.size == 0


def test_open_needs_four_classes():
    with pytest.raises(ValueError, match="protocol 'open' needs at least 4 classes .* got 3"):
        make_split(np.repeat([0, 1, 2], 5), protocol="open")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"protocol": "half"}, ValueError, "unknown protocol 'half'; available: closed, open"),
        ({"val_fraction": 1.0}, ValueError, r"val_fraction must be in \[0, 1\), got 1.0"),
        ({"test_fraction": -0.1}, ValueError, r"test_fraction must be in \[0, 1\), got -0.1"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, ValueError, "val_fraction \\+ test_fraction must be < 1"),
        ({"val_fraction": "0.1"}, TypeError, "val_fraction must be a float, got str"),
        ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
        ({"seed": 1.5}, TypeError, "seed must be an int, got float"),
    ],
)
def test_argument_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_split(LABELS, **kwargs)


def test_label_errors():
    with pytest.raises(TypeError, match="labels must hold integer class ids, got dtype float64"):
        make_split(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\), got \(4, 1\)"):
        make_split(np.zeros((4, 1), dtype=int))
    with pytest.raises(ValueError, match="labels must not be empty"):
        make_split(np.zeros(0, dtype=int))


def test_save_load_round_trip(tmp_path):
    split = dataclasses.replace(make_split(LABELS, protocol="open", seed=11), fingerprint="0123abcd" * 4)
    path = tmp_path / "split.npz"
    save_split(split, path)
    assert [p.name for p in tmp_path.iterdir()] == ["split.npz"]  # no temporary file left behind
    loaded = load_split(path)
    assert (loaded.protocol, loaded.seed, loaded.fingerprint) == ("open", 11, "0123abcd" * 4)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(loaded, part), getattr(split, part))
        assert getattr(loaded, part).dtype == np.int64


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder for the split file not found"):
        save_split(make_split(LABELS), tmp_path / "nowhere" / "split.npz")
    with pytest.raises(TypeError, match="split must be a Split, got dict"):
        save_split({}, tmp_path / "split.npz")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="split file '.*missing.npz' does not exist"):
        load_split(tmp_path / "missing.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"split file '.*empty.npz' is empty \(0 bytes\)"):
        load_split(tmp_path / "empty.npz")
    np.savez(tmp_path / "partial.npz", protocol="closed", train=[0])
    with pytest.raises(ValueError, match="is missing arrays 'seed', 'val', 'test'.*found: protocol, train"):
        load_split(tmp_path / "partial.npz")
    np.savez(tmp_path / "overlap.npz", protocol="closed", seed=0, train=[0, 1], val=[1], test=[2])
    with pytest.raises(ValueError, match="must be disjoint and cover rows 0..3"):
        load_split(tmp_path / "overlap.npz")
    np.savez(tmp_path / "unsorted.npz", protocol="closed", seed=0, train=np.array([1, 0], np.uint8), val=[2], test=[3])
    with pytest.raises(ValueError, match="train indices must be sorted and unique"):
        load_split(tmp_path / "unsorted.npz")
    np.savez(tmp_path / "proto.npz", protocol="half", seed=0, train=[0], val=[1], test=[2])
    with pytest.raises(ValueError, match="protocol must be one of closed, open"):
        load_split(tmp_path / "proto.npz")


@pytest.mark.parametrize("protocol", ["closed", "open"])
def test_validation_split_never_uses_test_rows(protocol):
    from metricbench.data import validation_split

    labels = np.repeat(np.arange(10), 40)
    outer = make_split(labels, protocol=protocol, seed=4)
    inner = validation_split(outer, labels)
    parts = [inner.train, inner.val, inner.test]
    assert all(p.size for p in parts)
    used = np.concatenate(parts)
    assert np.unique(used).size == used.size, "the inner parts are disjoint"
    np.testing.assert_array_equal(np.sort(used), np.union1d(outer.train, outer.val))
    assert np.intersect1d(used, outer.test).size == 0
    if protocol == "open":  # held-out classes unseen in training, all of them from the training side
        assert not set(labels[inner.test]) & set(labels[inner.train])
        assert set(labels[inner.test]) <= set(labels[outer.train])
    else:
        assert set(labels[inner.test]) == set(labels[inner.train])
    again = validation_split(outer, labels)
    assert all(np.array_equal(a, b) for a, b in zip(parts, [again.train, again.val, again.test]))


def test_fingerprint_absent_or_empty_loads_as_none(tmp_path):
    split = make_split(LABELS)
    assert split.fingerprint is None
    save_split(split, tmp_path / "new.npz")
    assert load_split(tmp_path / "new.npz").fingerprint is None
    np.savez(tmp_path / "old.npz", protocol="closed", seed=0, train=[0], val=[1], test=[2])  # before fingerprints
    assert load_split(tmp_path / "old.npz").fingerprint is None
    np.savez(tmp_path / "bad.npz", protocol="closed", seed=0, train=[0], val=[1], test=[2], fingerprint=[1, 2])
    with pytest.raises(ValueError, match="fingerprint must be a str scalar"):
        load_split(tmp_path / "bad.npz")


def test_validation_split_keeps_the_fingerprint():
    from metricbench.data import validation_split

    labels = np.repeat(np.arange(4), 10)
    outer = dataclasses.replace(make_split(labels), fingerprint="f" * 32)
    assert validation_split(outer, labels).fingerprint == "f" * 32


# ---------------------------------------------------------------- standard: the dataset's own split

# 12 training classes (ids 0-11) and 8 test classes (12-19), 3 rows each, rows interleaved.
STANDARD_LABELS = np.tile(np.arange(20), 3)
TRAIN_PART = np.flatnonzero(STANDARD_LABELS < 12)


@pytest.mark.parametrize("parts", [
    {"train": TRAIN_PART, "test": np.flatnonzero(STANDARD_LABELS >= 12)},
    {"train": TRAIN_PART, "query": np.flatnonzero((STANDARD_LABELS >= 12) & (np.arange(60) < 20)),
     "gallery": np.flatnonzero((STANDARD_LABELS >= 12) & (np.arange(60) >= 20))},
])
def test_standard_keeps_the_official_test_and_validates_on_held_out_training_classes(parts, tmp_path):
    split = make_split(STANDARD_LABELS, protocol="standard", seed=4, parts=parts)
    _check_partition(split, STANDARD_LABELS.size)
    np.testing.assert_array_equal(split.test, np.flatnonzero(STANDARD_LABELS >= 12))
    val_classes = set(STANDARD_LABELS[split.val])
    assert len(val_classes) == 3 and not val_classes & set(STANDARD_LABELS[split.train])  # 25% of 12 classes
    assert val_classes <= set(range(12))
    if "query" in parts:
        np.testing.assert_array_equal(split.queries, parts["query"])
        np.testing.assert_array_equal(split.gallery, parts["gallery"])
    else:
        assert split.queries is None and split.gallery is None
    save_split(split, tmp_path / "split.npz")
    loaded = load_split(tmp_path / "split.npz")
    assert loaded.protocol == "standard"
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(split, name))
    assert (loaded.queries is None) == (split.queries is None)
    if split.queries is not None:
        np.testing.assert_array_equal(loaded.queries, split.queries)
    other = make_split(STANDARD_LABELS, protocol="standard", seed=5, parts=parts)
    assert set(STANDARD_LABELS[other.val]) != val_classes or not np.array_equal(other.val, split.val)


def test_standard_needs_the_dataset_split_and_only_it_uses_one():
    with pytest.raises(ValueError, match="this dataset has none; use protocol closed or open"):
        make_split(STANDARD_LABELS, protocol="standard")
    with pytest.raises(ValueError, match=r"has one \(train, test\); use protocol standard"):
        make_split(STANDARD_LABELS, protocol="closed", parts={"train": TRAIN_PART, "test": np.arange(1)})
    few = {"train": np.flatnonzero(STANDARD_LABELS < 3), "test": np.flatnonzero(STANDARD_LABELS >= 3)}
    with pytest.raises(ValueError, match="training part has 3 classes"):
        make_split(STANDARD_LABELS, protocol="standard", parts=few)
    none = make_split(STANDARD_LABELS, protocol="standard", parts=few, val_fraction=0.0)
    assert none.val.size == 0


def test_standard_validation_split_scores_on_the_held_out_classes():
    from metricbench.data import validation_split

    parts = {"train": TRAIN_PART, "test": np.flatnonzero(STANDARD_LABELS >= 12)}
    split = make_split(STANDARD_LABELS, protocol="standard", seed=4, parts=parts)
    inner = validation_split(split, STANDARD_LABELS)
    np.testing.assert_array_equal(inner.test, split.val)  # trials are scored on the validation classes
    assert not np.isin(np.concatenate([inner.train, inner.val]), split.test).any()
    classes = [set(STANDARD_LABELS[rows]) for rows in (inner.train, inner.val, inner.test)]
    assert not (classes[0] & classes[1]) and not (classes[0] & classes[2]) and len(classes[1]) == 2  # 25% of 9

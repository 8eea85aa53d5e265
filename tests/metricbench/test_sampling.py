import numpy as np
import pytest

from metricbench.sampling import default_m_per_class, epoch_batches

LABELS = np.repeat(np.arange(10), 37)


def test_random_batches_cover_each_row_once_and_depend_on_seed_and_epoch():
    batches = epoch_batches(LABELS, batch_size=64, sampler="random", seed=0, epoch=0)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(len(LABELS)))
    again = epoch_batches(LABELS, batch_size=64, sampler="random", seed=0, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(rows, np.concatenate(epoch_batches(LABELS, batch_size=64, sampler="random", seed=0, epoch=1)))
    assert not np.array_equal(rows, np.concatenate(epoch_batches(LABELS, batch_size=64, sampler="random", seed=1, epoch=0)))


def test_m_per_class_batches_have_m_of_each_class():
    batches = epoch_batches(LABELS, batch_size=32, sampler="m-per-class", seed=0, epoch=0, m_per_class=4)
    assert len(batches) == len(LABELS) // 32
    for b in batches:
        counts = np.bincount(LABELS[b], minlength=10)
        assert sorted(set(counts.tolist()) - {0}) == [4] and (counts > 0).sum() == 8


def test_m_per_class_is_deterministic_and_leaves_global_numpy_alone():
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    a = epoch_batches(LABELS, batch_size=32, sampler="m-per-class", seed=5, epoch=2)
    b = epoch_batches(LABELS, batch_size=32, sampler="m-per-class", seed=5, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.random.rand() == expected_next


def test_default_m_fills_a_batch():
    assert default_m_per_class(128, 10) == 16
    assert default_m_per_class(128, 100) == 2
    assert default_m_per_class(32, 5) == 8


def test_impossible_m_per_class_says_what_would_work():
    with pytest.raises(ValueError, match=r"m_per_class=4 .* got batch_size=128, 10 classes \(try m_per_class=16\)"):
        epoch_batches(LABELS, batch_size=128, sampler="m-per-class", seed=0, epoch=0, m_per_class=4)

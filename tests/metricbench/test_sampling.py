import numpy as np
import pytest

from metricbench.sampling import default_m_per_class, epoch_batches, rank_share, rows_per_rank

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


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("sampler", ["random", "m-per-class"])
def test_rank_shares_in_rank_order_are_the_single_process_batch(sampler, world_size):
    batches = epoch_batches(LABELS, batch_size=32, sampler=sampler, seed=3, epoch=1, m_per_class=4)
    for batch in batches:
        shares = [rank_share(batch, rank=r, world_size=world_size) for r in range(world_size)]
        assert np.array_equal(np.concatenate(shares), batch)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
        if len(batch) == 32:  # full batches split equally, so m-per-class batches keep their composition
            assert {len(s) for s in shares} == {rows_per_rank(32, world_size)}
    assert len(batches[-1]) == (len(LABELS) % 32 if sampler == "random" else 32)  # 370 rows: a last random batch of 18


def test_rank_share_of_an_uneven_batch_differs_by_one_row():
    shares = [rank_share(np.arange(7), rank=r, world_size=2) for r in range(2)]
    assert [s.tolist() for s in shares] == [[0, 1, 2, 3], [4, 5, 6]]


def test_rank_share_refuses_bad_ranks_and_too_small_batches():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        rank_share(np.arange(8), rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"at least one row per process \(4\), got 3 rows"):
        rank_share(np.arange(3), rank=0, world_size=4)


def test_batch_size_must_be_a_multiple_of_the_number_of_processes():
    assert rows_per_rank(64, 4) == 16 and rows_per_rank(5, 1) == 5
    with pytest.raises(ValueError, match=r"multiple of the number of processes \(4\) .* batch_size=30 \(try 28 or 32\)"):
        rows_per_rank(30, 4)


def test_m_per_class_with_sop_sized_classes():
    # SOP: 2 to 12 photos per product; with m = 4, a class of 2 photos fills its 4 places by drawing its photos with
    # replacement (PML), which stream as different random crops (each position of an epoch has its own seed).
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(500), rng.integers(2, 13, size=500))
    batches = epoch_batches(labels, batch_size=32, sampler="m-per-class", seed=0, epoch=0, m_per_class=4)
    assert len(batches) == len(labels) // 32
    for batch in batches:
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(batch) == 32 and len(classes) == 8 and (counts == 4).all()
    sizes = np.bincount(labels)
    filled = [(batch[labels[batch] == c]) for batch in batches for c in np.unique(labels[batch]) if sizes[c] == 2]
    assert filled and all(len(rows) == 4 and len(np.unique(rows)) <= 2 for rows in filled)  # drawn with replacement

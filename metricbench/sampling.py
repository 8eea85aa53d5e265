"""Which rows go into which batch, epoch by epoch: a pure function of (labels, seed, epoch), so a
resumed run sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
from pytorch_metric_learning.samplers import MPerClassSampler
from pytorch_metric_learning.utils import common_functions as pml_common

__all__ = ["default_m_per_class", "epoch_batches", "rank_share", "rows_per_rank"]


@contextlib.contextmanager
def _pml_random_state(seed: int, epoch: int) -> Iterator[None]:
    # MPerClassSampler draws from PML's module-level NUMPY_RANDOM (np.random by default);
    # give it a private, seeded generator for the duration of one epoch.
    saved = pml_common.NUMPY_RANDOM
    pml_common.NUMPY_RANDOM = np.random.RandomState([seed, epoch])
    try:
        yield
    finally:
        pml_common.NUMPY_RANDOM = saved


def default_m_per_class(batch_size: int, num_classes: int) -> int:
    """Smallest m ≥ 2 that divides `batch_size` and lets `num_classes` classes fill a batch."""
    for m in range(2, batch_size + 1):
        if batch_size % m == 0 and m * num_classes >= batch_size:
            return m
    return batch_size


def epoch_batches(
    labels: np.ndarray, *, batch_size: int, sampler: str, seed: int, epoch: int, m_per_class: int | None = None
) -> list[np.ndarray]:
    """Row indices of each batch of one epoch.

    Args:
        labels: (N,) int labels of the training rows.
        batch_size: rows per batch.
        sampler: `random` (a permutation; a last batch of one row is dropped) or `m-per-class`
            (pytorch-metric-learning's MPerClassSampler: batch_size/m classes, m rows each; about N rows per epoch).
        seed, epoch: together they fix the order.
        m_per_class: m; default `default_m_per_class`.

    Returns:
        List of (b,) int64 index arrays.
    """
    n = len(labels)
    if sampler == "random":
        order = np.random.default_rng([seed, epoch]).permutation(n)
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        return [b for b in batches if len(b) > 1]  # one row has no pairs and breaks batch norm
    if sampler != "m-per-class":
        raise ValueError(f"sampler must be random or m-per-class, got {sampler!r}")
    num_classes = len(np.unique(labels))
    m = m_per_class or default_m_per_class(batch_size, num_classes)
    if batch_size % m or m * num_classes < batch_size:
        raise ValueError(
            f"m_per_class={m} needs batch_size divisible by m and m × classes ≥ batch_size; got batch_size="
            f"{batch_size}, {num_classes} classes (try m_per_class={default_m_per_class(batch_size, num_classes)})"
        )
    length = max(batch_size, n - n % batch_size)
    with _pml_random_state(seed, epoch):
        order = np.fromiter(MPerClassSampler(labels, m, batch_size=batch_size, length_before_new_iter=length), dtype=np.int64)
    return np.split(order, len(order) // batch_size)


def rows_per_rank(batch_size: int, world_size: int) -> int:
    """Rows each of `world_size` processes takes from a global batch of `batch_size`.

    Raises:
        ValueError: `batch_size` is not a multiple of `world_size` (ranks would then work on shares of
            different sizes at every step).
    """
    if batch_size % world_size:
        lower, upper = batch_size - batch_size % world_size, batch_size + world_size - batch_size % world_size
        suggestion = f"{lower} or {upper}" if lower >= 2 else f"{upper}"
        raise ValueError(f"train.batch_size must be a multiple of the number of processes ({world_size}) so that each "
                         f"takes an equal share of a global batch; got batch_size={batch_size} (try {suggestion})")
    return batch_size // world_size


def rank_share(batch: np.ndarray, *, rank: int, world_size: int) -> np.ndarray:
    """Rank `rank`'s contiguous share of a global batch; the shares of ranks 0, 1, … in order are the batch.

    Every rank computes the same global batches from `epoch_batches` (same seed and epoch) and keeps its
    share, so a global batch has exactly the rows, and the m-per-class composition, of the single-process
    batch. Shares are equal when `world_size` divides the batch (every full batch) and otherwise differ by
    one row (the random sampler's last batch of an epoch).

    Args:
        batch: (B,) row indices, B ≥ world_size.
        rank: 0 … world_size − 1.
        world_size: number of processes.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if len(batch) < world_size:
        raise ValueError(f"batch must hold at least one row per process ({world_size}), got {len(batch)} rows")
    return batch if world_size == 1 else np.array_split(batch, world_size)[rank]

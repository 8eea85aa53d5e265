"""Train/val/test splits of a dataset's rows: closed-set (same classes), open-set (class-disjoint), or the
dataset's own split (``standard``: CUB, Cars, SOP, In-Shop), validated on held-out training classes.

A split is a set of sorted row indices, so it is tiny, can be saved beside a run and reapplied to the same data.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metricbench.data.numpy_files import read_arrays

from ..atomic import atomic_write

__all__ = ["PROTOCOLS", "Split", "load_split", "make_split", "save_split", "validation_split"]

PROTOCOLS = ("closed", "open", "standard")
# Validation shares when `val_fraction` is None: of the rows (closed, open), of the training classes (standard).
DEFAULT_VAL_FRACTION = {"closed": 0.1, "open": 0.1, "standard": 0.25}
_PARTS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices of a train/val/test split.

    Attributes:
        protocol: ``"closed"`` (val and test share the training classes), ``"open"`` (test classes are unseen)
            or ``"standard"`` (the dataset's own split; val classes unseen in training).
        seed: Seed of the random generator that drew the split.
        train: Sorted int64 row indices (n_train,) into the dataset.
        val: Sorted int64 row indices (n_val,).
        test: Sorted int64 row indices (n_test,).
        fingerprint: :attr:`Dataset.fingerprint <metricbench.data.Dataset.fingerprint>` of the data the split was
            made for, when known; saved with the split so that applying it to other data can be caught.
        queries: For query/gallery datasets (In-Shop), the sorted test rows that are queries; the other test
            rows are the gallery they are searched against. None: every test row is a query against all the
            others (leave-one-out).
    """

    protocol: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    fingerprint: str | None = None
    queries: np.ndarray | None = None

    @property
    def gallery(self) -> np.ndarray | None:
        """The test rows that are not queries, or None for leave-one-out."""
        return None if self.queries is None else np.setdiff1d(self.test, self.queries, assume_unique=True)

    def __repr__(self) -> str:
        return (
            f"Split(protocol={self.protocol!r}, seed={self.seed}, train={self.train.size}, "
            f"val={self.val.size}, test={self.test.size})"
        )


def make_split(
    labels: np.ndarray,
    *,
    protocol: str = "closed",
    seed: int = 0,
    val_fraction: float | None = None,
    test_fraction: float = 0.2,
    parts: Mapping[str, np.ndarray] | None = None,
) -> Split:
    """Split rows into disjoint train/val/test sets that together cover every row.

    ``closed``: stratified over the same classes. Each class (rows shuffled by ``np.random.default_rng(seed)``)
    gives ``round(n * val_fraction)`` rows to val and ``round(n * test_fraction)`` to test, rounding halves up,
    and keeps at least one row for training; when the two rounded counts would take every row, val gives up rows
    first, then test. A class with few rows may therefore get 0 val or test rows (a class of 1 row is
    train-only), and the totals may differ from ``N * fraction`` by up to half a row per class.

    ``open`` (class-disjoint, as in the metric-learning literature): classes are sorted by id; the first
    ``ceil(C / 2)`` are train/val classes, with val a stratified ``val_fraction`` of their rows as above; every row
    of the remaining classes goes to test. ``test_fraction`` is ignored (its range is still checked). Needs at
    least 4 classes so that each side has at least 2.

    ``standard`` (the dataset's own split, ``parts``): test is ``parts["test"]`` (or ``query`` + ``gallery``,
    with ``queries`` set); validation takes every row of ``round(C * val_fraction)`` of the C training classes
    (at least 2, and at least 2 left to train), drawn with the seed: class-disjoint, as the test classes are.

    Args:
        labels: (N,) integer class ids (any integers; they need not be contiguous).
        protocol: ``"closed"`` or ``"open"``.
        seed: Non-negative seed; the same labels, arguments and seed give the same split.
        val_fraction: Fraction of rows (of the training classes, for ``open``; of the training classes
            themselves for ``standard``) for validation, in [0, 1); None: ``DEFAULT_VAL_FRACTION[protocol]``.
        test_fraction: Fraction of rows for test, in [0, 1); ``val_fraction + test_fraction`` must be < 1.
        parts: The dataset's own split (``ImageFiles.parts``), required by ``standard`` and only by it.

    Returns:
        The split, with sorted int64 index arrays.

    Raises:
        TypeError: ``labels`` is not integer, or a number argument has the wrong type.
        ValueError: Bad shape, empty labels, unknown protocol, fractions out of range, or fewer than 4 classes
            for ``open``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integer class ids, got dtype {labels.dtype}")
    if labels.size == 0:
        raise ValueError("labels must not be empty, got shape (0,)")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    if (protocol == "standard") != bool(parts):
        raise ValueError("protocol 'standard' uses the dataset's own split, and only it does: this dataset has "
                         + ("none; use protocol closed or open" if protocol == "standard" else
                            f"one ({', '.join(parts)}); use protocol standard (or auto)"))
    if val_fraction is None:
        val_fraction = DEFAULT_VAL_FRACTION[protocol]
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise TypeError(f"{name} must be a float, got {type(value).__name__}")
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    rng = np.random.default_rng(int(seed))
    classes = np.unique(labels)
    if protocol == "standard":
        train, val = _held_out_classes(labels, parts["train"], rng, val_fraction)
        queries = parts.get("query")
        test = np.concatenate([parts["query"], parts["gallery"]]) if queries is not None else parts["test"]
        return Split(protocol=protocol, seed=int(seed), train=_sorted(train), val=_sorted(val), test=_sorted(test),
                     queries=None if queries is None else _sorted(queries))
    if protocol == "closed":
        if val_fraction + test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 so that training keeps rows, "
                f"got {val_fraction} + {test_fraction}"
            )
        train, val, test = _stratified(labels, classes, rng, val_fraction, test_fraction)
    else:
        if classes.size < 4:
            raise ValueError(
                f"protocol 'open' needs at least 4 classes (the first half trains, the second half is held out for "
                f"test, at least 2 on each side), got {classes.size}"
            )
        seen = classes[: math.ceil(classes.size / 2)]
        train, val, _ = _stratified(labels, seen, rng, val_fraction, 0.0)
        test = np.flatnonzero(~np.isin(labels, seen))
    return Split(protocol=protocol, seed=int(seed), train=_sorted(train), val=_sorted(val), test=_sorted(test))


def validation_split(split: Split, labels: np.ndarray, *, val_fraction: float | None = None,
                     test_fraction: float = 0.2) -> Split:
    """A split for hyperparameter search that never touches `split.test`.

    The train and val rows of `split` are split again with the same protocol and seed (closed:
    stratified; open: their classes halved, so the held-out classes are unseen in training as well);
    what that inner split calls `test` is the validation set to score trials on. For `standard`, the
    validation classes of `split` are that set, and the training classes give up another
    `val_fraction` of their classes for validation. Row indices refer to the full dataset, like `split`'s.
    """
    if split.protocol == "standard":
        fraction = DEFAULT_VAL_FRACTION["standard"] if val_fraction is None else val_fraction
        train, val = _held_out_classes(labels, split.train, np.random.default_rng(split.seed), fraction)
        return Split(protocol=split.protocol, seed=split.seed, train=_sorted(train), val=_sorted(val),
                     test=split.val, fingerprint=split.fingerprint)
    development = np.concatenate([split.train, split.val])
    inner = make_split(labels[development], protocol=split.protocol, seed=split.seed, val_fraction=val_fraction,
                       test_fraction=test_fraction)
    return Split(protocol=split.protocol, seed=split.seed, train=_sorted(development[inner.train]),
                 val=_sorted(development[inner.val]), test=_sorted(development[inner.test]),
                 fingerprint=split.fingerprint)


def _held_out_classes(labels: np.ndarray, rows: np.ndarray, rng: np.random.Generator,
                      fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) rows of `rows`: val holds every row of round(C * fraction) of their C classes, at least 2
    (retrieval needs two classes), leaving at least 2 to train; 0 when `fraction` is 0."""
    classes = np.unique(labels[rows])
    count = math.floor(classes.size * fraction + 0.5)
    if fraction > 0:
        if classes.size < 4:
            raise ValueError(f"the dataset's training part has {classes.size} classes; holding validation classes "
                             "out of it needs at least 4 (set data.val_fraction = 0 for none)")
        count = min(max(count, 2), classes.size - 2)
    held_out = np.isin(labels[rows], rng.choice(classes, size=count, replace=False))
    return rows[~held_out], rows[held_out]


def _stratified(
    labels: np.ndarray, classes: np.ndarray, rng: np.random.Generator, val_fraction: float, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: shuffle its rows, take val then test, leave at least one row for train."""
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    # Rows grouped by class in one sort, not one scan per class: datasets such as SOP have ~10^4 classes.
    order = np.argsort(labels, kind="stable")
    grouped = labels[order]
    starts, ends = np.searchsorted(grouped, classes, side="left"), np.searchsorted(grouped, classes, side="right")
    for start, end in zip(starts.tolist(), ends.tolist()):
        rows = rng.permutation(order[start:end])
        n = rows.size
        n_val, n_test = math.floor(n * val_fraction + 0.5), math.floor(n * test_fraction + 0.5)
        excess = max(0, n_val + n_test - (n - 1))  # rows that must go back to train
        cut_val = min(excess, n_val)
        n_val, n_test = n_val - cut_val, n_test - (excess - cut_val)
        parts[1].append(rows[:n_val])
        parts[2].append(rows[n_val : n_val + n_test])
        parts[0].append(rows[n_val + n_test :])
    train, val, test = (np.concatenate(p) if p else np.empty(0, dtype=np.int64) for p in parts)
    return train, val, test


def _sorted(rows: np.ndarray) -> np.ndarray:
    return np.sort(rows.astype(np.int64, copy=False))


def save_split(split: Split, path: str | os.PathLike[str]) -> None:
    """Save a split as an NPZ file, atomically (with :func:`metricbench.atomic.atomic_write`).

    Args:
        split: The split to save.
        path: Destination file; its folder must exist. An existing file is replaced.

    Raises:
        TypeError: ``split`` is not a :class:`Split`.
        FileNotFoundError: The destination folder does not exist.
    """
    if not isinstance(split, Split):
        raise TypeError(f"split must be a Split, got {type(split).__name__}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder for the split file not found: {path.parent}")
    atomic_write(path, lambda handle: np.savez(
        handle, protocol=np.array(split.protocol), seed=np.int64(split.seed),
        train=split.train, val=split.val, test=split.test, fingerprint=np.array(split.fingerprint or ""),
        **({} if split.queries is None else {"queries": split.queries}),
    ))


def load_split(path: str | os.PathLike[str]) -> Split:
    """Load a split written by :func:`save_split`, checking that it is well formed.

    Args:
        path: The NPZ file.

    Returns:
        The split; its ``fingerprint`` is None when the file has none (files written before it was stored).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not a split file, or its indices are not sorted, disjoint, non-negative
            integers covering ``0..N-1``. The message names the file.
        InputTypeError: An array of the file holds Python objects.
    """
    path = Path(path)
    arrays = read_arrays(path, what="split file", required=("protocol", "seed", *_PARTS),
                          optional=("fingerprint", "queries"))
    protocol, seed = arrays["protocol"], arrays["seed"]
    parts = {k: arrays[k] for k in _PARTS}
    fingerprint = arrays.get("fingerprint", np.array(""))
    if fingerprint.shape != () or fingerprint.dtype.kind != "U":
        raise ValueError(
            f"{path}: fingerprint must be a str scalar, got dtype {fingerprint.dtype} shape {fingerprint.shape}"
        )
    if protocol.shape != () or protocol.dtype.kind != "U" or str(protocol) not in PROTOCOLS:
        raise ValueError(f"{path}: protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    protocol = str(protocol)
    if seed.shape != () or seed.dtype.kind not in "iu":
        raise ValueError(f"{path}: seed must be an integer scalar, got dtype {seed.dtype} shape {seed.shape}")
    for name, rows in parts.items():
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ValueError(f"{path}: {name} must be 1-D integer indices, got dtype {rows.dtype} shape {rows.shape}")
        parts[name] = rows = rows.astype(np.int64)  # before np.diff: unsigned differences would wrap around
        if rows.size > 1 and not (np.diff(rows) > 0).all():
            raise ValueError(f"{path}: {name} indices must be sorted and unique")
    rows = np.concatenate(list(parts.values()))
    if not np.array_equal(np.sort(rows), np.arange(rows.size)):
        raise ValueError(f"{path}: train, val and test must be disjoint and cover rows 0..{rows.size - 1}")
    queries = arrays.get("queries")
    if queries is not None:
        if queries.ndim != 1 or queries.dtype.kind not in "iu" or not np.isin(queries, parts["test"]).all():
            raise ValueError(f"{path}: queries must be 1-D integer indices of test rows, got dtype {queries.dtype} "
                             f"shape {queries.shape}")
        queries = np.sort(queries.astype(np.int64))
    return Split(protocol=protocol, seed=int(seed), **parts, fingerprint=str(fingerprint) or None, queries=queries)

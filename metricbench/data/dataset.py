"""The in-memory dataset every loader returns, and its one validation point.

Every source (built-in or user file) ends in :func:`make_dataset`, so the rest of metricbench can rely on one
contract: ``x`` is float32 and C-contiguous, ``y`` holds contiguous class ids ``0..num_classes-1``, and
``class_names[y[i]]`` is the original label of sample ``i``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from metricbench.errors import InputTypeError

__all__ = ["Dataset", "make_dataset"]

_INT_STRING = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled set of images or feature vectors.

    Build one with :func:`make_dataset`, which validates and normalises its inputs; the constructor itself checks
    nothing.

    Attributes:
        name: Short name of the dataset (``"mnist5k"``, a file's stem, ...).
        x: Samples, float32 and C-contiguous. Images have shape (N, C, H, W) with values scaled to [0, 1];
            vectors have shape (N, F) and keep their raw values.
        y: Class ids, int64 of shape (N,), contiguous in ``0..num_classes-1``.
        class_names: ``num_classes`` strings; ``class_names[y[i]]`` is sample ``i``'s original label.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]

    @cached_property
    def fingerprint(self) -> str:
        """32 hex digits (BLAKE2b, 16 bytes) over ``x``'s dtype, shape and values, ``y`` and ``class_names``.

        Equal for the same data read again, whatever its name or path; a run stores it beside its split so that
        reusing the split on other data is caught. Computed once, on first use (about 16 ms for 5000x784 float32
        on one core).
        """
        hasher = hashlib.blake2b(digest_size=16)
        for array in (self.x, self.y):
            array = np.ascontiguousarray(array)  # make_dataset's arrays already are: no copy
            hasher.update(f"{array.dtype.str}{array.shape};".encode())
            hasher.update(memoryview(array).cast("B"))
        hasher.update(json.dumps(list(self.class_names)).encode())  # ASCII with escapes: unambiguous for any str
        return hasher.hexdigest()

    @property
    def kind(self) -> str:
        """``"image"`` when ``x`` is (N, C, H, W), else ``"vector"``."""
        return "image" if self.x.ndim == 4 else "vector"

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, kind={self.kind!r}, x={tuple(self.x.shape)}, "
            f"num_classes={self.num_classes})"
        )


def make_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray | Sequence[object],
    class_names: Sequence[object] | np.ndarray | None = None,
    *,
    names: tuple[str, str] = ("x", "y"),
) -> Dataset:
    """Validate and normalise samples and labels into a :class:`Dataset`.

    Args:
        name: Dataset name.
        x: Numeric samples: (N, F) vectors, (N, C, H, W) images, or (N, H, W) images (a channel axis is added).
            Cast to float32 C-contiguous; values are not rescaled here.
        y: (N,) labels of any comparable type (ints, strings, ...). Without ``class_names`` they are remapped to
            contiguous ids in sorted order of the original labels (numeric order for numbers and for strings that
            are all integers, such as folder names ``"2"``, ``"10"``), and ``class_names`` become the labels as
            strings. With ``class_names``, ``y`` must hold integer ids in ``[0, len(class_names))``.
        class_names: Optional names for integer ids in ``y``. Only classes present in ``y`` are kept; their ids are
            remapped to ``0..k-1`` in increasing order of the original id, and their names kept alongside.
        names: What messages call ``x`` and ``y``: the caller's names for them, such as
            ``("--embeddings", "--labels")``.

    Returns:
        The validated dataset.

    Raises:
        InputTypeError: (a TypeError) ``x`` is not numeric, labels are not mutually comparable, or ``y`` is not
            integer while ``class_names`` is given.
        TypeError: ``name`` or ``names`` is not a str (a str pair).
        ValueError: Bad shapes, mismatched lengths, NaN/Inf in ``x``, fewer than 2 classes, no samples, ids out of
            range, or duplicate class names.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not (isinstance(names, tuple) and len(names) == 2 and all(isinstance(n, str) for n in names)):
        raise TypeError(f"names must be a pair of str such as ('x', 'y'), got {names!r}")
    x_name, y_name = names
    x = _check_x(x, x_name)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{y_name} must have shape (N,), got {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same number of rows, got {x_name} {x.shape} and {y_name} {y.shape}"
        )
    if class_names is None:
        ids, kept = _ids_from_labels(y, y_name)
    else:
        ids, kept = _ids_from_class_names(y, class_names, y_name)
    if len(kept) < 2:
        raise ValueError(f"{y_name} has a single class ({kept[0]!r}); metric learning needs at least 2")
    return Dataset(name=name, x=x, y=ids, class_names=kept)


def _check_x(x: np.ndarray, x_name: str) -> np.ndarray:
    """Returns ``x`` as float32 C-contiguous (N, F) or (N, C, H, W), or raises."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InputTypeError(f"{x_name} must be numeric (bool, int or float), got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise ValueError(
            f"{x_name} must be 2-D (N, F) or 4-D (N, C, H, W) (3-D (N, H, W) gets a channel axis), got {x.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{x_name} must have at least 1 sample, got {x.shape}")
    with np.errstate(over="ignore"):  # values beyond float32 become Inf and are reported just below
        x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        bad_rows = ~finite.reshape(x.shape[0], -1).all(axis=1)
        count = int(finite.size - np.count_nonzero(finite))
        raise ValueError(
            f"{x_name} must be finite, got {count} NaN/Inf values (after conversion to float32); "
            f"first in row {int(np.argmax(bad_rows))}"
        )
    return x


def _ids_from_labels(y: np.ndarray, y_name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Maps arbitrary labels to contiguous ids in sorted label order."""
    if y.dtype.kind == "f":
        if np.isnan(y).any():
            raise ValueError(f"{y_name} must not contain NaN, got {int(np.isnan(y).sum())} NaN labels")
        if np.array_equal(y, np.round(y)):
            y = y.astype(np.int64)  # 3.0 -> "3": integral floats come from CSV columns with a gap, not from intent
    try:
        uniques, inverse = np.unique(y, return_inverse=True)
    except TypeError as error:
        kinds = sorted({type(v).__name__ for v in y.tolist()})
        raise InputTypeError(
            f"{y_name} labels must be mutually comparable (all numbers or all strings), got {kinds}"
        ) from error
    names = [str(v) for v in uniques.tolist()]
    if uniques.dtype.kind in "UO" and all(_INT_STRING.fullmatch(n) for n in names):
        order = sorted(range(len(names)), key=lambda i: (int(names[i]), names[i]))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        inverse = rank[inverse]
        names = [names[i] for i in order]
    return np.ascontiguousarray(inverse.reshape(-1), dtype=np.int64), tuple(names)


def _ids_from_class_names(
    y: np.ndarray, class_names: Sequence[object] | np.ndarray, y_name: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Keeps the classes present in integer ``y`` and remaps them to contiguous ids."""
    array = np.asarray(class_names)
    if array.ndim != 1:
        raise ValueError(f"class_names must be 1-D, got shape {array.shape}")
    if array.dtype.kind == "S":
        # bytes names, e.g. from an NPZ written by Python 2 era tools; bytes that are not UTF-8 are shown escaped
        # (b"caf\xe9" -> "caf\\xe9"), as list_image_folder does for folder names
        array = np.char.decode(array, "utf-8", "backslashreplace")
    names = [str(n) for n in array.tolist()]
    if len(set(names)) != len(names):
        duplicate = next(n for i, n in enumerate(names) if n in names[:i])
        raise ValueError(f"class_names must be unique, got {duplicate!r} more than once")
    if y.dtype.kind not in "iu":
        raise InputTypeError(f"{y_name} must hold integer class ids when class_names is given, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= len(names)):
        raise ValueError(
            f"{y_name} must be in [0, {len(names)}) (len(class_names)), got min {int(y.min())} and max {int(y.max())}"
        )
    present = np.unique(y)
    lookup = np.full(len(names), -1, dtype=np.int64)
    lookup[present] = np.arange(present.size)
    return np.ascontiguousarray(lookup[y]), tuple(names[i] for i in present.tolist())

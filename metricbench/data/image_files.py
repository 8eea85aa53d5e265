"""Photos that stay on disk: the dataset every streamed source returns, and its one validation point.

In-memory sources give a :class:`~metricbench.data.dataset.Dataset` (one float32 array); photo benchmarks of
any size give an :class:`ImageFiles`: paths, labels and the dataset's own split, decoded batch by batch by
:mod:`metricbench.data.image_loading` while training. Both share ``name``, ``y``, ``class_names``,
``num_classes``, ``fingerprint`` and ``len()``, which is all that splits, samplers and evaluation read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from .dataset import _ids_from_class_names, _ids_from_labels

__all__ = ["OFFICIAL_PARTS", "ImageFiles", "make_image_files"]

# The parts a dataset's own split may name: train/test (CUB, Cars, SOP, a table's split column) or
# train/query/gallery (In-Shop: test queries are searched against the gallery, not leave-one-out).
OFFICIAL_PARTS = (("train", "test"), ("train", "query", "gallery"))


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """A labelled set of image files, read on demand.

    Build one with :func:`make_image_files`, which validates its inputs; the constructor checks nothing.

    Attributes:
        name: Short name (``"cub200"``, a folder's name, ...).
        root: Folder the paths are relative to.
        paths: N paths relative to ``root`` (``str``), in the order of the dataset's own lists.
        y: int64 class ids (N,), contiguous in ``0..num_classes-1``.
        class_names: ``class_names[y[i]]`` is image ``i``'s class, as the dataset's files name it.
        parts: The dataset's own split as sorted int64 row arrays: ``{"train", "test"}`` or
            ``{"train", "query", "gallery"}``; empty when the dataset has none (a folder of class folders).
        boxes: Optional float64 (N, 4) boxes ``(x, y, width, height)`` in pixels, to crop to when asked.
        metadata: Optional extra (N,) columns (SOP's ``super_class``), written beside projector exports.
        recall_ks: The K of Recall@K that papers report for this dataset.
    """

    name: str
    root: Path
    paths: tuple[str, ...]
    y: np.ndarray
    class_names: tuple[str, ...]
    parts: Mapping[str, np.ndarray] = field(default_factory=dict)
    boxes: np.ndarray | None = None
    metadata: Mapping[str, np.ndarray] = field(default_factory=dict)
    recall_ks: tuple[int, ...] = (1, 2, 4, 8)

    kind = "files"

    @cached_property
    def fingerprint(self) -> str:
        """32 hex digits (BLAKE2b) over the relative paths, labels, class names, split and boxes.

        The files' bytes are not read (120,053 SOP photos would take minutes): a run refuses a listing that
        changed, not a photo edited in place.
        """
        hasher = hashlib.blake2b(digest_size=16)
        hasher.update(json.dumps([list(self.paths), list(self.class_names)]).encode())
        for name in sorted(self.parts):
            hasher.update(name.encode())
            hasher.update(memoryview(np.ascontiguousarray(self.parts[name], dtype=np.int64)).cast("B"))
        hasher.update(memoryview(np.ascontiguousarray(self.y, dtype=np.int64)).cast("B"))
        if self.boxes is not None:
            hasher.update(memoryview(np.ascontiguousarray(self.boxes, dtype=np.float64)).cast("B"))
        return hasher.hexdigest()

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    def path(self, row: int) -> Path:
        """Absolute path of image ``row``."""
        return self.root / self.paths[row]

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={len(v)}" for k, v in self.parts.items())
        return (f"ImageFiles(name={self.name!r}, root={str(self.root)!r}, images={len(self)}, "
                f"num_classes={self.num_classes}{', ' + parts if parts else ''})")


def make_image_files(
    name: str,
    root: str | os.PathLike[str],
    paths: Sequence[str],
    labels: Sequence[object] | np.ndarray,
    *,
    class_names: Sequence[object] | None = None,
    parts: Mapping[str, Sequence[int] | np.ndarray] | None = None,
    boxes: np.ndarray | None = None,
    metadata: Mapping[str, Sequence[object] | np.ndarray] | None = None,
    recall_ks: tuple[int, ...] = (1, 2, 4, 8),
    source: str | None = None,
    check_files: bool = True,
) -> ImageFiles:
    """Validate a listing of image files into an :class:`ImageFiles`.

    Args:
        name: Dataset name.
        root: Folder the paths are relative to.
        paths: (N,) relative paths.
        labels: (N,) labels, as for :func:`~metricbench.data.make_dataset`: any comparable labels (remapped in
            sorted order), or integer ids into ``class_names``.
        class_names: Names of integer ``labels``; only classes present are kept, in id order.
        parts: The dataset's own split (see :data:`OFFICIAL_PARTS`): row indices, disjoint and covering every row.
        boxes: (N, 4) ``(x, y, width, height)`` crop boxes, positive width and height.
        metadata: Extra (N,) columns.
        recall_ks: The dataset's usual Recall@K.
        source: The list file the rows come from, named in messages (default: ``root``).
        check_files: Check that every listed file exists (one ``stat`` each: about 1 s for SOP's 120,053).

    Raises:
        FileNotFoundError: ``root`` or a listed image is missing (the first is named, with its row).
        ValueError: Lengths differ, a class has no name, parts overlap or miss rows, a bad box, fewer than 2
            classes.
    """
    root = Path(root)
    where = source or str(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    paths = tuple(str(p) for p in paths)
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(paths):
        raise ValueError(f"{where}: expected one label per image ({len(paths)}), got labels of shape {y.shape}")
    if not paths:
        raise ValueError(f"{where}: no images listed")
    ids, kept = _ids_from_labels(y, "labels") if class_names is None else _ids_from_class_names(
        y, class_names, "labels")
    if len(kept) < 2:
        raise ValueError(f"{where}: a single class ({kept[0]!r}); metric learning needs at least 2")
    split = _check_parts(parts or {}, len(paths), where)
    box_array = None if boxes is None else _check_boxes(boxes, len(paths), where)
    extra = {}
    for key, column in (metadata or {}).items():
        column = np.asarray(column)
        if column.shape != (len(paths),):
            raise ValueError(f"{where}: metadata column {key!r} must have shape ({len(paths)},), got {column.shape}")
        extra[key] = column
    if check_files:
        for row, path in enumerate(paths):
            if not os.path.isfile(root / path):
                raise FileNotFoundError(f"{where}: image {row + 1} of the list, {path!r}, is not on disk "
                                        f"(looked for {root / path})")
    return ImageFiles(name=name, root=root, paths=paths, y=ids, class_names=kept, parts=split, boxes=box_array,
                      metadata=extra, recall_ks=tuple(recall_ks))


def _check_parts(parts: Mapping[str, Sequence[int] | np.ndarray], num_rows: int, where: str) -> dict[str, np.ndarray]:
    if not parts:
        return {}
    if tuple(parts) not in OFFICIAL_PARTS:
        raise ValueError(f"{where}: a dataset's split must have parts {' or '.join(map(str, OFFICIAL_PARTS))}, "
                         f"got {tuple(parts)}")
    arrays = {name: np.sort(np.asarray(rows, dtype=np.int64)) for name, rows in parts.items()}
    every = np.concatenate(list(arrays.values()))
    if not np.array_equal(np.sort(every), np.arange(num_rows)):
        raise ValueError(f"{where}: the parts {', '.join(arrays)} must be disjoint and cover all {num_rows} images")
    for name, rows in arrays.items():
        if rows.size == 0:
            raise ValueError(f"{where}: the dataset's {name} part is empty")
    return arrays


def _check_boxes(boxes: np.ndarray, num_rows: int, where: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape != (num_rows, 4):
        raise ValueError(f"{where}: boxes must have shape ({num_rows}, 4) (x, y, width, height), got {boxes.shape}")
    bad = ~(np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, :2] >= 0).all(axis=1))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{where}: box of image {row + 1} must have x, y >= 0 and width, height > 0, "
                         f"got {boxes[row].tolist()}")
    return boxes

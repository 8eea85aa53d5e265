"""Cars196 (Stanford Cars, Krause et al., 2013) from ``cars_annos.mat`` and ``car_ims/``, streamed from disk.

The metric-learning split of Oh Song et al. (CVPR 2016) is used: classes 1-98 train, 99-196 test. The
annotations' ``test`` flag is the classification split and is not read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .image_files import ImageFiles, make_image_files
from .list_files import find_dataset_folder

__all__ = ["load_cars196"]

_LAYOUT = "Cars196 layout: cars_annos.mat beside car_ims/ (the all-images archive car_ims.tgz)"
_FIELDS = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class")
_TRAIN_CLASSES = 98  # class ids 1..98 train, 99..196 test


def load_cars196(directory: str | os.PathLike[str]) -> ImageFiles:
    """List Cars196's 16,185 photos of 196 car models.

    Boxes: the annotations hold MATLAB's 1-based, inclusive pixel coordinates ``x1..x2``, ``y1..y2``; the box is
    ``(x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1)`` in 0-based pixels, exactly the annotated pixels (a
    coordinate of 0, which 1-based indexing does not have, is taken as pixel 0).

    Args:
        directory: The folder holding ``cars_annos.mat`` and ``car_ims/``, or its parent.

    Returns:
        ``"cars196"`` with paths relative to that folder (``car_ims/000001.jpg``) in annotation order; class
        names from ``class_names`` (``"AM General Hummer SUV 2000"``), ids in class-id order; parts ``train``
        (classes 1-98) and ``test`` (99-196); boxes as above; Recall@1, 2, 4, 8.

    Raises:
        FileNotFoundError: ``cars_annos.mat`` or a listed photo is missing.
        ValueError: The .mat cannot be read, lacks a variable or field (those found are listed), or holds a class
            without a name or a bad box (the annotation is named).
    """
    top, _ = find_dataset_folder(directory, ("cars_annos.mat",), dataset="Cars196", layout=_LAYOUT)
    mat_path = top / "cars_annos.mat"
    mat = _read_mat(mat_path)
    for variable in ("annotations", "class_names"):
        if variable not in mat:
            found = ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "none"
            raise ValueError(f"{mat_path}: variable {variable!r} not found; variables: {found}")
    annotations = np.asarray(mat["annotations"]).ravel()
    fields = annotations.dtype.names or ()
    for field in _FIELDS:
        if field not in fields:
            raise ValueError(f"{mat_path}: annotations have no field {field!r}; fields: {', '.join(fields) or 'none'}")
    if not len(annotations):
        raise ValueError(f"{mat_path}: no annotations")
    names = [_text(value, mat_path, "class_names", row)
             for row, value in enumerate(np.asarray(mat["class_names"]).ravel())]
    paths = [_text(value, mat_path, "relative_im_path", row)
             for row, value in enumerate(annotations["relative_im_path"])]
    x1, y1, x2, y2, class_ids = (_numbers(annotations[field], mat_path, field) for field in _FIELDS[1:])
    bad = (class_ids < 1) | (class_ids > len(names)) | (class_ids != np.round(class_ids))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{mat_path}: annotation {row + 1} ({paths[row]}) has class {class_ids[row]:g}; "
                         f"valid: 1..{len(names)} (class_names has {len(names)} names)")
    class_ids = class_ids.astype(np.int64)
    left, top_edge = np.maximum(x1 - 1, 0), np.maximum(y1 - 1, 0)
    boxes = np.stack([left, top_edge, x2 - left, y2 - top_edge], axis=1)
    bad = ~((boxes[:, 2] > 0) & (boxes[:, 3] > 0) & np.isfinite(boxes).all(axis=1))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{mat_path}: annotation {row + 1} ({paths[row]}) has an empty box: x1={x1[row]:g}, "
                         f"y1={y1[row]:g}, x2={x2[row]:g}, y2={y2[row]:g} (expected x1 <= x2 and y1 <= y2)")
    return make_image_files(
        "cars196", top, paths, class_ids - 1, class_names=names,
        parts={"train": np.flatnonzero(class_ids <= _TRAIN_CLASSES),
               "test": np.flatnonzero(class_ids > _TRAIN_CLASSES)},
        boxes=boxes, recall_ks=(1, 2, 4, 8), source=str(mat_path),
    )


def _read_mat(path: Path) -> dict:
    from scipy.io import loadmat  # lazy: only Cars196 needs scipy.io
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(path)
    except NotImplementedError as error:  # MATLAB v7.3 files are HDF5
        raise ValueError(f"{path}: cannot read MATLAB v7.3 (HDF5) files; expected the archive's v5 file: "
                         f"{error}") from error
    except (MatReadError, ValueError, TypeError, OSError) as error:
        raise ValueError(f"{path}: cannot read as a MATLAB .mat file: {error}") from error


def _text(value: object, path: Path, field: str, row: int) -> str:
    """A MATLAB char array (loaded as a (1,) str array) as str."""
    array = np.asarray(value).ravel()
    if array.size != 1 or array.dtype.kind != "U":
        raise ValueError(f"{path}: {field} {row + 1} must be a string, got {array.dtype} of shape {array.shape}")
    return str(array[0])


def _numbers(column: np.ndarray, path: Path, field: str) -> np.ndarray:
    """A field of 1x1 numeric MATLAB arrays, one per annotation, as float64 (N,)."""
    values = np.empty(len(column), dtype=np.float64)
    for row, value in enumerate(column):
        array = np.asarray(value).ravel()
        if array.size != 1 or array.dtype.kind not in "iuf":
            raise ValueError(f"{path}: annotation {row + 1}: {field} must be one number, got {array.dtype} of "
                             f"shape {array.shape}")
        values[row] = array[0]
    return values

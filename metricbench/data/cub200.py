"""CUB-200-2011 (Wah et al., 2011) from its official archive, streamed from disk.

The metric-learning split of Oh Song et al. (CVPR 2016) is used: the first 100 classes train, the other 100
test (zero-shot: no test class is seen in training). ``train_test_split.txt`` is the classification split of
the same archive and is not read.
"""

from __future__ import annotations

import os

import numpy as np

from .image_files import ImageFiles, make_image_files
from .list_files import ListFile, find_dataset_folder, read_list_file

__all__ = ["load_cub200"]

_LAYOUT = ("CUB-200-2011 layout: CUB_200_2011/ holding images.txt, image_class_labels.txt, classes.txt, "
           "bounding_boxes.txt and images/")
_TRAIN_CLASSES = 100  # class ids 1..100 train, 101..200 test


def load_cub200(directory: str | os.PathLike[str]) -> ImageFiles:
    """List CUB-200-2011's 11,788 photos of 200 bird species.

    Args:
        directory: The ``CUB_200_2011`` folder, or the folder holding it.

    Returns:
        ``"cub200"`` with paths relative to ``CUB_200_2011/images`` in ``images.txt`` order; class names as
        ``classes.txt`` gives them (``"001.Black_footed_Albatross"``), ids in class-id order; parts ``train``
        (classes 1-100) and ``test`` (101-200); boxes from ``bounding_boxes.txt``; Recall@1, 2, 4, 8.

    Raises:
        FileNotFoundError: A list file or a listed photo is missing (named, with the folder and layout).
        ValueError: A malformed line, an image id listed twice or missing from another list, a class id without
            a name, classes not numbered 1..K, a bad box (file and line named).
    """
    top, _ = find_dataset_folder(directory, ("images.txt",), dataset="CUB-200-2011", layout=_LAYOUT)
    images = read_list_file(top / "images.txt", ("image_id", "path"), layout=_LAYOUT, spaces_in="path")
    labels = read_list_file(top / "image_class_labels.txt", ("image_id", "class_id"), layout=_LAYOUT)
    classes = read_list_file(top / "classes.txt", ("class_id", "name"), layout=_LAYOUT, spaces_in="name")
    boxes = read_list_file(top / "bounding_boxes.txt", ("image_id", "x", "y", "width", "height"), layout=_LAYOUT)
    if not len(images):
        raise ValueError(f"{images.path}: no images listed")
    names = _class_names(classes)
    image_ids = _unique_ids(images)
    class_ids = labels.ints("class_id")
    bad = (class_ids < 1) | (class_ids > len(names))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{labels.where(row)}: class id {class_ids[row]} has no name in {classes.path} "
                         f"(valid ids: 1..{len(names)})")
    class_ids = class_ids[_rows_in_order(images, image_ids, labels)]
    box_columns = np.stack([boxes.floats(field) for field in ("x", "y", "width", "height")], axis=1)
    _check_boxes(boxes, box_columns)
    return make_image_files(
        "cub200", top / "images", images.columns["path"], class_ids - 1, class_names=names,
        parts={"train": np.flatnonzero(class_ids <= _TRAIN_CLASSES),
               "test": np.flatnonzero(class_ids > _TRAIN_CLASSES)},
        boxes=box_columns[_rows_in_order(images, image_ids, boxes)], recall_ks=(1, 2, 4, 8),
        source=str(images.path),
    )


def _class_names(classes: ListFile) -> list[str]:
    """Names in class-id order; ids must be 1..K in order, as the archive has them."""
    if not len(classes):
        raise ValueError(f"{classes.path}: no classes listed")
    ids = classes.ints("class_id")
    wrong = ids != np.arange(1, len(ids) + 1)
    if wrong.any():
        row = int(np.argmax(wrong))
        raise ValueError(f"{classes.where(row)}: expected class id {row + 1} (ids 1..{len(ids)} in order), "
                         f"got {ids[row]}")
    return classes.columns["name"]


def _unique_ids(listing: ListFile) -> np.ndarray:
    ids = listing.ints("image_id")
    if len(np.unique(ids)) != len(ids):
        first_row: dict[int, int] = {}
        for row, image_id in enumerate(ids.tolist()):
            if image_id in first_row:
                raise ValueError(f"{listing.where(row)}: image id {image_id} is listed twice "
                                 f"(first on line {listing.lines[first_row[image_id]]})")
            first_row[image_id] = row
    return ids


def _rows_in_order(images: ListFile, image_ids: np.ndarray, other: ListFile) -> np.ndarray:
    """Rows of ``other`` (a per-image list) in ``images.txt`` order, matched by image id."""
    other_ids = _unique_ids(other)
    if len(other_ids) != len(image_ids):
        raise ValueError(f"{other.path} lists {len(other_ids)} images but {images.path} lists {len(image_ids)}; "
                         f"expected one line per image")
    if np.array_equal(other_ids, image_ids):
        return np.arange(len(image_ids))
    row_of = {image_id: row for row, image_id in enumerate(other_ids.tolist())}
    for row, image_id in enumerate(image_ids.tolist()):
        if image_id not in row_of:
            extra = sorted(set(row_of) - set(image_ids.tolist()))[0]
            raise ValueError(f"{images.where(row)}: image id {image_id} has no line in {other.path}, which lists "
                             f"id {extra} instead")
    return np.array([row_of[image_id] for image_id in image_ids.tolist()], dtype=np.int64)


def _check_boxes(boxes: ListFile, values: np.ndarray) -> None:
    bad = ~(np.isfinite(values).all(axis=1) & (values[:, :2] >= 0).all(axis=1) & (values[:, 2:] > 0).all(axis=1))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{boxes.where(row)}: expected a box x y width height with x, y >= 0 and width, "
                         f"height > 0, got {values[row].tolist()}")

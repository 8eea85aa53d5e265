"""In-Shop Clothes Retrieval (DeepFashion, Liu et al., CVPR 2016) from its official archive, streamed from disk.

Its split has three parts: training items, and test items whose query photos are searched against the
gallery photos (not leave-one-out), as ``Eval/list_eval_partition.txt`` assigns them.
"""

from __future__ import annotations

import os

import numpy as np

from .image_files import ImageFiles, make_image_files
from .list_files import find_dataset_folder, read_list_file

__all__ = ["load_inshop"]

_LAYOUT = ("In-Shop Clothes Retrieval layout: Eval/list_eval_partition.txt beside Img/img/, or "
           "list_eval_partition.txt beside img/")
_MARKERS = ("Eval/list_eval_partition.txt", "list_eval_partition.txt")
_FIELDS = ("image_name", "item_id", "evaluation_status")
_PARTS = ("train", "query", "gallery")


def load_inshop(directory: str | os.PathLike[str]) -> ImageFiles:
    """List In-Shop's 52,712 photos of 7,982 clothing items (25,882 train; 14,218 query; 12,612 gallery).

    Args:
        directory: The dataset's folder (``Eval/`` beside ``Img/``, or ``list_eval_partition.txt`` beside
            ``img/``), or the folder holding it.

    Returns:
        ``"inshop"`` with paths relative to the folder holding ``img/`` (``Img/`` in the official layout), in
        the partition file's order; class names the item ids (``"id_00000002"``), sorted; parts ``train``,
        ``query`` and ``gallery``; Recall@1, 10, 20, 30, 40, 50.

    Raises:
        FileNotFoundError: The partition file or a listed photo is missing.
        ValueError: Line 1 is not the number of images or differs from the number listed, line 2 is not the
            header ``image_name item_id evaluation_status``, a malformed line, or a status other than train,
            query or gallery (file and line named).
    """
    top, marker = find_dataset_folder(directory, _MARKERS, dataset="In-Shop", layout=_LAYOUT)
    listing = read_list_file(top / marker, _FIELDS, layout=_LAYOUT, skip_lines=2, spaces_in="image_name")
    path = listing.path
    count_line = listing.header[0].strip() if listing.header else ""
    if not count_line.isdigit():
        raise ValueError(f"{path}, line 1: expected the number of images, got {count_line!r}")
    header = listing.header[1].split() if len(listing.header) > 1 else []
    if header != list(_FIELDS):
        got = listing.header[1] if len(listing.header) > 1 else "no line 2"
        raise ValueError(f"{path}, line 2: expected the header {' '.join(_FIELDS)!r}, got {got!r}")
    if int(count_line) != len(listing):
        raise ValueError(f"{path}: line 1 says {int(count_line)} images but {len(listing)} are listed after the "
                         f"header")
    status = np.array(listing.columns["evaluation_status"])
    bad = ~np.isin(status, _PARTS)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{listing.where(row)}: evaluation_status must be train, query or gallery, got "
                         f"{str(status[row])!r}")
    root = top / "Img" if marker.startswith("Eval/") else top
    return make_image_files(
        "inshop", root, listing.columns["image_name"], np.array(listing.columns["item_id"]),
        parts={part: np.flatnonzero(status == part) for part in _PARTS},
        recall_ks=(1, 10, 20, 30, 40, 50), source=str(path),
    )

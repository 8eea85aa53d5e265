"""Stanford Online Products (Oh Song et al., CVPR 2016) from its official archive, streamed from disk."""

from __future__ import annotations

import os

import numpy as np

from .image_files import ImageFiles, make_image_files
from .list_files import ListFile, find_dataset_folder, read_list_file

__all__ = ["load_sop"]

_LAYOUT = ("Stanford Online Products layout: Stanford_Online_Products/ holding Ebay_train.txt, Ebay_test.txt and "
           "one <super-class>_final/ folder of photos per super-class")
_FIELDS = ("image_id", "class_id", "super_class_id", "path")
_SUFFIX = "_final"  # the archive's super-class folders are bicycle_final/, cabinet_final/, ...


def load_sop(directory: str | os.PathLike[str]) -> ImageFiles:
    """List SOP's 120,053 photos of 22,634 products (59,551 train / 11,318 classes; 60,502 test / 11,316).

    Args:
        directory: The ``Stanford_Online_Products`` folder, or the folder holding it.

    Returns:
        ``"sop"`` with paths relative to that folder, ``Ebay_train.txt``'s rows then ``Ebay_test.txt``'s; class
        names the class ids as strings (``"1"``, ... in numeric order; the ids are global across both files);
        parts ``train`` and ``test`` from the two files; metadata ``super_class``, the name of each photo's
        super-class folder without its ``_final`` suffix (``"bicycle"`` for ``bicycle_final/...``), a name being
        easier to read in projector exports than the ``super_class_id``; Recall@1, 10, 100, 1000.

    Raises:
        FileNotFoundError: A list file or a listed photo is missing.
        ValueError: A bad header (line 1 must read ``image_id class_id super_class_id path``), a malformed line,
            a path outside a super-class folder (file and line named).
    """
    top, _ = find_dataset_folder(directory, ("Ebay_train.txt",), dataset="Stanford Online Products", layout=_LAYOUT)
    lists = [_read(top / f"Ebay_{part}.txt") for part in ("train", "test")]
    paths = lists[0].columns["path"] + lists[1].columns["path"]
    class_ids = np.concatenate([listing.ints("class_id") for listing in lists])
    super_class = np.array([name for listing in lists for name in _super_classes(listing)])
    train = len(lists[0])
    return make_image_files(
        "sop", top, paths, class_ids,
        parts={"train": np.arange(train), "test": np.arange(train, len(paths))},
        metadata={"super_class": super_class}, recall_ks=(1, 10, 100, 1000),
        source=f"{lists[0].path} + {lists[1].path.name} (rows of the two, in this order)",
    )


def _read(path: os.PathLike[str]) -> ListFile:
    listing = read_list_file(path, _FIELDS, layout=_LAYOUT, skip_lines=1, spaces_in="path")
    header = listing.header[0].split() if listing.header else []
    if header != list(_FIELDS):
        got = listing.header[0] if listing.header else "an empty file"
        raise ValueError(f"{listing.path}, line 1: expected the header {' '.join(_FIELDS)!r}, got {got!r}")
    if not len(listing):
        raise ValueError(f"{listing.path}: no images listed")
    listing.ints("image_id"), listing.ints("super_class_id")  # malformed lines fail here, named
    return listing


def _super_classes(listing: ListFile) -> list[str]:
    """Each row's super-class: its path's first folder without ``_final``."""
    folders = [path.partition("/") for path in listing.columns["path"]]
    for row, (folder, slash, _) in enumerate(folders):
        if not slash or not folder:
            raise ValueError(f"{listing.where(row)}: expected a path inside a super-class folder such as "
                             f"bicycle_final/111085122871_0.JPG, got {listing.columns['path'][row]!r}")
    return [folder.removesuffix(_SUFFIX) for folder, _, _ in folders]

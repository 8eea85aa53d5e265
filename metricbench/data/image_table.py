"""A table of photos (``files:TABLE.csv`` or ``.parquet``): one row per image file, streamed from disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .image_files import OFFICIAL_PARTS, ImageFiles, make_image_files

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_image_table"]

_SPLIT_VALUES = tuple(dict.fromkeys(part for parts in OFFICIAL_PARTS for part in parts))  # train, test, query, gallery


def load_image_table(path: str | os.PathLike[str]) -> ImageFiles:
    """List the images of a CSV or Parquet table.

    Columns: ``path`` (relative to the table's folder, or absolute), ``label`` (any labels; a CSV's cells are
    read as text, so ``"007"`` stays ``"007"``, and labels that are all integers are ordered numerically), and
    optionally ``split``: ``train``/``test`` or ``train``/``query``/``gallery`` per row, the dataset's own split.
    Other columns are ignored. Only empty CSV cells count as missing (a class named ``NA`` is kept).

    Args:
        path: The ``.csv`` or ``.parquet`` (``.pq``) file.

    Returns:
        The table's stem as name, paths in row order relative to the table's folder (absolute ones stay
        absolute), parts from ``split`` when present.

    Raises:
        FileNotFoundError: The table or a listed image is missing.
        ValueError: Another suffix, an unreadable table, a missing column (the columns found are listed), a
            missing path or label, or a split value other than the above (row and value named; rows are counted
            from 1 after the header).
    """
    path = Path(path)
    frame = _read(path)
    for column in ("path", "label"):
        if column not in frame.columns:
            raise ValueError(f"{path}: column {column!r} not found; columns: {', '.join(map(str, frame.columns))}")
    for column in ("path", "label", "split"):
        if column in frame.columns and frame[column].isna().any():
            row = int(np.argmax(frame[column].isna().to_numpy()))
            raise ValueError(f"{path}, row {row + 1}: {column} is missing")
    parts = _parts(path, frame["split"].astype(str).to_numpy()) if "split" in frame.columns else None
    labels = frame["label"].to_numpy()
    return make_image_files(path.stem, path.parent, frame["path"].astype(str).tolist(), labels, parts=parts,
                            source=str(path))


def _read(path: Path) -> pd.DataFrame:
    import pandas as pd  # lazy: only tables need pandas

    if not path.is_file():
        raise FileNotFoundError(f"image table not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"{path}: expected a .csv or .parquet table of image paths and labels, got suffix "
                         f"{path.suffix!r}")
    try:
        if suffix == ".csv":
            text = {column: str for column in ("path", "label", "split")}
            return pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""])
        return pd.read_parquet(path)
    except (ValueError, OSError) as error:  # pandas' and pyarrow's parse errors derive from these
        raise ValueError(f"{path}: cannot read as {suffix[1:]}: {error}") from error


def _parts(path: Path, split: np.ndarray) -> dict[str, np.ndarray]:
    bad = ~np.isin(split, _SPLIT_VALUES)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{path}, row {row + 1}: split must be train, test, query or gallery, got {split[row]!r}")
    names = next((parts for parts in OFFICIAL_PARTS if np.isin(split, parts).all()), None)
    if names is None:
        test, query = (int(np.argmax(np.isin(split, values))) for values in (["test"], ["query", "gallery"]))
        raise ValueError(f"{path}: split mixes test (row {test + 1}) with query/gallery (row {query + 1}); "
                         f"expected train/test or train/query/gallery")
    return {name: np.flatnonzero(split == name) for name in names}

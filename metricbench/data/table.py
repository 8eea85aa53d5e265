"""Reader for tabular datasets (CSV or Parquet, one row per sample), with pandas."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["read_table"]


def read_table(
    path: str | os.PathLike[str],
    fmt: str,
    *,
    label_column: str = "label",
    feature_columns: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read feature vectors and labels from a CSV or Parquet table.

    Args:
        path: The table file.
        fmt: ``"csv"`` or ``"parquet"``.
        label_column: Column holding each row's label (any type; no missing values).
        feature_columns: Numeric columns to use as features, in this order. Default: every numeric column except
            the label, in table order (non-numeric columns such as ids stored as text are skipped; numeric id
            columns are not, so name the features when the table has one).

    Returns:
        ``x``: float32 (N, F) features, missing values as NaN (which :func:`make_dataset` reports by row);
        ``labels``: (N,) the label column's values.

    Raises:
        ValueError: The file cannot be parsed, the label column is absent or has missing values, or a feature
            column is absent, non-numeric or the label column, or there are no feature columns. Messages about
            columns list the columns found.
    """
    import pandas as pd  # lazy: only tables need pandas

    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    path = Path(path)
    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except (ValueError, OSError) as error:  # pandas' and pyarrow's parse errors derive from these
        raise ValueError(f"{path}: cannot read as {fmt}: {error}") from error
    listing = ", ".join(map(str, frame.columns)) or "none"
    if label_column not in frame.columns:
        raise ValueError(f"{path}: label column {label_column!r} not found; columns: {listing}")
    missing = frame[label_column].isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"{path}: label column {label_column!r} must have no missing values, got {int(missing.sum())}; "
            f"first in row {int(np.argmax(missing))}"
        )
    if feature_columns is None:
        features = [c for c in frame.columns if c != label_column and pd.api.types.is_numeric_dtype(frame[c])]
        if not features:
            raise ValueError(f"{path}: no numeric feature columns besides {label_column!r}; columns: {listing}")
    else:
        features = list(feature_columns)
        if not features:
            raise ValueError("feature_columns must name at least one column, got an empty sequence")
        for column in features:
            if column not in frame.columns:
                raise ValueError(f"{path}: feature column {column!r} not found; columns: {listing}")
            if column == label_column:
                raise ValueError(f"feature_columns must not include the label column {label_column!r}")
            if not pd.api.types.is_numeric_dtype(frame[column]):
                raise ValueError(f"{path}: feature column {column!r} must be numeric, got dtype {frame[column].dtype}")
    x = frame[features].to_numpy(dtype=np.float32, na_value=np.nan)
    return x, frame[label_column].to_numpy()

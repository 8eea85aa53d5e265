"""Reader for tabular datasets (CSV or Parquet, one row per sample), with pandas."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

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
            the label, in table order. Text columns without a single number (ids stored as text, names) are
            skipped; a text column that holds numbers except for some cells is an error (a typo in a numeric
            column would otherwise drop the whole column silently). Numeric id columns are not skipped, so name
            the features when the table has one.

    Returns:
        ``x``: float32 (N, F) features, missing values as NaN (which :func:`make_dataset` reports by row);
        ``labels``: (N,) the label column's values.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is empty or cannot be parsed, a CSV line holds a bare carriage return (``\\r``,
            which pandas takes for a line end, so the row is split in two), the label column is absent or has
            missing values, a feature column is absent, the label column or non-numeric (the first cell that is
            not a number is named), or there are no feature columns. Messages about columns list the columns
            found.
    """
    import pandas as pd  # lazy: only tables need pandas

    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table file not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes); expected a {fmt} table with a header row")
    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except (ValueError, OSError) as error:  # pandas' and pyarrow's parse errors derive from these
        if fmt == "csv":
            _check_carriage_returns(path)
        raise ValueError(f"{path}: cannot read as {fmt}: {error}") from error
    if fmt == "csv" and frame.isna().to_numpy().any():  # a split row leaves missing cells in both halves
        _check_carriage_returns(path)
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
        features = []
        for column in frame.columns:
            if column == label_column:
                continue
            if pd.api.types.is_numeric_dtype(frame[column]):
                features.append(column)
            elif _is_text(frame[column]):
                rows, any_number = _non_numbers(frame[column])
                if any_number and rows.size:
                    raise ValueError(
                        f"{path}: column {column!r} is numeric except for {rows.size} cell(s): "
                        f"{_first_cell(frame[column], rows)}; fix the cell, or name the features with "
                        f"data.feature_columns"
                    )
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
                rows = _non_numbers(frame[column])[0] if _is_text(frame[column]) else np.empty(0, dtype=np.int64)
                cell = f": {_first_cell(frame[column], rows)}" if rows.size else ""
                raise ValueError(
                    f"{path}: feature column {column!r} must be numeric, got dtype {frame[column].dtype}{cell}"
                )
    x = frame[features].to_numpy(dtype=np.float32, na_value=np.nan)
    return x, frame[label_column].to_numpy()


def _is_text(column: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_object_dtype(column) or isinstance(column.dtype, pd.StringDtype)


def _non_numbers(column: pd.Series) -> tuple[np.ndarray, bool]:
    """Rows (0-based) of the non-missing cells that are not numbers, and whether any cell is a number."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce").notna().to_numpy()
    return np.flatnonzero(column.notna().to_numpy() & ~numbers), bool(numbers.any())


def _first_cell(column: pd.Series, rows: np.ndarray) -> str:
    first = f"row {int(rows[0])} holds {column.iloc[int(rows[0])]!r}"
    return first if rows.size == 1 else f"{first} (the first of them)"


def _check_carriage_returns(path: Path) -> None:
    """Raises when a line of a CSV file holds a carriage return outside quotes.

    pandas' C parser ends a line at a bare CR (one not followed by LF), so a CR inside an unquoted field splits
    its row in two, which surfaces later as missing values or a parse error. CRLF line ends are fine, and so are
    files whose every line ends with a bare CR (classic Mac), recognised by having no LF at all.
    """
    data = path.read_bytes()
    if b"\n" not in data:
        return
    for match in re.finditer(rb"\r(?=[^\n])", data):
        line_start = data.rfind(b"\n", 0, match.start()) + 1
        if data.count(b'"', line_start, match.start()) % 2:  # inside a quoted field: pandas keeps it
            continue
        line = data.count(b"\n", 0, match.start()) + 1
        raise ValueError(
            f"{path}: line {line} has a carriage return (\\r) inside a field, which splits the row; "
            f"quote the field or remove the \\r"
        )

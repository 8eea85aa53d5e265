"""The Embedding Projector's `metadata.tsv`: validated columns in, escaped UTF-8 text out.

TensorBoard's rule: a header line of column names only when there are several columns (a tab in
the first line means "header"), then one line per embedding. Inside values, tab, newline, carriage
return and backslash become the two characters `\\t`, `\\n`, `\\r`, `\\\\`, so a value can never
split a row or a column. Bytes are decoded as UTF-8 with U+FFFD for invalid sequences, and lone
surrogates (from `surrogateescape`-decoded file names, say) become U+FFFD too, so the file is always
valid UTF-8.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["LABEL_COLUMN", "metadata_columns", "metadata_tsv"]

LABEL_COLUMN = "label"  # the column name of 1-D labels (never written: one column has no header)

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SPECIAL = ("\\", "\t", "\n", "\r")
_EXPECTED = "a DataFrame, a mapping of column name -> values, or 1-D labels"


def _text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _valid_unicode(text: str) -> str:
    """Pair surrogates up into their characters; each lone surrogate becomes U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _escaped_column(values: list[Any]) -> list[str]:
    texts = [_text(value) for value in values]
    joined = "".join(texts)  # one scan decides whether any value needs work
    if any(char in joined for char in _SPECIAL):
        texts = [text.translate(_ESCAPES) for text in texts]
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        texts = [_valid_unicode(text) for text in texts]
    return texts


def _column_values(name: str | None, values: Any, num_rows: int) -> list[Any]:
    where = "metadata" if name is None else f"metadata[{name!r}]"
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    if hasattr(values, "tolist"):  # numpy, pandas
        if np.ndim(values) != 1:
            raise ValueError(f"{where} must be 1-D, got shape {np.shape(values)}")
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        expected = "a sequence of values" if name is not None else _EXPECTED
        raise TypeError(f"{where} must be {expected}, got {type(values).__name__}")
    if len(values) != num_rows:
        raise ValueError(f"{where} must have {num_rows} values (one per embedding), got {len(values)}")
    return list(values)


def metadata_columns(metadata: Any, num_rows: int) -> dict[str, list[Any]]:
    """Validate metadata and return its columns as name -> list of `num_rows` values.

    Args:
        metadata: a pandas DataFrame, a mapping of column name -> 1-D values, or 1-D labels (list,
            tuple, range, numpy array, torch tensor, pandas Series), which become one `"label"` column.
        num_rows: the number of embeddings.

    Raises:
        TypeError: on a value that is none of these, or a column name that is not a str.
        ValueError: on a column of the wrong length or shape, no columns, or repeated column names.
    """
    is_frame = hasattr(metadata, "columns") and hasattr(metadata, "items")
    if not (is_frame or isinstance(metadata, Mapping)):
        return {LABEL_COLUMN: _column_values(None, metadata, num_rows)}
    items = list(metadata.items())
    if not items:
        raise ValueError("metadata must have at least one column, got none")
    names = [name for name, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"metadata column names must be unique, got {names}")
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"metadata column names must be str, got {name!r}")
    return {name: _column_values(name, values, num_rows) for name, values in items}


def metadata_tsv(columns: Mapping[str, list[Any]]) -> bytes:
    """The UTF-8 text of `metadata.tsv` for columns from `metadata_columns`.

    Raises:
        ValueError: if a row is blank or whitespace only: the projector skips such lines, which
            would shift every later row onto the wrong embedding.

    Example:
        >>> metadata_tsv({"label": ["cat", "tab\\there"]})
        b'cat\\ntab\\\\there\\n'
    """
    texts = [_escaped_column(values) for values in columns.values()]
    lines = ["\t".join(row) for row in zip(*texts)] if len(texts) > 1 else texts[0]
    for row, line in enumerate(lines):
        if not line.strip():
            raise ValueError(f"metadata row {row} is empty or whitespace only; the projector would drop it")
    if len(texts) > 1:
        lines = ["\t".join(_escaped_column(list(columns)))] + lines
    return ("\n".join(lines) + "\n").encode("utf-8")

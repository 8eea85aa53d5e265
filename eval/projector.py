"""Export embeddings and their metadata as TensorBoard Embedding Projector TSV files.

`vectors.tsv` holds one embedding per line; `metadata.tsv` one line per embedding, with a header
line only when there are several columns (TensorBoard's rule). Numbers are written by a vectorised
formatter (9 significant digits, so float32 values read back exactly), because per-value Python or
`np.savetxt` formatting dominates the export time of large sets.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .knn import to_float32_matrix

__all__ = ["METADATA_FILE", "VECTORS_FILE", "write_projector_tsv"]

VECTORS_FILE = "vectors.tsv"
METADATA_FILE = "metadata.tsv"

_DIGITS = 9  # significant digits; 9 round-trips every float32
_VALUES_PER_BLOCK = 2**18  # bounds the formatter's temporary arrays (~40 MB)
_ZERO = ord("0")


def _format_block(block: np.ndarray) -> bytes:
    """Format a (rows, D) float32 block as tab-separated lines like `-1.2345e-02`, trailing zeros dropped."""
    rows, dim = block.shape
    values = block.astype(np.float64).ravel()
    negative = values < 0
    magnitude = np.abs(values)
    nonzero = magnitude > 0
    exponent = np.zeros(values.shape, dtype=np.int64)
    exponent[nonzero] = np.floor(np.log10(magnitude[nonzero])).astype(np.int64)
    mantissa = np.rint(magnitude * 10.0 ** (_DIGITS - 1 - exponent)).astype(np.int64)
    # log10 can land one off next to a power of ten, and rounding can carry into a new digit.
    for wrong, step in ((mantissa >= 10**_DIGITS, 1), (nonzero & (mantissa < 10 ** (_DIGITS - 1)), -1)):
        exponent[wrong] += step
        mantissa[wrong] = np.rint(magnitude[wrong] * 10.0 ** (_DIGITS - 1 - exponent[wrong])).astype(np.int64)

    # Fixed layout per value: sign, digit, '.', 8 digits, 'e', exponent sign, 2 digits, separator.
    width = 3 + _DIGITS + 4
    chars = np.empty((values.size, width), dtype=np.uint8)
    keep = np.ones((values.size, width), dtype=bool)
    chars[:, 0], keep[:, 0] = ord("-"), negative
    last_nonzero = np.zeros(values.size, dtype=np.int64)
    for position in range(_DIGITS):
        digit = (mantissa // 10 ** (_DIGITS - 1 - position)) % 10
        column = 1 if position == 0 else position + 2
        chars[:, column] = digit + _ZERO
        last_nonzero[digit != 0] = position
    chars[:, 2], keep[:, 2] = ord("."), last_nonzero > 0
    keep[:, 4 : 3 + _DIGITS] = np.arange(2, _DIGITS)[None, :] <= last_nonzero[:, None]
    chars[:, width - 5] = ord("e")
    chars[:, width - 4] = np.where(exponent < 0, ord("-"), ord("+"))
    chars[:, width - 3] = np.abs(exponent) // 10 + _ZERO
    chars[:, width - 2] = np.abs(exponent) % 10 + _ZERO
    separator = np.full((rows, dim), ord("\t"), dtype=np.uint8)
    separator[:, -1] = ord("\n")
    chars[:, width - 1] = separator.ravel()
    return chars[keep].tobytes()


def _escape(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _metadata_lines(metadata: Any, num_rows: int) -> list[str]:
    """Validate the columns and return the file's lines (header first when there are several columns)."""
    if not hasattr(metadata, "items"):
        raise TypeError(f"metadata must be a mapping of column name -> values or a DataFrame, got {type(metadata).__name__}")
    items = list(metadata.items())
    columns = dict(items)
    if not columns:
        raise ValueError("metadata must have at least one column, got none")
    if len(columns) != len(items):
        raise ValueError(f"metadata column names must be unique, got {[name for name, _ in items]}")
    texts = []
    for name, values in columns.items():
        if not isinstance(name, str):
            raise TypeError(f"metadata column names must be str, got {name!r}")
        if hasattr(values, "tolist"):  # numpy, torch, pandas
            if np.ndim(values) != 1:
                raise ValueError(f"metadata[{name!r}] must be 1-D, got shape {np.shape(values)}")
            values = values.tolist()
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(f"metadata[{name!r}] must be a sequence of values, got {type(values).__name__}")
        if len(values) != num_rows:
            raise ValueError(f"metadata[{name!r}] must have {num_rows} values (one per embedding), got {len(values)}")
        texts.append([_escape(value) for value in values])
    lines = ["\t".join(row) for row in zip(*texts)]
    for row, line in enumerate(lines):
        if not line.strip():
            # TensorBoard's projector skips blank lines, which would shift every later row.
            raise ValueError(f"metadata row {row} is empty or whitespace only; TensorBoard would drop it")
    if len(texts) > 1:
        lines.insert(0, "\t".join(_escape(name) for name in columns))
    return lines


def _write_atomically(path: Path, write: Any) -> Path:
    """Run `write(file)` on a temporary file beside `path`; return the temp path (caller renames it)."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
    except BaseException:
        os.unlink(temp)
        raise
    return Path(temp)


def write_projector_tsv(out_dir: str | os.PathLike[str], embeddings: Any, metadata: Any) -> dict[str, Path]:
    """Write `vectors.tsv` and `metadata.tsv` for TensorBoard's Embedding Projector.

    Tabs, newlines, carriage returns and backslashes inside metadata values are written as the
    two-character sequences `\\t`, `\\n`, `\\r`, `\\\\`, so the metadata always has exactly N rows.
    Both files are written to temporary paths and renamed into place only when both are complete,
    so bad input never leaves a partial file behind.

    Args:
        out_dir: directory to write into (created if missing).
        embeddings: (N, D) finite numpy array or torch tensor, N >= 1.
        metadata: column name -> N values (list, numpy array, tensor, Series), or a pandas DataFrame.
            One column: no header line. Several columns: a header line of column names.

    Returns:
        {"vectors": path of vectors.tsv, "metadata": path of metadata.tsv}.

    Raises:
        TypeError/ValueError: naming the argument, on bad shapes, NaN/Inf, column lengths, or a
            metadata row that is blank (TensorBoard would drop it).
    """
    vectors = to_float32_matrix(embeddings, "embeddings")
    if vectors.shape[0] == 0:
        raise ValueError(f"embeddings must have at least one row, got shape {vectors.shape}")
    lines = _metadata_lines(metadata, vectors.shape[0])

    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"vectors": directory / VECTORS_FILE, "metadata": directory / METADATA_FILE}
    rows_per_block = max(1, _VALUES_PER_BLOCK // vectors.shape[1])

    def write_vectors(file: Any) -> None:
        for start in range(0, vectors.shape[0], rows_per_block):
            file.write(_format_block(vectors[start : start + rows_per_block]))

    def write_metadata(file: Any) -> None:
        file.write(("\n".join(lines) + "\n").encode("utf-8"))

    temp_vectors = _write_atomically(paths["vectors"], write_vectors)
    try:
        temp_metadata = _write_atomically(paths["metadata"], write_metadata)
    except BaseException:
        os.unlink(temp_vectors)
        raise
    os.replace(temp_vectors, paths["vectors"])
    os.replace(temp_metadata, paths["metadata"])
    return paths

"""Export embeddings and their metadata as TensorBoard Embedding Projector TSV files.

`vectors.tsv` holds one embedding per line; `metadata.tsv` one line per embedding, with a header
line only when there are several columns (TensorBoard's rule). Numbers are written by a vectorised
formatter (9 significant digits, so float32 values read back exactly), because per-value Python or
`np.savetxt` formatting dominates the export time of large sets.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from numpy.typing import ArrayLike

from .knn import to_float32_matrix

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["METADATA_FILE", "VECTORS_FILE", "write_projector_tsv"]

VECTORS_FILE = "vectors.tsv"
METADATA_FILE = "metadata.tsv"

_DIGITS = 9  # significant digits; 9 round-trips every float32
_VALUES_PER_BLOCK = 2**18  # bounds the formatter's temporary arrays (~50 MB)


def _pack(text: str) -> int:
    """Four ASCII characters as one little-endian uint32 (NUL-padded)."""
    return int.from_bytes(text.encode().ljust(4, b"\0"), "little")


# Lookup tables of packed words: the four digits of 0..9999, and "e+NN"/"e-NN" for exponents -64..63.
_FOUR_DIGITS = np.array([_pack(f"{i:04d}") for i in range(10_000)], dtype="<u4")
_EXPONENT_OFFSET = 64
_EXPONENTS = np.array([_pack(f"e{e:+03d}") for e in range(-_EXPONENT_OFFSET, _EXPONENT_OFFSET)], dtype="<u4")
_FOUR_TRAILING_ZEROS = np.array([4 - len(f"{i:04d}".rstrip("0")) for i in range(10_000)], dtype=np.int32)
# Value layout, five words: [sign d0 '.' pad] [d1-d4] [d5-d8] [e s N N] [separator pad pad pad].
_WIDTH = 20
# For a last written digit index 0..8: the keep-flags (one byte each) of the [d1-d4] and [d5-d8] words.
_KEEP_DIGITS = np.array(
    [[_pack("".join("\1" if j <= last else "\0" for j in range(first, first + 4))) for first in (1, 5)]
     for last in range(_DIGITS)],
    dtype="<u4",
)


def _decimal(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exponent e and 9-digit mantissa m (10**8 <= m < 10**9, or 0) with |v| ~= m * 10**(e - 8)."""
    magnitude = np.abs(values)
    nonzero = magnitude > 0
    exponent = np.zeros(values.shape, dtype=np.int32)
    exponent[nonzero] = np.floor(np.log10(magnitude[nonzero]))
    mantissa = np.rint(magnitude * 10.0 ** (_DIGITS - 1 - exponent))
    # log10 can land one off next to a power of ten, and rounding can carry into a new digit.
    for wrong, step in ((mantissa >= 10**_DIGITS, 1), (nonzero & (mantissa < 10 ** (_DIGITS - 1)), -1)):
        exponent[wrong] += step
        mantissa[wrong] = np.rint(magnitude[wrong] * 10.0 ** (_DIGITS - 1 - exponent[wrong]))
    return exponent, mantissa.astype(np.int32)


def _format_block(block: np.ndarray) -> bytes:
    """Format a (rows, D) float32 block as tab-separated lines of `-1.2345e-02`, trailing zeros dropped."""
    rows, dim = block.shape
    values = block.astype(np.float64).ravel()
    exponent, mantissa = _decimal(values)
    lead, middle, tail = mantissa // 100_000_000, mantissa // 10_000 % 10_000, mantissa % 10_000
    trailing_zeros = np.where(tail > 0, _FOUR_TRAILING_ZEROS[tail], 4 + _FOUR_TRAILING_ZEROS[middle])
    last_digit = _DIGITS - 1 - trailing_zeros  # index of the last digit written (0 for a bare digit)

    words = np.zeros((values.size, _WIDTH // 4), dtype="<u4")
    words[:, 0] = _pack("-0.") + (lead.astype(np.uint32) << 8)
    words[:, 1] = _FOUR_DIGITS[middle]
    words[:, 2] = _FOUR_DIGITS[tail]
    words[:, 3] = _EXPONENTS[exponent + _EXPONENT_OFFSET]
    separator = np.full((rows, dim), ord("\t"), dtype="<u4")
    separator[:, -1] = ord("\n")
    words[:, 4] = separator.ravel()

    # Which bytes survive, built word by word too: sign if negative, d0 always, '.' if more digits follow,
    # d1-d8 up to the last non-zero one, the exponent and separator always, padding never.
    keep = np.empty_like(words)
    keep[:, 0] = (values < 0) + (1 << 8) + ((last_digit > 0).astype(np.uint32) << 16)
    keep[:, 1] = _KEEP_DIGITS[last_digit, 0]
    keep[:, 2] = _KEEP_DIGITS[last_digit, 1]
    keep[:, 3] = 0x01010101
    keep[:, 4] = 0x01
    return words.view(np.uint8)[keep.view(bool)].tobytes()


def _escape(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _metadata_lines(metadata: Any, num_rows: int) -> list[str]:
    """Validate the columns and return the file's lines (header first when there are several columns)."""
    if not hasattr(metadata, "items"):
        raise TypeError(
            "metadata must be a mapping of column name -> values or a DataFrame, "
            f"got {type(metadata).__name__}"
        )
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
            raise ValueError(
                f"metadata[{name!r}] must have {num_rows} values (one per embedding), got {len(values)}"
            )
        texts.append([_escape(value) for value in values])
    lines = ["\t".join(row) for row in zip(*texts)]
    for row, line in enumerate(lines):
        if not line.strip():
            # TensorBoard's projector skips blank lines, which would shift every later row.
            raise ValueError(f"metadata row {row} is empty or whitespace only; TensorBoard would drop it")
    if len(texts) > 1:
        lines.insert(0, "\t".join(_escape(name) for name in columns))
    return lines


def _write_temp(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Run `write(file)` on a new temporary file beside `path`; return its path (the caller renames it)."""
    # open(..., "xb") rather than mkstemp: the file gets the usual umask permissions, not 0600.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "xb") as file:
            write(file)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def write_projector_tsv(
    out_dir: str | os.PathLike[str],
    embeddings: ArrayLike,
    metadata: Mapping[str, Sequence[Any]] | pd.DataFrame,
) -> dict[str, Path]:
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

    def write_vectors(file: BinaryIO) -> None:
        for start in range(0, vectors.shape[0], rows_per_block):
            file.write(_format_block(vectors[start : start + rows_per_block]))

    def write_metadata(file: BinaryIO) -> None:
        file.write(("\n".join(lines) + "\n").encode("utf-8"))

    temp_vectors = _write_temp(paths["vectors"], write_vectors)
    try:
        temp_metadata = _write_temp(paths["metadata"], write_metadata)
    except BaseException:
        temp_vectors.unlink(missing_ok=True)
        raise
    os.replace(temp_vectors, paths["vectors"])
    os.replace(temp_metadata, paths["metadata"])
    return paths

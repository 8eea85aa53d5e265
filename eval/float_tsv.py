"""Vectorised float32 -> TSV text: every value as a fixed-width `+1.23456789e-01` field.

Nine significant digits read back as exactly the same float32, so a TSV written here carries the
same tensor as the raw bytes. Fixed width is what makes it fast: each value is two 8-byte words
assembled from lookup tables with whole-array numpy operations, with no per-value Python work and no
compaction pass. `np.savetxt(fmt="%.9g")` formats each row in Python and is several times slower.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

__all__ = ["FIELD_WIDTH", "format_float32_rows", "write_float32_tsv"]

FIELD_WIDTH = 16  # bytes per value: sign, digit, '.', 8 digits, 'e', sign, 2 digits, then '\t' or '\n'

# Values per formatting block. Every temporary then stays under glibc's 128 KiB mmap threshold:
# larger blocks are 4-5x slower per value, because each fresh temporary is page-faulted in again.
_VALUES_PER_BLOCK = 2**14
_DIGITS = 9  # significant digits; 9 round-trips every float32
_EXPONENT_OFFSET = 64  # float32 decimal exponents are -45..38


def _pack(text: str, shift: int = 0) -> int:
    """ASCII text as a little-endian integer, starting `shift` bytes into an 8-byte word."""
    return int.from_bytes(text.encode(), "little") << (8 * shift)


# Word 0 = [sign d0 '.' d1 d2 d3 d4 d5], word 1 = [d6 d7 d8 'e' s N N separator].
_HEAD = np.array([_pack(f"{sign}{digit}.") for sign in "+-" for digit in range(10)], dtype="<u8")
_FIVE_DIGITS = np.array([_pack(f"{i:05d}", shift=3) for i in range(100_000)], dtype="<u8")
_THREE_DIGITS = np.array([_pack(f"{i:03d}") for i in range(1_000)], dtype="<u8")
_EXPONENTS = np.array(
    [_pack(f"e{e:+03d}", shift=3) for e in range(-_EXPONENT_OFFSET, _EXPONENT_OFFSET)], dtype="<u8"
)
_SCALES = np.array([10.0 ** (_DIGITS - 1 - e) for e in range(-_EXPONENT_OFFSET, _EXPONENT_OFFSET)])
_TAB = np.uint64(_pack("\t", shift=7))
_NEWLINE = np.uint64(_pack("\n", shift=7))


def _mantissas(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offset decimal exponents and 9-digit mantissas m (10**8 <= m < 10**9, or 0) of float32 values."""
    magnitude = np.abs(values)
    zero = magnitude == 0
    with np.errstate(divide="ignore", invalid="ignore"):  # log10(0); fixed just below
        exponent = np.floor(np.log10(magnitude)).astype(np.int32)
    exponent[zero] = 0
    exponent += _EXPONENT_OFFSET
    magnitude = magnitude.astype(np.float64)
    mantissa = np.take(_SCALES, exponent) * magnitude
    np.rint(mantissa, out=mantissa)
    # float32 log10 can land one off next to a power of ten, and rounding can carry into a 10th digit.
    for wrong, step in ((mantissa >= 10**_DIGITS, 1), ((mantissa < 10 ** (_DIGITS - 1)) & ~zero, -1)):
        if wrong.any():
            exponent[wrong] += step
            mantissa[wrong] = np.rint(magnitude[wrong] * _SCALES[exponent[wrong]])
    return exponent, mantissa.astype(np.int32)


def format_float32_rows(block: np.ndarray) -> np.ndarray:
    """Format a float32 matrix as TSV lines of fixed-width scientific numbers.

    Args:
        block: (rows, D) finite float32 array, C-contiguous.

    Returns:
        (rows * D * FIELD_WIDTH,) uint8 array holding the text; values in a row are separated by
        tabs and each row ends with a newline.

    Example:
        >>> format_float32_rows(np.array([[0.5, -3.0]], dtype=np.float32)).tobytes()
        b'+5.00000000e-01\\t-3.00000000e+00\\n'
    """
    rows, dim = block.shape
    values = block.reshape(-1)
    exponent, mantissa = _mantissas(values)
    first_six = mantissa // 1_000  # libdivide makes numpy's division by a scalar cheap; divmod is not
    last_three = mantissa - first_six * 1_000
    lead = first_six // 100_000
    middle = first_six - lead * 100_000
    lead += np.signbit(values).astype(np.int32) * 10  # row of _HEAD: '+' or '-'

    words = np.empty((values.size, 2), dtype="<u8")
    head = np.take(_HEAD, lead)
    head |= np.take(_FIVE_DIGITS, middle)
    tail = np.take(_THREE_DIGITS, last_three)
    tail |= np.take(_EXPONENTS, exponent)
    tail_rows = tail.reshape(rows, dim)
    tail_rows[:, :-1] |= _TAB
    tail_rows[:, -1] |= _NEWLINE
    words[:, 0] = head
    words[:, 1] = tail
    return words.reshape(-1).view(np.uint8)


def write_float32_tsv(file: BinaryIO, matrix: np.ndarray) -> None:
    """Write a (N, D) finite float32 matrix to an open binary file as TSV, one row per line.

    Formats in blocks of a few thousand values, so memory stays bounded whatever N is.
    """
    rows_per_block = max(1, _VALUES_PER_BLOCK // matrix.shape[1])
    for start in range(0, matrix.shape[0], rows_per_block):
        file.write(format_float32_rows(matrix[start : start + rows_per_block]))

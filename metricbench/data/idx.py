"""Reader for the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

An IDX file is: two zero bytes, a dtype code byte, a byte ``ndim``, ``ndim`` big-endian uint32 dimensions, then the
values in C order, big-endian when wider than a byte. Files are often gzipped; that is detected from the gzip magic
bytes, not from the file name.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx"]

_GZIP_MAGIC = b"\x1f\x8b"

# dtype code -> (numpy dtype of the stored big-endian values, name in the IDX spec)
_DTYPES: dict[int, tuple[str, str]] = {
    0x08: (">u1", "ubyte"),
    0x09: (">i1", "byte"),
    0x0B: (">i2", "short"),
    0x0C: (">i4", "int"),
    0x0D: (">f4", "float"),
    0x0E: (">f8", "double"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, plain or gzipped.

    Args:
        path: The file, e.g. ``train-images-idx3-ubyte`` or ``t10k-labels-idx1-ubyte.gz``.

    Returns:
        An array of the file's dimensions (e.g. (60000, 28, 28) images or (60000,) labels) in native byte order:
        uint8, int8, int16, int32, float32 or float64 according to the dtype code. The array is writable.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        ValueError: The file is not IDX (bad magic, unknown dtype code), its header is truncated, its data is
            shorter or longer than the dimensions say, or its gzip stream is corrupt. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated header: expected at least 4 bytes, got {len(data)}")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file: expected magic 0x0000 + dtype code, got 0x{data[:4].hex()}")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X} ({name})" for c, (_, name) in _DTYPES.items())
        raise ValueError(f"{path}: unknown IDX dtype code: expected one of {known}, got 0x{code:02X}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"{path}: truncated header: expected {header} bytes for {ndim} dimensions, got {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code][0])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        problem = "truncated" if got < expected else "trailing data"
        raise ValueError(f"{path}: {problem}: expected {expected} bytes of data, got {got} (dims {dims})")
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # One copy into native order; for ubyte the buffer is already a private bytearray, so no copy is made.
    return values.astype(dtype.newbyteorder("="), copy=False)


def _read_bytes(path: Path) -> bytearray:
    """Returns the file's (decompressed) bytes as a private, writable buffer."""
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == _GZIP_MAGIC
        handle.seek(0)
        if not gzipped:
            return bytearray(handle.read())
        try:
            with gzip.GzipFile(fileobj=handle) as stream:
                return bytearray(stream.read())
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path}: corrupt gzip data: {error}") from error

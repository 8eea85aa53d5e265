"""Tests for the IDX reader on files written here with struct."""

import gzip
import struct

import numpy as np
import pytest

from metricbench.data import read_idx

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of ``array``: magic, dims, then big-endian values."""
    header = struct.pack(">BBBB", 0, 0, _CODES[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)


def test_plain_ubyte(tmp_path, images):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(images))
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (5, 4, 3)
    np.testing.assert_array_equal(out, images)
    out[0, 0, 0] = 7  # the result is the caller's to modify
    assert out[0, 0, 0] == 7


def test_gzipped_labels(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(read_idx(path), labels)


def test_gzip_is_detected_by_magic_not_extension(tmp_path, images):
    gz_without_suffix = tmp_path / "images"
    gz_without_suffix.write_bytes(gzip.compress(idx_bytes(images)))
    plain_with_suffix = tmp_path / "images.gz"
    plain_with_suffix.write_bytes(idx_bytes(images))
    np.testing.assert_array_equal(read_idx(gz_without_suffix), images)
    np.testing.assert_array_equal(read_idx(plain_with_suffix), images)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_multi_byte_types_are_big_endian(tmp_path, dtype):
    values = (np.arange(24).reshape(2, 3, 4) * 37 - 300).astype(dtype)
    path = tmp_path / "values.idx"
    path.write_bytes(idx_bytes(values))
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype)  # native byte order, not '>'
    np.testing.assert_array_equal(out, values)


def test_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 0))
    with pytest.raises(ValueError, match=r"bad: not an IDX file: expected magic 0x0000 \+ dtype code, got 0x01020801"):
        read_idx(path)


def test_unknown_dtype_code(tmp_path):
    path = tmp_path / "odd"
    path.write_bytes(b"\x00\x00\x0a\x01" + struct.pack(">I", 0))
    with pytest.raises(ValueError, match="unknown IDX dtype code: expected one of 0x08 .*, got 0x0A"):
        read_idx(path)


@pytest.mark.parametrize("content", [b"\x00\x00", b"\x00\x00\x08\x03" + struct.pack(">I", 60000)])
def test_truncated_header(tmp_path, content):
    path = tmp_path / "short"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="short: truncated header"):
        read_idx(path)


def test_truncated_data(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 60000, 28, 28) + bytes(1000))
    with pytest.raises(ValueError, match="truncated: expected 47040000 bytes of data, got 1000") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_trailing_data(tmp_path, images):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(images) + b"\x00\x01")
    with pytest.raises(ValueError, match="trailing data: expected 60 bytes of data, got 62"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(ValueError, match="broken.gz: corrupt gzip data"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX file not found: .*nope"):
        read_idx(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path)  # a directory is not a file

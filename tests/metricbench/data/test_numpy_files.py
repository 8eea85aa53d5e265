"""Tests for the one opener of .npy/.npz files: the same message for the same problem, whoever asks."""

import zipfile

import numpy as np
import pytest

from metricbench.data.numpy_files import read_array, read_arrays
from metricbench.errors import InputTypeError


def test_reads_arrays_and_optional_ones(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.arange(3), y=np.array(["a", "b", "c"]), extra=np.zeros(2))
    arrays = read_arrays(tmp_path / "a.npz", what="dataset", required=("x", "y"), optional=("names", "extra"))
    assert list(arrays) == ["x", "y", "extra"]
    np.testing.assert_array_equal(arrays["y"], ["a", "b", "c"])
    np.save(tmp_path / "a.npy", np.eye(2))
    np.testing.assert_array_equal(read_array(tmp_path / "a.npy", what="--labels"), np.eye(2))


def test_alternative_names_in_order(tmp_path):
    np.savez(tmp_path / "e.npz", x=np.zeros((2, 2)), y=[0, 1])
    arrays = read_arrays(tmp_path / "e.npz", what="--embeddings", required=("embeddings", "labels"),
                         alternatives=(("x", "y"),))
    assert list(arrays) == ["x", "y"]
    np.savez(tmp_path / "none.npz", z=[1])
    with pytest.raises(ValueError, match=r"--embeddings '.*none.npz' is missing arrays 'embeddings', 'labels': "
                                         r"expected arrays embeddings, labels \(or x, y\); found: z$"):
        read_arrays(tmp_path / "none.npz", what="--embeddings", required=("embeddings", "labels"),
                    alternatives=(("x", "y"),))


@pytest.mark.parametrize("suffix", ["npy", "npz"])
def test_missing_directory_and_empty(tmp_path, suffix):
    read = read_array if suffix == "npy" else read_arrays
    expected = "a .npy array written by numpy.save" if suffix == "npy" else "an .npz archive written by numpy.savez"
    with pytest.raises(FileNotFoundError, match=f"^--labels '.*nope.{suffix}' does not exist$"):
        read(tmp_path / f"nope.{suffix}", what="--labels")
    (tmp_path / f"dir.{suffix}").mkdir()
    with pytest.raises(ValueError, match=f"^--labels '.*dir.{suffix}' is a directory; expected {expected}$"):
        read(tmp_path / f"dir.{suffix}", what="--labels")
    (tmp_path / f"empty.{suffix}").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"^--labels '.*empty.{suffix}' is empty \(0 bytes\); expected {expected}$"):
        read(tmp_path / f"empty.{suffix}", what="--labels")
    (tmp_path / f"text.{suffix}").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=rf"text.{suffix}' is not a NumPy file \(it starts with b'a,b\\n1,'\)"):
        read(tmp_path / f"text.{suffix}", what="--labels")


def test_npy_and_npz_swapped(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(2))
    np.savez(tmp_path / "b.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="a.npy' is a single .npy array; expected an .npz archive .* with arrays x"):
        read_arrays(tmp_path / "a.npy", what="split file", required=("x",))
    with pytest.raises(ValueError, match="b.npz' is an .npz archive of several arrays; expected a .npy array"):
        read_array(tmp_path / "b.npz", what="--labels")


def test_damaged_files(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(10))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-8])
    with pytest.raises(ValueError, match="cut.npy' is damaged or truncated"):
        read_array(tmp_path / "cut.npy", what="--embeddings")
    np.savez(tmp_path / "a.npz", x=np.arange(1000))
    data = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:100])
    with pytest.raises(ValueError, match=r"cut.npz' is damaged or truncated \(BadZipFile"):
        read_arrays(tmp_path / "cut.npz", what="dataset", required=("x",))
    flipped = bytearray(data)
    flipped[200] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"crc.npz': array 'x' is damaged or truncated \(BadZipFile: Bad CRC-32"):
        read_arrays(tmp_path / "crc.npz", what="dataset", required=("x",))
    with zipfile.ZipFile(tmp_path / "txt.npz", "w") as archive:
        archive.writestr("x.npy", "not an array")
    with pytest.raises(ValueError, match="txt.npz': member 'x' is not a .npy array"):
        read_arrays(tmp_path / "txt.npz", what="dataset", required=("x",))


def test_object_arrays_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "o.npz", y=np.array([1, "a"], dtype=object))
    with pytest.raises(InputTypeError, match="^--labels '.*o.npy' holds Python objects"):
        read_array(tmp_path / "o.npy", what="--labels")
    with pytest.raises(InputTypeError, match="o.npz': array 'y' holds Python objects"):
        read_arrays(tmp_path / "o.npz", what="dataset", required=("y",))

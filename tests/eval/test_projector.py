"""Projector TSV export: round trips, TensorBoard's readers, metadata escaping, and no partial files."""

import csv

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.plugins.projector.projector_plugin import _read_tensor_tsv_file

import metricbench.eval.projector as projector_module
from metricbench.eval import write_projector_tsv


def _tensorboard_parse_metadata(text):
    """Python port of `parseMetadata` in tensorboard/plugins/projector/vz_projector/data-provider.ts."""
    columns, points, line_number = ["label"], [], 0
    for line in text.split("\n"):
        if not line.strip():  # the frontend skips blank lines
            continue
        if line_number == 0 and "\t" in line:  # a tab in the first line means a header
            columns, line_number = line.split("\t"), 1
            continue
        line_number += 1
        values = line.split("\t")
        points.append({name: (values[i] or None) if i < len(values) else None for i, name in enumerate(columns)})
    return columns, points


def _unescape(text):
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _random_vectors(rows, dim, seed):
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.integers(-30, 30, size=(rows, dim))
    return (rng.standard_normal((rows, dim)) * scales).astype(np.float32)


def test_vectors_round_trip_through_numpy_csv_and_tensorboard(tmp_path):
    x = _random_vectors(300, 7, seed=0)
    x[0, :3] = [0.0, -0.0, 1.0]
    paths = write_projector_tsv(tmp_path, x, {"label": np.arange(300)})
    assert paths == {"vectors": tmp_path / "vectors.tsv", "metadata": tmp_path / "metadata.tsv"}

    loaded = np.loadtxt(paths["vectors"], delimiter="\t", dtype=np.float64, ndmin=2)
    np.testing.assert_allclose(loaded, x, rtol=1e-5, atol=0)
    np.testing.assert_array_equal(loaded.astype(np.float32), x)  # 9 significant digits: exact for float32
    with open(paths["vectors"], newline="") as file:
        rows = list(csv.reader(file, delimiter="\t"))
    assert len(rows) == 300 and all(len(row) == 7 for row in rows)
    np.testing.assert_array_equal(_read_tensor_tsv_file(str(paths["vectors"])), x)


def test_formatter_writes_compact_scientific_numbers_and_round_trips_any_float32():
    values = np.array([[0.5, -1.0, 0.0, 1e-45, 3.4028235e38, 123456789.0, -0.1]], dtype=np.float32)
    text = projector_module._format_block(values).decode()
    assert text == "5e-01\t-1e+00\t0e+00\t1.40129846e-45\t3.40282347e+38\t1.23456792e+08\t-1.00000001e-01\n"
    bits = np.random.default_rng(1).integers(0, 2**32, size=40_000, dtype=np.uint64).astype(np.uint32)
    every = bits.view(np.float32)
    every = every[np.isfinite(every)].reshape(-1, 1)
    parsed = np.array([float(line) for line in projector_module._format_block(every).decode().split()])
    np.testing.assert_array_equal(parsed.astype(np.float32), every[:, 0])


def test_many_blocks_give_the_same_file_as_one(tmp_path, monkeypatch):
    x = _random_vectors(50, 6, seed=2)
    one = write_projector_tsv(tmp_path / "one", x, {"i": range(50)})["vectors"].read_bytes()
    monkeypatch.setattr(projector_module, "_VALUES_PER_BLOCK", 13)  # 2 rows per block
    many = write_projector_tsv(tmp_path / "many", x, {"i": range(50)})["vectors"].read_bytes()
    assert many == one and one.count(b"\n") == 50


def test_single_column_metadata_has_no_header(tmp_path):
    labels = np.array([3, 1, 4, 1, 5])
    path = write_projector_tsv(tmp_path, np.zeros((5, 2)), {"label": labels})["metadata"]
    assert path.read_text() == "3\n1\n4\n1\n5\n"
    columns, points = _tensorboard_parse_metadata(path.read_text())
    assert columns == ["label"] and [p["label"] for p in points] == ["3", "1", "4", "1", "5"]


def test_several_columns_get_a_header(tmp_path):
    frame = pd.DataFrame({"label": [0, 1, 2], "split": ["train", "test", "train"], "score": [0.5, 1.0, 2.25]})
    path = write_projector_tsv(tmp_path, torch.ones(3, 4), frame)["metadata"]
    assert path.read_text() == "label\tsplit\tscore\n0\ttrain\t0.5\n1\ttest\t1.0\n2\ttrain\t2.25\n"
    columns, points = _tensorboard_parse_metadata(path.read_text())
    assert columns == ["label", "split", "score"] and len(points) == 3


@pytest.mark.parametrize("extra_column", [False, True])
def test_tabs_newlines_and_backslashes_in_metadata_keep_one_row_per_embedding(tmp_path, extra_column):
    names = ["plain", "tab\there", "new\nline", "carriage\rreturn", "back\\slash\\t", "all\t\n\r\\", "  padded "]
    metadata = {"name": names, "index": list(range(7))} if extra_column else {"name": names}
    path = write_projector_tsv(tmp_path, np.eye(7), metadata)["metadata"]
    raw = path.read_bytes()
    assert raw.count(b"\n") == 7 + int(extra_column) and b"\r" not in raw
    columns, points = _tensorboard_parse_metadata(raw.decode())
    assert len(points) == 7
    key = "name" if extra_column else "label"
    assert [_unescape(point[key]) for point in points] == names
    assert columns == (["name", "index"] if extra_column else ["label"])


def test_blank_metadata_row_is_rejected_because_tensorboard_would_skip_it(tmp_path):
    with pytest.raises(ValueError, match="metadata row 1 is empty"):
        write_projector_tsv(tmp_path, np.zeros((3, 2)), {"caption": ["a", " ", "c"]})
    with pytest.raises(ValueError, match="metadata row 0 is empty"):
        write_projector_tsv(tmp_path, np.zeros((2, 2)), {"a": ["", "x"], "b": ["", "y"]})
    assert list(tmp_path.iterdir()) == []


def test_bad_input_leaves_no_files_and_keeps_previous_export(tmp_path):
    good = write_projector_tsv(tmp_path, np.ones((4, 2)), {"label": [0, 1, 2, 3]})
    before = {name: path.read_bytes() for name, path in good.items()}
    with pytest.raises(ValueError, match=r"metadata\['label'\] must have 5 values .* got 4"):
        write_projector_tsv(tmp_path, np.zeros((5, 2)), {"label": [0, 1, 2, 3]})
    with pytest.raises(ValueError, match="embeddings must be finite"):
        write_projector_tsv(tmp_path, np.full((4, 2), np.nan), {"label": [0, 1, 2, 3]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.tsv", "vectors.tsv"]
    assert {name: path.read_bytes() for name, path in good.items()} == before
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError):
        write_projector_tsv(fresh, np.zeros((5, 2)), {"label": [0]})
    assert not fresh.exists()


def test_failure_while_writing_removes_temporary_files(tmp_path, monkeypatch):
    calls = []

    def failing_format(block):
        calls.append(len(block))
        if len(calls) == 2:
            raise OSError("disk full")
        return b"1e+00\n" * len(block)

    monkeypatch.setattr(projector_module, "_VALUES_PER_BLOCK", 2)
    monkeypatch.setattr(projector_module, "_format_block", failing_format)
    with pytest.raises(OSError, match="disk full"):
        write_projector_tsv(tmp_path, np.zeros((6, 1)), {"label": list("abcdef")})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "embeddings, metadata, error, words",
    [
        (np.zeros(4), {"label": [0] * 4}, ValueError, "embeddings must have shape"),
        (np.zeros((0, 3)), {"label": []}, ValueError, "embeddings must have at least one row"),
        (np.zeros((2, 2)), [0, 1], TypeError, "metadata must be a mapping"),
        (np.zeros((2, 2)), {}, ValueError, "metadata must have at least one column"),
        (np.zeros((2, 2)), {1: [0, 1]}, TypeError, "metadata column names must be str"),
        (np.zeros((2, 2)), {"label": "ab"}, TypeError, r"metadata\['label'\] must be a sequence"),
        (np.zeros((2, 2)), {"label": np.zeros((2, 1))}, ValueError, r"metadata\['label'\] must be 1-D"),
        (np.zeros((2, 2)), pd.DataFrame([[0, 1], [2, 3]], columns=["a", "a"]), ValueError, "must be unique"),
    ],
)
def test_errors_name_the_argument(tmp_path, embeddings, metadata, error, words):
    with pytest.raises(error, match=words):
        write_projector_tsv(tmp_path, embeddings, metadata)
    assert list(tmp_path.iterdir()) == []

"""Projector export: files and configs, TensorBoard's readers, metadata escaping, and no partial files."""

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from google.protobuf import text_format
from PIL import Image
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig
from tensorboard.plugins.projector.projector_plugin import _read_tensor_binary_file, _read_tensor_tsv_file

import metricbench.eval.float_tsv as float_tsv
from metricbench.eval import export_projector, write_projector_tsv

EXPORTERS = [write_projector_tsv, export_projector]


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


def _pbtxt(path):
    return text_format.Parse(path.read_text(), ProjectorConfig())


def _files(directory):
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def test_vectors_round_trip_through_numpy_csv_and_tensorboard(tmp_path):
    x = _random_vectors(300, 7, seed=0)
    x[0, :3] = [0.0, -0.0, 1.0]
    paths = write_projector_tsv(tmp_path, x, {"label": np.arange(300)})
    assert paths == {"vectors": tmp_path / "vectors.tsv", "metadata": tmp_path / "metadata.tsv"}

    loaded = np.loadtxt(paths["vectors"], delimiter="\t", dtype=np.float64, ndmin=2)
    np.testing.assert_array_equal(loaded.astype(np.float32), x)  # 9 significant digits: exact for float32
    with open(paths["vectors"], newline="") as file:
        rows = list(csv.reader(file, delimiter="\t"))
    assert len(rows) == 300 and all(len(row) == 7 for row in rows)
    assert _read_tensor_tsv_file(str(paths["vectors"])).tobytes() == x.tobytes()


def test_export_writes_both_configs_and_the_files_they_name(tmp_path):
    x = _random_vectors(6, 3, seed=1)
    paths = export_projector(tmp_path / "new" / "dir", x, ["a", "b", "c", "a", "b", "c"], tensor_name="mnist test")
    out = tmp_path / "new" / "dir"
    assert paths == {
        "vectors": out / "vectors.tsv",
        "metadata": out / "metadata.tsv",
        "config_json": out / "projector_config.json",
        "config_pbtxt": out / "projector_config.pbtxt",
    }
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())

    config = _pbtxt(paths["config_pbtxt"])
    assert len(config.embeddings) == 1 and not config.model_checkpoint_path
    entry = config.embeddings[0]
    assert entry.tensor_name == "mnist test" and list(entry.tensor_shape) == [6, 3]
    assert entry.tensor_path == "vectors.tsv" and entry.metadata_path == "metadata.tsv"
    assert not entry.HasField("sprite")

    assert json.loads(paths["config_json"].read_text()) == {
        "embeddings": [
            {"tensorName": "mnist test", "tensorShape": [6, 3],
             "tensorPath": "vectors.tsv", "metadataPath": "metadata.tsv"}
        ]
    }
    assert _read_tensor_tsv_file(str(paths["vectors"])).tobytes() == x.tobytes()
    assert paths["metadata"].read_text() == "a\nb\nc\na\nb\nc\n"


def test_sprite_is_written_and_named_in_both_configs(tmp_path):
    images = np.random.default_rng(2).random((5, 3, 6, 4))  # (N, C, H, W) floats in [0, 1]
    paths = export_projector(tmp_path, np.eye(5), list("abcde"), images=images)
    sprite = np.asarray(Image.open(paths["sprite"]))
    assert paths["sprite"] == tmp_path / "sprite.png" and sprite.shape == (3 * 6, 3 * 4, 3)  # 3 x 3 grid
    np.testing.assert_array_equal(sprite[6:12, 4:8], np.rint(images[4].transpose(1, 2, 0) * 255))  # row 1, col 1
    entry = _pbtxt(paths["config_pbtxt"]).embeddings[0]
    assert entry.sprite.image_path == "sprite.png" and list(entry.sprite.single_image_dim) == [4, 6]  # [w, h]
    sprite_json = json.loads(paths["config_json"].read_text())["embeddings"][0]["sprite"]
    assert sprite_json == {"imagePath": "sprite.png", "singleImageDim": [4, 6]}


def test_bytes_file_is_raw_float32_and_the_json_config_points_at_it(tmp_path):
    x = _random_vectors(9, 5, seed=3)
    paths = export_projector(tmp_path, torch.from_numpy(x), np.arange(9), write_bytes=True)
    assert paths["vectors_bytes"] == tmp_path / "vectors.bytes"
    assert paths["vectors_bytes"].read_bytes() == x.astype("<f4").tobytes()
    np.testing.assert_array_equal(_read_tensor_binary_file(str(paths["vectors_bytes"]), [9, 5]), x)
    # The standalone projector reads a tensorPath ending in ".bytes" as raw float32; TensorBoard gets the TSV,
    # since its plugin only falls back to binary when the TSV reader hits a UnicodeDecodeError.
    assert json.loads(paths["config_json"].read_text())["embeddings"][0]["tensorPath"] == "vectors.bytes"
    assert _pbtxt(paths["config_pbtxt"]).embeddings[0].tensor_path == "vectors.tsv"
    assert paths["vectors"].exists()


@pytest.mark.parametrize(
    "labels",
    [[3, 1, 4, 1, 5], (3, 1, 4, 1, 5), np.array([3, 1, 4, 1, 5]), torch.tensor([3, 1, 4, 1, 5]),
     pd.Series([3, 1, 4, 1, 5], index=[9, 8, 7, 6, 5]), pd.DataFrame({"class": [3, 1, 4, 1, 5]}),
     {"label": [3, 1, 4, 1, 5]}],
    ids=["list", "tuple", "numpy", "torch", "series", "one-column-frame", "mapping"],
)
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_labels_and_single_column_frames_give_one_column_without_header(tmp_path, exporter, labels):
    path = exporter(tmp_path, np.zeros((5, 2)), labels)["metadata"]
    assert path.read_text() == "3\n1\n4\n1\n5\n"
    columns, points = _tensorboard_parse_metadata(path.read_text())
    assert columns == ["label"] and [p["label"] for p in points] == ["3", "1", "4", "1", "5"]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_several_columns_get_a_header(tmp_path, exporter):
    frame = pd.DataFrame({"label": [0, 1, 2], "split": ["train", "test", "train"], "score": [0.5, 1.0, 2.25]})
    path = exporter(tmp_path, torch.ones(3, 4), frame)["metadata"]
    assert path.read_text() == "label\tsplit\tscore\n0\ttrain\t0.5\n1\ttest\t1.0\n2\ttrain\t2.25\n"
    columns, points = _tensorboard_parse_metadata(path.read_text())
    assert columns == ["label", "split", "score"] and len(points) == 3


NASTY = [
    ("plain", "plain"),
    ("tab\there", "tab\there"),
    ("new\nline", "new\nline"),
    ("carriage\rreturn", "carriage\rreturn"),
    ("crlf\r\n", "crlf\r\n"),
    ("back\\slash\\t", "back\\slash\\t"),
    ("\\n is not a newline", "\\n is not a newline"),
    ("all\t\n\r\\", "all\t\n\r\\"),
    ("  padded ", "  padded "),
    ("nul\x00 vt\x0b ff\x0c nel\x85 ls\u2028 ps\u2029", "nul\x00 vt\x0b ff\x0c nel\x85 ls\u2028 ps\u2029"),
    ("quotes \"'` #hash =formula,comma", "quotes \"'` #hash =formula,comma"),
    ("emoji 🐈 日本語 עברית", "emoji 🐈 日本語 עברית"),
    (b"bytes caf\xc3\xa9 bad\xff\xfe", "bytes café bad\ufffd\ufffd"),
    ("pair \ud83d\ude00", "pair 😀"),  # a surrogate pair held as two code points
    ("lone \udcff surrogate", "lone \ufffd surrogate"),  # e.g. from os.fsdecode of a non-UTF-8 file name
    (np.bytes_(b"numpy \xe2\x82\xac"), "numpy €"),
]


@pytest.mark.parametrize("extra_column", [False, True])
def test_nasty_metadata_keeps_one_row_per_embedding_and_round_trips(tmp_path, extra_column):
    names = [name for name, _ in NASTY]
    expected = [text for _, text in NASTY]
    metadata = pd.DataFrame({"name\twith tab": names, "index": range(len(names))}) if extra_column else names
    path = export_projector(tmp_path, np.eye(len(names)), metadata)["metadata"]
    raw = path.read_bytes()
    text = raw.decode("utf-8")  # strict: always valid UTF-8
    assert raw.count(b"\n") == len(names) + int(extra_column) and b"\r" not in raw
    with open(path, encoding="utf-8") as file:  # how TensorBoard's plugin reads it (universal newlines)
        assert len(file.readlines()) == len(names) + int(extra_column)
    columns, points = _tensorboard_parse_metadata(text)  # how the projector frontend reads it
    assert len(points) == len(names)
    key = "name\\twith tab" if extra_column else "label"
    assert columns == (["name\\twith tab", "index"] if extra_column else ["label"])
    assert [_unescape(point[key]) for point in points] == expected


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_blank_metadata_row_is_rejected_because_the_projector_would_skip_it(tmp_path, exporter):
    with pytest.raises(ValueError, match="metadata row 1 is empty"):
        exporter(tmp_path, np.zeros((3, 2)), {"caption": ["a", " ", "c"]})
    with pytest.raises(ValueError, match="metadata row 0 is empty"):
        exporter(tmp_path, np.zeros((2, 2)), {"a": ["", "x"], "b": ["", "y"]})
    assert list(tmp_path.iterdir()) == []


def test_bad_input_leaves_no_files_and_keeps_previous_export(tmp_path):
    good = export_projector(tmp_path, np.ones((4, 2)), [0, 1, 2, 3], images=np.zeros((4, 2, 2)), write_bytes=True)
    before = _files(tmp_path)
    assert len(before) == 6
    bad_calls = [
        dict(embeddings=np.zeros((5, 2)), metadata=[0, 1, 2, 3]),
        dict(embeddings=np.full((4, 2), np.nan), metadata=[0, 1, 2, 3]),
        dict(embeddings=np.zeros((4, 2)), metadata=[0, 1, 2, 3], images=np.zeros((3, 2, 2))),
        dict(embeddings=np.zeros((4, 2)), metadata=[0, 1, 2, 3], images=np.full((4, 2, 2), 2.0)),
        dict(embeddings=np.zeros((4, 2)), metadata=[0, 1, 2, 3], tensor_name=""),
        dict(embeddings=np.zeros((4, 2)), metadata=[0, 1, 2, 3], write_bytes="yes"),
    ]
    for call in bad_calls:
        with pytest.raises((ValueError, TypeError)):
            export_projector(tmp_path, **call)
        assert _files(tmp_path) == before, call
    assert good["config_pbtxt"].exists()
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError):
        export_projector(fresh, np.zeros((5, 2)), [0])
    assert not fresh.exists()


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_failure_while_writing_removes_temporary_files_and_keeps_previous_export(tmp_path, monkeypatch, exporter):
    exporter(tmp_path, np.ones((6, 1)), list("abcdef"))
    before = _files(tmp_path)
    calls = []
    real_format = float_tsv.format_float32_rows

    def failing_format(block):
        calls.append(len(block))
        if len(calls) == 2:
            raise OSError("disk full")
        return real_format(block)

    monkeypatch.setattr(float_tsv, "_VALUES_PER_BLOCK", 2)
    monkeypatch.setattr(float_tsv, "format_float32_rows", failing_format)
    with pytest.raises(OSError, match="disk full"):
        exporter(tmp_path, np.zeros((6, 1)), list("uvwxyz"))
    assert _files(tmp_path) == before  # no temporary files, old files untouched


@pytest.mark.parametrize(
    "embeddings, metadata, error, words",
    [
        (np.zeros(4), [0] * 4, ValueError, "embeddings must have shape"),
        (np.zeros((0, 3)), [], ValueError, "embeddings must have at least one row"),
        (np.array([["a", "b"]]), ["x"], TypeError, "embeddings must hold real numbers"),
        (np.zeros((2, 2)), 5, TypeError, "metadata must be a DataFrame, a mapping .* or 1-D labels, got int"),
        (np.zeros((2, 2)), "ab", TypeError, "metadata must be a DataFrame"),
        (np.zeros((2, 2)), [0, 1, 2], ValueError, r"metadata must have 2 values \(one per embedding\), got 3"),
        (np.zeros((2, 2)), np.zeros((2, 1)), ValueError, r"metadata must be 1-D, got shape \(2, 1\)"),
        (np.zeros((2, 2)), {}, ValueError, "metadata must have at least one column"),
        (np.zeros((2, 2)), {1: [0, 1]}, TypeError, "metadata column names must be str"),
        (np.zeros((2, 2)), pd.DataFrame(np.zeros((2, 2))), TypeError, "metadata column names must be str, got 0"),
        (np.zeros((2, 2)), {"label": "ab"}, TypeError, r"metadata\['label'\] must be a sequence"),
        (np.zeros((2, 2)), {"label": np.zeros((2, 1))}, ValueError, r"metadata\['label'\] must be 1-D"),
        (np.zeros((2, 2)), pd.DataFrame([[0, 1], [2, 3]], columns=["a", "a"]), ValueError, "must be unique"),
    ],
)
@pytest.mark.parametrize("exporter", EXPORTERS)
def test_errors_name_the_argument(tmp_path, exporter, embeddings, metadata, error, words):
    with pytest.raises(error, match=words):
        exporter(tmp_path, embeddings, metadata)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "options, error, words",
    [
        ({"tensor_name": 3}, TypeError, "tensor_name must be a str, got int"),
        ({"tensor_name": "  "}, ValueError, "tensor_name must be a non-empty name"),
        ({"write_bytes": 1}, TypeError, "write_bytes must be a bool, got int"),
        ({"images": np.zeros((2, 4, 4), dtype=np.int32)}, TypeError, "images must be uint8 or floating point"),
    ],
)
def test_option_errors_name_the_argument(tmp_path, options, error, words):
    with pytest.raises(error, match=words):
        export_projector(tmp_path, np.zeros((2, 2)), [0, 1], **options)
    assert list(tmp_path.iterdir()) == []


def test_tensor_name_with_quotes_survives_the_pbtxt(tmp_path):
    name = 'emb "v2" \\ ünï'
    paths = export_projector(tmp_path, np.eye(2), ["a", "b"], tensor_name=name)
    assert _pbtxt(paths["config_pbtxt"]).embeddings[0].tensor_name == name
    assert json.loads(paths["config_json"].read_text(encoding="utf-8"))["embeddings"][0]["tensorName"] == name


def test_sprite_png_decodes_to_the_tiles(tmp_path):
    images = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(4, 2, 3)
    paths = export_projector(tmp_path, np.eye(4), list("abcd"), images=images)
    sprite = np.asarray(Image.open(io.BytesIO(paths["sprite"].read_bytes())))
    np.testing.assert_array_equal(sprite, np.block([[images[0], images[1]], [images[2], images[3]]]))

"""Bad input tried as a new user would, end to end through the CLI: one clear line, exit 2, nothing written.

(Each case's reader-level messages are tested beside its reader; here the whole command is run.)
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from metricbench.cli import main
from metricbench.run_dir import RunDir

QUICK = ["--no-progress", "--epochs", "1", "--set", "eval.plots=false", "--set", "eval.ks=[1]"]
PHOTOS = ["--set", "data.image_size=[8, 8]", "--set", "data.color=\"gray\""]


def _fails(capsys, argv, *words, out=None):
    capsys.readouterr()
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and all(word in error for word in words), error
    if out is not None:
        assert not Path(out).exists()
    return error


def test_a_class_folder_name_that_is_not_utf8_trains_evaluates_and_exports(tmp_path, capsys):
    root = os.fsencode(tmp_path / "photos")
    rng = np.random.default_rng(0)
    for name, base in ((b"caf\xe9", 40), (b"dog", 200)):
        os.makedirs(os.path.join(root, name))
        for i in range(10):
            pixels = np.clip(base + rng.normal(0, 10, (8, 8)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.fsdecode(os.path.join(root, name, b"%d.png" % i)))
    out = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{os.fsdecode(root)}", "--out", str(out), *QUICK, *PHOTOS]) == 0
    metadata = (RunDir(out).export / "metadata.tsv").read_bytes().decode("utf-8")  # valid UTF-8 throughout
    assert "caf\\\\xe9" in metadata  # the escaped name, its backslash escaped again by the projector's TSV rules
    assert "caf\\xe9" in RunDir(out).class_stats.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["data.npz", "data.npy"])
def test_a_zero_byte_dataset_file(tmp_path, capsys, name):
    (tmp_path / name).touch()
    out = tmp_path / "run"
    spec = f"npz:{tmp_path / name}"
    _fails(capsys, ["train", "--dataset", spec, "--out", str(out), *QUICK], "is empty (0 bytes)", out=out)


@pytest.mark.parametrize("empty", ["--embeddings", "--labels"])
def test_zero_byte_embeddings_or_labels(tmp_path, capsys, empty):
    files = {"--embeddings": tmp_path / "emb.npy", "--labels": tmp_path / "labels.npy"}
    np.save(files["--embeddings"], np.zeros((6, 2), np.float32))
    np.save(files["--labels"], np.array([0, 0, 0, 1, 1, 1]))
    files[empty].write_bytes(b"")
    out = tmp_path / "out"
    _fails(capsys, ["eval", "--embeddings", str(files["--embeddings"]), "--labels", str(files["--labels"]),
                    "--out", str(out)], empty, "is empty (0 bytes)", out=out)


def test_a_runs_zero_byte_split_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.normal(size=(40, 3)).astype(np.float32), y=np.arange(40) % 4)
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"npz:{tmp_path / 'data.npz'}", "--out", str(run), *QUICK,
                 "--set", "eval.export=false"]) == 0
    RunDir(run).split.write_bytes(b"")
    _fails(capsys, ["eval", str(run), "--out", str(tmp_path / "eval")], "split.npz", "is empty (0 bytes)",
           out=tmp_path / "eval")


def test_a_csv_number_column_with_one_text_cell(tmp_path, capsys):
    table = pd.DataFrame({"label": np.arange(40) % 4, "f1": np.arange(40.0), "f2": np.arange(40.0)})
    table["f2"] = table["f2"].astype(object)
    table.loc[17, "f2"] = "abc"
    table.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "run"
    _fails(capsys, ["train", "--dataset", f"csv:{tmp_path / 't.csv'}", "--out", str(out), *QUICK],
           "'f2'", "'abc'", out=out)


def test_a_carriage_return_inside_a_csv_label(tmp_path, capsys):
    rows = b"".join(b"%s,%d\n" % (b"cat" if i % 2 else b"dog", i) for i in range(40))
    (tmp_path / "t.csv").write_bytes(b"label,f1\nca\rt,1\n" + rows)
    out = tmp_path / "run"
    _fails(capsys, ["train", "--dataset", f"csv:{tmp_path / 't.csv'}", "--out", str(out), *QUICK],
           "line 2", "carriage return", out=out)

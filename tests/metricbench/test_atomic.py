"""Tests for the one atomic file writer and the writers built on it: permissions, failure, order, strict JSON."""

import json
import os
import stat

import numpy as np
import pytest
import torch

import metricbench.atomic
from metricbench.atomic import atomic_write, write_files_atomically, write_json, write_text
from metricbench.checkpoint import save_checkpoint
from metricbench.config import ExperimentConfig, load_config, save_config
from metricbench.data import make_split, save_split


@pytest.fixture
def umask():
    """Set the process umask for one test; restored afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


WRITERS = {
    "atomic_write": lambda path: atomic_write(path, b"data"),
    "write_json": lambda path: write_json({"a": 1}, path),
    "save_checkpoint": lambda path: save_checkpoint({"model": {"w": torch.zeros(2)}}, path),
    "save_split": lambda path: save_split(make_split(np.repeat(np.arange(3), 10), seed=0), path),
    "save_config": lambda path: save_config(ExperimentConfig(), path),
}


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
@pytest.mark.parametrize("writer", WRITERS)
def test_files_get_the_umask_permissions(tmp_path, umask, writer, mask, expected):
    path = tmp_path / "out"
    umask(mask)
    WRITERS[writer](path)
    assert _mode(path) == expected, oct(_mode(path))
    assert os.listdir(tmp_path) == ["out"]


def _fail(file):
    file.write(b"half")
    raise RuntimeError("writer failed")


def test_failing_writer_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"):
        atomic_write(path, _fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_multi_file_write_failing_on_the_second_touches_no_final_path(tmp_path):
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    first.write_bytes(b"old a")
    with pytest.raises(RuntimeError, match="writer failed"):
        write_files_atomically({first: b"new a", second: _fail, third: b"new c"})
    assert first.read_bytes() == b"old a"
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_files_are_renamed_in_the_order_given(tmp_path, monkeypatch):
    renamed = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renamed.append(os.path.basename(dst))
        real_replace(src, dst)

    monkeypatch.setattr(metricbench.atomic.os, "replace", recording_replace)
    names = ["z.csv", "a.png", "m.npz", "config.toml"]
    write_files_atomically({tmp_path / name: name.encode() for name in names})
    assert renamed == names
    assert all((tmp_path / name).read_bytes() == name.encode() for name in names)


def test_write_text_is_utf8(tmp_path):
    write_text(tmp_path / "t.md", "λ·center\n")
    assert (tmp_path / "t.md").read_bytes() == "λ·center\n".encode("utf-8")


def test_write_json_writes_strict_json_with_nulls(tmp_path):
    def reject(token):
        raise ValueError(f"non-strict JSON constant {token}")

    write_json({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": {"d": float("nan")}}, tmp_path / "m.json")
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert json.loads(text, parse_constant=reject) == {"a": None, "b": [None, None, 1.5], "c": {"d": None}}


def test_training_run_files_get_the_umask_permissions(tmp_path, umask):
    from metricbench.run import train_run

    config = load_config(overrides=['data.dataset="digits"', "train.epochs=1", "eval.plots=false", "eval.export=false"])
    umask(0o022)
    train_run(config, tmp_path / "run", progress=False)
    for name in ("config.toml", "split.npz", "checkpoint.pt", "metrics.json", "class_stats.csv"):
        assert _mode(tmp_path / "run" / name) == 0o644, (name, oct(_mode(tmp_path / "run" / name)))


def test_directory_appears_whole_and_replaces_only_when_asked(tmp_path):
    from metricbench.atomic import write_directory_atomically

    target = tmp_path / "index"
    write_directory_atomically(target, {"a.bin": b"1", "b.json": b"{}"})
    assert sorted(p.name for p in target.iterdir()) == ["a.bin", "b.json"]
    with pytest.raises(FileExistsError, match="already exists"):
        write_directory_atomically(target, {"a.bin": b"2"})

    def fail(_):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_directory_atomically(target, {"a.bin": b"2", "b.json": fail}, replace=True)
    assert (target / "a.bin").read_bytes() == b"1"  # the old directory is untouched
    write_directory_atomically(target, {"c.txt": b"new"}, replace=True)
    assert [p.name for p in target.iterdir()] == ["c.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no temporary or old directory left

"""Tests for the backbone feature cache: hits, invalidation, digests, concurrent processes, atomicity, damage."""

import copy
import fcntl
import multiprocessing
import os
import threading
import time

import numpy as np
import pytest
import torch

from metricbench.feature_cache import (cache_key, cached_features, default_cache_dir, files_signature,
                                       state_dict_digest)

PARTS = {"model": "resnet50", "weights": "abc123", "files": "def456", "transform": {"size": 224, "crop": 224},
         "dtype": "float32"}
FEATURES = np.arange(12, dtype=np.float32).reshape(4, 3)


class Counted:
    """A compute() that returns `features` and counts its calls."""

    def __init__(self, features=FEATURES):
        self.features, self.calls = features, 0

    def __call__(self):
        self.calls += 1
        return self.features


def _leftovers(directory):
    """Every file of the cache folder but the lock files, which stay by design."""
    return sorted(name for name in os.listdir(directory) if not name.endswith(".lock"))


def test_miss_then_hit_computes_once_and_maps_read_only(tmp_path):
    compute, lines = Counted(), []
    first = cached_features(PARTS, compute, directory=tmp_path, log=lines.append)
    second = cached_features(PARTS, compute, directory=tmp_path, log=lines.append)
    assert compute.calls == 1
    for features in (first, second):
        np.testing.assert_array_equal(features, FEATURES)
        assert isinstance(features, np.memmap) and features.dtype == np.float32 and not features.flags.writeable
    key = cache_key(PARTS)
    assert _leftovers(tmp_path) == [f"{key}.json", f"{key}.npy"]
    assert lines[0].startswith("computed backbone features for 4 rows") and lines[0].endswith(f"{key}.npy")
    assert lines[1] == f"backbone features from the cache: {tmp_path / (key + '.npy')}"


def test_float64_is_stored_as_float32_and_log_none_is_silent(tmp_path, capsys):
    features = cached_features(PARTS, Counted(FEATURES.astype(np.float64)), directory=tmp_path, log=None)
    assert features.dtype == np.float32
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("change", [{"weights": "abc124"}, {"transform": {"size": 256, "crop": 224}},
                                    {"dtype": "bfloat16"}, {"files": "def457"}])
def test_any_changed_part_is_a_new_entry_and_the_old_one_stays(tmp_path, change):
    old, new = Counted(), Counted(FEATURES + 1)
    cached_features(PARTS, old, directory=tmp_path, log=None)
    changed = {**PARTS, **change}
    assert cache_key(changed) != cache_key(PARTS)
    np.testing.assert_array_equal(cached_features(changed, new, directory=tmp_path, log=None), FEATURES + 1)
    np.testing.assert_array_equal(cached_features(PARTS, old, directory=tmp_path, log=None), FEATURES)
    assert (old.calls, new.calls) == (1, 1)


def test_cache_key_ignores_key_order_and_tuples_are_lists():
    reordered = dict(reversed(list(PARTS.items())))
    assert cache_key(reordered) == cache_key(PARTS)
    assert cache_key({"size": (224, 224)}) == cache_key({"size": [224, 224]})
    assert len(cache_key(PARTS)) == 32


@pytest.mark.parametrize("value", [object(), {1, 2}, float("nan"), np.float32(1.0), {"inner": b"bytes"}])
def test_cache_key_names_the_key_of_a_value_that_is_not_json(value):
    with pytest.raises(TypeError, match=r"^parts\['transform'\] must be JSON-serialisable"):
        cache_key({**PARTS, "transform": value})


def _small_net(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_state_dict_digest_sees_every_weight_and_buffer(dtype):
    net = _small_net(dtype)
    assert state_dict_digest(copy.deepcopy(net)) == state_dict_digest(net)
    nudged = copy.deepcopy(net)
    with torch.no_grad():
        nudged[0].weight[1, 2] += 1e-6 if dtype == torch.float32 else 1e-2  # bfloat16 has 8 bits of mantissa
    assert state_dict_digest(nudged) != state_dict_digest(net)
    moved = copy.deepcopy(net)
    moved[1].running_mean[0] = 0.5
    assert state_dict_digest(moved) != state_dict_digest(net)


def test_state_dict_digest_sees_dtype_and_shape_of_equal_bytes():
    flat, square = torch.nn.Linear(4, 1, bias=False), torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        square.weight.copy_(flat.weight.reshape(2, 2))
    assert state_dict_digest(flat) != state_dict_digest(square)
    assert state_dict_digest(_small_net()) != state_dict_digest(_small_net().to(torch.float64))


def test_files_signature_sees_size_mtime_and_missing_files(tmp_path):
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for path in paths:
        path.write_bytes(b"photo")
    os.utime(paths[0], ns=(1_000_000_000, 1_000_000_000))
    before = files_signature(paths)
    assert files_signature([str(path) for path in paths]) == before
    paths[0].write_bytes(b"another photo")
    os.utime(paths[0], ns=(1_000_000_000, 1_000_000_000))  # same mtime: only the size tells
    resized = files_signature(paths)
    os.utime(paths[0], ns=(1_000_000_000, 1_000_000_001))
    touched = files_signature(paths)
    paths[1].unlink()
    missing = files_signature(paths)
    assert len({before, resized, touched, missing}) == 4
    assert files_signature(paths) == missing


def _compute_slowly(counter):
    time.sleep(1)
    with open(counter, "a") as file:
        file.write(f"{os.getpid()}\n")
    return np.random.default_rng(os.getpid()).normal(size=(5, 3))  # a different array in every process


def cache_in_process(parts, directory, counter, result, barrier):
    """One grid worker (a spawned process): start with the others, then fetch the features and save what it got."""
    barrier.wait(timeout=60)  # a sibling that died before this point fails the test instead of hanging it
    features = cached_features(parts, lambda: _compute_slowly(counter), directory=directory, log=None)
    np.save(result, features)


def _run_processes(parts_per_process, tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(parts_per_process))
    results = [tmp_path / f"result{i}.npy" for i in range(len(parts_per_process))]
    processes = [context.Process(target=cache_in_process,
                                 args=(parts, tmp_path / "cache", tmp_path / "counter", result, barrier))
                 for parts, result in zip(parts_per_process, results)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    for process in processes:
        if process.is_alive():
            process.kill()
    assert [process.exitcode for process in processes] == [0] * len(processes)
    return (tmp_path / "counter").read_text().splitlines(), [np.load(result) for result in results]


def test_processes_asking_for_one_key_at_once_compute_it_once(tmp_path):
    computed, results = _run_processes([PARTS] * 4, tmp_path)
    assert len(computed) == 1
    assert results[0].shape == (5, 3) and results[0].dtype == np.float32
    for features in results[1:]:
        np.testing.assert_array_equal(features, results[0])


def test_processes_with_different_keys_each_compute(tmp_path):
    computed, results = _run_processes([PARTS, {**PARTS, "weights": "other"}], tmp_path)
    assert len(computed) == 2
    assert not np.array_equal(results[0], results[1])


def test_a_held_lock_makes_the_same_key_wait_and_no_other(tmp_path):
    lock = os.open(tmp_path / f"{cache_key(PARTS)}.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as another process computing PARTS would
    lines, results = [], []
    waiter = threading.Thread(
        target=lambda: results.append(cached_features(PARTS, Counted(), directory=tmp_path, log=lines.append)))
    waiter.start()
    for _ in range(1000):
        if lines:
            break
        time.sleep(0.01)
    assert lines == [f"waiting for another process computing the same backbone features ({cache_key(PARTS)})"]
    other, other_lines = {**PARTS, "weights": "other"}, []
    cached_features(other, Counted(), directory=tmp_path, log=other_lines.append)  # would hang on a shared lock
    assert not any("waiting" in line for line in other_lines)
    os.close(lock)
    waiter.join(timeout=60)
    np.testing.assert_array_equal(results[0], FEATURES)


def test_a_failing_compute_leaves_nothing_behind(tmp_path):
    def fail():
        raise RuntimeError("backbone crashed")

    with pytest.raises(RuntimeError, match="backbone crashed"):
        cached_features(PARTS, fail, directory=tmp_path, log=None)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("features, message", [
    (np.array([[1.0, np.nan], [np.inf, 2.0]], dtype=np.float32), r"finite features, got 2 NaN/Inf among 4 values"),
    (np.array([[1e300]]), r"finite features, got 1 NaN/Inf"),  # finite in float64, Inf in float32
    (np.zeros(3, dtype=np.float32), r"a 2-D float array \(N, F\), got shape \(3,\) float32"),
    (np.zeros((3, 2), dtype=np.int64), r"a 2-D float array \(N, F\), got shape \(3, 2\) int64"),
])
def test_bad_features_are_refused_and_leave_nothing_behind(tmp_path, features, message):
    with pytest.raises(ValueError, match=rf"^compute\(\) must return {message}"):
        cached_features(PARTS, Counted(features), directory=tmp_path, log=None)
    assert _leftovers(tmp_path) == []


def test_a_tensor_is_refused_with_its_type(tmp_path):
    with pytest.raises(TypeError, match=r"^compute\(\) must return a numpy array, got Tensor"):
        cached_features(PARTS, Counted(torch.zeros(2, 2)), directory=tmp_path, log=None)


@pytest.mark.parametrize("damage", ["truncate data", "truncate header", "empty", "drop json", "wrong shape json"])
def test_a_damaged_entry_is_recomputed(tmp_path, damage):
    cached_features(PARTS, Counted(), directory=tmp_path, log=None)
    npy, meta = tmp_path / f"{cache_key(PARTS)}.npy", tmp_path / f"{cache_key(PARTS)}.json"
    data = npy.read_bytes()
    if damage == "truncate data":
        npy.write_bytes(data[:-5])
    elif damage == "truncate header":
        npy.write_bytes(data[:40])
    elif damage == "empty":
        npy.write_bytes(b"")
    elif damage == "drop json":
        meta.unlink()
    else:
        meta.write_text(meta.read_text().replace('"shape": [\n    4,', '"shape": [\n    5,'))
    compute, lines = Counted(), []
    np.testing.assert_array_equal(cached_features(PARTS, compute, directory=tmp_path, log=lines.append), FEATURES)
    assert compute.calls == 1
    assert lines[0].startswith(f"recomputing the cached backbone features {npy}: ")
    assert _leftovers(tmp_path) == [meta.name, npy.name]
    cached_features(PARTS, compute, directory=tmp_path, log=None)
    assert compute.calls == 1


def test_default_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("METRICBENCH_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "metricbench" / "features"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "metricbench" / "features"
    monkeypatch.setenv("METRICBENCH_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    cached_features(PARTS, Counted(), log=None)
    assert (tmp_path / "mine" / f"{cache_key(PARTS)}.npy").exists()

"""A disk cache of frozen-backbone features, computed once and read by every run and tuning trial of a grid.

An entry is ``<key>.npy`` (the (N, F) float32 features) and ``<key>.json`` (what they came from, for people and a
future ``cache list``); the key hashes everything that determines the features. Entries are read as read-only memory
maps, so the parallel runs share one copy through the page cache. A miss is computed under an exclusive ``flock`` on
``<key>.lock``: per key one process computes and the others wait for its entry; different keys never wait for each
other. Files go through `metricbench.atomic`, the ``.json`` renamed first, so a present ``.npy`` is complete and has
its ``.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from metricbench.atomic import json_text, write_files_atomically

__all__ = ["cache_key", "cached_features", "default_cache_dir", "files_signature", "state_dict_digest"]

def default_cache_dir() -> Path:
    """$METRICBENCH_CACHE_DIR if set, else $XDG_CACHE_HOME/metricbench/features, else ~/.cache/metricbench/features."""
    if os.environ.get("METRICBENCH_CACHE_DIR"):
        return Path(os.environ["METRICBENCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "metricbench" / "features"


def cache_key(parts: Mapping[str, Any]) -> str:
    """The first 32 hex digits of the SHA-256 of the canonical JSON of `parts`.

    Key order does not matter and tuples count as lists; 224 and 224.0 differ (a needless recompute, never a wrong hit).

    Raises:
        TypeError: A value is not JSON (str, int, finite float, bool, None, list, dict); the message names its key.
    """
    for name, value in parts.items():
        try:
            json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"parts[{name!r}] must be JSON-serialisable (str, int, float, bool, None, list, dict), "
                            f"got {type(value).__name__}: {error}") from None
    text = json.dumps(dict(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def state_dict_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every weight and buffer of `module`: each entry's name, dtype, shape and raw bytes, in order.

    Raises:
        TypeError: A state_dict entry is not a tensor (a custom ``get_extra_state``); the message names it.
    """
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"state_dict entry {name!r} must be a tensor, got {type(tensor).__name__}")
        # Bytes through torch's uint8 view, not .numpy(): numpy has no bfloat16. The header carries the byte
        # count, so one entry's bytes can never be read as the next entry's name.
        data = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        header = [name, str(tensor.dtype), list(tensor.shape), data.nbytes]
        digest.update(json.dumps(header).encode("utf-8") + b"\n")
        digest.update(data)
    return digest.hexdigest()


def files_signature(paths: Sequence[str | os.PathLike]) -> str:
    """SHA-256 of each file's path, size and mtime in ns, in order: detects a changed file without reading it.

    A missing file contributes a "missing" marker rather than raising: the image decoder reports it, with its
    path, when the features are computed.
    """
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            entry = [os.fspath(path), stat.st_size, stat.st_mtime_ns]
        except (FileNotFoundError, NotADirectoryError):
            entry = [os.fspath(path), "missing"]
        digest.update(json.dumps(entry).encode("utf-8") + b"\n")
    return digest.hexdigest()


def _read_entry(npy: Path, meta: Path) -> tuple[np.ndarray | None, str]:
    """The cached features, or None and why the entry is unusable ("" when there is no entry)."""
    if not npy.exists():
        return None, ""
    try:
        features = np.load(npy, mmap_mode="r")
        recorded = json.loads(meta.read_text(encoding="utf-8"))
        expected = (tuple(recorded["shape"]), recorded["dtype"])
    except (OSError, ValueError, EOFError, KeyError, TypeError) as error:  # truncated, garbled or missing
        return None, f"{type(error).__name__}: {error}"
    if (features.shape, str(features.dtype)) != expected:
        return None, f"it holds {features.shape} {features.dtype}, its .json says {expected[0]} {expected[1]}"
    return features, ""


@contextlib.contextmanager
def _key_lock(path: Path, key: str, log: Callable[[str], None]) -> Iterator[None]:
    # The lock file stays: deleting it would let one process lock the unlinked file while another locks a new one.
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process computing the same backbone features ({key})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _checked(features: Any) -> np.ndarray:
    if not isinstance(features, np.ndarray):
        raise TypeError(f"compute() must return a numpy array, got {type(features).__name__}")
    if features.ndim != 2 or features.dtype.kind != "f":
        raise ValueError(f"compute() must return a 2-D float array (N, F), got shape {features.shape} {features.dtype}")
    with np.errstate(over="ignore"):  # cast first: float64 values beyond float32's range become Inf, counted below
        features = features.astype(np.float32, copy=False)
    bad = features.size - int(np.isfinite(features).sum())
    if bad:
        raise ValueError(f"compute() must return finite features, got {bad} NaN/Inf among {features.size} values")
    return features


def _store(features: np.ndarray, parts: Mapping[str, Any], npy: Path, meta: Path) -> None:
    record = {"parts": dict(parts), "shape": list(features.shape), "dtype": str(features.dtype),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def synced(write: Callable[[BinaryIO], object]) -> Callable[[BinaryIO], None]:
        def writer(file: BinaryIO) -> None:
            write(file)
            file.flush()
            os.fsync(file.fileno())  # the entry outlives this process: a crash must not leave a renamed empty file
        return writer

    write_files_atomically({meta: synced(lambda file: file.write(json_text(record).encode("utf-8"))),
                            npy: synced(lambda file: np.save(file, features))})


def cached_features(parts: Mapping[str, Any], compute: Callable[[], np.ndarray], *,
                    directory: str | os.PathLike | None = None,
                    log: Callable[[str], None] | None = print) -> np.ndarray:
    """The features for `parts`: read from the cache, or computed by `compute()` once and stored.

    Args:
        parts: Everything that determines the features (model, weights digest, files signature, transform, dtype).
        compute: Returns the (N, F) float features; called only on a miss, by one process per key.
        directory: The cache folder, created with parents; default `default_cache_dir()`.
        log: Gets one line on a hit, a miss, a recompute and a wait; None is silent.

    Returns:
        (N, F) float32 read-only memory map of the entry's ``.npy``.

    Raises:
        TypeError: A value of `parts` is not JSON (see `cache_key`), or compute() returned no numpy array.
        ValueError: compute() returned something other than a finite 2-D float array.
        Whatever compute() or writing raises; no part of the entry is left behind.
    """
    say = log or (lambda line: None)
    key = cache_key(parts)
    folder = Path(directory) if directory is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    npy, meta = folder / f"{key}.npy", folder / f"{key}.json"
    features, _ = _read_entry(npy, meta)
    if features is None:
        with _key_lock(folder / f"{key}.lock", key, say):
            features, problem = _read_entry(npy, meta)  # another process may have written it while we waited
            if features is None:
                if problem:
                    say(f"recomputing the cached backbone features {npy}: {problem}")
                started = time.perf_counter()
                computed = _checked(compute())
                _store(computed, parts, npy, meta)
                say(f"computed backbone features for {computed.shape[0]} rows in "
                    f"{time.perf_counter() - started:.0f} s -> {npy}")
                return np.load(npy, mmap_mode="r")
    say(f"backbone features from the cache: {npy}")
    return features

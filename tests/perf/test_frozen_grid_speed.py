"""A benchmark grid on a frozen backbone, with the feature cache and without it: `metricbench bench` of 5 losses ×
2 seeds over a CUB-layout tree of photo-like JPEGs at CUB's sizes, a real timm ResNet-18 (random weights from a
local file: pretrained ones would cost the same), 224 px, 15 epochs, 2 runs at a time on 2 cores.

Without the cache every run calls the frozen backbone on every training, validation and test photo of every
epoch; with it, the first run computes the features of each photo once and every run trains the head on them.
Both give the same metrics (checked here). Peak memory is the largest process's (the runner or one run), for
the whole grid and for a grid of 2 cells on the warm cache: it does not grow with the number of cells.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from safetensors.torch import save_file

from .realistic_photos import SIZES, photo

sys.path.append(str(Path(__file__).resolve().parents[1]))
from photo_fixtures import write_cub_tree  # noqa: E402

LOSSES = ["softmax", "normsoftmax", "arcface", "center", "triplet-semihard"]
EPOCHS = 15


def _tree(parent: Path) -> Path:
    """CUB's layout (200 classes, 1-2 photos each: 300 photos), every photo rewritten photo-like at CUB's sizes."""
    top = write_cub_tree(parent, images_per_class=(1, 2))
    rng = np.random.default_rng(0)
    for path in sorted((top / "images").rglob("*.jpg")):
        photo(rng, *SIZES[rng.integers(len(SIZES))]).save(path, quality=int(rng.integers(75, 91)))
    return top


def _spec(path: Path, tree: Path, weights: Path, losses: list[str], seeds: list[int]) -> Path:
    entries = "\n".join(f'[[losses]]\nname = "{name}"' for name in losses)
    path.write_text(textwrap.dedent(f"""\
        name = "frozen-grid"
        datasets = ["cub200:{tree}"]
        protocols = ["standard"]
        seeds = {seeds}
        workers = 2
        threads = 1
        [base]
        model.arch = "timm:resnet18"
        model.weights = "{weights}"
        model.freeze_backbone = true
        model.embedding_dim = 128
        train.epochs = {EPOCHS}
        train.batch_size = 32
        train.sampler = "m-per-class"
        train.m_per_class = 4
        train.num_workers = 0
        eval.metric = "cosine"
        eval.export = false
        eval.plots = false
        """) + entries + "\n")
    return path


def _bench(spec: Path, root: Path, cache: Path, *extra: str) -> tuple[float, float, pd.DataFrame]:
    """(wall seconds, peak MB of the largest process, runs.csv) of one `metricbench bench` in a fresh process."""
    command = [sys.executable, "-m", "metricbench", "bench", str(spec), "--out", str(root / "out"), "--runs",
               str(root / "runs"), "--no-progress", "--no-tune", *extra]
    # The wrapper reports the largest resident size of any process it waited for, grandchildren included.
    wrapper = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True,
                          env={**os.environ, "METRICBENCH_CACHE_DIR": str(cache)})
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    return seconds, int(done.stdout.split()[-1]) / 1024, pd.read_csv(root / "out" / "runs.csv")


def test_frozen_grid_with_and_without_the_feature_cache(tmp_path, record):
    tree = _tree(tmp_path / "data")
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.safetensors"
    save_file(timm.create_model("resnet18", num_classes=0).state_dict(), weights)
    grid = _spec(tmp_path / "grid.toml", tree, weights, LOSSES, [0, 1])
    cache = tmp_path / "cache"

    cached_s, cached_mb, cached = _bench(grid, tmp_path / "cached", cache)
    uncached_s, uncached_mb, uncached = _bench(grid, tmp_path / "uncached", cache,
                                               "--set", "base.train.feature_cache=false")
    small = _spec(tmp_path / "small.toml", tree, weights, LOSSES[:2], [0])
    warm_small_s, warm_small_mb, _ = _bench(small, tmp_path / "warm-small", cache)
    warm_s, warm_mb, _ = _bench(grid, tmp_path / "warm", cache)

    key = ["loss", "seed"]
    a, b = cached.sort_values(key).reset_index(drop=True), uncached.sort_values(key).reset_index(drop=True)
    for metric in ("map_at_r", "precision_at_1", "recall_at_1"):
        np.testing.assert_allclose(a[metric], b[metric], atol=1e-4, err_msg=metric)
    assert len(list(cache.glob("*.npy"))) == 1

    rows = [
        {"grid": "10 cells, no cache (backbone every step)", "wall_s": round(uncached_s, 1), "peak_mb": round(uncached_mb)},
        {"grid": "10 cells, cache cold (computed once)", "wall_s": round(cached_s, 1), "peak_mb": round(cached_mb)},
        {"grid": "10 cells, cache warm", "wall_s": round(warm_s, 1), "peak_mb": round(warm_mb)},
        {"grid": "2 cells, cache warm", "wall_s": round(warm_small_s, 1), "peak_mb": round(warm_small_mb)},
    ]
    speedup = uncached_s / cached_s
    record("frozen_grid", rows, (
        f"`metricbench bench` of {len(LOSSES)} losses × 2 seeds, frozen timm resnet18 (random weights from a local "
        f"file), 224 px, {EPOCHS} epochs, batch 32 (m = 4), 2 runs at a time × 1 thread, on {len(a.index)} runs over "
        f"a CUB-layout tree of 300 photo-like JPEGs (mostly 500×375). The feature cache makes the grid "
        f"**{speedup:.1f}× faster** (cold cache, features computed inside the grid's first run) and gives the "
        f"same metrics (MAP@R, P@1, R@1 equal to 1e-4). Peak MB: the largest process (runner or run) of the grid."))
    print(json.dumps(rows, indent=1), f"speed-up {speedup:.1f}x")

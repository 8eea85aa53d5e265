"""Embed any dataset with a trained run: its model, its eval transform and its input normalisation.

The rows go through the run's whole model, images and all, even for a frozen-backbone run (its cached trunk
features exist only for the dataset it was trained on), and each set records which model made it
(`Provenance`): the SHA-256 of the model's weights and buffers, and the distance it was evaluated with.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from metricbench.data import load_dataset
from metricbench.data.image_files import ImageFiles
from metricbench.data.image_loading import embed_images
from metricbench.data.sources import available_datasets
from metricbench.feature_cache import state_dict_digest
from metricbench.run import LoadedRun, load_run
from metricbench.run_dir import RunDir
from metricbench.run_inputs import RunInputs

from .embedded_files import EmbeddedSet, Provenance

__all__ = ["SPLITS", "embed_dataset", "is_dataset_spec", "model_digest", "open_run"]

SPLITS = ("all", "train", "val", "test")


def open_run(run_dir: str | os.PathLike, device: str = "auto") -> LoadedRun:
    """Load a trained run to embed new data: its model reads images (never cached features).

    Raises:
        FileNotFoundError: `run_dir` is not a run directory, or it has no checkpoint yet.
    """
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise FileNotFoundError(f"RUN {str(run.path)!r} is not a run directory (no {run.config.name})")
    if not run.checkpoint.is_file():
        raise FileNotFoundError(f"RUN {str(run.path)!r} has no {run.checkpoint.name}: it has not finished an epoch; "
                                "train it first (metricbench train)")
    return load_run(run_dir, device=device, features=False)


def model_digest(run: LoadedRun) -> str:
    """SHA-256 of the run's model (weights and buffers, input statistics included)."""
    return state_dict_digest(run.model)


def is_dataset_spec(text: str) -> bool:
    """Whether `text` names a dataset (`digits`, `npz:PATH`, `folder:DIR`, ...) rather than a file."""
    names = [entry["name"] for entry in available_datasets()]
    prefix, colon, _ = text.partition(":")
    return text in names or (bool(colon) and f"{prefix}:" in {name.partition(":")[0] + ":" for name in names})


def embed_dataset(run: LoadedRun, run_dir: str | os.PathLike, source: str | None = None, *, split: str = "all",
                  batch_size: int = 256, progress: bool = False, what: str = "--dataset") -> EmbeddedSet:
    """Embed the rows `split` of dataset `source` (default: the run's own) with the run's model.

    In-memory data must have the shape the model was trained on, photos are decoded with the run's eval transform
    (size, colour, bounding boxes), and the model standardises them with the run's own statistics. The rows of a
    split are the run's saved ones for its own dataset (recognised by its fingerprint, wherever it lies); for
    another dataset, the split the run's protocol and seed make of it.

    Args:
        run: from `open_run`.
        run_dir: the run's directory (recorded in the provenance).
        source: a dataset spec (see `metricbench.data.load_dataset`); None: the run's dataset.
        split: "all", "train", "val" or "test".
        batch_size: rows per forward pass.
        progress: show a tqdm bar.
        what: how messages name `source`.

    Raises:
        ValueError: a dataset the model cannot take (other shape, photos for an in-memory model or the reverse),
            an unknown split, an empty split, or a bad batch size.
    """
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    spec = run.config.data.dataset if source is None else source
    inputs = run.inputs if source is None else _inputs_for(run, source, what)
    own = inputs.data.fingerprint == run.data.fingerprint
    if split == "all":
        rows = np.arange(len(inputs.data), dtype=np.int64)
    else:
        rows = np.asarray(getattr(run.split if own else inputs.split(run.config), split), dtype=np.int64)
    if len(rows) == 0:
        raise ValueError(f"--split {split}: dataset {spec!r} has no {split} rows")
    embeddings = _embed(run, inputs, rows, batch_size=batch_size, progress=progress)
    data = inputs.data
    paths = None
    if isinstance(data, ImageFiles):
        paths = np.array([os.fsencode(os.path.abspath(data.path(row))).decode("utf-8", "backslashreplace")
                          for row in rows], dtype=str)
    provenance = Provenance(model_digest(run), run.config.eval.metric, str(Path(run_dir).resolve()), spec, split)
    return EmbeddedSet(embeddings, rows, data.y[rows].astype(np.int64), tuple(data.class_names), paths, provenance)


def _inputs_for(run: LoadedRun, source: str, what: str) -> RunInputs:
    """The run's inputs (transform, workers) over another dataset, checked against what the model takes."""
    d = run.config.data
    table = source.partition(":")[0] in ("csv", "parquet")
    options = {"label_column": d.label_column, "feature_columns": d.feature_columns} if table else {}
    data = load_dataset(source, **options)
    photos = run.inputs.transform is not None
    if photos != isinstance(data, ImageFiles):
        kind = lambda p: "photos streamed from disk" if p else "data held in memory"  # noqa: E731
        raise ValueError(f"{what} {source!r} is {kind(not photos)}, but the run's model was trained on "
                         f"{kind(photos)} ({d.dataset!r})")
    if photos:
        return RunInputs(data, run.inputs.transform, run.inputs.workers, photo_stats=run.inputs.photo_stats,
                         mean=run.inputs.mean, std=run.inputs.std, augment=False)
    if tuple(data.x.shape[1:]) != run.inputs.input_shape:
        raise ValueError(f"{what} {source!r} has samples of shape {tuple(data.x.shape[1:])}, but the run's model "
                         f"takes {run.inputs.input_shape} (from {d.dataset!r})")
    return RunInputs(data, None, 0, mean=run.inputs.mean, std=run.inputs.std)


@torch.no_grad()
def _embed(run: LoadedRun, inputs: RunInputs, rows: np.ndarray, *, batch_size: int, progress: bool) -> np.ndarray:
    model, device = run.model.eval(), run.device
    if inputs.transform is not None:
        return embed_images(model, inputs.data, rows, inputs.transform, device=device, batch_size=batch_size,
                            workers=inputs.workers, progress=progress).numpy()
    x = inputs.data.x
    out = []
    with tqdm(total=len(rows), desc="embedding", unit="row", leave=False, disable=not progress) as bar:
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            out.append(model(torch.from_numpy(x[batch]).to(device)).float().cpu())
            bar.update(len(batch))
    return torch.cat(out).numpy()

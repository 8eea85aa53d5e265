"""A training run on disk: data → split → model + loss → trainer → evaluation → export.

The run directory's layout is `metricbench.run_dir.RunDir`'s; evaluating the test embeddings is
`metricbench.evaluation`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metricbench.eval import export_projector, knn_search, retrieval_metrics
from metricbench.losses import EmbeddingLoss, build_loss

from .atomic import write_json
from .checkpoint import load_checkpoint, save_checkpoint
from .config import ExperimentConfig, load_config, save_config
from .data import Dataset, Split, load_dataset, load_split, make_split, save_split, validation_split
from .distributed import DistributedContext, all_gather_rows, current_context, process_group, run_on_main
from .evaluation import check_evaluable, evaluate, projector_metadata, write_evaluation
from .logger import RunLogger
from .models import EmbeddingNet, build_model
from .output_dir import make_out_dir
from .run_dir import RunDir
from .sampling import rank_share
from .trainer import Trainer, embed, resolve_device

__all__ = ["LoadedRun", "export_rows", "load_run", "train_run"]


def _load_data(config: ExperimentConfig) -> Dataset:
    d = config.data
    return load_dataset(d.dataset, label_column=d.label_column, feature_columns=d.feature_columns, image_size=d.image_size)


def _input_stats(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardisation statistics of the training rows: per channel for images, per feature for vectors."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    mean = torch.from_numpy(x.mean(axis=axes, dtype=np.float64))
    std = torch.from_numpy(x.std(axis=axes, dtype=np.float64))
    if x.ndim == 4:
        mean, std = mean[:, None, None], std[:, None, None]
    return mean, std


def _saved_split(run: RunDir, data: Dataset) -> Split:
    """The run's split, refused when the data is no longer what the run was made from."""
    split = load_split(run.split)
    rows = len(split.train) + len(split.val) + len(split.test)
    if rows != len(data):
        raise ValueError(f"{str(run.split)!r} covers {rows} rows but dataset {data.name!r} now has {len(data)}; "
                         "the data changed since this run was made")
    if split.fingerprint is not None and split.fingerprint != data.fingerprint:  # None: a run from before fingerprints
        raise ValueError(f"dataset {data.name!r} changed since this run was made: its fingerprint is now "
                         f"{data.fingerprint}, {str(run.split)!r} recorded {split.fingerprint} (same {rows} rows, "
                         "other values, labels or class names); evaluate the run on the data it was trained on")
    return split


def _rows_used(config: ExperimentConfig, data: Dataset, split: Split) -> Split:
    """The split a run trains and evaluates on: the saved one, or for `data.holdout = "validation"` the
    split of its train and val rows that `validation_split` derives (split.npz keeps the full split)."""
    if config.data.holdout == "test":
        return split
    return validation_split(split, data.y, val_fraction=config.data.val_fraction,
                            test_fraction=config.data.test_fraction)


def _build(config: ExperimentConfig, data: Dataset, split: Split) -> tuple[EmbeddingNet, EmbeddingLoss]:
    torch.manual_seed(config.seed)  # fixes the initial weights of model and loss
    mean, std = _input_stats(data.x[split.train])
    model = build_model(config.model, input_shape=data.x.shape[1:], mean=mean, std=std)
    loss_fn = build_loss(
        config.loss.name, num_classes=data.num_classes, embedding_dim=config.model.embedding_dim, **config.loss.options
    )
    return model, loss_fn


def _rows(data: Dataset, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(data.x[rows]), torch.from_numpy(data.y[rows])


def _prepare_out(out: Path, *, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"--out {str(out)!r} already exists; pass --overwrite to replace it or --resume to continue it"
        )
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    make_out_dir(out)  # a parent that is a file or read-only: a ValueError naming --out


def train_run(config: ExperimentConfig | None, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
              stop_after_epochs: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate and export one run into directory `out`.

    Under torchrun every process calls this with the same arguments: each trains on its share of every
    global batch (see `metricbench.distributed`), rank 0 alone writes the run directory, and the test
    split is embedded by all ranks and evaluated once, by rank 0. Resuming needs `out` readable by every
    process (a shared file system when several machines resume).

    Args:
        config: the experiment; ignored with `resume=True` (the run's saved config is used).
        out: run directory. Refused if it exists, unless `overwrite` (replace) or `resume` (continue).
        resume: continue from `out/checkpoint.pt`, on any number of processes; the result equals an
            uninterrupted run's.
        stop_after_epochs: return after that many epochs in this call (resume later) — for time-sliced jobs.
        progress: show tqdm bars (rank 0 only).

    Returns:
        The contents of `metrics.json` (empty `test` when stopped early); `{}` on ranks other than 0.
    """
    out = Path(out)
    if resume:
        run = RunDir(out)
        if not run.checkpoint.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint to resume in {str(out)!r} "
                                    f"(expected {run.checkpoint.name})")
        config = load_config(run.config)
    elif config is None:
        raise ValueError("config is required unless resume=True")
    with process_group(resolve_device(config.train.device)) as (ranks, device):
        metrics = _train_and_evaluate(config, out, ranks, device, resume=resume, overwrite=overwrite,
                                      stop_after_epochs=stop_after_epochs, progress=progress and ranks.is_main)
    return metrics if ranks.is_main else {}


def _train_and_evaluate(config: ExperimentConfig, out: Path, ranks: DistributedContext, device: torch.device, *,
                        resume: bool, overwrite: bool, stop_after_epochs: int | None, progress: bool) -> dict[str, Any]:
    # Everything that can fail on bad input happens before the run directory is touched.
    run = RunDir(out)
    data = _load_data(config)
    full_split = _saved_split(run, data) if resume else dataclasses.replace(make_split(
        data.y, protocol=config.data.protocol, seed=config.seed,
        val_fraction=config.data.val_fraction, test_fraction=config.data.test_fraction,
    ), fingerprint=data.fingerprint)
    split = _rows_used(config, data, full_split)
    check_evaluable(data.y[split.test], config.eval.ks, labels_name=f"the {len(split.test)} test rows' labels",
                    ks_name="eval.ks")
    model, loss_fn = _build(config, data, split)
    trainer = Trainer(model, loss_fn, optim=config.optim, train=config.train, labels=data.y[split.train],
                      seed=config.seed, device=device)
    history: list[dict[str, Any]] = []
    if resume:
        state = load_checkpoint(run.checkpoint, map_location=device)
        trainer.load_state_dict(state)
        history = list(json.loads(state["history"]))
    else:
        def prepare() -> None:
            _prepare_out(out, overwrite=overwrite)
            save_config(config, run.config)
            save_split(full_split, run.split)

        run_on_main(prepare)  # an existing --out fails every rank, not only rank 0

    x_train, y_train = _rows(data, split.train)
    x_val, y_val = _rows(data, split.val)
    started, epochs_this_call, saved_epoch = time.perf_counter(), 0, trainer.epoch
    logger = RunLogger(out, resume_step=trainer.step if resume else None) if ranks.is_main else None  # rank 0 logs

    def log(step: int, epoch: int, values: dict[str, float]) -> None:
        if logger is not None:
            logger.log(step, epoch, values)

    with logger if logger is not None else contextlib.nullcontext():
        try:
            while trainer.epoch < config.train.epochs:
                if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                    return {"test": {}, "history": history, "stopped_after_epoch": trainer.epoch}
                means = trainer.train_epoch(x_train, y_train, log=lambda s, v: log(s, trainer.epoch + 1, v),
                                            progress=progress)
                record = {"epoch": trainer.epoch, **{f"train_{k}": v for k, v in means.items()}}
                if len(split.val) > 1:
                    val_embeddings = _embed_shared(model, x_val, device)  # every rank takes part
                    if ranks.is_main:
                        val = retrieval_metrics(val_embeddings, y_val, ks=(1,), metric=config.eval.metric)
                        record.update({f"val_{k}": v for k, v in val.items()})
                log(trainer.step, trainer.epoch, {k.replace("_", "/", 1): v for k, v in record.items() if k != "epoch"})
                history.append(record)
                if ranks.is_main:
                    save_checkpoint({**trainer.state_dict(), "history": json.dumps(history)}, run.checkpoint)
                saved_epoch = trainer.epoch
                epochs_this_call += 1
        except KeyboardInterrupt:
            if ranks.is_main:
                print(f"\ninterrupted; checkpoint of epoch {saved_epoch} kept. Continue with: "
                      f"metricbench train --resume --out {out}")
            raise
    train_seconds = time.perf_counter() - started

    embeddings = _embed_rows(model, data, split.test, device)  # every rank embeds a share; all get every row
    if not ranks.is_main:
        return {}
    test = _evaluate(embeddings, data, split.test, config, out_dir=out, split_name="test", progress=progress)
    metrics = {"test": test, "history": history, "epochs": trainer.epoch, "train_seconds_this_call": round(train_seconds, 3),
               "num_classes": data.num_classes, "split_sizes": {k: len(getattr(split, k)) for k in ("train", "val", "test")}}
    write_json(metrics, run.metrics)  # last: a metrics.json marks the run complete
    return metrics


def _embed_shared(model: EmbeddingNet, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(N, ...) inputs → (N, D) embeddings on the CPU, in row order. Under torchrun each rank embeds a
    contiguous share and every rank receives all rows (eval mode: a row's embedding does not depend on
    the others, so this equals embedding all rows in one process)."""
    ranks = current_context()
    if not ranks.distributed or len(x) < ranks.world_size:
        return embed(model, x, device=device)
    rows = rank_share(np.arange(len(x)), rank=ranks.rank, world_size=ranks.world_size)
    return all_gather_rows(embed(model, x[rows], device=device).to(device)).cpu()


def _embed_rows(model: EmbeddingNet, data: Dataset, rows: np.ndarray, device: torch.device) -> np.ndarray:
    return _embed_shared(model, torch.from_numpy(data.x[rows]), device).numpy()


def _evaluate(embeddings: np.ndarray, data: Dataset, rows: np.ndarray, config: ExperimentConfig, *,
              out_dir: Path | None, split_name: str, progress: bool) -> dict[str, Any]:
    evaluation = evaluate(embeddings, data.y[rows], config.eval)
    if out_dir is not None:
        write_evaluation(out_dir, evaluation, config.eval, class_names=data.class_names,
                         images=data.x[rows] if data.kind == "image" else None, rows=rows, split=split_name,
                         seed=config.seed, progress=progress)
    return evaluation.metrics


def export_rows(model: EmbeddingNet, data: Dataset, rows: np.ndarray, out_dir: Path, *, device: torch.device,
                metric: str = "l2", split_name: str = "test") -> dict[str, Path]:
    """Embedding Projector files of the given rows: vectors, metadata (class, nearest neighbour), config, sprite."""
    embeddings = _embed_rows(model, data, rows, device)
    _, nearest = knn_search(embeddings, k=1, metric=metric)
    metadata = projector_metadata(data.y[rows], nearest[:, 0], data.class_names, rows=rows, split=split_name)
    return export_projector(out_dir, embeddings, metadata, images=data.x[rows] if data.kind == "image" else None)


@dataclass(frozen=True)
class LoadedRun:
    """A finished (or checkpointed) run, ready to embed: its config, data, split and trained model."""

    config: ExperimentConfig
    data: Dataset
    split: Split
    model: EmbeddingNet
    device: torch.device

    def embed(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) embeddings of the data's `rows`, in order."""
        return _embed_rows(self.model, self.data, rows, self.device)


def load_run(run_dir: str | os.PathLike, device: str = "auto") -> LoadedRun:
    """Rebuild a run's model from its directory (config, split, checkpoint; `weights_only` load)."""
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise FileNotFoundError(f"{str(run.path)!r} is not a run directory (no {run.config.name})")
    config = load_config(run.config)
    data = _load_data(config)
    split = _rows_used(config, data, _saved_split(run, data))
    model, _ = _build(config, data, split)
    model.load_state_dict(load_checkpoint(run.checkpoint)["model"])
    torch_device = resolve_device(device)
    return LoadedRun(config, data, split, model.to(torch_device).eval(), torch_device)

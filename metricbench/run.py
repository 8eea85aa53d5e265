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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metricbench.eval import export_projector, knn_search, retrieval_metrics
from metricbench.eval.verification import verification_metrics, verification_pairs
from metricbench.losses import EmbeddingLoss, build_loss

from .atomic import write_json
from .checkpoint import load_checkpoint, save_checkpoint
from .config import EvalConfig, ExperimentConfig, load_config, save_config
from .data import Dataset, Split, load_split, save_split, validation_split
from .data.image_files import ImageFiles
from .distributed import DistributedContext, process_group, run_on_main
from .evaluation import DEFAULT_KS, check_evaluable, evaluate, projector_metadata, write_evaluation
from .logger import RunLogger
from .model_selection import best_epoch, should_stop
from .models import EmbeddingNet, build_model
from .output_dir import make_out_dir
from .run_dir import RunDir
from .run_inputs import RunInputs, load_inputs
from .trainer import Trainer, resolve_device

__all__ = ["LoadedRun", "export_rows", "load_run", "train_run"]


def _saved_split(run: RunDir, data: Dataset | ImageFiles) -> Split:
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


def _rows_used(config: ExperimentConfig, data: Dataset | ImageFiles, split: Split) -> Split:
    """The split a run trains and evaluates on: the saved one, or for `data.holdout = "validation"` the
    split of its train and val rows that `validation_split` derives (split.npz keeps the full split)."""
    if config.data.holdout == "test":
        return split
    return validation_split(split, data.y, val_fraction=config.data.val_fraction,
                            test_fraction=config.data.test_fraction)


def _eval_config(config: EvalConfig, data: Dataset | ImageFiles, rows: np.ndarray,
                 queries: np.ndarray | None) -> EvalConfig:
    """`config` with its Recall@K set: `eval.ks`, or the dataset's usual ones (CUB 1/2/4/8, SOP 1/10/100/1000,
    ...), leaving out those larger than the gallery of `rows` (with a warning)."""
    if config.ks is not None:
        return config
    ks = getattr(data, "recall_ks", DEFAULT_KS)
    gallery = len(rows) - 1 if queries is None else int((~queries).sum())
    kept = tuple(k for k in ks if k <= gallery) or (1,)
    if kept != ks:
        warnings.warn(f"eval.ks: the usual Recall@{'/'.join(map(str, ks))} of {data.name!r} leaves out "
                      f"K > {gallery}, the neighbours each test query can have; reporting Recall@"
                      f"{'/'.join(map(str, kept))}", RuntimeWarning, stacklevel=2)
    return dataclasses.replace(config, ks=kept)


def _build(config: ExperimentConfig, inputs: RunInputs, num_classes: int, *,
           load_weights: bool = True) -> tuple[EmbeddingNet, EmbeddingLoss]:
    torch.manual_seed(config.seed)  # fixes the initial weights of model and loss
    model = build_model(config.model, input_shape=inputs.input_shape, mean=inputs.mean, std=inputs.std,
                        precision=config.train.precision, load_weights=load_weights)
    loss_fn = build_loss(
        config.loss.name, num_classes=num_classes, embedding_dim=config.model.embedding_dim, **config.loss.options
    )
    return model, loss_fn


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
    inputs = load_inputs(config)
    data = inputs.data
    full_split = _saved_split(run, data) if resume else inputs.split(config)
    split = _rows_used(config, data, full_split)
    eval_config = _eval_config(config.eval, data, split.test, _query_mask(split))
    check_evaluable(data.y[split.test], eval_config.ks, labels_name=f"the {len(split.test)} test rows' labels",
                    ks_name="eval.ks", queries=_query_mask(split))
    if eval_config.verification:
        _check_verifiable(data.y[split.test], _query_mask(split))
    select_by, patience = config.train.select_by, config.train.patience
    if select_by is not None:
        _check_selectable(select_by, data.y[split.val])
    inputs = inputs.with_statistics(config, split.train)
    model, loss_fn = _build(config, inputs, data.num_classes)
    if config.model.freeze_backbone:  # the frozen trunk's features, from the cache (computed on a miss)
        inputs = inputs.with_frozen_backbone(config, model, device, progress=progress)
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

    training_rows = inputs.training_rows(split.train, seed=config.seed, skip_bad_images=config.data.skip_bad_images,
                                         device=device)
    started, epochs_this_call, saved_epoch = time.perf_counter(), 0, trainer.epoch
    logger = RunLogger(out, resume_step=trainer.step if resume else None) if ranks.is_main else None  # rank 0 logs

    def log(step: int, epoch: int, values: dict[str, float]) -> None:
        if logger is not None:
            logger.log(step, epoch, values)

    def stops_early() -> bool:
        # The val_ values are rank 0's alone (it computes them): its decision is every rank's.
        return patience is not None and run_on_main(lambda: should_stop(history, select_by, patience))

    with logger if logger is not None else contextlib.nullcontext():
        try:
            while trainer.epoch < config.train.epochs and not stops_early():
                if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                    return {"test": {}, "history": history, "stopped_after_epoch": trainer.epoch}
                means = trainer.train_epoch(training_rows, log=lambda s, v: log(s, trainer.epoch + 1, v),
                                            progress=progress)
                record = {"epoch": trainer.epoch, **{f"train_{k}": v for k, v in means.items()}}
                if getattr(training_rows, "skipped", None):
                    record["train_skipped_images"] = len(training_rows.skipped)
                if len(split.val) > 1:
                    val_embeddings = inputs.embed(model, split.val, device)  # every rank takes part
                    if ranks.is_main:
                        val = retrieval_metrics(val_embeddings, data.y[split.val], ks=(1,), metric=config.eval.metric)
                        record.update({f"val_{k}": v for k, v in val.items()})
                log(trainer.step, trainer.epoch, {k.replace("_", "/", 1): v for k, v in record.items() if k != "epoch"})
                history.append(record)
                if ranks.is_main:
                    if select_by is not None and best_epoch(history, select_by) == trainer.epoch:
                        # Before the checkpoint: a run killed between the two saves retrains this epoch when
                        # resumed and saves it again; the other order could leave an older best_model.pt.
                        save_checkpoint({"model": model.state_dict(), "epoch": trainer.epoch}, run.best_model)
                    save_checkpoint({**trainer.state_dict(), "history": json.dumps(history)}, run.checkpoint)
                saved_epoch = trainer.epoch
                epochs_this_call += 1
        except KeyboardInterrupt:
            if ranks.is_main:
                print(f"\ninterrupted; checkpoint of epoch {saved_epoch} kept. Continue with: "
                      f"metricbench train --resume --out {out}")
            raise
    train_seconds = time.perf_counter() - started
    stopped_early = trainer.epoch < config.train.epochs
    if select_by is not None:  # rank 0 reads the run directory, so other machines need not share it
        model.load_state_dict(run_on_main(lambda: load_checkpoint(run.best_model)["model"]))

    embeddings = inputs.embed(model, split.test, device, progress=progress)  # every rank embeds a share of the rows
    # The verification threshold is chosen on the validation rows, embedded by the model under test.
    on_val = eval_config.verification and _has_pairs(data.y[split.val])
    val_embeddings = inputs.embed(model, split.val, device) if on_val else None  # every rank takes part
    if not ranks.is_main:
        return {}
    val_scores = None
    if on_val:
        val_scores = verification_metrics(val_embeddings, data.y[split.val], metric=eval_config.metric,
                                          max_negative_pairs=eval_config.verification_negatives)
    test = _evaluate(embeddings, inputs, split, eval_config, seed=config.seed, out_dir=out, progress=progress,
                     verification_threshold=None if val_scores is None else val_scores["best_threshold"])
    if eval_config.verification:
        write_json(_verification_record(eval_config.metric, val_scores, test["verification"]), run.verification)
    metrics = {"test": test, "history": history, "epochs": trainer.epoch, "train_seconds_this_call": round(train_seconds, 3),
               "num_classes": data.num_classes, "split_sizes": {k: len(getattr(split, k)) for k in ("train", "val", "test")}}
    if stopped_early:
        metrics["stopped_early_at_epoch"] = trainer.epoch
    if select_by is not None:
        metrics.update(selected_epoch=best_epoch(history, select_by), selected_by=select_by)
    write_json(metrics, run.metrics)  # last: a metrics.json marks the run complete
    return metrics


def _check_selectable(select_by: str, val_labels: np.ndarray) -> None:
    """Refuse `train.select_by` on a split whose validation rows cannot score an epoch."""
    if len(val_labels) < 2:
        raise ValueError(f"train.select_by = {select_by!r} picks the epoch by its validation {select_by}, but the "
                         f"split has no validation rows (got {len(val_labels)}); set data.val_fraction > 0 "
                         "or leave train.select_by unset")
    check_evaluable(val_labels, (1,), labels_name=f"train.select_by: the {len(val_labels)} validation rows' labels")


def _query_mask(split: Split) -> np.ndarray | None:
    """Which test rows are queries (In-Shop), as a mask over `split.test`; None for leave-one-out."""
    return None if split.queries is None else np.isin(split.test, split.queries)


def _check_verifiable(labels: np.ndarray, queries: np.ndarray | None) -> None:
    """Refuse `eval.verification` on test rows without both same-class and different-class pairs."""
    try:
        verification_pairs(labels, queries=queries, max_positive_pairs=1, max_negative_pairs=1)
    except ValueError as error:
        raise ValueError(f"eval.verification: the {len(labels)} test rows' {error}") from None


def _has_pairs(labels: np.ndarray) -> bool:
    """Whether rows with these labels have a same-class and a different-class pair (to choose a threshold on)."""
    sizes = np.unique(labels, return_counts=True)[1]
    return sizes.size >= 2 and sizes.max() >= 2


def _verification_record(metric: str, val_scores: dict[str, Any] | None, test_scores: dict[str, Any]) -> dict[str, Any]:
    """verification.json: the "same class" distance threshold, chosen on the validation rows' pairs when
    `val_scores` has them (the best balanced accuracy there), else on the test rows' (with a warning)."""
    record = {"metric": metric, "distance": "squared L2" if metric == "l2" else "1 - cosine similarity",
              "same_class_when": "distance <= threshold"}
    if val_scores is None:
        warnings.warn("eval.verification: the split has no validation rows with both same-class and "
                      "different-class pairs, so the threshold in verification.json is chosen on the test rows "
                      "(its accuracy there is optimistic)", RuntimeWarning, stacklevel=3)
        return {**record, "threshold": test_scores["best_threshold"], "chosen_on": "test",
                "test_accuracy_at_threshold": test_scores["best_accuracy"]}
    return {**record, "threshold": val_scores["best_threshold"], "chosen_on": "validation",
            "val_best_accuracy": val_scores["best_accuracy"],
            "test_accuracy_at_threshold": test_scores["accuracy_at_val_threshold"]}


def _evaluate(embeddings: np.ndarray, inputs: RunInputs, split: Split, config: EvalConfig, *, seed: int,
              out_dir: Path | None, progress: bool, split_name: str = "test",
              verification_threshold: float | None = None) -> dict[str, Any]:
    data, rows = inputs.data, split.test
    evaluation = evaluate(embeddings, data.y[rows], config, queries=_query_mask(split),
                          verification_threshold=verification_threshold)
    if out_dir is not None:
        write_evaluation(out_dir, evaluation, config, class_names=data.class_names,
                         images=inputs.thumbnails(rows) if config.export else None, rows=rows, split=split_name,
                         columns=inputs.metadata(rows), seed=seed, progress=progress, thumbnails=inputs.thumbnails)
    return evaluation.metrics


def export_rows(run: LoadedRun, rows: np.ndarray, out_dir: Path, *, metric: str = "l2",
                split_name: str = "test") -> dict[str, Path]:
    """Embedding Projector files of the given rows: vectors, metadata (class, nearest neighbour), config, sprite."""
    embeddings = run.embed(rows)
    _, nearest = knn_search(embeddings, k=1, metric=metric)
    data = run.inputs.data
    metadata = projector_metadata(data.y[rows], nearest[:, 0], data.class_names, rows=rows, split=split_name,
                                  columns=run.inputs.metadata(rows))
    return export_projector(out_dir, embeddings, metadata, images=run.inputs.thumbnails(rows))


@dataclass(frozen=True)
class LoadedRun:
    """A finished (or checkpointed) run, ready to embed: its config, inputs, split and trained model."""

    config: ExperimentConfig
    inputs: RunInputs
    split: Split
    model: EmbeddingNet
    device: torch.device

    @property
    def data(self) -> Dataset | ImageFiles:
        return self.inputs.data

    def embed(self, rows: np.ndarray, *, progress: bool = False) -> np.ndarray:
        """(len(rows), D) embeddings of the data's `rows`, in order."""
        return self.inputs.embed(self.model, rows, self.device, progress=progress)

    def queries(self, split_name: str) -> np.ndarray | None:
        """Query mask over the rows of split `split_name`: the test split of a query/gallery dataset has one."""
        return _query_mask(self.split) if split_name == "test" else None

    def eval_config(self, split_name: str, **options: Any) -> EvalConfig:
        """The run's eval config with `options` replaced and Recall@K resolved for split `split_name`."""
        config = dataclasses.replace(self.config.eval, **options)
        return _eval_config(config, self.data, getattr(self.split, split_name), self.queries(split_name))


def load_run(run_dir: str | os.PathLike, device: str = "auto", *, features: bool = True) -> LoadedRun:
    """Rebuild a run's model from its directory (config, split, checkpoint; `weights_only` load).

    With `train.select_by` the model is the selected epoch's (`best_model.pt`); otherwise, or before
    any epoch was saved as best, the last checkpointed epoch's. `features = False` makes a frozen-backbone
    run embed images through its whole model instead of reading (or computing) its cached trunk features.
    """
    run = RunDir(run_dir)
    if not run.config.is_file():
        raise FileNotFoundError(f"{str(run.path)!r} is not a run directory (no {run.config.name})")
    config = load_config(run.config)
    inputs = load_inputs(config)
    split = _rows_used(config, inputs.data, _saved_split(run, inputs.data))
    inputs = inputs.with_statistics(config, split.train)
    model, _ = _build(config, inputs, inputs.data.num_classes, load_weights=False)  # the checkpoint has them all
    selected = config.train.select_by is not None and run.best_model.is_file()
    model.load_state_dict(load_checkpoint(run.best_model if selected else run.checkpoint)["model"])
    torch_device = resolve_device(device)
    if config.model.freeze_backbone and features:
        inputs = inputs.with_frozen_backbone(config, model, torch_device)
    return LoadedRun(config, inputs, split, model.to(torch_device).eval(), torch_device)

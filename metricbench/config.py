"""One experiment config tree: TOML file + `--set a.b=c` overrides, saved resolved beside every run.

Defaults live in the dataclasses below and only there; unknown keys and wrongly typed values fail
with the dotted key that is wrong. Values are parsed as TOML literals, never evaluated as code.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from typing import Any, Sequence

import tomli_w

from .atomic import atomic_write
from .data.image_transforms import COLOR_MODES
from .data.splits import PROTOCOLS
from .model_selection import SELECTION_METRICS
from .models import PRECISIONS, ModelConfig
from .typed_config import config_from_dict, read_toml

__all__ = [
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "LossSpec",
    "OptimConfig",
    "TrainConfig",
    "apply_override",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_config",
]


@dataclass(frozen=True)
class DataConfig:
    """Which data, how it is split, and how photos are decoded.

    Attributes:
        dataset: a spec of `metricbench.data.load_dataset` (`mnist5k`, `npz:PATH`, `cub200:DIR`, ...); a
            relative PATH/DIR is made absolute (from the working directory) when the config is built.
        protocol: `closed` (same classes in train/val/test), `open` (test classes unseen in training),
            `standard` (the dataset's own split: CUB, Cars, SOP, In-Shop, a table's split column), or
            `auto`: `standard` for datasets with their own split, else `closed`.
        val_fraction: share held out for validation: of the rows (of the training classes for `open`),
            default 0.1; for `standard`, of the training *classes* (class-disjoint, as in A Metric
            Learning Reality Check), default 0.25.
        test_fraction: share held out for test (closed protocol only).
        label_column: label column of CSV/Parquet files.
        feature_columns: feature columns of CSV/Parquet files (default: every other numeric column).
        holdout: what the run is evaluated on: `test`, or `validation` for hyperparameter search — the
            test rows are then never used; the train and val rows are split again with the same
            protocol (class-disjoint for `open` and `standard`) and the run is evaluated on that held-out part.
        image_size: (height, width) of the photos the model sees (streamed sources only; default 224x224).
        crop_scale: RandomResizedCrop's range of crop areas for training photos.
        crop_boxes: crop photos to the dataset's bounding boxes first (CUB, Cars).
        color: `rgb` or `gray` photos.
        mean, std: per-channel input normalisation; default: ImageNet's for photos, the training
            split's statistics for in-memory data.
        skip_bad_images: leave unreadable photos out of training batches (counted and warned) instead of
            stopping with the file's name.
    """

    dataset: str = "mnist5k"
    protocol: str = "auto"
    val_fraction: float | None = None
    test_fraction: float = 0.2
    label_column: str = "label"
    feature_columns: tuple[str, ...] | None = None
    holdout: str = "test"
    image_size: tuple[int, int] | None = None
    crop_scale: tuple[float, float] = (0.16, 1.0)
    crop_boxes: bool = False
    color: str = "rgb"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    skip_bad_images: bool = False

    def __post_init__(self) -> None:
        if self.holdout not in ("test", "validation"):
            raise ValueError(f"data.holdout must be test or validation; got {self.holdout!r}")
        if self.protocol not in ("auto", *PROTOCOLS):
            raise ValueError(f"data.protocol must be one of auto, {', '.join(PROTOCOLS)}; got {self.protocol!r}")
        if self.color not in COLOR_MODES:
            raise ValueError(f"data.color must be one of {', '.join(COLOR_MODES)}; got {self.color!r}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ValueError(f"data.image_size must be [height, width], both >= 1; got {list(self.image_size)}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"data.crop_scale must be [low, high] with 0 < low <= high <= 1; got {list(self.crop_scale)}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean and data.std must be given together")
        if self.std is not None and (len(self.std) != len(self.mean) or min(self.std) <= 0):
            raise ValueError(f"data.std must have one value > 0 per data.mean value; got mean {list(self.mean)}, "
                             f"std {list(self.std)}")
        # The saved config names the same files from any working directory (eval/export of a run elsewhere).
        object.__setattr__(self, "dataset", _absolute_dataset(self.dataset))


def _absolute_dataset(spec: str) -> str:
    """`npz:rel/x.npz` → `npz:/cwd/rel/x.npz` (after `~` expansion); built-in names are returned unchanged."""
    from .data import available_datasets

    prefix, colon, rest = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    file_formats = {row["name"].partition(":")[0] for row in available_datasets() if ":" in row["name"]}
    if not (colon and rest and prefix in file_formats):
        return spec
    return f"{prefix}:{os.path.abspath(os.path.expanduser(rest))}"


@dataclass(frozen=True)
class LossSpec:
    """The loss by registered name (see `metricbench.losses.available_losses()`) and its options."""

    name: str = "softmax"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A registered loss's options are typed and range-checked now, named `loss.options.<key>`, before
        # anything runs; `pml:` options are PML's own keyword arguments, checked when the loss is built.
        if not self.name.startswith("pml:"):
            from metricbench.losses.registry import loss_class, make_config

            make_config(loss_class(self.name).Config, self.options, owner=f"loss {self.name!r}", prefix="loss.options")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule.

    Attributes:
        name: `adam`, `adamw`, `sgd` or `rmsprop` (A Metric Learning Reality Check's).
        lr: learning rate of the model (and of loss parameters unless `loss_lr` or the loss sets one).
        backbone_lr: learning rate of a timm backbone's trunk (its own parameter group); default `lr`.
        loss_lr: learning rate of the loss's own parameters (heads, centers); default `lr`.
        weight_decay: L2 penalty (decoupled for adamw).
        momentum: SGD and RMSprop momentum.
        schedule: `cosine` (per-step decay to 0) or `constant`.
        warmup_epochs: linear warm-up length, in epochs (may be fractional).
        clip_grad_norm: clip the global gradient norm to this value (off when unset).
    """

    name: str = "adam"
    lr: float = 1e-3
    backbone_lr: float | None = None
    loss_lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.name not in ("adam", "adamw", "sgd", "rmsprop"):
            raise ValueError(f"optim.name must be one of adam, adamw, sgd, rmsprop; got {self.name!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule must be one of cosine, constant; got {self.schedule!r}")
        for key in ("lr", "backbone_lr", "loss_lr", "clip_grad_norm"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ValueError(f"optim.{key} must be > 0, got {value}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("optim.weight_decay and optim.warmup_epochs must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """Training loop.

    Attributes:
        epochs: passes over the training split.
        batch_size: samples per step.
        sampler: `random`, `m-per-class` (m samples of each of batch_size/m classes), or `auto`
            (m-per-class for losses that need positive pairs in a batch, random otherwise).
        m_per_class: m for the m-per-class sampler (default: the smallest m that fills a batch).
        device: `auto` (CUDA when present), `cpu` or `cuda`.
        log_every: steps between logged scalars.
        num_workers: processes decoding streamed photos (default: one per core, at most 8; 0 decodes in
            the training process). In-memory data needs none.
        precision: `fp32`, or mixed precision `bf16` (CPU and CUDA) or `fp16` (with a gradient scaler) for
            the model's forward pass; embeddings are float32 before any loss.
        feature_cache: with `model.freeze_backbone`, read the backbone's features from the on-disk cache
            (computed once, shared by every run and process: $METRICBENCH_CACHE_DIR, default
            ~/.cache/metricbench/features); false runs the frozen backbone on every step (same numbers, slower).
        select_by: test (and export) the model of the epoch with the best validation value of this metric,
            `map_at_r`, `precision_at_1` or `r_precision` (the earliest epoch on ties), as in A Metric
            Learning Reality Check; needs validation rows. Unset: the last epoch's model.
        patience: stop training after this many epochs without a better validation `select_by` value
            (needs `select_by`). Unset: train all `epochs`.
    """

    epochs: int = 10
    batch_size: int = 128
    sampler: str = "auto"
    m_per_class: int | None = None
    device: str = "auto"
    log_every: int = 10
    num_workers: int | None = None
    precision: str = "fp32"
    feature_cache: bool = True
    select_by: str | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.sampler not in ("auto", "random", "m-per-class"):
            raise ValueError(f"train.sampler must be one of auto, random, m-per-class; got {self.sampler!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device must be one of auto, cpu, cuda; got {self.device!r}")
        for key in ("epochs", "batch_size", "log_every", "m_per_class", "patience"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"train.{key} must be >= 1, got {value}")
        if self.batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"train.num_workers must be >= 0, got {self.num_workers}")
        if self.select_by is not None and self.select_by not in SELECTION_METRICS:
            raise ValueError(f"train.select_by must be one of {', '.join(SELECTION_METRICS)}; got {self.select_by!r}")
        if self.patience is not None and self.select_by is None:
            raise ValueError(f"train.patience needs train.select_by (the validation metric it waits on); "
                             f"got patience {self.patience} and no select_by")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation after training: leave-one-out retrieval and distance statistics on the test split.

    Attributes:
        metric: `l2` or `cosine`.
        ks: the K of Recall@K.
        full_map: also compute `map`, the mean average precision over the whole ranking (O(N²) time).
        export: write the Embedding Projector files of the test embeddings.
        plots: write the UMAP, distance-histogram and class-margin plots.
        verification: also score pair verification (same class or not?) on the test split: ROC AUC,
            TAR at FAR 1e-2/1e-3/1e-4, EER and the best balanced accuracy (`metricbench.eval.verification_metrics`;
            query-gallery pairs for In-Shop), and choose a distance threshold on the validation rows
            (the test rows without any), written to verification.json.
        verification_negatives: most negative (different-class) pairs scored: all of them when fewer,
            else a seeded uniform sample without replacement of this many (same-class pairs: all, up
            to 1,000,000). TAR at FAR f needs at least 1/f of them.
    """

    metric: str = "l2"
    ks: tuple[int, ...] | None = None
    full_map: bool = False
    export: bool = True
    plots: bool = True
    verification: bool = False
    verification_negatives: int = 1_000_000

    def __post_init__(self) -> None:
        if self.metric not in ("l2", "cosine"):
            raise ValueError(f"eval.metric must be l2 or cosine; got {self.metric!r}")
        if self.ks is not None and (not self.ks or any(k < 1 for k in self.ks)):
            raise ValueError(f"eval.ks must be positive ints, got {self.ks}")
        if self.verification_negatives < 1:
            raise ValueError(f"eval.verification_negatives must be >= 1, got {self.verification_negatives}")


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run depends on; saved as `config.toml` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossSpec = field(default_factory=LossSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optim.backbone_lr is not None and not self.model.arch.startswith("timm:"):
            raise ValueError(f"optim.backbone_lr applies to timm backbones (model.arch = \"timm:<name>\"), "
                             f"got model.arch {self.model.arch!r}")
        if self.optim.backbone_lr is not None and self.model.freeze_backbone:
            raise ValueError("optim.backbone_lr has nothing to train with model.freeze_backbone = true")


def _drop_none(value: Any) -> Any:
    # TOML has no null: an unset optional is written as an absent key (its default is None).
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists, `None`s dropped), TOML- and JSON-ready."""
    return _drop_none(dataclasses.asdict(config))


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override to a nested dict in place.

    The value is parsed as a TOML literal (`3`, `1e-3`, `true`, `"x"`, `[1, 2]`, `{k = 1}`); anything
    that is not a TOML literal is taken as a plain string (`loss.name=center`).
    """
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"--set expects KEY=VALUE with a dotted key (e.g. train.epochs=5), got {assignment!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {key}: {part!r} is a value, not a table")
        node = child
    node[leaf] = value


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = (), *,
                what: str = "config file") -> ExperimentConfig:
    """Defaults ← TOML file (if any) ← `KEY=VALUE` overrides, validated.

    Args:
        path: the TOML file, or None for the defaults.
        overrides: `a.b=c` assignments (see `apply_override`).
        what: how messages name `path` (the CLI passes `--config`).

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: `path` is a directory or not TOML; an unknown key or a value out of range.
        InputTypeError: a value of the wrong type (a TypeError).
    """
    data: dict[str, Any] = read_toml(path, what=what) if path is not None else {}
    for assignment in overrides:
        apply_override(data, assignment)
    return config_from_dict(ExperimentConfig, data)


def save_config(config: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as TOML, atomically."""
    data = config_to_dict(config)
    atomic_write(path, lambda f: tomli_w.dump(data, f))

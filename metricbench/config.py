"""One experiment config tree: TOML file + `--set a.b=c` overrides, saved resolved beside every run.

Defaults live in the dataclasses below and only there; unknown keys and wrongly typed values fail
with the dotted key that is wrong. Values are parsed as TOML literals, never evaluated as code.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import tomli_w

from .models import ModelConfig

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
    """Which data and how it is split.

    Attributes:
        dataset: `mnist5k`, `digits`, `npz:PATH`, `idx:DIR`, `folder:DIR`, `csv:PATH` or `parquet:PATH`.
        protocol: `closed` (same classes in train/val/test) or `open` (test classes unseen in training).
        val_fraction: share of the (training classes') samples held out for validation.
        test_fraction: share held out for test (closed protocol only).
        label_column: label column of CSV/Parquet files.
        feature_columns: feature columns of CSV/Parquet files (default: every other numeric column).
        image_size: (height, width) to resize folder images to (default: all must share one size).
        holdout: what the run is evaluated on: `test`, or `validation` for hyperparameter search — the
            test rows are then never used; the train and val rows are split again with the same
            protocol (class-disjoint for `open`) and the run is evaluated on that held-out part.
    """

    dataset: str = "mnist5k"
    protocol: str = "closed"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    label_column: str = "label"
    feature_columns: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None
    holdout: str = "test"

    def __post_init__(self) -> None:
        if self.holdout not in ("test", "validation"):
            raise ValueError(f"data.holdout must be test or validation; got {self.holdout!r}")


@dataclass(frozen=True)
class LossSpec:
    """The loss by registered name (see `metricbench.losses.available_losses()`) and its options."""

    name: str = "softmax"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule.

    Attributes:
        name: `adam`, `adamw` or `sgd`.
        lr: learning rate of the model (and of loss parameters unless `loss_lr` or the loss sets one).
        loss_lr: learning rate of the loss's own parameters (heads, centers); default `lr`.
        weight_decay: L2 penalty (decoupled for adamw).
        momentum: SGD momentum.
        schedule: `cosine` (per-step decay to 0) or `constant`.
        warmup_epochs: linear warm-up length, in epochs (may be fractional).
        clip_grad_norm: clip the global gradient norm to this value (off when unset).
    """

    name: str = "adam"
    lr: float = 1e-3
    loss_lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    clip_grad_norm: float | None = None

    def __post_init__(self) -> None:
        if self.name not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optim.name must be one of adam, adamw, sgd; got {self.name!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"optim.schedule must be one of cosine, constant; got {self.schedule!r}")
        for key in ("lr", "loss_lr", "clip_grad_norm"):
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
    """

    epochs: int = 10
    batch_size: int = 128
    sampler: str = "auto"
    m_per_class: int | None = None
    device: str = "auto"
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.sampler not in ("auto", "random", "m-per-class"):
            raise ValueError(f"train.sampler must be one of auto, random, m-per-class; got {self.sampler!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"train.device must be one of auto, cpu, cuda; got {self.device!r}")
        for key in ("epochs", "batch_size", "log_every", "m_per_class"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"train.{key} must be >= 1, got {value}")
        if self.batch_size < 2:
            raise ValueError(f"train.batch_size must be >= 2, got {self.batch_size}")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation after training: leave-one-out retrieval and distance statistics on the test split.

    Attributes:
        metric: `l2` or `cosine`.
        ks: the K of Recall@K.
        full_map: also compute `map`, the mean average precision over the whole ranking (O(N²) time).
        export: write the Embedding Projector files of the test embeddings.
        plots: write the UMAP, distance-histogram and class-margin plots.
    """

    metric: str = "l2"
    ks: tuple[int, ...] = (1, 2, 4, 8)
    full_map: bool = False
    export: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        if self.metric not in ("l2", "cosine"):
            raise ValueError(f"eval.metric must be l2 or cosine; got {self.metric!r}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"eval.ks must be positive ints, got {self.ks}")


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


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a type hint; accept ints for floats and lists for tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except (TypeError, ValueError) as err:
                errors.append(err)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, prefix=key)
    if hint is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{key} must be a list, got {value!r}")
        item = args[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{key} must be a table, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise TypeError(f"{key} must be {hint.__name__}, got {value!r}")
    return value


def config_from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build config dataclass `cls` from a nested mapping; unknown keys raise, naming the valid ones."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{prefix or 'config'} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ValueError(f"unknown config key(s) {', '.join(where + u for u in unknown)}; valid: {', '.join(where + n for n in names)}")
    values = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**values)


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


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Defaults ← TOML file (if any) ← `KEY=VALUE` overrides, validated."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    for assignment in overrides:
        apply_override(data, assignment)
    return config_from_dict(ExperimentConfig, data)


def save_config(config: ExperimentConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as TOML, atomically."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tomli_w.dump(config_to_dict(config), tmp)
    os.replace(tmp.name, path)

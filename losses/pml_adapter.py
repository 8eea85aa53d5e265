"""Run any pytorch-metric-learning loss (optionally with a miner) through the metricbench interface."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import Tensor, nn

from metricbench.distributed import gather_batch

from .base import EmbeddingLoss, LossOutput

__all__ = ["PMLLoss", "PMLLossConfig", "build_pml_loss"]

# Constructor arguments that metricbench supplies from the data, never from options.
_DATA_ARGS = {"num_classes": "num_classes", "embedding_size": "embedding_dim"}


def _public_names(module: Any, base: type) -> list[str]:
    return sorted(n for n, obj in vars(module).items() if isinstance(obj, type) and issubclass(obj, base) and obj is not base)


def _init_params(cls: type) -> set[str]:
    """Keyword arguments accepted anywhere along `cls`'s constructor chain (up to `nn.Module`).

    PML constructors forward `**kwargs` to their bases, so the valid options are the union.
    Used to reject unknown options with a clear message, never to drop them.
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
    return names


def _instantiate(module: Any, base: type, kind: str, name: str, options: dict[str, Any], data: dict[str, int]) -> Any:
    cls = getattr(module, name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(
            f"unknown pytorch-metric-learning {kind} {name!r}; available: {', '.join(_public_names(module, base))}"
        )
    accepted = _init_params(cls)
    valid = sorted(accepted - set(_DATA_ARGS))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for {kind} {name!r}; valid options: {', '.join(valid)}")
    kwargs = {arg: data[source] for arg, source in _DATA_ARGS.items() if arg in accepted}
    try:
        return cls(**kwargs, **options)
    except (TypeError, AssertionError) as err:  # PML checks ranges with assert
        raise ValueError(f"invalid options {options!r} for {kind} {name!r}: {err}") from err


@dataclass(frozen=True)
class PMLLossConfig:
    """Options of `pml:<LossName>`.

    Attributes:
        loss: class name in `pytorch_metric_learning.losses` (e.g. `"TripletMarginLoss"`).
        options: keyword arguments of that class (`num_classes`/`embedding_size` come from the data).
        miner: optional class name in `pytorch_metric_learning.miners`.
        miner_options: keyword arguments of the miner.
    """

    loss: str = "ContrastiveLoss"
    options: dict[str, Any] = field(default_factory=dict)
    miner: str | None = None
    miner_options: dict[str, Any] = field(default_factory=dict)


class PMLLoss(EmbeddingLoss):
    """A pytorch-metric-learning loss behind the metricbench interface.

    Parameters of the PML loss (e.g. the class weights of `ArcFaceLoss`) are trained through
    `param_groups()`. Parts: `"loss"`, and `"mined"` (number of mined tuples) when a miner is set.

    Under torchrun, pair losses (and their miner) run on the global batch, gathered from every rank with
    gradients; classification losses (ArcFace, ...) are per-sample means and stay on each rank's share.
    """

    Config = PMLLossConfig

    def __init__(self, config: PMLLossConfig | None = None, *, num_classes: int, embedding_dim: int) -> None:
        super().__init__(config, num_classes=num_classes, embedding_dim=embedding_dim)
        data = {"num_classes": num_classes, "embedding_dim": embedding_dim}
        cfg = self.config
        self.pml_loss = _instantiate(pml_losses, pml_losses.BaseMetricLossFunction, "loss", cfg.loss, dict(cfg.options), data)
        self.miner = (
            _instantiate(pml_miners, pml_miners.BaseMiner, "miner", cfg.miner, dict(cfg.miner_options), data)
            if cfg.miner
            else None
        )
        # Classification losses (ArcFace, ...) index a C × D weight table: their labels must be in range.
        self.indexes_classes = "num_classes" in _init_params(type(self.pml_loss))
        # Every other PML loss compares pairs inside the batch.
        self.needs_positive_pairs = not self.indexes_classes

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        if self.needs_positive_pairs:
            embeddings, labels = gather_batch(embeddings, labels)  # the global batch under torchrun
        parts: dict[str, Tensor] = {}
        indices_tuple = None
        if self.miner is not None:
            indices_tuple = self.miner(embeddings, labels)
            parts["mined"] = torch.tensor(float(indices_tuple[0].numel()))
        loss = self.pml_loss(embeddings, labels, indices_tuple)
        parts["loss"] = loss.detach()
        return LossOutput(loss, parts)


def build_pml_loss(loss_name: str, *, num_classes: int, embedding_dim: int, **options: Any) -> PMLLoss:
    """Build `pml:<loss_name>`: `options` are the PML loss's own keyword arguments, plus `miner` and
    `miner_options`.

    Example:
        >>> build_pml_loss("TripletMarginLoss", num_classes=10, embedding_dim=64, margin=0.1,
        ...                miner="TripletMarginMiner", miner_options={"margin": 0.2})  # doctest: +SKIP
    """
    miner = options.pop("miner", None)
    miner_options = options.pop("miner_options", {})
    config = PMLLossConfig(loss=loss_name, options=options, miner=miner, miner_options=dict(miner_options))
    return PMLLoss(config, num_classes=num_classes, embedding_dim=embedding_dim)

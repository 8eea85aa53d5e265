"""The one loss interface: every loss takes embeddings and labels and returns a `LossOutput`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .search_space import SearchSpace

__all__ = ["EmbeddingLoss", "LossOutput", "validate_batch"]


@dataclass(frozen=True)
class LossOutput:
    """What a loss returns.

    Attributes:
        loss: 0-dim differentiable tensor to call `backward()` on.
        parts: named, detached 0-dim tensors for logging (`"ce"`, `"center"`, ...). Losses never call
            `.item()` on them (a device sync); the trainer's logger does, at its own interval.
    """

    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class _NoOptions:
    """Config of a loss that has no options."""


def validate_batch(embeddings: Tensor, labels: Tensor, num_classes: int | None = None) -> None:
    """Raise a `ValueError`/`TypeError` naming the argument when a batch is malformed.

    Args:
        embeddings: (B, D) floating tensor.
        labels: (B,) integer tensor.
        num_classes: when given, labels must lie in `[0, num_classes)` (losses that index a class table).
    """
    if not isinstance(embeddings, Tensor) or not isinstance(labels, Tensor):
        raise TypeError(
            f"embeddings and labels must be torch tensors, got {type(embeddings).__name__} "
            f"and {type(labels).__name__}"
        )
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (batch, dim), got {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise TypeError(f"embeddings must be a floating tensor, got {embeddings.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (batch,), got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        # A ValueError like every other label problem, so callers catch one type for bad labels.
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if embeddings.shape[0] == 0:
        raise ValueError(f"embeddings must hold at least one row, got {tuple(embeddings.shape)}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have one entry per embedding: embeddings {tuple(embeddings.shape)}, "
            f"labels {tuple(labels.shape)}"
        )
    if num_classes is not None and labels.numel():
        # One sync per step; it turns a CUDA device-side assert into an error that names the values.
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.numel():
            shown = sorted(set(bad[:10].tolist()))
            raise ValueError(f"labels must lie in [0, {num_classes}), got {shown}")


class EmbeddingLoss(nn.Module):
    """Base of every metricbench loss: validate at the boundary, then `compute`.

    Subclasses set `Config` (a frozen dataclass holding every option and its default) and implement
    `compute(embeddings, labels) -> LossOutput`. `forward` has no side effects; losses with
    non-gradient state (moving centers) change it only in `update_state`, which the trainer calls
    after each optimizer step.

    Under torchrun every rank calls the loss on its share of the global batch. A loss that compares
    samples inside a batch (mining, pairs) gathers the global batch at the top of `compute` with
    `metricbench.distributed.gather_batch` (a no-op in one process), as the triplet losses do; a
    per-sample mean needs nothing, because the trainer weights each rank's loss by its share.

    Args:
        config: the loss's options; `Config()` (the defaults) when omitted.
        num_classes: number of classes in the training data (accepted by every loss).
        embedding_dim: size D of the embeddings (accepted by every loss).
    """

    Config: ClassVar[type] = _NoOptions
    #: True for losses that index a per-class table (a softmax head, centers): labels must be in [0, C).
    indexes_classes: ClassVar[bool] = False
    #: True for losses that learn only from pairs of one class inside a batch (triplet, contrastive):
    #: the trainer then samples m-per-class batches by default. Such losses report the part
    #: `"positive_pairs"`, and the trainer warns when batches keep arriving without any.
    needs_positive_pairs: ClassVar[bool] = False
    #: Ranges of the options worth tuning (`metricbench tune`); empty when there is nothing to search.
    search_space: ClassVar[SearchSpace] = {}

    def __init__(self, config: Any = None, *, num_classes: int, embedding_dim: int) -> None:
        super().__init__()
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(f"config must be a {self.Config.__name__}, got {type(config).__name__}")
        for name, value in (("num_classes", num_classes), ("embedding_dim", embedding_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.config = config
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim

    def forward(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        """Compute the loss of one batch.

        Args:
            embeddings: (B, D) float tensor.
            labels: (B,) integer tensor.
        """
        validate_batch(embeddings, labels, self.num_classes if self.indexes_classes else None)
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"embeddings must have dim {self.embedding_dim} (the loss's embedding_dim), "
                f"got {embeddings.shape[1]}"
            )
        return self.compute(embeddings, labels)

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer param groups for the loss's own trainable parameters (empty if it has none).

        Each group has a `name`, its `params` and, when the loss fixes one, its own `lr`; the trainer
        puts these next to the model's group in its single optimizer.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"name": "loss", "params": params}] if params else []

    @torch.no_grad()
    def update_state(self, embeddings: Tensor, labels: Tensor) -> None:
        """Move non-gradient state (e.g. centers); called by the trainer after `optimizer.step()`."""

    def extra_repr(self) -> str:
        options = ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config))
        return f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}" + (
            f", {options}" if options else ""
        )

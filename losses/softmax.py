"""Softmax baseline: a linear classifier head on the embeddings, trained with cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .base import EmbeddingLoss, LossOutput
from .registry import register_loss
from .search_space import FloatRange

__all__ = ["SoftmaxLoss", "SoftmaxLossConfig"]


@dataclass(frozen=True)
class SoftmaxLossConfig:
    """Options of `softmax`.

    Attributes:
        bias: give the classifier head a bias term.
        label_smoothing: cross-entropy label smoothing in [0, 1).
    """

    bias: bool = True
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@register_loss("softmax")
class SoftmaxLoss(EmbeddingLoss):
    """Softmax baseline, cross-entropy of a linear head: `L = -1/B Σ_i log softmax(W x_i + b)_{y_i}`.

    The head (`C × D` weights) belongs to the loss, so the model outputs embeddings only and the
    trainer optimizes the head through `param_groups()`. Parts: `"ce"`.
    """

    Config = SoftmaxLossConfig
    indexes_classes = True
    search_space = {"label_smoothing": FloatRange(0.0, 0.3)}

    def __init__(self, config: SoftmaxLossConfig | None = None, *, num_classes: int, embedding_dim: int) -> None:
        super().__init__(config, num_classes=num_classes, embedding_dim=embedding_dim)
        self.head = nn.Linear(embedding_dim, num_classes, bias=self.config.bias)

    def logits(self, embeddings: Tensor) -> Tensor:
        """(B, D) embeddings → (B, C) class scores."""
        return self.head(embeddings)

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        ce = F.cross_entropy(self.logits(embeddings), labels, label_smoothing=self.config.label_smoothing)
        return LossOutput(ce, {"ce": ce.detach()})

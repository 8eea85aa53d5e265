"""Softmax-family baselines taken from pytorch-metric-learning, not re-written.

`normsoftmax` (Zhai & Wu, BMVC 2019), `arcface` (Deng et al., CVPR 2019) and `cosface` (Wang et al.,
CVPR 2018) are each a cross-entropy over scaled cosine logits between the embedding and a learnable
C × D class-weight table that lives in the loss. The three share one file because each is only its
config (PML's defaults, validated here) plus one line choosing the PML class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor

from .base import EmbeddingLoss, LossOutput
from .pml_adapter import PMLLoss, PMLLossConfig
from .registry import register_loss
from .search_space import FloatRange

__all__ = [
    "ArcFaceLoss",
    "ArcFaceLossConfig",
    "CosFaceLoss",
    "CosFaceLossConfig",
    "NormSoftmaxLoss",
    "NormSoftmaxLossConfig",
]


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


@dataclass(frozen=True)
class NormSoftmaxLossConfig:
    """Options of `normsoftmax`: logits are `cos(x, w_c) / temperature`."""

    temperature: float = 0.05

    def __post_init__(self) -> None:
        _positive(temperature=self.temperature)


@dataclass(frozen=True)
class ArcFaceLossConfig:
    """Options of `arcface`: logit of the true class is `scale · cos(θ + margin)`, margin in degrees."""

    margin: float = 28.6
    scale: float = 64.0

    def __post_init__(self) -> None:
        _positive(scale=self.scale)
        if not 0 <= self.margin < 90:
            raise ValueError(f"margin must be in [0, 90) degrees, got {self.margin}")


@dataclass(frozen=True)
class CosFaceLossConfig:
    """Options of `cosface`: logit of the true class is `scale · (cos θ − margin)`."""

    margin: float = 0.35
    scale: float = 64.0

    def __post_init__(self) -> None:
        _positive(scale=self.scale)
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")


class _PMLClassifierLoss(EmbeddingLoss):
    """Delegates to one pytorch-metric-learning classification loss; part `"ce"`."""

    pml_name: str
    indexes_classes = True

    def __init__(self, config=None, *, num_classes: int, embedding_dim: int) -> None:
        super().__init__(config, num_classes=num_classes, embedding_dim=embedding_dim)
        self.pml = PMLLoss(
            PMLLossConfig(loss=self.pml_name, options=asdict(self.config)),
            num_classes=num_classes,
            embedding_dim=embedding_dim,
        )

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        loss = self.pml.compute(embeddings, labels).loss
        return LossOutput(loss, {"ce": loss.detach()})


@register_loss("normsoftmax")
class NormSoftmaxLoss(_PMLClassifierLoss):
    """Normalized softmax: cross-entropy of `cos(x, w_c) / T` (PML's NormalizedSoftmaxLoss)."""

    Config = NormSoftmaxLossConfig
    pml_name = "NormalizedSoftmaxLoss"
    search_space = {"temperature": FloatRange(0.01, 0.2, log=True)}


@register_loss("arcface")
class ArcFaceLoss(_PMLClassifierLoss):
    """ArcFace: additive angular margin on the true class, `s·cos(θ_y + m)` (PML's ArcFaceLoss)."""

    Config = ArcFaceLossConfig
    pml_name = "ArcFaceLoss"
    search_space = {"margin": FloatRange(5.0, 60.0), "scale": FloatRange(8.0, 128.0, log=True)}


@register_loss("cosface")
class CosFaceLoss(_PMLClassifierLoss):
    """CosFace: additive cosine margin on the true class, `s·(cos θ_y − m)` (PML's CosFaceLoss)."""

    Config = CosFaceLossConfig
    pml_name = "CosFaceLoss"
    search_space = {"margin": FloatRange(0.05, 0.6), "scale": FloatRange(8.0, 128.0, log=True)}

"""metricbench.losses: one loss interface, a registry, and the losses behind it.

Every loss is an `EmbeddingLoss`: `loss_fn(embeddings (B, D), labels (B,)) -> LossOutput(loss, parts)`.
Build any of them by name with `build_loss(name, num_classes=..., embedding_dim=..., **options)`.
"""

from .base import EmbeddingLoss, LossOutput, validate_batch
from .registry import available_losses, build_loss, make_config, register_loss

# Importing a loss module registers it.
from .softmax import SoftmaxLoss, SoftmaxLossConfig
from .center import CenterLoss, CenterLossConfig, CenterTerm, CenterTermConfig
from .softmax_family import (
    ArcFaceLoss,
    ArcFaceLossConfig,
    CosFaceLoss,
    CosFaceLossConfig,
    NormSoftmaxLoss,
    NormSoftmaxLossConfig,
)
from .pml_adapter import PMLLoss, PMLLossConfig
from .triplet_hard import TripletHardLoss, TripletHardLossConfig
from .triplet_semihard import TripletSemiHardLoss, TripletSemiHardLossConfig
from .weighted_sum import WeightedSumLoss, WeightedSumLossConfig

__all__ = [
    "ArcFaceLoss",
    "ArcFaceLossConfig",
    "CenterLoss",
    "CenterLossConfig",
    "CenterTerm",
    "CenterTermConfig",
    "CosFaceLoss",
    "CosFaceLossConfig",
    "EmbeddingLoss",
    "LossOutput",
    "NormSoftmaxLoss",
    "NormSoftmaxLossConfig",
    "PMLLoss",
    "PMLLossConfig",
    "SoftmaxLoss",
    "SoftmaxLossConfig",
    "TripletHardLoss",
    "TripletHardLossConfig",
    "TripletSemiHardLoss",
    "TripletSemiHardLossConfig",
    "WeightedSumLoss",
    "WeightedSumLossConfig",
    "available_losses",
    "build_loss",
    "make_config",
    "register_loss",
    "validate_batch",
]

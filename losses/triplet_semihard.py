"""Triplet loss with semi-hard negative mining, with TensorFlow Addons' semantics
(`tfa.losses.TripletSemiHardLoss`, 0.23; Schroff et al., FaceNet, CVPR 2015) at O(B²) memory."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metricbench.distributed import gather_batch

from .base import EmbeddingLoss, LossOutput
from .distances import DISTANCES, pairwise_distances
from .registry import register_loss
from .search_space import FloatRange
from .triplet_mining import semihard_negatives

__all__ = ["TripletSemiHardLoss", "TripletSemiHardLossConfig"]


@dataclass(frozen=True)
class TripletSemiHardLossConfig:
    """Options of `triplet-semihard`.

    Attributes:
        margin: the hinge margin (TF Addons' default 1.0).
        distance: `l2` (Euclidean, TF Addons' default "L2"), `squared_l2` or `angular` (1 − cosine).
    """

    margin: float = 1.0
    distance: str = "l2"

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {', '.join(DISTANCES)}; got {self.distance!r}")
        if not self.margin >= 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")


@register_loss("triplet-semihard")
class TripletSemiHardLoss(EmbeddingLoss):
    """Triplet semi-hard loss, TF Addons' semantics:
    `L = Σ_{(a,p)} max(margin + d(a,p) − d(a,n*), 0) / #(a,p)` over every ordered positive pair
    (a ≠ p), where n* is the closest negative with d(a,n*) > d(a,p), else the anchor's farthest
    negative. Pairs with a zero hinge count in the denominator. Embeddings are not normalised here
    (use `model.normalize`), exactly as in TF Addons.

    Under torchrun, mining runs over the global batch (every rank's embeddings, gathered with their
    gradients), so loss and gradients equal those of one process with the same batch.

    Deliberate divergence, for degenerate batches only: with no positive pair, or a single class,
    the loss is 0 (keeping the autograd graph) and part `degenerate` is 1; TF Addons returns NaN or
    a meaningless number there. Parts: `positive_pairs`, `semihard_fraction`, `fallback_fraction`,
    `active_fraction`, `mean_d_ap`, `mean_d_an`, `degenerate`.
    """

    Config = TripletSemiHardLossConfig
    needs_positive_pairs = True
    search_space = {"margin": FloatRange(0.05, 2.0, log=True)}

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        embeddings, labels = gather_batch(embeddings, labels)  # the global batch under torchrun
        distances = pairwise_distances(embeddings, self.config.distance)
        mined = semihard_negatives(distances, labels)
        single_class = (labels == labels[0]).all()
        pairs = mined.valid & ~single_class
        hinge = (self.config.margin + mined.positive_distance - mined.negative_distance).clamp_min(0.0)
        hinge = torch.where(pairs, hinge, 0.0)
        num_pairs = pairs.sum()
        denominator = num_pairs.clamp_min(1).to(distances.dtype)
        loss = hinge.sum() / denominator
        with torch.no_grad():
            semihard = (mined.semihard & pairs).sum() / denominator
            parts = {
                "positive_pairs": num_pairs.to(distances.dtype),
                "semihard_fraction": semihard,
                "fallback_fraction": torch.where(num_pairs > 0, 1.0 - semihard, 0.0),
                "active_fraction": ((hinge > 0) & pairs).sum() / denominator,
                "mean_d_ap": torch.where(pairs, mined.positive_distance, 0.0).sum() / denominator,
                "mean_d_an": torch.where(pairs, mined.negative_distance, 0.0).sum() / denominator,
                "degenerate": (num_pairs == 0).to(distances.dtype),
            }
        return LossOutput(loss, parts)

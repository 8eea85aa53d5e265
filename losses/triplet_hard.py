"""Batch-hard triplet loss with TensorFlow Addons' semantics (`tfa.losses.TripletHardLoss`, 0.23;
Hermans, Beyer, Leibe, "In Defense of the Triplet Loss", 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from metricbench.distributed import gather_batch

from .base import EmbeddingLoss, LossOutput
from .distances import pairwise_distances
from .registry import register_loss
from .triplet_mining import hardest_pairs, pair_masks
from .triplet_semihard import TripletSemiHardLoss, TripletSemiHardLossConfig

__all__ = ["TripletHardLoss", "TripletHardLossConfig"]


@dataclass(frozen=True)
class TripletHardLossConfig(TripletSemiHardLossConfig):
    """Options of `triplet-hard`: those of `triplet-semihard` (`margin`, `distance`) plus

    Attributes:
        soft: use the soft margin `log(1 + exp(d_ap − d_an))` instead of the hinge (then `margin` is unused).
    """

    soft: bool = False


@register_loss("triplet-hard")
class TripletHardLoss(EmbeddingLoss):
    """Batch-hard triplet loss, TF Addons' semantics: per anchor, its farthest positive and closest
    negative, `max(d_ap − d_an + margin, 0)` (or the soft margin), averaged over all anchors.

    Under torchrun, mining runs over the global batch (every rank's embeddings, gathered with their
    gradients), so loss and gradients equal those of one process with the same batch.
    As in TF Addons, an anchor without a positive in the batch still counts, with d_ap = the smallest
    distance in its row (its own, 0, for `l2`). Deliberate divergence for degenerate batches only:
    no positive pair or a single class gives 0 (keeping the graph) and part `degenerate` = 1.
    Parts: `positive_pairs`, `active_fraction`, `mean_d_ap`, `mean_d_an`, `degenerate`.
    """

    Config = TripletHardLossConfig
    needs_positive_pairs = True
    search_space = TripletSemiHardLoss.search_space

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        embeddings, labels = gather_batch(embeddings, labels)  # the global batch under torchrun
        distances = pairwise_distances(embeddings, self.config.distance)
        d_ap, d_an = hardest_pairs(distances, labels)
        positive, _ = pair_masks(labels)
        num_pairs = positive.sum()
        degenerate = (num_pairs == 0) | (labels == labels[0]).all()
        if self.config.soft:
            per_anchor = F.softplus(d_ap - d_an)
        else:
            per_anchor = (d_ap - d_an + self.config.margin).clamp_min(0.0)
        loss = torch.where(degenerate, 0.0, per_anchor).mean()
        with torch.no_grad():
            parts = {
                "positive_pairs": num_pairs.to(distances.dtype),
                "active_fraction": torch.where(degenerate, 0.0, (per_anchor > 0).to(distances.dtype).mean()),
                "mean_d_ap": d_ap.mean(),
                "mean_d_an": d_an.mean(),
                "degenerate": degenerate.to(distances.dtype),
            }
        return LossOutput(loss, parts)

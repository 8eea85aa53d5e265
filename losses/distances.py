"""Pairwise distances with TensorFlow Addons' numerics (`tfa.losses.metric_learning`), so the triplet
losses give TF Addons' numbers: zero distances (duplicates, the diagonal) are exactly 0 with a zero
gradient instead of the NaN that a plain `sqrt` would give."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DISTANCES", "pairwise_distances"]

DISTANCES = ("l2", "squared_l2", "angular")


def _squared_l2(x: Tensor) -> Tensor:
    sq = x.pow(2).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)  # rounding can go slightly negative
    return d2 * (1.0 - torch.eye(len(x), dtype=x.dtype, device=x.device))  # the diagonal is exactly 0


def pairwise_distances(embeddings: Tensor, distance: str = "l2") -> Tensor:
    """(B, D) embeddings → (B, B) distances.

    Args:
        embeddings: (B, D) float tensor (not normalised here, as in TF Addons).
        distance: `l2` (Euclidean; TF Addons' "L2"), `squared_l2` ("squared-L2") or `angular`
            (1 − cosine similarity of the L2-normalised rows, clamped below at 1e-16 as TF Addons does).
    """
    if distance == "angular":
        unit = F.normalize(embeddings, dim=1, eps=1e-6)
        return (1.0 - unit @ unit.T).clamp_min(1e-16)
    d2 = _squared_l2(embeddings)
    if distance == "squared_l2":
        return d2
    if distance != "l2":
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}; got {distance!r}")
    zero = d2 <= 0.0
    # sqrt(0) has an infinite derivative: take it of 1e-16 there, then zero those entries, as TF Addons does.
    return torch.sqrt(d2 + zero.to(d2.dtype) * 1e-16) * (~zero).to(d2.dtype)

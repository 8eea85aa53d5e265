"""Triplet mining as pure functions of a (B, B) distance matrix and (B,) labels, with TensorFlow
Addons' rules. They use O(B²) memory: no (B·B, B) tensor is ever built."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SemiHardMining", "hardest_pairs", "pair_masks", "semihard_negatives"]


def pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(B, B) bool masks: ordered positive pairs (same label, a ≠ p) and negatives (other label)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


@dataclass(frozen=True)
class SemiHardMining:
    """Result of `semihard_negatives`, one row per anchor a and one column per positive of a
    (K = the largest number of positives of any anchor; shorter rows are padded).

    Attributes:
        positive_index: (B, K) int, the positive p of each column (padding: arbitrary).
        valid: (B, K) bool, the column holds an ordered positive pair (a, p), a ≠ p.
        positive_distance: (B, K) d(a, p), differentiable (gathered from the distances).
        negative_distance: (B, K) d(a, n) of the chosen negative n, differentiable.
        semihard: (B, K) bool, a negative with d(a, n) > d(a, p) existed (else the farthest one was used).
    """

    positive_index: Tensor
    valid: Tensor
    positive_distance: Tensor
    negative_distance: Tensor
    semihard: Tensor


def semihard_negatives(distances: Tensor, labels: Tensor) -> SemiHardMining:
    """For every ordered positive pair (a, p): the closest negative n with d(a, n) > d(a, p); if there
    is none, the anchor's farthest negative (TF Addons' `triplet_semihard_loss` rule).

    Each anchor's negative distances are sorted once, and a `searchsorted` finds, for each of its
    positive distances, the first strictly larger one: O(B² log B) time, O(B²) memory. Anchors
    without any negative (a single-class batch) get their own distance d(a, a) and must be masked
    by the caller.

    Args:
        distances: (B, B) pairwise distances.
        labels: (B,) integer labels.
    """
    positive, negative = pair_masks(labels)
    batch = len(labels)
    k = max(int(positive.sum(dim=1).max()), 1)  # one sync: the width of the per-anchor positive lists
    positive_index = torch.argsort(~positive, dim=1, stable=True)[:, :k]
    valid = positive.gather(1, positive_index)
    positive_distance = distances.gather(1, positive_index)

    sorted_negatives, order = torch.where(negative, distances.detach(), torch.inf).sort(dim=1)
    num_negatives = negative.sum(dim=1, keepdim=True)
    first_farther = torch.searchsorted(sorted_negatives, positive_distance.detach().contiguous(), right=True)
    semihard = first_farther < num_negatives
    farthest = order.gather(1, (num_negatives - 1).clamp_min(0))
    chosen = torch.where(semihard, order.gather(1, first_farther.clamp_max(batch - 1)), farthest)
    chosen = torch.where(num_negatives > 0, chosen, torch.arange(batch, device=labels.device)[:, None])
    return SemiHardMining(positive_index, valid, positive_distance, distances.gather(1, chosen), semihard)


def hardest_pairs(distances: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Per anchor, the farthest positive and the closest negative distance (TF Addons' `triplet_hard_loss`).

    Written with TF Addons' masked max/min, so anchors without a positive get the smallest distance in
    their row (their own, 0, for `l2`) and anchors without a negative the largest.

    Returns:
        (B,) hardest-positive distances and (B,) hardest-negative distances, differentiable.
    """
    positive, negative = pair_masks(labels)
    row_min = distances.min(dim=1, keepdim=True).values
    row_max = distances.max(dim=1, keepdim=True).values
    hardest_positive = ((distances - row_min) * positive).max(dim=1).values + row_min[:, 0]
    hardest_negative = ((distances - row_max) * negative).min(dim=1).values + row_max[:, 0]
    return hardest_positive, hardest_negative

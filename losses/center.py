"""Center loss (Wen, Zhang, Li, Qiao, "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016), with every center-update rule used in practice.

Center term, averaged over the batch so that λ does not depend on the batch size:

    L_C = 1/(2B) · Σ_i ||x_i − c_{y_i}||²

The paper writes ½ Σ_i (a sum over the mini-batch); caffe-face's CenterLossLayer divides that sum by
the batch size, exactly as here. KaiyangZhou/pytorch-center-loss computes Σ_i ||x_i − c_{y_i}||² / B
(no ½), i.e. 2·L_C, so its `weight_cent` corresponds to λ/2 here; jxgu1016/MNIST_center_loss_pytorch
uses the same ½·mean as here.

Center updates (`update`):
    paper       Eq. 4: Δc_j = Σ_{i: y_i=j} (c_j − x_i) / (1 + n_j);  c_j ← c_j − α·Δc_j
    ema         c_j ← decay·c_j + (1 − decay)·(mean of class j's embeddings in the batch)
    cumulative  c_j = mean of every class-j embedding seen so far (sums and counts in the state)
    sgd         centers are a parameter trained by the optimizer in their own param group
All but `sgd` run in `update_state` (after the optimizer step), never through autograd; each is a
function of per-class sums s_j and counts n_j of the batch. Under torchrun these are the global batch's:
every rank gathers all ranks' embeddings and labels (B × D, where an all-reduce of dense per-class
sums would move C × D) and sums them in the single-process order, so every rank holds the same centers
as one process; `sgd` centers are parameters, averaged by DistributedDataParallel like any other.
Classes absent from a batch keep their centers. Nothing here builds a B × C matrix: the term gathers
c_{y_i}, and updates touch only the classes present (`index_add_`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from metricbench.distributed import gather_batch

from .base import EmbeddingLoss, LossOutput
from .registry import register_loss
from .search_space import FloatRange
from .softmax import SoftmaxLoss

__all__ = ["CenterLoss", "CenterLossConfig", "CenterTerm", "CenterTermConfig", "center_term", "class_sums"]

UPDATE_RULES = ("paper", "ema", "cumulative", "sgd")
INITS = ("zeros", "normal")


@dataclass(frozen=True)
class CenterTermConfig:
    """Options of the bare center term `center-term` (every option is accepted whatever the rule).

    Attributes:
        update: `paper` (Eq. 4 with rate `alpha`), `ema` (moving average with `decay`), `cumulative`
            (running mean of all embeddings seen) or `sgd` (centers trained by the optimizer).
        alpha: center learning rate α of the paper rule, in (0, 1].
        decay: EMA decay in [0, 1).
        center_lr: learning rate of the `sgd` centers' param group (default: the optimizer's loss lr).
        init: initial centers, `normal` (standard normal, as in the popular PyTorch repos) or `zeros`.
    """

    update: str = "paper"
    alpha: float = 0.5
    decay: float = 0.95
    center_lr: float | None = None
    init: str = "normal"

    def __post_init__(self) -> None:
        if self.update not in UPDATE_RULES:
            raise ValueError(f"update must be one of {', '.join(UPDATE_RULES)}; got {self.update!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        if not 0 <= self.decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        if self.center_lr is not None and not self.center_lr > 0:
            raise ValueError(f"center_lr must be > 0, got {self.center_lr}")


@dataclass(frozen=True)
class CenterLossConfig(CenterTermConfig):
    """Options of `center`: the center-term options plus λ.

    Attributes:
        center_weight: λ in `L = L_CE + λ·L_C`.
    """

    center_weight: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.center_weight >= 0:
            raise ValueError(f"center_weight must be >= 0, got {self.center_weight}")


def center_term(embeddings: Tensor, labels: Tensor, centers: Tensor) -> Tensor:
    """`1/(2B) · Σ_i ||x_i − c_{y_i}||²` by gathering each sample's center (no B × C matrix).

    Args:
        embeddings: (B, D).
        labels: (B,) ints in [0, C).
        centers: (C, D).
    """
    return (embeddings - centers[labels]).pow(2).sum() / (2 * embeddings.shape[0])


def class_sums(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class statistics of a batch, for the classes present only.

    Returns:
        classes (U,) present labels, sums (U, D) Σ of their embeddings, counts (U,) n_j.
    """
    classes, inverse = labels.unique(return_inverse=True)
    sums = embeddings.new_zeros(len(classes), embeddings.shape[1]).index_add_(0, inverse, embeddings)
    counts = torch.bincount(inverse, minlength=len(classes)).to(embeddings.dtype)
    return classes, sums, counts


class CenterTerm(EmbeddingLoss):
    """The bare center term `L_C` (part `"center"`), usable alone or in a weighted sum.

    With `update="sgd"` the centers are a parameter (group `"centers"`, no weight decay, `center_lr`);
    otherwise they are a buffer moved by `update_state`. Inside a weighted sum with weight w, the
    `sgd` centers' gradient is scaled by w like every other term's; `center` avoids that for λ.
    """

    Config = CenterTermConfig
    indexes_classes = True

    def __init__(self, config: CenterTermConfig | None = None, *, num_classes: int, embedding_dim: int) -> None:
        super().__init__(config, num_classes=num_classes, embedding_dim=embedding_dim)
        cfg = self.config
        init = torch.zeros if cfg.init == "zeros" else torch.randn
        centers = init(num_classes, embedding_dim)
        if cfg.update == "sgd":
            self.centers = nn.Parameter(centers)
        else:
            self.register_buffer("centers", centers)
        if cfg.update == "cumulative":
            self.register_buffer("seen_sums", torch.zeros(num_classes, embedding_dim))
            self.register_buffer("seen_counts", torch.zeros(num_classes))

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        loss = center_term(embeddings, labels, self.centers)
        return LossOutput(loss, {"center": loss.detach()})

    def param_groups(self) -> list[dict[str, Any]]:
        if self.config.update != "sgd":
            return []
        group: dict[str, Any] = {"name": "centers", "params": [self.centers], "weight_decay": 0.0}
        if self.config.center_lr is not None:
            group["lr"] = self.config.center_lr
        return [group]

    @torch.no_grad()
    def update_state(self, embeddings: Tensor, labels: Tensor) -> None:
        rule = self.config.update
        if rule == "sgd":
            return
        embeddings, labels = gather_batch(embeddings, labels)  # every rank's rows under torchrun
        classes, sums, counts = class_sums(embeddings.to(self.centers.dtype), labels)
        centers = self.centers[classes]
        if rule == "paper":
            delta = (counts[:, None] * centers - sums) / (1 + counts[:, None])
            self.centers[classes] = centers - self.config.alpha * delta
        elif rule == "ema":
            self.centers[classes] = self.config.decay * centers + (1 - self.config.decay) * sums / counts[:, None]
        else:  # cumulative
            self.seen_sums[classes] += sums
            self.seen_counts[classes] += counts
            self.centers[classes] = self.seen_sums[classes] / self.seen_counts[classes, None]


@register_loss("center")
class CenterLoss(EmbeddingLoss):
    """Center loss, the paper's recipe: `L = L_CE + λ·L_C` with a linear softmax head.

    Parts: `"ce"` and `"center"` (the unweighted `L_C`). `.centers` is the current (C, D) table.
    With `update="sgd"`, λ scales the gradient reaching the embeddings but not the step of the
    centers: the centers see the gradient of `L_C` itself, which is what the popular
    `grad *= 1/weight_cent` trick aims at, done exactly for any optimizer without editing gradients.
    """

    Config = CenterLossConfig
    indexes_classes = True
    search_space = {"center_weight": FloatRange(1e-4, 1.0, log=True), "alpha": FloatRange(0.05, 1.0)}

    def __init__(self, config: CenterLossConfig | None = None, *, num_classes: int, embedding_dim: int) -> None:
        super().__init__(config, num_classes=num_classes, embedding_dim=embedding_dim)
        self.softmax = SoftmaxLoss(num_classes=num_classes, embedding_dim=embedding_dim)
        term_options = {k: getattr(self.config, k) for k in CenterTermConfig.__dataclass_fields__}
        self.term = CenterTerm(CenterTermConfig(**term_options), num_classes=num_classes, embedding_dim=embedding_dim)

    @property
    def centers(self) -> Tensor:
        """(C, D) current centers."""
        return self.term.centers

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        ce = self.softmax.compute(embeddings, labels).loss
        weight = self.config.center_weight
        if self.config.update == "sgd":
            # Same value as λ·L_C; gradients: λ·∂L_C/∂x to the embeddings, ∂L_C/∂c to the centers.
            to_embeddings = center_term(embeddings, labels, self.centers.detach())
            to_centers = center_term(embeddings.detach(), labels, self.centers)
            center = to_embeddings.detach()
            weighted = weight * to_embeddings + (to_centers - to_centers.detach())
        else:
            center = center_term(embeddings, labels, self.centers)
            weighted = weight * center
        return LossOutput(ce + weighted, {"ce": ce.detach(), "center": center.detach()})

    def param_groups(self) -> list[dict[str, Any]]:
        return [{**g, "name": "head"} for g in self.softmax.param_groups()] + self.term.param_groups()

    @torch.no_grad()
    def update_state(self, embeddings: Tensor, labels: Tensor) -> None:
        self.term.update_state(embeddings, labels)


register_loss("center-term")(CenterTerm)

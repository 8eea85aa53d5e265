"""A weighted sum of losses is a loss too (e.g. softmax + λ·center)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from .base import EmbeddingLoss, LossOutput
from .registry import build_loss, register_loss

__all__ = ["WeightedSumLoss", "WeightedSumLossConfig"]


@dataclass(frozen=True)
class WeightedSumLossConfig:
    """Options of `weighted-sum`.

    Attributes:
        terms: one mapping per term: `name` (a registered loss), `weight` (default 1.0), `options`
            (that loss's options) and `prefix` (its part-name prefix, default the loss name).
            In TOML: `terms = [{name = "softmax"}, {name = "pml:ContrastiveLoss", weight = 0.1}]`.
    """

    terms: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", tuple(self.terms))  # TOML gives a list
        if not self.terms:
            raise ValueError("terms must list at least one loss, got none")
        for i, term in enumerate(self.terms):
            unknown = set(term) - {"name", "weight", "options", "prefix"}
            if "name" not in term or unknown:
                raise ValueError(
                    f"terms[{i}] must be a mapping with 'name' and optionally 'weight', 'options', 'prefix'; got {term!r}"
                )


@register_loss("weighted-sum")
class WeightedSumLoss(EmbeddingLoss):
    """Weighted sum of losses, `L = Σ_k w_k · L_k`; part names are prefixed (`"softmax/ce"`), param groups and state hooks
    of every term pass through.

    Build from config (`build_loss("weighted-sum", terms=[...], ...)`) or from losses you already
    have: `WeightedSumLoss.of([("softmax", 1.0, softmax), ("center", 0.01, center)])`.
    """

    Config = WeightedSumLossConfig

    def __init__(self, config: WeightedSumLossConfig | None = None, *, num_classes: int, embedding_dim: int,
                 _built: Sequence[tuple[str, float, EmbeddingLoss]] | None = None) -> None:
        if config is None and _built is not None:
            config = WeightedSumLossConfig(terms=tuple({"name": p, "weight": w} for p, w, _ in _built))
        super().__init__(config, num_classes=num_classes, embedding_dim=embedding_dim)
        if _built is None:
            _built = [
                (
                    term.get("prefix", term["name"]),
                    float(term.get("weight", 1.0)),
                    build_loss(term["name"], num_classes=num_classes, embedding_dim=embedding_dim, **term.get("options", {})),
                )
                for term in self.config.terms
            ]
        prefixes = [prefix for prefix, _, _ in _built]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"term prefixes must be unique, got {prefixes}; set 'prefix' on repeated losses")
        self.prefixes = prefixes
        self.weights = [weight for _, weight, _ in _built]
        self.terms = nn.ModuleList(loss for _, _, loss in _built)
        self.indexes_classes = any(t.indexes_classes for t in self.terms)
        self.needs_positive_pairs = any(t.needs_positive_pairs for t in self.terms)

    @classmethod
    def of(cls, terms: Sequence[tuple[str, float, EmbeddingLoss]]) -> "WeightedSumLoss":
        """Combine already-built losses: `terms` = `(prefix, weight, loss)` triples."""
        if not terms:
            raise ValueError("terms must list at least one loss, got none")
        first = terms[0][2]
        return cls(num_classes=first.num_classes, embedding_dim=first.embedding_dim, _built=terms)

    def compute(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        total = embeddings.new_zeros(())
        parts: dict[str, Tensor] = {}
        for prefix, weight, term in zip(self.prefixes, self.weights, self.terms):
            out = term.compute(embeddings, labels)
            total = total + weight * out.loss
            parts.update({f"{prefix}/{name}": value for name, value in out.parts.items()})
        return LossOutput(total, parts)

    def param_groups(self) -> list[dict[str, Any]]:
        groups = []
        for prefix, term in zip(self.prefixes, self.terms):
            for group in term.param_groups():
                groups.append({**group, "name": f"{prefix}/{group['name']}"})
        return groups

    @torch.no_grad()
    def update_state(self, embeddings: Tensor, labels: Tensor) -> None:
        for term in self.terms:
            term.update_state(embeddings, labels)

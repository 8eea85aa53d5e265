"""The cells of a benchmark: which runs it makes and where each one's run directory goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..config import ExperimentConfig
from .spec import BenchSpec, slug

__all__ = ["Cell", "TUNED_SUFFIX", "cells"]

TUNED_SUFFIX = " (tuned)"


@dataclass(frozen=True)
class Cell:
    """One run of the grid: where it goes and the experiment it trains."""

    dataset: str
    protocol: str
    loss: str  # the row label: the entry's label, plus TUNED_SUFFIX for tuned options
    seed: int
    config: ExperimentConfig

    @property
    def key(self) -> str:
        """Relative run directory, also the run's name in logs: `mnist5k/open/center-tuned/seed-1`."""
        return f"{slug(self.dataset)}/{self.protocol}/{slug(self.loss)}/seed-{self.seed}"

    @property
    def tuned(self) -> bool:
        return self.loss.endswith(TUNED_SUFFIX)


def cells(spec: BenchSpec, tuned: Mapping[tuple[str, str, str], dict[str, Any]] | None = None) -> list[Cell]:
    """Every cell in report order: dataset, protocol, loss (each tuned row after its default row), seed.

    Args:
        tuned: chosen options by (dataset, protocol, loss label), from `metricbench tune`; cells are
            made only for the studies present.
    """
    tuned = tuned or {}
    grid = []
    for dataset in spec.datasets:
        for protocol in spec.protocols:
            for entry in spec.losses:
                variants = [(entry.label, None)]
                if (dataset, protocol, entry.label) in tuned:
                    variants.append((entry.label + TUNED_SUFFIX, tuned[dataset, protocol, entry.label]))
                for label, options in variants:
                    for seed in spec.seeds:
                        config = spec.experiment(dataset, protocol, entry, seed, options)
                        grid.append(Cell(dataset, protocol, label, seed, config))
    return grid


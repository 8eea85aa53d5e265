"""The cells of a benchmark and the state of each one's run directory on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..config import ExperimentConfig, load_config
from .spec import BenchSpec, slug

__all__ = ["Cell", "TUNED_SUFFIX", "cells", "run_state"]

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


def run_state(run_dir: Path, config: ExperimentConfig) -> str:
    """`done` (metrics.json of this very config), `resume` (its checkpoint) or `fresh` (start over).

    Every file this reads is written atomically by the run, and metrics.json last, so a run killed
    at any moment is never `done`; a directory left by another config, or by a run killed before its
    first checkpoint, is `fresh` and gets overwritten.
    """
    try:
        saved = load_config(run_dir / "config.toml")
    except (FileNotFoundError, ValueError, TypeError):
        return "fresh"
    if saved != config:
        return "fresh"
    if (run_dir / "metrics.json").is_file():
        return "done"
    return "resume" if (run_dir / "checkpoint.pt").is_file() else "fresh"

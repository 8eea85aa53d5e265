"""The layout of a run directory and its state on disk: the one place that knows its file names.

    config.toml      resolved config (re-run with `metricbench train --config config.toml`)
    split.npz        the train/val/test row indices and the data's fingerprint
    checkpoint.pt    model, loss state, optimizer, schedule; rewritten atomically every epoch
    best_model.pt    with `train.select_by`: the model of the best validation epoch so far (what is tested)
    log.csv          scalars (step, epoch, name, value); tensorboard/ holds the same for TensorBoard
    metrics.json     test metrics, validation history, timing; written last, so it marks the run complete
    class_stats.csv  per test class: size, spread around its centroid, nearest other class, margin
    verification.json  with `eval.verification`: the distance threshold for "same class" (chosen on the
                     validation rows) and its accuracy on the test pairs
    export/          Embedding Projector files of the test embeddings (vectors, metadata, config, sprite)
    plots/           UMAP of the test embeddings (and its coordinates), distance histograms, class margins,
                     retrieval gallery (retrievals.png/.json) and most confused class pairs (confused_pairs.csv)

Run, logger, evaluation, the benchmark (grid, tables, figures) and the experiments name files only
through `RunDir`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunDir"]


def _file(name: str) -> property:
    return property(lambda self: self.path / name, doc=f"`<run>/{name}`")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (nothing is created or read on construction)."""

    path: Path

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    config = _file("config.toml")
    split = _file("split.npz")
    checkpoint = _file("checkpoint.pt")
    best_model = _file("best_model.pt")
    log_csv = _file("log.csv")
    tensorboard = _file("tensorboard")
    metrics = _file("metrics.json")
    class_stats = _file("class_stats.csv")
    verification = _file("verification.json")
    export = _file("export")
    plots = _file("plots")

    def read_metrics(self) -> dict[str, Any]:
        """The parsed metrics.json (FileNotFoundError when the run has not finished)."""
        return json.loads(self.metrics.read_text(encoding="utf-8"))

    def state(self, config: Any) -> str:
        """`done` (metrics.json of this very config), `resume` (its checkpoint) or `fresh` (start over).

        Every file this reads is written atomically by the run, and metrics.json last, so a run killed
        at any moment is never `done`; a directory left by another config, or by a run killed before its
        first checkpoint, is `fresh` and gets overwritten.
        """
        from .config import load_config  # config imports the models (torch); keep this module light

        try:
            saved = load_config(self.config)
        except (FileNotFoundError, ValueError, TypeError):
            return "fresh"
        if saved != config:
            return "fresh"
        if self.metrics.is_file():
            return "done"
        return "resume" if self.checkpoint.is_file() else "fresh"

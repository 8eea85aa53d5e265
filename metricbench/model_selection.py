"""Model selection on the validation split, as in "A Metric Learning Reality Check" (Musgrave et al., 2020):
the epoch whose model scores best on the validation rows is the one tested, and with a patience,
training stops once the validation score has not improved for that many epochs.

Everything is derived from the run's `history` (one record per epoch, `val_<metric>` keys), which the
checkpoint stores: a resumed run picks the same epoch and stops where an uninterrupted one does,
with no extra state to save.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

__all__ = ["SELECTION_METRICS", "best_epoch", "should_stop"]

# Computed by every epoch's validation (`retrieval_metrics(..., ks=(1,))`), so selecting costs nothing extra.
SELECTION_METRICS = ("map_at_r", "precision_at_1", "r_precision")


def best_epoch(history: Sequence[dict[str, Any]], metric: str) -> int | None:
    """The epoch with the highest `val_<metric>` (the earliest on ties); None while no epoch has a finite one.

    Example:
        >>> best_epoch([{"epoch": 1, "val_map_at_r": 0.5}, {"epoch": 2, "val_map_at_r": 0.7},
        ...             {"epoch": 3, "val_map_at_r": 0.7}], "map_at_r")
        2
    """
    best, best_value = None, -math.inf
    for record in history:
        value = record.get(f"val_{metric}")
        if value is not None and math.isfinite(value) and value > best_value:  # `>`: ties keep the earlier epoch
            best, best_value = record["epoch"], value
    return best


def should_stop(history: Sequence[dict[str, Any]], metric: str, patience: int) -> bool:
    """True once `patience` epochs have passed without a better `val_<metric>` than the best one's
    (counted from the start while no epoch has a finite value)."""
    if not history:
        return False
    return history[-1]["epoch"] - (best_epoch(history, metric) or 0) >= patience

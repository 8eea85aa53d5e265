"""Small argument checks and conversions shared by the eval modules."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_int", "unit_rows"]


def check_int(value: Any, name: str, minimum: int) -> int:
    """`value` as an int ≥ `minimum`; TypeError/ValueError naming `name` otherwise (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

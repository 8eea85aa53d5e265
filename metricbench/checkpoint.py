"""Checkpoints: atomic writes, safe loads (`weights_only=True`, so a checkpoint can never run code)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write `state` (tensors, state_dicts, plain Python values) to `path` atomically,
    so an interrupted save leaves the previous checkpoint intact."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a readable checkpoint (truncated, corrupt, or holds code objects).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for bad files
        raise ValueError(f"checkpoint {str(path)!r} is not a readable metricbench checkpoint: {err}") from err
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {str(path)!r} is not a metricbench checkpoint (no 'model' entry)")
    return state

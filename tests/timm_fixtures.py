"""timm's tiny test model and a Hugging Face cache the tests fill themselves (nothing is downloaded).

Import as ``from timm_fixtures import TINY, fill_hf_cache`` (``tests/conftest.py`` puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

__all__ = ["TINY", "fill_hf_cache", "tiny_source_model"]

TINY = "test_resnet.r160_in1k"  # timm's own test model: a real ResNet of 0.37 M parameters, 160 px pretrained config


def tiny_source_model(seed: int = 0) -> torch.nn.Module:
    """The tiny model with its 1000-class classifier, as a training script would save it, seeded."""
    torch.manual_seed(seed)
    return timm.create_model(TINY).eval()


def fill_hf_cache(home: Path, state: dict[str, torch.Tensor], name: str = TINY) -> None:
    """Lay out ``home`` (an $HF_HOME) as `hf download timm/<name>` leaves it: refs/main → snapshot → weights."""
    repo = home / "hub" / f"models--timm--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    save_file(state, repo / "snapshots" / commit / "model.safetensors")

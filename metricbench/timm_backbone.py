"""timm models as backbones: the trunk (global pooling, no classifier) and an embedding head after it.

Weights come from timm's own source, the Hugging Face cache (`model.pretrained`: read from the cache
only, so nothing downloads implicitly), or a local `.pth`/`.safetensors` file (`model.weights`), whose
keys and shapes must fit the trunk exactly: a mismatch is an error listing the keys, never a silent
partial load.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TIMM_PREFIX", "TimmEmbedder", "create_trunk", "is_timm", "load_weights", "pretrained_file",
           "pretrained_input_config", "timm_name"]

TIMM_PREFIX = "timm:"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a Hugging Face repo, in its order
_LISTED = 5  # keys named in a mismatch message, at most


def is_timm(arch: str) -> bool:
    return arch.startswith(TIMM_PREFIX)


def timm_name(arch: str) -> str:
    """`timm:resnet50.a1_in1k` → `resnet50.a1_in1k`, checked against timm's registry.

    Raises:
        ValueError: timm has no such model.
    """
    import timm

    name = arch[len(TIMM_PREFIX):]
    if not name or not timm.is_model(name):
        close = timm.list_models(f"*{name.partition('.')[0][:6]}*")[:8] if name else []
        hint = f"; close names: {', '.join(close)}" if close else "; see timm.list_models()"
        raise ValueError(f"model.arch {arch!r}: timm has no model {name!r}{hint}")
    return name


class TimmEmbedder(nn.Module):
    """Images → trunk features (B, F) → linear embedding (B, D), optionally batch-normalised."""

    def __init__(self, trunk: nn.Module, embedding_dim: int, head_bn: bool = False) -> None:
        super().__init__()
        self.trunk = trunk
        layers: list[nn.Module] = [nn.Linear(trunk.num_features, embedding_dim)]
        if head_bn:
            layers.append(nn.BatchNorm1d(embedding_dim))
        self.head = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x))


def pretrained_input_config(name: str) -> dict[str, Any]:
    """The input the pretrained weights expect: `size` (height, width), `mean`, `std` (per channel, 0-1 scale)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:  # a model without pretrained configs: timm's ImageNet defaults
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        return {"size": (224, 224), "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}
    return {"size": tuple(cfg.input_size[1:]), "mean": tuple(cfg.mean), "std": tuple(cfg.std)}


def pretrained_file(name: str) -> str:
    """The cached weights file of timm model `name` in the Hugging Face cache ($HF_HOME, $HF_HUB_CACHE).

    Raises:
        FileNotFoundError: the weights are not in the cache (with the command that downloads them).
        ValueError: the model has no weights on the Hugging Face hub.
    """
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = cfg.hf_hub_id if cfg is not None else None
    if not hub_id:
        raise ValueError(f"model.pretrained: timm:{name} has no weights on the Hugging Face hub; pass a local file "
                         "with model.weights=PATH instead")
    repo, _, revision = hub_id.partition("@")
    for filename in ([cfg.hf_hub_filename] if cfg.hf_hub_filename else _WEIGHT_FILES):
        path = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(path, str):
            return path
    raise FileNotFoundError(
        f"model.pretrained: the weights of timm:{name} are not in the Hugging Face cache {constants.HF_HUB_CACHE!r}, "
        f"and metricbench downloads nothing implicitly. Download them once (network needed) with "
        f"`hf download {repo}` (huggingface_hub's CLI; set HF_HOME to choose the cache), or pass a local "
        "file with model.weights=PATH")


def create_trunk(name: str, *, in_chans: int, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    """timm model `name` without its classifier: images → globally pooled features (B, num_features)."""
    import timm

    overlay = {"file": pretrained_file(name)} if pretrained else None
    # The pretrained_cfg overlay points timm at the cached file: timm still adapts the first convolution to
    # `in_chans` and drops the classifier, but never goes to the network.
    trunk = timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans,
                              pretrained_cfg_overlay=overlay)
    if weights is not None:
        load_weights(trunk, weights, classifier=trunk.pretrained_cfg.get("classifier"))
    return trunk


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)  # weights only: a file can never run code
    for wrapper in ("state_dict", "model"):  # training scripts often save {"state_dict": ...} or {"model": ...}
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"model.weights {str(path)!r} is not a state dict (name → tensor)")
    return state


def _listed(keys: list[str]) -> str:
    more = f", … ({len(keys)} in all)" if len(keys) > _LISTED else ""
    return ", ".join(keys[:_LISTED]) + more


def load_weights(trunk: nn.Module, path: str | os.PathLike, *, classifier: str | None = None) -> None:
    """Load a `.pth`/`.safetensors` state dict into `trunk`; the classifier's keys (`fc.*`, ...) are dropped
    with a warning, any other extra, missing or misshapen key is an error.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: unreadable, or the keys/shapes do not fit the trunk (all three lists in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.weights {str(path)!r} does not exist")
    try:
        state = _read_state_dict(path)
    except ValueError:
        raise
    except Exception as err:  # torch/safetensors raise many types for corrupt files
        raise ValueError(f"model.weights {str(path)!r} is not a readable .pth or .safetensors file: {err}") from err
    own = trunk.state_dict()
    dropped = sorted(k for k in state if k not in own and classifier and k.startswith(f"{classifier}."))
    if dropped:
        warnings.warn(f"model.weights: ignoring the classifier of {path.name} ({_listed(dropped)}); the embedding "
                      "head replaces it", RuntimeWarning, stacklevel=3)
    problems = []
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own and k not in dropped)
    misshapen = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                       if k in state and state[k].shape != v.shape)
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("with another shape (file vs model)", misshapen)):
        if keys:
            problems.append(f"{len(keys)} keys {what}: {_listed(keys)}")
    if problems:
        raise ValueError(f"model.weights {str(path)!r} does not fit the trunk of {type(trunk).__name__}: "
                         + "; ".join(problems))
    trunk.load_state_dict({k: v for k, v in state.items() if k in own})

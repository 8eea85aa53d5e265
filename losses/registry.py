"""Losses register by name; `build_loss` builds any of them the same way."""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from metricbench.typed_config import config_from_dict

from .base import EmbeddingLoss

__all__ = ["available_losses", "build_loss", "loss_class", "make_config", "register_loss"]

_LOSSES: dict[str, type[EmbeddingLoss]] = {}
_PML_PREFIX = "pml:"

L = TypeVar("L", bound=type[EmbeddingLoss])


def register_loss(name: str) -> Callable[[L], L]:
    """Class decorator registering an `EmbeddingLoss` subclass under `name`.

    Raises:
        ValueError: if the name is taken or malformed.
    """
    if not name or name.startswith(_PML_PREFIX) or name != name.strip():
        raise ValueError(f"loss name must be non-empty and not start with {_PML_PREFIX!r}, got {name!r}")

    def decorate(cls: L) -> L:
        if name in _LOSSES:
            raise ValueError(f"loss {name!r} is already registered (by {_LOSSES[name].__qualname__})")
        if not (isinstance(cls, type) and issubclass(cls, EmbeddingLoss)):
            raise TypeError(f"register_loss expects an EmbeddingLoss subclass, got {cls!r}")
        _LOSSES[name] = cls
        return cls

    return decorate


def available_losses() -> list[str]:
    """Registered loss names, sorted (any `pml:<LossName>` is accepted too)."""
    return sorted(_LOSSES)


def loss_class(name: str) -> type[EmbeddingLoss]:
    """The class registered under `name`."""
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(available_losses())}, pml:<LossName>")
    return _LOSSES[name]


def make_config(config_cls: type, options: Mapping[str, Any], *, owner: str, prefix: str = "") -> Any:
    """Build a frozen config dataclass from `options`, typed like every other config value.

    Args:
        config_cls: the loss's config dataclass.
        options: option name -> value (ints are accepted for floats, lists for tuples).
        owner: names the loss in messages, e.g. `loss 'arcface'`.
        prefix: dotted key of `options` in the experiment config (`loss.options`), named in type errors.

    Raises:
        ValueError: unknown option (listing the valid ones) or a value out of range.
        InputTypeError: a value of the wrong type: `loss.options.margin must be float, got 'abc'`.
    """
    return config_from_dict(config_cls, options, prefix=prefix, owner=owner)


def build_loss(name: str, *, num_classes: int, embedding_dim: int, **options: Any) -> EmbeddingLoss:
    """Build a registered loss by name.

    Args:
        name: a registered name (see `available_losses()`) or `pml:<LossName>` for any
            pytorch-metric-learning loss.
        num_classes: number of training classes (accepted by every loss, used by those with a head/centers).
        embedding_dim: embedding size D (accepted by every loss).
        **options: fields of the loss's config dataclass.

    Raises:
        ValueError: unknown name or option, or an option out of range.
        InputTypeError: an option of the wrong type (a TypeError).

    Example:
        >>> loss_fn = build_loss("softmax", num_classes=10, embedding_dim=64)
        >>> out = loss_fn(torch.randn(8, 64), torch.arange(8))  # doctest: +SKIP
    """
    if name.startswith(_PML_PREFIX):
        from .pml_adapter import build_pml_loss

        return build_pml_loss(name[len(_PML_PREFIX) :], num_classes=num_classes, embedding_dim=embedding_dim, **options)
    cls = loss_class(name)
    config = make_config(cls.Config, options, owner=f"loss {name!r}")
    return cls(config, num_classes=num_classes, embedding_dim=embedding_dim)

"""Hyperparameter ranges a loss declares beside its config, for `metricbench tune`.

Each loss class sets `search_space = {option: FloatRange(...) | IntRange(...) | Choice(...)}`. The
declarations are plain data, so the losses do not depend on Optuna; the tuner turns them into
`trial.suggest_*` calls. The ranges follow the ones searched in "A Metric Learning Reality Check"
(Musgrave et al., 2020) where that paper covers the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

__all__ = ["Choice", "FloatRange", "IntRange", "SearchSpace", "check_search_space"]


@dataclass(frozen=True)
class FloatRange:
    """A float in [low, high]; sampled on a log scale when `log`."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class IntRange:
    """An int in [low, high]; sampled on a log scale when `log`."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class Choice:
    """One of a few values (str, int, float or bool)."""

    values: tuple[Any, ...]


Param = Union[FloatRange, IntRange, Choice]
SearchSpace = Mapping[str, Param]


def check_search_space(space: SearchSpace, config_cls: type) -> None:
    """Every searched name must be an option of `config_cls`, with a non-empty, ordered range."""
    options = set(getattr(config_cls, "__dataclass_fields__", {}))
    for name, param in space.items():
        if name not in options:
            raise ValueError(f"search space names {name!r}, which is not an option of {config_cls.__name__} "
                             f"(options: {', '.join(sorted(options)) or 'none'})")
        if isinstance(param, Choice):
            if not param.values:
                raise ValueError(f"search space {name!r}: Choice needs at least one value")
        elif not param.low < param.high or (param.log and param.low <= 0):
            raise ValueError(f"search space {name!r}: need low < high (and low > 0 on a log scale), got {param}")

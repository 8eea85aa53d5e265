"""Frozen config dataclasses from plain TOML data: the one type check every config goes through.

The experiment config (`metricbench.config`), the benchmark spec (`metricbench.bench.spec`) and each
loss's options (`metricbench.losses.make_config`) are built by `config_from_dict`, so a wrong value
reads the same everywhere: `train.epochs must be int, got 'x'`, `loss.options.margin must be float,
got 'abc'`. The field annotations are the schema; ints are accepted for floats and lists for tuples.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from .errors import InputTypeError

__all__ = ["coerce", "config_from_dict", "read_toml"]


def coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` checked against type hint `hint`; ints become floats and lists tuples where the hint says so.

    Raises:
        InputTypeError: `value` does not fit `hint`; the message names `key` (`train.epochs`).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except (TypeError, ValueError) as err:
                errors.append(err)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, prefix=key)
    if hint is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputTypeError(f"{key} must be a list, got {value!r}")
        item = args[0]
        return tuple(coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise InputTypeError(f"{key} must be a table, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        raise InputTypeError(f"{key} must be {hint.__name__}, got {value!r}")
    return value


def _field_types(cls: type) -> dict[str, Any]:
    """Init field name -> type hint (`Any` where an annotation names something that cannot be resolved)."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # e.g. a plugin's config annotated with a name local to a function
        hints = {}
    return {f.name: hints.get(f.name, Any if isinstance(f.type, str) else f.type)
            for f in dataclasses.fields(cls) if f.init}


def config_from_dict(cls: type, data: Mapping[str, Any], prefix: str = "", *, owner: str | None = None) -> Any:
    """Build config dataclass `cls` from a nested mapping, checking every value's type.

    Args:
        cls: the dataclass; its field annotations give the expected types, its `__post_init__` the ranges.
        data: field name -> value; a nested dataclass field takes a nested mapping.
        prefix: dotted key of `data` in the whole tree, used in messages (`train` → `train.epochs`).
        owner: report unknown keys as options of `owner` (e.g. `loss 'arcface'`) instead of as config keys.

    Raises:
        ValueError: unknown keys (naming the valid ones), or a value `cls`'s own checks reject.
        InputTypeError: a value of the wrong type, or `data` is not a mapping.
    """
    if not isinstance(data, Mapping):
        raise InputTypeError(f"{prefix or 'config'} must be a table, got {data!r}")
    hints = _field_types(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown and owner is not None:
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for {owner}; "
                         f"valid options: {', '.join(hints) or '(none)'}")
    where = f"{prefix}." if prefix else ""
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(where + u for u in unknown)}; "
                         f"valid: {', '.join(where + n for n in hints)}")
    return cls(**{k: coerce(v, hints[k], where + k) for k, v in data.items()})


def read_toml(path: str | os.PathLike, *, what: str = "config file") -> dict[str, Any]:
    """The parsed TOML file at `path`; `what` names it in messages (`--config`, `bench spec`).

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: `path` is a directory, cannot be read, or is not valid UTF-8 TOML.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory; expected a TOML file")
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {str(path)!r} is not valid TOML: not UTF-8 text ({err.reason})") from err
    except OSError as err:
        raise ValueError(f"{what} {str(path)!r} cannot be read: {err.strerror}") from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{what} {str(path)!r} is not valid TOML: {err}") from err

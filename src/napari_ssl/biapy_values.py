"""BiaPy's YAML values as Python: ``yaml.safe_load`` leaves tuples written ``(256, 256, 1)``
and floats written ``1.E-4`` as strings; these parse them into the type of our default, with a
:class:`~napari_ssl.config.ConfigError` naming the key when a value cannot be."""

from __future__ import annotations

import ast
import math
from typing import Any

from napari_ssl.config import ConfigError


class Cut(str):
    """``'(32'``: the start of a tuple that a YAML ``{…}`` split at its commas (the rest became
    keys, repeated values merged: it cannot be pieced together)."""


def literal(value: Any) -> Any:
    """Parse BiaPy-style strings (``(256, 256, 1)``, ``1.E-4``, ``True``); others unchanged."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            return value.strip()
    return value


def as_bool(key: str, value: Any) -> bool:
    value = literal(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected True or False, got {value!r}")
    return value


def as_number(key: str, value: Any, kind: type) -> int | float:
    value = literal(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if kind is int:
        if value != int(value):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return int(value)
    return float(value)


def as_numbers(key: str, value: Any, kind: type) -> tuple:
    if isinstance(value, Cut):
        name = key.rsplit(".", 1)[-1]
        raise ConfigError(
            f"{key}: expected a list such as [1, 2] or (1, 2), got {str(value)!r}: inside {{…}} "
            f"YAML splits a tuple at its commas; write {name} with square brackets there "
            f"({name}: [1, 2]), or put {name}: (1, 2) on a line of its own"
        )
    value = literal(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list such as [1, 2] or (1, 2), got {value!r}")
    return tuple(as_number(f"{key}[{i}]", v, kind) for i, v in enumerate(value))


def as_text(key: str, value: Any) -> str:
    value = literal(value)
    if isinstance(value, (list, tuple, dict)):
        raise ConfigError(f"{key}: expected a single value, got {value!r}")
    return str(value)


def as_one(key: str, value: Any) -> Any:
    """BiaPy lists one entry per optimizer (GANs use two); we train one network."""
    value = literal(value)
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise ConfigError(f"{key}: napari-ssl trains one network: one value; got {value!r}")
        return value[0]
    return value


def convert(key: str, value: Any, default: Any) -> Any:
    """Parse ``value`` into the type of our ``default``."""
    if isinstance(default, bool):
        return as_bool(key, value)
    if isinstance(default, (int, float)):
        return as_number(key, value, type(default))
    if isinstance(default, tuple):
        return as_numbers(key, value, type(default[0]))
    return as_text(key, value)

"""Checks for settings and arguments, shared by the library, the harness and the command line.

Each check returns the value (normalized: ``int`` for whole numbers, ``float`` for shares)
or raises :class:`ValueError` with what was expected, what was received and an example,
so every caller reports a bad setting the same way. ``bool`` is never accepted as a number.

>>> positive_int(3, "k")
3
>>> positive_int(0, "--limit", what="examples")
Traceback (most recent call last):
...
ValueError: --limit must be a positive number of examples, got 0
>>> unit_interval(0.25, "mass")
0.25
>>> unit_interval(0, "mass", example=0.9)
Traceback (most recent call last):
...
ValueError: mass must be in (0, 1], e.g. 0.9, got 0
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _whole(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def _of(what: str) -> str:
    return f"number of {what}" if what else "integer"


def positive_int(value: Any, name: str, *, what: str = "") -> int:
    """``value`` if it is a whole number >= 1; ``what`` names the unit in the error."""
    if not _whole(value) or value < 1:
        raise ValueError(f"{name} must be a positive {_of(what)}, got {value!r}")
    return int(value)


def non_negative_int(value: Any, name: str, *, what: str = "") -> int:
    """``value`` if it is a whole number >= 0.

    >>> non_negative_int(-1, "min_tokens", what="tokens")
    Traceback (most recent call last):
    ...
    ValueError: min_tokens must be a non-negative number of tokens (0 or more), got -1
    """
    if not _whole(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative {_of(what)} (0 or more), got {value!r}")
    return int(value)


def positive_number(value: Any, name: str, *, example: Any = None) -> float:
    """``value`` as a float if it is a number > 0.

    >>> positive_number(1, "temperature")
    1.0
    """
    if not _is_number(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number{_example(example)}, got {value!r}")
    return float(value)


def unit_interval(value: Any, name: str, *, closed_low: bool = False, open_high: bool = False, example: Any = None) -> float:
    """``value`` as a float if it lies in (0, 1] (``closed_low``: from 0; ``open_high``: below 1).

    >>> unit_interval(0.0, "lambda_", closed_low=True)
    0.0
    >>> unit_interval(1.0, "resolution", open_high=True)
    Traceback (most recent call last):
    ...
    ValueError: resolution must be in (0, 1), got 1.0
    """
    inside = _is_number(value) and (value >= 0 if closed_low else value > 0) and (value < 1 if open_high else value <= 1)
    if not inside:
        interval = ("[" if closed_low else "(") + "0, 1" + (")" if open_high else "]")
        raise ValueError(f"{name} must be in {interval}{_example(example)}, got {value!r}")
    return float(value)


def one_of(value: Any, name: str, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``.

    >>> one_of("edges", "by", ("relevance", "edges"))
    'edges'
    >>> one_of("middle", "by", ("relevance", "edges"))
    Traceback (most recent call last):
    ...
    ValueError: by must be one of relevance, edges, got 'middle'
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _example(example: Any) -> str:
    return f", e.g. {example}" if example is not None else ""


__all__ = ["non_negative_int", "one_of", "positive_int", "positive_number", "unit_interval"]

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

import math
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


def finite_number(value: Any, name: str, *, at_least: float | None = None, example: Any = None) -> float:
    """``value`` as a float if it is a finite number (and, with ``at_least``, not below it).

    A number written as text (``"1"``, a quoted value in a YAML or TOML config) is refused, with a hint.

    >>> finite_number(2, "lexical", at_least=0)
    2.0
    >>> finite_number("1", "compress-sentences: lexical", at_least=0, example=1.0)
    Traceback (most recent call last):
    ...
    ValueError: compress-sentences: lexical must be a number of 0 or more, e.g. 1.0, got '1' (text: write the number without quotes)
    """
    finite = _is_number(value) and (isinstance(value, int) or math.isfinite(value))
    if not finite or (at_least is not None and value < at_least):
        bound = "a finite number" if at_least is None else f"a number of {at_least:g} or more"
        raise ValueError(f"{name} must be {bound}{_example(example)}, got {value!r}{_text_hint(value, 'the number')}")
    return float(value)


def yes_no(value: Any, name: str) -> bool:
    """``value`` if it is ``True`` or ``False``; text such as ``"false"`` (truthy in Python) is refused.

    >>> yes_no(False, "use_title")
    False
    >>> yes_no("false", "rerank-bm25: use_title")
    Traceback (most recent call last):
    ...
    ValueError: rerank-bm25: use_title must be true or false, got 'false' (text: write true or false without quotes)
    """
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}{_text_hint(value, 'true or false')}")
    return value


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


def _text_hint(value: Any, what: str) -> str:
    """A hint for a value given as text where ``what`` was wanted (a quoted value in a config file)."""
    return f" (text: write {what} without quotes)" if isinstance(value, str) else ""


__all__ = ["finite_number", "non_negative_int", "one_of", "positive_int", "positive_number", "unit_interval", "yes_no"]

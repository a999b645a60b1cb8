"""Budgets: a share of the full context or an absolute number of tokens.

A float in (0, 1] is a share of the full rendered context of that call; an integer (or an
integral float above 1, or a string such as ``"300"``) is a token count. ``None`` means no
budget.

>>> parse_budget(0.25), parse_budget(300), parse_budget("0.5"), parse_budget("300")
(0.25, 300, 0.5, 300)
>>> resolve_budget(0.25, tokens_full=1000)
250
>>> parse_budget(-3)
Traceback (most recent call last):
...
ValueError: budget must be a share of the full context in (0, 1] (e.g. 0.25) or a positive number of tokens (e.g. 300), got -3
"""

from __future__ import annotations

import math
from typing import Union

Budget = Union[int, float]

_HELP = "budget must be a share of the full context in (0, 1] (e.g. 0.25) or a positive number of tokens (e.g. 300)"


def parse_budget(value: object) -> Budget | None:
    """Validate a budget and return it as ``int`` (tokens) or ``float`` (share), or None.

    >>> parse_budget(300), parse_budget(0.25), parse_budget("25%"), parse_budget(300.0), parse_budget("full")
    (300, 0.25, 0.25, 300, None)
    >>> parse_budget(1.5)
    Traceback (most recent call last):
    ...
    ValueError: budget must be a share of the full context in (0, 1] (e.g. 0.25) or a positive number of tokens (e.g. 300); a share must be at most 1 and a token count a whole number, got 1.5
    """
    if value is None:
        return None
    original = value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "full"):
            return None
        try:
            value = int(text) if text.lstrip("+").isdigit() else float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
        except ValueError:
            raise ValueError(f"{_HELP}, got {original!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:  # numpy numbers
            value = value.item()  # type: ignore[attr-defined]
        except AttributeError:
            raise TypeError(f"{_HELP}, got {type(original).__name__}: {original!r}") from None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value <= 0:
            raise ValueError(f"{_HELP}, got {original!r}")
        if value <= 1:
            return value
        if value.is_integer():
            return int(value)
        raise ValueError(f"{_HELP}; a share must be at most 1 and a token count a whole number, got {original!r}")
    if value <= 0:
        raise ValueError(f"{_HELP}, got {original!r}")
    return int(value)


def resolve_budget(budget: Budget | None, tokens_full: int) -> int | None:
    """Turn a budget into a token count for a call whose full context has ``tokens_full`` tokens.

    A share is rounded down; a token count is kept as is, even above ``tokens_full``.

    >>> resolve_budget(0.25, 41), resolve_budget(300, 41), resolve_budget(None, 41)
    (10, 300, None)
    """
    budget = parse_budget(budget)
    if budget is None:
        return None
    if isinstance(budget, float):
        return int(math.floor(budget * tokens_full + 1e-9))
    return budget


def smallest_share(tokens_full: int) -> float:
    """The smallest share (rounded up to 3 significant digits) that :func:`resolve_budget` turns into at least 1 token.

    >>> smallest_share(1336), resolve_budget(smallest_share(1336), 1336)
    (0.000749, 1)
    >>> smallest_share(3), smallest_share(1)
    (0.334, 1.0)
    """
    if tokens_full <= 0:
        raise ValueError(f"no share of an empty context gives a token (tokens_full={tokens_full})")
    share = 1 / tokens_full
    step = 10.0 ** (math.floor(math.log10(share)) - 2)
    share = min(1.0, float(f"{math.ceil(share / step) * step:.3g}"))
    while share < 1.0 and resolve_budget(share, tokens_full) < 1:
        share = min(1.0, float(f"{share + step:.3g}"))
    return share


def budget_label(budget: Budget | None) -> str:
    """Short label for reports: ``25%`` for shares, ``300 tok`` for tokens, ``full`` for None."""
    if budget is None:
        return "full"
    if isinstance(budget, float):
        return f"{budget * 100:g}%"
    return f"{budget} tok"


def unambiguous_budget(value: object) -> Budget | None:
    """A config's (or a command line's) budget, :func:`parse_budget`'d; a bare ``1`` is refused.

    ``1`` could be the whole context or one token: DESIGN.md's token counts are integers > 1.

    >>> unambiguous_budget(0.25), unambiguous_budget("300"), unambiguous_budget(1.0), unambiguous_budget(None)
    (0.25, 300, 1.0, None)
    >>> unambiguous_budget(1)
    Traceback (most recent call last):
    ...
    ValueError: budget 1 is ambiguous: write 1.0 for the whole context (a share) or a token count of at least 2
    """
    budget = parse_budget(value)
    if budget == 1 and isinstance(budget, int):
        raise ValueError(f"budget {value!r} is ambiguous: write 1.0 for the whole context (a share) or a token count of at least 2")
    return budget

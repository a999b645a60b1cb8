"""The rule that says whether a budget keeps the target: the point estimate alone, or a lower bound too.

A share of the context *meets the target* under the **point** rule when its mean metric over the
examples that choose the budget is at least ``target_retention`` times the full context's (paired,
:func:`evals.tune.compare`). Picked at exactly that boundary, a budget's retention on new examples
is above or below the target about as often: a coin flip.

The **lower-bound** rule (``confidence=C``) adds a margin that shrinks with more examples: the share
must also have a one-sided bootstrap lower bound of its retention, at level ``C``, that reaches the
target. The bound is the ``1 - C`` quantile of ``mean(share) / mean(full)`` over the seeded paired
resamples of the examples (:func:`evals.bootstrap.resample_indices`: the same draws at every share,
so budgets are compared on the same resamples). Requiring the point rule too means a share that
passes this rule passes the point rule, so the rule never chooses a smaller budget than the point
rule on the same data (:func:`evals.tune.search` relies on it).

>>> lower_bound([1] * 10, [1] * 10, confidence=0.9)
1.0
>>> b = lower_bound([1] * 40, [1] * 38 + [0] * 2, confidence=0.9); b < 0.95
True
>>> ChoiceRule(0.95).ok([1] * 40, [1] * 38 + [0] * 2), ChoiceRule(0.95, confidence=0.9).ok([1] * 40, [1] * 38 + [0] * 2)
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evals.bootstrap import resample_indices

_EPS = 1e-12

POINT, LOWER_BOUND = "point", "lower_bound"
"""The rule names in ``TuneResult.rule`` (and ``ragtrim tune --format json``)."""


def check_confidence(value: Any, name: str = "confidence") -> float | None:
    """``value`` as a float in (0, 1), or None (the point rule); anything else raises, naming the fix.

    >>> check_confidence(0.9), check_confidence(None)
    (0.9, None)
    >>> check_confidence(90)
    Traceback (most recent call last):
    ...
    ValueError: confidence must be a level in (0, 1), e.g. 0.9 for a 90 % one-sided lower bound, got 90 (leave it unset for the point estimate alone)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a level in (0, 1), e.g. 0.9 for a 90 % one-sided lower bound, got {value!r} "
                         "(leave it unset for the point estimate alone)")
    return float(value)


def resampled_retention(full: Sequence[float], values: Sequence[float], *, resamples: int, seed: int) -> np.ndarray:
    """``mean(values) / mean(full)`` over each seeded paired resample whose full mean is above 0 (maybe empty)."""
    a, b = np.asarray(full, dtype=float), np.asarray(values, dtype=float)
    if not len(a) or len(a) != len(b):
        return np.empty(0)
    idx = resample_indices(len(a), resamples=resamples, seed=seed)
    den, num = a[idx].mean(axis=1), b[idx].mean(axis=1)
    keep = den > 0
    return num[keep] / den[keep]


def lower_bound(full: Sequence[float], values: Sequence[float], *, confidence: float, resamples: int = 1000,
                seed: int = 0) -> float | None:
    """The one-sided ``confidence`` bootstrap lower bound of ``mean(values) / mean(full)`` (None: nothing to bound)."""
    ratios = resampled_retention(full, values, resamples=resamples, seed=seed)
    if not len(ratios):
        return None
    return float(round(float(np.percentile(ratios, (1 - confidence) * 100)), 12)) + 0.0


@dataclass(frozen=True)
class ChoiceRule:
    """Whether paired values ``(full, values)`` keep ``target_retention``: the point estimate, and with
    ``confidence`` set, its lower bound too (see the module)."""

    target_retention: float
    confidence: float | None = None
    resamples: int = 1000
    seed: int = 0

    @property
    def name(self) -> str:
        return POINT if self.confidence is None else LOWER_BOUND

    def bound(self, full: Sequence[float], values: Sequence[float]) -> float | None:
        """The lower bound of the retention at this rule's level (None under the point rule or with nothing to bound)."""
        if self.confidence is None:
            return None
        return lower_bound(full, values, confidence=self.confidence, resamples=self.resamples, seed=self.seed)

    def point_ok(self, full: Sequence[float], values: Sequence[float]) -> bool:
        """The point rule: ``mean(values) >= target_retention * mean(full)``, with a full mean above 0."""
        if not len(full) or len(full) != len(values):
            return False
        full_mean, mean = sum(full) / len(full), sum(values) / len(values)
        return full_mean > 0 and mean >= self.target_retention * full_mean - _EPS

    def ok(self, full: Sequence[float], values: Sequence[float]) -> bool:
        """This rule: the point rule, and under ``confidence`` the lower bound reaching the target."""
        if not self.point_ok(full, values):
            return False
        if self.confidence is None:
            return True
        bound = self.bound(full, values)
        return bound is not None and bound >= self.target_retention - _EPS


__all__ = ["LOWER_BOUND", "POINT", "ChoiceRule", "check_confidence", "lower_bound", "resampled_retention"]

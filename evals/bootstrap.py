"""Paired bootstrap confidence intervals for the difference between two arms.

Both arms are measured on the same examples, so the unit resampled is the example: each
resample draws n examples with replacement and takes the mean of the per-example
differences ``b - a``; the interval is the percentile interval of those means (Efron &
Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13). Seeded, so the same inputs
always give the same interval.

Hand-written with numpy (a dozen lines) rather than ``scipy.stats.bootstrap``: scipy is not
a dependency, and its default BCa interval is undefined (NaN plus a warning) when every
difference is the same, which is common here (identical arms, all-zero deltas).

>>> paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1])
Delta(delta=0.0, ci_low=0.0, ci_high=0.0, n=4)
>>> d = paired_bootstrap([0, 0, 0, 0], [1, 1, 0, 1], resamples=2000, seed=1)
>>> d.delta, 0 <= d.ci_low <= d.delta <= d.ci_high <= 1
(0.75, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Delta:
    """Mean of ``b - a`` over ``n`` paired examples, with its bootstrap interval."""

    delta: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {"delta": self.delta, "ci95": [self.ci_low, self.ci_high], "n": self.n}


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Delta:
    """Delta ``mean(b) - mean(a)`` over paired values and its percentile bootstrap CI.

    Parameters
    ----------
    a, b:
        Per-example values of the baseline and the other arm, in the same example order.
    resamples:
        Number of bootstrap resamples (each draws ``len(a)`` examples with replacement).
    seed:
        Seed of the resampling generator (``numpy.random.default_rng``).
    confidence:
        Coverage of the interval, in (0, 1).
    """
    if len(a) != len(b):
        raise ValueError(f"paired arms need the same examples, got {len(a)} and {len(b)} values")
    if not len(a):
        raise ValueError("paired_bootstrap needs at least one pair of values, got none")
    if not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if not np.all(np.isfinite(diffs)):
        raise ValueError("paired_bootstrap got a NaN or infinite value; drop examples without a value first")
    means = diffs[resample_indices(len(diffs), resamples=resamples, seed=seed)].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Delta(
        delta=_clean(diffs.mean()),
        ci_low=_clean(low),
        ci_high=_clean(high),
        n=len(diffs),
    )


def resample_indices(n: int, *, resamples: int, seed: int) -> np.ndarray:
    """The seeded bootstrap draws: ``resamples`` rows of ``n`` example positions drawn with replacement.

    Every paired statistic of the harness resamples with these (the same seed and ``n`` give the
    same draws), so two arms, or two budgets, compared with the same seed are resampled alike.

    >>> resample_indices(3, resamples=2, seed=0).shape
    (2, 3)
    """
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _clean(x: float) -> float:
    """A plain float, with float noise such as 1e-17 rounded away (stable JSON across runs)."""
    return float(round(float(x), 12)) + 0.0

"""Paired bootstrap checked on tiny hand examples."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from evals.bootstrap import paired_bootstrap


def test_identical_arms_give_zero_delta_and_zero_interval():
    d = paired_bootstrap([1, 0, 1, 0.5], [1, 0, 1, 0.5])
    assert (d.delta, d.ci_low, d.ci_high, d.n) == (0.0, 0.0, 0.0, 4)


def test_constant_shift_gives_a_point_interval():
    d = paired_bootstrap([0.2, 0.4, 0.6], [0.7, 0.9, 1.1])
    assert d.delta == pytest.approx(0.5) and d.ci_low == pytest.approx(0.5) and d.ci_high == pytest.approx(0.5)


def test_pairing_matters():
    # each example improves by exactly 1: paired CI is a point, although the arms' values vary widely
    a = [0, 10, 20, 30]
    b = [1, 11, 21, 31]
    d = paired_bootstrap(a, b)
    assert (d.ci_low, d.ci_high) == (1.0, 1.0)


def test_interval_matches_the_exact_bootstrap_distribution():
    # diffs (0, 0, 1): the 27 equally likely resamples give the exact distribution of the mean
    diffs = [0, 0, 1]
    means = [sum(c) / 3 for c in itertools.product(diffs, repeat=3)]
    support = sorted(set(means))
    cdf = [sum(m <= v for m in means) / len(means) for v in support]  # 8/27, 20/27, 26/27, 1

    def quantile(q):
        return next(v for v, c in zip(support, cdf) if c >= q)

    assert (quantile(0.025), quantile(0.975)) == (0.0, 1.0)
    d = paired_bootstrap([0, 0, 0], diffs, resamples=4000, seed=3)
    assert d.delta == pytest.approx(1 / 3)
    assert (d.ci_low, d.ci_high) == (quantile(0.025), quantile(0.975))


def test_seeded_and_deterministic():
    rng = np.random.default_rng(0)
    a, b = rng.random(50).tolist(), rng.random(50).tolist()
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    wide = paired_bootstrap(a, b, seed=7)
    assert wide.ci_low < wide.delta < wide.ci_high


@pytest.mark.parametrize(
    ("a", "b", "kw", "match"),
    [
        ([1, 2], [1], {}, "same examples"),
        ([], [], {}, "at least one"),
        ([1.0], [float("nan")], {}, "NaN"),
        ([1], [1], {"resamples": 0}, "resamples"),
        ([1], [1], {"confidence": 1.5}, "confidence"),
    ],
)
def test_bad_input_raises_with_the_value(a, b, kw, match):
    with pytest.raises(ValueError, match=match):
        paired_bootstrap(a, b, **kw)

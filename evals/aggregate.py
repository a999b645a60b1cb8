"""Aggregate per-example rows into per-arm metrics, with paired deltas versus ``full``.

Means are taken over the examples where a metric is defined (answer recall leaves out
yes/no and unanswerable examples; reader metrics leave out failed calls), and each count
is reported next to its mean (``n_answer_recall``, ``n_reader``...). An arm where nothing
counts gets ``None``, never NaN. A row whose pipeline raised (``pipeline_error``) has no
context and no metrics: like a failed reader call it is left out of every mean (its count
is ``pipeline_failures``; ``n`` still counts it), never scored as a success or as a miss.
Deltas pair the same example ids in both arms and carry a 95 % paired bootstrap interval
(:func:`evals.bootstrap.paired_bootstrap`). ``cost_saved_per_1k`` is paired too (:func:`paired_saving`): over the
``n_cost_saved`` examples both the arm and ``full`` have a prompt for, so an example one of them failed on
cannot count as a saving.

>>> from evals.records import Arm, ExampleRow
>>> def row(i, pipe, budget, tokens, recall):
...     return ExampleRow(id=i, pipeline=pipe, budget=budget, context="", tokens=tokens, tokens_full=100,
...                       prompt_tokens=tokens + 20, kept_ids=(), answer_recall=recall,
...                       evidence_recall=None, latency_ms=1.0)
>>> rows = [row("a", "full", None, 100, 1), row("b", "full", None, 100, 1),
...         row("a", "cut", 0.5, 50, 1), row("b", "cut", 0.5, 50, 0)]
>>> runs = aggregate(rows, [Arm("full", None), Arm("cut", 0.5)], usd_per_million=2.5)
>>> m = runs[1].metrics
>>> m.answer_recall, m.tokens_mean, m.compression, m.cost_per_1k_queries, m.cost_saved_per_1k
(0.5, 50.0, 2.0, 0.175, 0.125)
>>> runs[1].delta("answer_recall").delta
-0.5
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evals.bootstrap import paired_bootstrap
from evals.cost import cost_per_1k_queries
from evals.metrics import MISS_KINDS
from evals.records import REFERENCE, ArmMetrics, ArmRun, Delta
from evals.records import rounded as _r

DELTA_METRICS: tuple[tuple[str, str], ...] = (
    ("answer_recall", "answer_recall"),
    ("evidence_recall", "evidence_recall"),
    ("tokens_mean", "tokens"),
    ("accuracy", "accuracy"),
    ("em", "em"),
    ("f1", "f1"),
)
"""(metric name in results.json, ExampleRow field) pairs that get a delta versus ``full``."""


def _mean(values: Sequence[float | None]) -> tuple[float | None, int]:
    kept = [v for v in values if v is not None]
    return (_r(sum(kept) / len(kept)) if kept else None), len(kept)


def _pct(values: Sequence[float | None], q: float) -> float | None:
    kept = [v for v in values if v is not None]
    return _r(float(np.percentile(kept, q)), 3) if kept else None


def _ok(row: Any) -> bool:
    return row.reader_called and row.prediction is not None


def arm_metrics(rows: Sequence[Any], *, usd_per_million: float) -> ArmMetrics:
    """Metrics of one arm's rows (see the module doc for the rules)."""
    answer_recall, n_ar = _mean([r.answer_recall for r in rows])
    evidence_recall, n_er = _mean([r.evidence_recall for r in rows])
    tokens_mean, _ = _mean([r.tokens for r in rows])
    tokens_full_mean, _ = _mean([r.tokens_full for r in rows])
    prompt_tokens_mean, _ = _mean([r.prompt_tokens for r in rows])
    called = [r for r in rows if r.reader_called]
    good = [r for r in called if _ok(r)]
    accuracy, n_acc = _mean([r.accuracy for r in good])
    em, _ = _mean([r.em for r in good])
    f1, _ = _mean([r.f1 for r in good])
    cost = cost_per_1k_queries(prompt_tokens_mean, usd_per_million) if prompt_tokens_mean is not None else None
    return ArmMetrics(
        answer_recall=answer_recall,
        evidence_recall=evidence_recall,
        tokens_mean=tokens_mean,
        tokens_full_mean=tokens_full_mean,
        latency_ms_p50=_pct([r.latency_ms for r in rows], 50),
        latency_ms_p95=_pct([r.latency_ms for r in rows], 95),
        accuracy=accuracy if called else None,
        em=em if called else None,
        f1=f1 if called else None,
        n=len(rows),
        n_answer_recall=n_ar,
        n_evidence_recall=n_er,
        compression=_r(tokens_full_mean / tokens_mean) if tokens_mean else None,
        token_share=_r(tokens_mean / tokens_full_mean) if tokens_full_mean else None,
        prompt_tokens_mean=prompt_tokens_mean,
        cost_per_1k_queries=_r(cost),
        cost_saved_per_1k=None,
        reader_calls=len(called),
        n_reader=len(good),
        n_accuracy=n_acc,
        reader_failures=len(called) - len(good),
        reader_latency_ms_p50=_pct([r.reader_latency_ms for r in good], 50),
        reader_latency_ms_p95=_pct([r.reader_latency_ms for r in good], 95),
        **_misses(rows),
        pipeline_failures=sum(1 for r in rows if getattr(r, "pipeline_error", None)),
    )


def _misses(rows: Sequence[Any]) -> dict[str, float | None]:
    """``miss_<kind>``: share of the answer-recall examples that lost the answer that way (None if rows lack it)."""
    counted = [r for r in rows if r.answer_recall is not None]
    if not counted or any(not r.answer_recall and getattr(r, "miss", None) is None for r in counted):
        return {f"miss_{k}": None for k in MISS_KINDS}
    return {f"miss_{k}": _r(sum(r.miss == k for r in counted) / len(counted)) for k in MISS_KINDS}


def paired_delta(
    base: Sequence[Any],
    other: Sequence[Any],
    value: Callable[[Any], float | None],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> Delta | None:
    """Baseline, value and delta (with its 95 % CI) over example ids where both have a value."""
    by_id = {r.id: value(r) for r in base}
    pairs = [(by_id[r.id], value(r)) for r in other if r.id in by_id]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        return None
    a = [float(p[0]) for p in pairs]
    b = [float(p[1]) for p in pairs]
    d = paired_bootstrap(a, b, resamples=resamples, seed=seed)
    return Delta(baseline=_r(sum(a) / len(a)), value=_r(sum(b) / len(b)), delta=_r(d.delta), ci95=(_r(d.ci_low), _r(d.ci_high)), n=d.n)


def paired_prompt_means(base: Sequence[Any], other: Sequence[Any]) -> tuple[float, float, int] | None:
    """``(base's mean prompt tokens, other's, n)`` over the example ids both have a prompt for; None when none pairs.

    A row whose pipeline raised has no prompt: pairing keeps it out of both sides (subtracting each side's mean over
    its own rows would credit an arm with the prompt of an example it failed on as saved).

    >>> from types import SimpleNamespace as R
    >>> paired_prompt_means([R(id="a", prompt_tokens=10), R(id="b", prompt_tokens=90)],
    ...                     [R(id="a", prompt_tokens=10), R(id="b", prompt_tokens=None)])
    (10.0, 10.0, 1)
    """
    by_id = {r.id: r.prompt_tokens for r in base if r.prompt_tokens is not None}
    pairs = [(by_id[r.id], r.prompt_tokens) for r in other if r.prompt_tokens is not None and r.id in by_id]
    if not pairs:
        return None
    return sum(a for a, _ in pairs) / len(pairs), sum(b for _, b in pairs) / len(pairs), len(pairs)


def paired_saving(
    base: Sequence[Any], other: Sequence[Any], *, usd_per_million: float
) -> tuple[float, float | None, int] | None:
    """``($ saved per 1k queries, share of base's cost saved, n)`` of ``other`` versus ``base``, paired by example id
    (:func:`paired_prompt_means`); None when no example pairs.

    >>> from types import SimpleNamespace as R
    >>> base = [R(id="a", prompt_tokens=100), R(id="b", prompt_tokens=300)]
    >>> paired_saving(base, [R(id="a", prompt_tokens=100), R(id="b", prompt_tokens=None)], usd_per_million=1.0)
    (0.0, 0.0, 1)
    """
    means = paired_prompt_means(base, other)
    if means is None:
        return None
    base_cost, cost = (cost_per_1k_queries(m, usd_per_million) for m in means[:2])
    return _r(base_cost - cost), (_r((base_cost - cost) / base_cost) if base_cost else None), means[2]


def _field_value(field: str) -> Callable[[Any], float | None]:
    if field in ("accuracy", "em", "f1"):
        return lambda r: getattr(r, field) if _ok(r) else None
    return lambda r: getattr(r, field)


def aggregate(
    rows: Sequence[Any],
    arms: Sequence[Any],
    *,
    usd_per_million: float,
    resamples: int = 1000,
    seed: int = 0,
) -> list[ArmRun]:
    """One :class:`~evals.records.ArmRun` per arm, in arm order.

    ``vs_full`` maps each metric of :data:`DELTA_METRICS` to a :class:`~evals.records.Delta`
    (None where no example has both values); it is None for ``full`` itself.
    """
    grouped: dict[Any, list[Any]] = {arm: [] for arm in arms}
    for r in rows:
        if r.arm in grouped:
            grouped[r.arm].append(r)
    reference = next((a for a in arms if a.pipeline == REFERENCE and a.budget is None), None)
    base_rows = grouped.get(reference, []) if reference is not None else []
    base_metrics = arm_metrics(base_rows, usd_per_million=usd_per_million) if base_rows else None
    runs = []
    for arm in arms:
        arm_rows = grouped[arm]
        m = arm_metrics(arm_rows, usd_per_million=usd_per_million)
        if base_metrics is not None and m.cost_per_1k_queries is not None:
            saved = paired_saving(base_rows, arm_rows, usd_per_million=usd_per_million)
            if saved is not None:
                m = replace(m, cost_saved_per_1k=saved[0], cost_saved_share=saved[1], n_cost_saved=saved[2])
        vs_full = None
        if arm != reference and base_rows:
            vs_full = {
                name: paired_delta(base_rows, arm_rows, _field_value(field), resamples=resamples, seed=seed)
                for name, field in DELTA_METRICS
            }
        runs.append(ArmRun(arm.pipeline, arm.budget, arm.label, m, vs_full))
    return runs

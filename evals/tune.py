"""Find the smallest budget that keeps a metric within a target of the full context.

:func:`tune_budget` searches the budget as a *share* of each example's full rendered
context: a coarse scan over a grid of shares, then bisection between the last share that
misses the target and the first that meets it, down to ``resolution`` (0.5 % of the share
by default, never finer than one token at the data's median full size). A share ``s``
*meets the target* when ``metric(s) >= target_retention * metric(full)``.

Every evaluation is a :func:`evals.sweep.run_eval` call (so the metric, the paired
bootstrap and the cost come from the harness), memoized per share within a run; pass the
same ``memo`` dict to several calls to share evaluations between them (e.g. two targets on
the same pipeline), and a reader with a cache to make tuning after a sweep nearly free.

Answer recall is a mean of 0/1 values over examples, so it is a step function of the
budget and only *nearly* monotone (a bigger budget can swap which chunk gets cut). The
search returns the first share meeting the target after the first grid point that meets
it (bisection inside that bracket), and reports every evaluated share above the answer
that missed the target in :attr:`TuneResult.fails_above`.

>>> from types import SimpleNamespace
>>> from optimizer import Chunk
>>> exs = [SimpleNamespace(id=str(i), question="Where is the key?", answers=(f"box{i}",), meta={}, gold_ids=(),
...        chunks=(Chunk(id=f"{i}a", text="Filler words here. " * 8), Chunk(id=f"{i}b", text=f"The key is in box{i}.")))
...        for i in range(4)]
>>> result = tune_budget(SimpleNamespace(name="toy", examples=exs), "default", target_retention=1.0)
>>> result.met, result.metric, result.full_metric
(True, 1.0, 1.0)
>>> 0 < result.budget < 0.3
True
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evals.records import REFERENCE, Arm, rounded
from optimizer.pipeline import Pipeline
from optimizer.validate import unit_interval

METRICS = ("answer_recall", "evidence_recall", "accuracy", "em", "f1")
"""Metrics a budget can be tuned for (``accuracy``, ``em`` and ``f1`` need a reader)."""

READER_METRICS = frozenset({"accuracy", "em", "f1"})

DEFAULT_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Shares the coarse scan evaluates before bisection."""

_EPS = 1e-12


@dataclass(frozen=True)
class TuneResult:
    """The tuner's answer and the evidence for it.

    ``budget`` is the share of each example's full context; ``tokens`` the same share of
    the data's median full size (a fixed token budget to start from). ``metric`` is the
    metric at ``budget`` with its 95 % bootstrap interval ``ci``; ``delta`` versus the full
    context with ``delta_ci`` (paired bootstrap over examples). ``met`` is False when not
    even the whole context (share 1.0) meets the target; ``budget`` is then 1.0.
    ``evaluations`` lists every ``(share, metric)`` evaluated, ``fails_above`` the shares
    above ``budget`` that missed the target (non-monotonicity; empty when none was seen).
    """

    dataset: str
    pipeline: str
    metric_name: str
    target_retention: float
    met: bool
    budget: float
    tokens: int
    metric: float
    full_metric: float
    retention: float | None
    ci: tuple[float, float]
    delta: float
    delta_ci: tuple[float, float]
    n: int
    n_metric: int
    tokens_mean: float
    tokens_full_mean: float
    tokens_full_median: float
    tokens_saved_per_1k: float
    cost_saved_per_1k: float | None
    price_model: str
    resolution: float
    evaluations: tuple[tuple[float, float | None], ...]
    fails_above: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (what ``ragtrim tune --format json`` prints)."""
        out = asdict(self)
        out["ci"] = list(self.ci)
        out["delta_ci"] = list(self.delta_ci)
        out["evaluations"] = [{"budget": s, "metric": v} for s, v in self.evaluations]
        out["fails_above"] = list(self.fails_above)
        return out

    def summary(self) -> str:
        """A few lines for people: the budget, the metric versus full, what it saves."""
        verdict = "meets" if self.met else "MISSES (even the whole context)"
        lines = [
            f"{self.pipeline} on {self.dataset} (n={self.n}, {self.metric_name} counted on {self.n_metric}): "
            f"target {self.target_retention:g} x full {verdict}",
            f"  budget     {self.budget:.4f} of the full context  ~ {self.tokens} tokens at the median full size "
            f"({self.tokens_full_median:g}); mean {self.tokens_mean:.1f} of {self.tokens_full_mean:.1f} tokens",
            f"  {self.metric_name:<10} full {self.full_metric:.4f} -> {self.metric:.4f} "
            f"(95% CI {self.ci[0]:.4f}..{self.ci[1]:.4f}); delta {self.delta:+.4f} "
            f"(95% CI {self.delta_ci[0]:+.4f}..{self.delta_ci[1]:+.4f})"
            + (f"; retention {self.retention:.4f}" if self.retention is not None else ""),
            f"  saves      {self.tokens_saved_per_1k:,.0f} input tokens per 1k queries"
            + (f", ${self.cost_saved_per_1k:.4f} per 1k queries at {self.price_model} prices" if self.cost_saved_per_1k is not None else ""),
            f"  searched   {len(self.evaluations)} budgets, resolution {self.resolution:.4g} of the share",
        ]
        if self.fails_above:
            shown = ", ".join(f"{s:.4g}" for s in self.fails_above)
            lines.append(f"  warning    not monotone: the target is missed at larger budgets too: {shown}")
        return "\n".join(lines)


def holds(value: float | None, full_value: float | None, target_retention: float) -> bool:
    """Whether ``value`` meets ``target_retention`` times ``full_value`` (None never does).

    >>> holds(0.98, 1.0, 0.98), holds(0.97, 1.0, 0.98), holds(None, 1.0, 0.9)
    (True, False, False)
    """
    if value is None or full_value is None:
        return False
    return value >= target_retention * full_value - _EPS


def mean_ci(values: Sequence[float], *, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of ``values``.

    An adapter over :func:`evals.bootstrap.paired_bootstrap`: the interval of the mean of
    ``values`` is that of the paired delta against all zeros.

    >>> mean_ci([1, 1, 1])
    (1.0, 1.0)
    """
    from evals.bootstrap import paired_bootstrap

    d = paired_bootstrap([0.0] * len(values), [float(v) for v in values], resamples=resamples, seed=seed)
    return (d.ci_low, d.ci_high)


def _check_args(metric: str, target_retention: Any, reader: Any, resolution: Any, grid: Sequence[Any]) -> list[float]:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if metric in READER_METRICS and reader is None:
        raise ValueError(f"metric {metric!r} scores a reader's answers; pass a reader (e.g. --reader local) or use answer_recall")
    unit_interval(target_retention, "target_retention (a share of the full-context metric)", example=0.98)
    unit_interval(resolution, "resolution (a relative step of the share)", open_high=True, example="0.005 for 0.5 %")
    shares = sorted({float(s) for s in grid})
    if not shares or any(not 0 < s <= 1 for s in shares):
        raise ValueError(f"grid must hold shares of the full context in (0, 1], got {list(grid)!r}")
    if shares[-1] != 1.0:
        shares.append(1.0)  # the search needs a top that can meet the target
    return shares


def _as_dataset(dataset: Any, limit: int | None) -> Any:
    if isinstance(dataset, (str, Path)):
        from evals.datasets import load_dataset

        return load_dataset(dataset, limit=limit)
    if limit is not None:
        from types import SimpleNamespace

        return SimpleNamespace(name=getattr(dataset, "name", "dataset"), examples=list(dataset.examples)[:limit])
    return dataset


def _pipeline_name(pipeline: str | Pipeline) -> str:
    if isinstance(pipeline, Pipeline):
        return pipeline.name
    if isinstance(pipeline, str):
        return pipeline.strip()
    raise TypeError(f"pipeline must be a preset name or a Pipeline, got {type(pipeline).__name__}: {pipeline!r}")


def tune_budget(
    dataset: Any,
    pipeline: str | Pipeline,
    *,
    metric: str = "answer_recall",
    target_retention: float = 0.98,
    reader: Any = None,
    tokenizer: str = "cl100k_base",
    limit: int | None = None,
    resolution: float = 0.005,
    grid: Sequence[float] = DEFAULT_GRID,
    prices: Any = None,
    price_model: str | None = None,
    resamples: int = 1000,
    seed: int = 0,
    memo: MutableMapping[Any, Any] | None = None,
    progress: bool = False,
) -> TuneResult:
    """The smallest budget (share of the full context) whose ``metric`` stays within target.

    Parameters
    ----------
    dataset:
        A loaded :class:`evals.datasets.Dataset` (or anything with ``name`` and
        ``examples``), or a bundled name / ``.jsonl`` path for :func:`evals.datasets.load_dataset`.
    pipeline:
        A preset name or a :class:`~optimizer.pipeline.Pipeline` (its budget is overridden).
    metric:
        One of :data:`METRICS`; ``accuracy``, ``em`` and ``f1`` need ``reader``.
    target_retention:
        The budget must keep ``metric >= target_retention * metric(full)``.
    reader:
        An :mod:`evals.readers` reader (only called for reader metrics; give it a cache).
    tokenizer, limit:
        Target tokenizer; first ``limit`` examples only.
    resolution:
        Bisection stops when the bracket is narrower than ``resolution * share`` (or one
        token at the median full size, whichever is wider).
    grid:
        Shares of the coarse scan (1.0 is always added).
    prices, price_model:
        Price table and model for the $ saved (see :mod:`evals.cost`).
    resamples, seed:
        Bootstrap settings for the intervals at the answer.
    memo:
        A dict to memoize evaluations in; reuse it across calls on the same data.
    progress:
        Progress bars on stderr.
    """
    from evals.cost import load_prices

    shares = _check_args(metric, target_retention, reader, resolution, grid)
    data = _as_dataset(dataset, limit)
    name = _pipeline_name(pipeline)
    if name == REFERENCE:
        raise ValueError("'full' is the reference (the whole context); tune another pipeline, e.g. 'default'")
    table = prices if prices is not None else load_prices()
    evaluator = ShareEvaluator(
        data, pipeline, metric=metric, reader=reader if metric in READER_METRICS else None, tokenizer=tokenizer,
        prices=table, price_model=price_model, seed=seed, progress=progress, memo=memo,
    )
    evaluator.evaluate(shares)
    full_value = evaluator.full_value()
    if full_value is None:
        raise ValueError(f"no example of {evaluator.dataset_name!r} counts for {metric!r} (e.g. all answers are yes/no or empty); pick another metric or dataset")

    def ok(share: float) -> bool:
        return holds(evaluator.value(share), full_value, target_retention)

    first = next((i for i, s in enumerate(shares) if ok(s)), None)
    if first is None:
        best = 1.0
    else:
        lo = shares[first - 1] if first > 0 else 0.0
        best = bisect_share(lo, shares[first], ok, resolution=resolution, floor=evaluator.one_token_share())
    return build_result(evaluator, best, met=first is not None, target_retention=target_retention,
                        resolution=resolution, price=table.price(price_model), resamples=resamples, seed=seed)


def bisect_share(lo: float, hi: float, ok: Callable[[float], bool], *, resolution: float, floor: float = 0.0) -> float:
    """The smallest share in ``(lo, hi]`` where ``ok`` holds, given ``ok(hi)`` (bisection).

    Stops when the bracket is narrower than ``resolution * hi`` or ``floor``, whichever is wider.

    >>> bisect_share(0.0, 1.0, lambda s: s >= 0.3, resolution=0.01)
    0.30078125
    >>> bisect_share(0.2, 0.3, lambda s: True, resolution=0.5)
    0.3
    """
    while hi - lo > max(resolution * hi, floor):
        mid = round((lo + hi) / 2, 9)
        if mid <= lo or mid >= hi:
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


class ShareEvaluator:
    """Per-example rows of one pipeline at budget shares, each share run once (memoized in ``memo``).

    ``memo`` maps ``(scope, share)`` to rows, where the scope names the data, the pipeline's
    config, the tokenizer and the reader, so one dict can serve several searches.
    """

    def __init__(
        self, data: Any, pipeline: str | Pipeline, *, metric: str, reader: Any, tokenizer: str,
        prices: Any, price_model: str | None, seed: int, progress: bool, memo: MutableMapping[Any, Any] | None,
    ) -> None:
        self.data, self.pipeline, self.name = data, pipeline, _pipeline_name(pipeline)
        self.metric, self.reader, self.tokenizer = metric, reader, tokenizer
        self.prices, self.price_model, self.seed, self.progress = prices, price_model, seed, progress
        self.memo = memo if memo is not None else {}
        self.dataset_name = str(getattr(data, "name", ""))
        config = json.dumps(pipeline.to_config(), sort_keys=True, default=str) if isinstance(pipeline, Pipeline) else self.name
        reader_key = (getattr(reader, "name", None), getattr(reader, "model", None)) if reader is not None else None
        self.scope = (self.dataset_name, len(data.examples), config, tokenizer, reader_key)
        self.rows_by_share: dict[float, list[Any]] = {}

    def evaluate(self, batch: Sequence[float]) -> None:
        """Run the shares of ``batch`` not evaluated yet, in one sweep."""
        from evals.sweep import run_eval

        todo = [s for s in batch if (self.scope, s) not in self.memo]
        if todo:
            run = run_eval(
                self.data, [self.pipeline], todo, reader=self.reader, tokenizer=self.tokenizer, prices=self.prices,
                price_model=self.price_model, resamples=1, seed=self.seed, progress=self.progress,
                fresh_models=False,  # shares are evaluated batch by batch: keep the models and memos between them
            )
            self.memo.setdefault((self.scope, REFERENCE), run.rows_for(REFERENCE, None))
            for s in todo:
                self.memo[(self.scope, s)] = run.rows_for(self.name, s)
        for s in batch:
            self.rows_by_share.setdefault(s, self.memo[(self.scope, s)])

    def rows(self, share: float) -> list[Any]:
        self.evaluate([share])
        return self.rows_by_share[share]

    def full_rows(self) -> list[Any]:
        return self.memo[(self.scope, REFERENCE)]

    def value(self, share: float) -> float | None:
        return metric_mean(self.rows(share), self.metric)

    def full_value(self) -> float | None:
        return metric_mean(self.full_rows(), self.metric)

    def median_full_tokens(self) -> float:
        return statistics.median(r.tokens_full for r in self.full_rows())

    def one_token_share(self) -> float:
        """The share one token is at the median full size (bisection never goes finer)."""
        median_full = self.median_full_tokens()
        return 1.0 / median_full if median_full > 0 else 0.0


def metric_mean(rows: Sequence[Any], metric: str) -> float | None:
    """Mean of ``metric`` over the rows where it counts (None when none does)."""
    got = [v for v in (_metric_of(r, metric) for r in rows) if v is not None]
    return sum(got) / len(got) if got else None


def build_result(
    evaluator: ShareEvaluator, best: float, *, met: bool, target_retention: float, resolution: float,
    price: Any, resamples: int, seed: int,
) -> TuneResult:
    """The :class:`TuneResult` at share ``best``, with the harness's aggregation at full resamples."""
    from evals.aggregate import aggregate

    metric, full_rows, best_rows = evaluator.metric, evaluator.full_rows(), evaluator.rows(best)
    full_value = metric_mean(full_rows, metric)
    runs = aggregate(list(full_rows) + list(best_rows), [Arm(REFERENCE, None), Arm(evaluator.name, best)],
                     usd_per_million=price.input_per_million, resamples=resamples, seed=seed)
    full_run, best_run = runs
    m = best_run.metrics
    delta = best_run.delta(metric)
    values = [v for v in (_metric_of(r, metric) for r in best_rows) if v is not None]
    best_value = sum(values) / len(values)
    median_full = evaluator.median_full_tokens()
    evaluations = tuple(sorted((s, rounded(metric_mean(rows, metric))) for s, rows in evaluator.rows_by_share.items()))
    return TuneResult(
        dataset=evaluator.dataset_name, pipeline=evaluator.name, metric_name=metric,
        target_retention=float(target_retention), met=met, budget=best,
        tokens=int(math.floor(best * median_full + 1e-9)),
        metric=rounded(best_value), full_metric=rounded(full_value),
        retention=rounded(best_value / full_value) if full_value else None,
        ci=mean_ci(values, resamples=resamples, seed=seed),
        delta=float(delta.delta) if delta is not None else best_value - full_value,
        delta_ci=tuple(delta.ci95) if delta is not None else (best_value - full_value,) * 2,
        n=len(evaluator.data.examples), n_metric=len(values),
        tokens_mean=float(m.tokens_mean), tokens_full_mean=float(m.tokens_full_mean),
        tokens_full_median=float(median_full),
        tokens_saved_per_1k=rounded((full_run.metrics.prompt_tokens_mean - m.prompt_tokens_mean) * 1000),
        cost_saved_per_1k=m.cost_saved_per_1k, price_model=price.model, resolution=float(resolution),
        evaluations=evaluations,
        fails_above=tuple(s for s, v in evaluations if s > best and not holds(v, full_value, target_retention)),
    )


def evaluate_at(
    dataset: Any,
    pipeline: str | Pipeline,
    budget: float,
    *,
    metric: str = "answer_recall",
    reader: Any = None,
    tokenizer: str = "cl100k_base",
    limit: int | None = None,
) -> tuple[float, float]:
    """``(metric at budget, metric of the full context)`` from one fresh eval: checks an answer.

    >>> from types import SimpleNamespace
    >>> from optimizer import Chunk
    >>> ex = SimpleNamespace(id="1", question="q", answers=("gold",), meta={}, gold_ids=(),
    ...     chunks=(Chunk(id="a", text="x " * 50), Chunk(id="b", text="gold")))
    >>> evaluate_at(SimpleNamespace(name="t", examples=[ex]), "truncate", 0.5)
    (0.0, 1.0)
    """
    from evals.sweep import run_eval

    data = _as_dataset(dataset, limit)
    name = _pipeline_name(pipeline)
    use_reader = reader if metric in READER_METRICS else None
    run = run_eval(data, [pipeline], [budget], reader=use_reader, tokenizer=tokenizer, resamples=1, progress=False)
    return run.run_for(name, budget).metrics.value(metric), run.run_for(REFERENCE, None).metrics.value(metric)


def _metric_of(row: Any, metric: str) -> float | None:
    if metric in READER_METRICS and not (row.reader_called and row.prediction is not None):
        return None
    v = getattr(row, metric)
    return None if v is None else float(v)


__all__ = [
    "DEFAULT_GRID", "METRICS", "ShareEvaluator", "TuneResult", "bisect_share", "build_result", "evaluate_at",
    "holds", "mean_ci", "metric_mean", "tune_budget",
]

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

**Choosing and checking on different examples.** A budget chosen on some examples and
measured on the same ones looks better than it is (at the chosen share the metric meets the
target by construction, often with a zero-width interval). With ``holdout`` > 0 (half by
default, in Python as in ``ragtrim tune``) the examples are split with ``seed``: the search runs on
one part and the chosen budget is measured once on the held-out rest
(:attr:`TuneResult.held_out`), which is the number to trust. With fewer than
:data:`MIN_SPLIT` examples nothing is held out and the result says so (:attr:`TuneResult.note`);
the search's own numbers are always labelled in-sample.

A full-context metric of 0 (e.g. no chunk holds any answer) makes any budget "meet" any
target: the tuner refuses it with an error instead of recommending an empty context. The
search never goes below one token at the median full size.

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

import hashlib
import json
import math
import random
import statistics
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from evals.records import REFERENCE, Arm, rounded
from optimizer.budget import smallest_share
from optimizer.pipeline import Pipeline
from optimizer.validate import non_negative_int, positive_int, unit_interval

METRICS = ("answer_recall", "evidence_recall", "accuracy", "em", "f1")
"""Metrics a budget can be tuned for (``accuracy``, ``em`` and ``f1`` need a reader)."""

READER_METRICS = frozenset({"accuracy", "em", "f1"})

DEFAULT_GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Shares the coarse scan evaluates before bisection."""

_EPS = 1e-12

MIN_SPLIT = 40
"""Fewest examples for a held-out check; with fewer, the budget is chosen and reported in-sample (and says so)."""


@dataclass(frozen=True)
class HeldOutCheck:
    """The chosen budget measured once on examples the search never saw.

    ``metric`` and ``full_metric`` are means over the ``n_metric`` held-out examples where the
    metric counts; ``ci`` is the 95 % bootstrap interval of ``metric``, ``retention_ci`` that of
    ``metric / full_metric`` and ``delta_ci`` that of the paired delta. ``met`` says whether
    ``metric >= target_retention * full_metric`` on these examples (False when the full
    context scores 0 or nothing counts: nothing to check against).
    """

    n: int
    n_metric: int
    metric: float | None
    full_metric: float | None
    retention: float | None
    retention_ci: tuple[float, float] | None
    ci: tuple[float, float] | None
    delta: float | None
    delta_ci: tuple[float, float] | None
    tokens_mean: float
    tokens_full_mean: float
    met: bool

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("retention_ci", "ci", "delta_ci"):
            out[key] = list(out[key]) if out[key] is not None else None
        return out


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

    ``metric``, ``ci``, ``retention`` (with ``retention_ci``), ``delta``, ``met`` and the token
    figures are measured on the ``n_tune`` examples that chose the budget: **in-sample**,
    optimistic. ``held_out`` is the chosen budget measured on the other ``n - n_tune``
    examples (None when nothing was held out; ``note`` says why).

    ``adaptive``: the pipeline has an adaptive budget rule, which caps each context on its own, so
    share 1.0 is "no hard cap beyond the rule", not the whole context. ``tuned_on``: the data the
    pipeline's settings were chosen on when this dataset is one of them (:func:`evals.sweep.tuned_on`),
    so even the held-out half is not new to it.
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
    n_tune: int = 0
    retention_ci: tuple[float, float] | None = None
    holdout: float = 0.0
    held_out: HeldOutCheck | None = None
    note: str = ""
    adaptive: bool = False
    tuned_on: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (what ``ragtrim tune --format json`` prints)."""
        out = asdict(self)
        out["ci"] = list(self.ci)
        out["delta_ci"] = list(self.delta_ci)
        out["retention_ci"] = list(self.retention_ci) if self.retention_ci is not None else None
        out["evaluations"] = [{"budget": s, "metric": v} for s, v in self.evaluations]
        out["fails_above"] = list(self.fails_above)
        out["in_sample"] = ["metric", "ci", "retention", "retention_ci", "delta", "delta_ci", "met"]
        out["held_out"] = self.held_out.to_dict() if self.held_out is not None else None
        return out

    def verdict(self) -> str:
        """The headline: met or missed, and on which examples."""
        if not self.met and self.adaptive:
            return (f"MISSES even at budget 1.0, where the pipeline's adaptive rule still caps each context "
                    f"({self.tokens_mean:.0f} of {self.tokens_full_mean:.0f} tokens on average; the whole context was "
                    "not tried): loosen the rule (e.g. a higher mass) or lower the target")
        if not self.met:
            return "MISSES (even the whole context)"
        if self.held_out is None:
            return f"meets on the {self.n_tune} examples that chose it (in-sample only, no held-out check)"
        word = "meets" if self.held_out.met else "MISSES"
        return f"{word} on {self.held_out.n} held-out examples (budget chosen on the other {self.n_tune})"

    def summary(self) -> str:
        """A few lines for people: the budget, the metric versus full (chosen on / held out), what it saves."""
        lines = [
            f"{self.pipeline} on {self.dataset} (n={self.n}, {self.metric_name} counted on {self.n_metric} of the "
            f"{self.n_tune} that chose the budget): target {self.target_retention:g} x full {self.verdict()}",
            f"  budget     {self.budget:.4f} of the full context{' (a hard cap over the adaptive rule)' if self.adaptive else ''}"
            f"  ~ {self.tokens} tokens at the median full size ({self.tokens_full_median:g}); mean {self.tokens_mean:.1f} of "
            f"{self.tokens_full_mean:.1f} tokens",
            "  chosen on  " + _scores_line(self.n_tune, self.full_metric, self.metric, self.ci, self.delta, self.delta_ci,
                                           self.retention, self.retention_ci) + " (in-sample: optimistic)",
        ]
        if self.held_out is not None:
            h = self.held_out
            lines.append("  held out   " + _scores_line(h.n, h.full_metric, h.metric, h.ci, h.delta, h.delta_ci, h.retention,
                                                        h.retention_ci) + (" -> meets the target" if h.met else " -> MISSES the target"))
        if self.note:
            lines.append(f"  note       {self.note}")
        if self.adaptive:
            lines.append("  adaptive   the pipeline's adaptive rule sets each question's budget; the share searched is a hard "
                         "cap over it (1.0 = no cap beyond the rule, not the whole context)")
        if self.tuned_on:
            whose = "" if self.tuned_on.get("preset") == self.pipeline else f" (those of {self.tuned_on.get('preset')})"
            which = "even the held-out examples are" if self.held_out is not None else "these examples are"
            lines.append(f"  in-sample  {self.pipeline}'s settings{whose} were chosen on {self.dataset} ({self.tuned_on['how']}): "
                         f"{which} not new to it; check on another set")
        lines += [
            f"  saves      {self.tokens_saved_per_1k:,.0f} input tokens per 1k queries"
            + (f", ${self.cost_saved_per_1k:.4f} per 1k queries at {self.price_model} prices" if self.cost_saved_per_1k is not None else "")
            + self._savings_label(),
            f"  searched   {len(self.evaluations)} budgets, resolution {self.resolution:.4g} of the share",
        ]
        if self.fails_above:
            shown = ", ".join(f"{s:.4g}" for s in self.fails_above)
            lines.append(f"  warning    not monotone: the target is missed at larger budgets too: {shown}")
        return "\n".join(lines)

    def _savings_label(self) -> str:
        """What the savings line must add when the budget it prices does not meet the target."""
        if not self.met:
            return " (at budget 1.0, which MISSES the target: not a saving to count on)"
        if self.held_out is not None and not self.held_out.met:
            return " (at a budget that MISSES the target on the held-out examples)"
        return ""


def _scores_line(n: int, full: float | None, value: float | None, ci: Any, delta: float | None, delta_ci: Any,
                 retention: float | None, retention_ci: Any) -> str:
    """``100 examples: full 0.95 -> 0.93 (95% CI ..); delta ..; retention .. (95% CI ..)``."""
    if value is None or full is None:
        return f"{n} examples: nothing counts for the metric, no check"
    text = f"{n} examples: full {full:.4f} -> {value:.4f}"
    if ci is not None:
        text += f" (95% CI {ci[0]:.4f}..{ci[1]:.4f})"
    if delta is not None:
        text += f"; delta {delta:+.4f}" + (f" (95% CI {delta_ci[0]:+.4f}..{delta_ci[1]:+.4f})" if delta_ci is not None else "")
    if retention is not None:
        text += f"; retention {retention:.4f}" + (f" (95% CI {retention_ci[0]:.4f}..{retention_ci[1]:.4f})" if retention_ci else "")
    return text


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


def retention_ci(full: Sequence[float], values: Sequence[float], *, resamples: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """95 % paired bootstrap interval of ``mean(values) / mean(full)`` (None when the full mean is always 0).

    >>> retention_ci([1, 1, 1, 1], [1, 1, 1, 1])
    (1.0, 1.0)
    >>> lo, hi = retention_ci([1] * 20, [1] * 15 + [0] * 5); lo < 0.75 < hi
    True
    """
    a, b = np.asarray(full, dtype=float), np.asarray(values, dtype=float)
    if not len(a) or len(a) != len(b):
        return None
    idx = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    den, num = a[idx].mean(axis=1), b[idx].mean(axis=1)
    keep = den > 0
    if not keep.any():
        return None
    low, high = np.percentile(num[keep] / den[keep], [2.5, 97.5])
    return (rounded(float(low)), rounded(float(high)))


def split_examples(examples: Sequence[Any], holdout: float, seed: int) -> tuple[list[Any], list[Any]]:
    """``(tune, held_out)``: a seeded random ``holdout`` share of ``examples`` held out, each part in file order.

    >>> tune, held = split_examples(list(range(10)), 0.5, seed=0)
    >>> len(tune), len(held), sorted(tune + held) == list(range(10)), tune == sorted(tune)
    (5, 5, True, True)
    >>> split_examples(list(range(10)), 0.5, seed=0) == (tune, held)
    True
    """
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_held = min(max(round(len(examples) * holdout), 1), len(examples) - 1)
    held = set(order[:n_held])
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def _parts(data: Any, holdout: float, seed: int) -> tuple[Any, Any | None, str]:
    """The examples to choose on, those to check on (None: no check) and a note saying why when there is none."""
    examples = list(data.examples)
    name = str(getattr(data, "name", "dataset"))
    if holdout <= 0:
        return data, None, ("in-sample only: the budget is chosen and measured on the same examples (optimistic); "
                            "hold some out to check it (the default: ragtrim tune --holdout 0.5, tune_budget(..., holdout=0.5))")
    if len(examples) < MIN_SPLIT:
        return data, None, (f"only {len(examples)} examples, fewer than {MIN_SPLIT}: too few to hold some out, so the "
                            "budget is chosen and measured on the same examples (in-sample, optimistic); use more "
                            f"examples (e.g. --limit {max(MIN_SPLIT, 100)}) for a held-out check")
    tune, held = split_examples(examples, holdout, seed)
    return SimpleNamespace(name=name, examples=tune), SimpleNamespace(name=name, examples=held), ""


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
    holdout: float = 0.5,
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
        Bootstrap settings for the intervals at the answer; ``seed`` also draws the held-out part.
    memo:
        A dict to memoize evaluations in; reuse it across calls on the same data.
    progress:
        Progress bars on stderr.
    holdout:
        Share of the examples held out of the search to check the chosen budget on (half by
        default, as ``ragtrim tune``; 0: none, the result is in-sample only and says so). Ignored,
        with a note, below :data:`MIN_SPLIT` examples.
    """
    from evals.cost import load_prices

    shares = _check_args(metric, target_retention, reader, resolution, grid)
    unit_interval(holdout, "holdout (the share of examples held out to check the budget)", closed_low=True, open_high=True, example=0.5)
    positive_int(resamples, "resamples", what="bootstrap resamples")
    non_negative_int(seed, "seed")
    data = _as_dataset(dataset, limit)
    name = _pipeline_name(pipeline)
    if name == REFERENCE:
        raise ValueError("'full' is the reference (the whole context); tune another pipeline, e.g. 'default'")
    table = prices if prices is not None else load_prices()
    tune_data, held_data, note = _parts(data, holdout, seed)
    settings = dict(metric=metric, reader=reader if metric in READER_METRICS else None, tokenizer=tokenizer,
                    prices=table, price_model=price_model, seed=seed, progress=progress, memo=memo)
    evaluator = ShareEvaluator(tune_data, pipeline, **settings)
    best, met = search(evaluator, shares, target_retention=target_retention, resolution=resolution)
    price = table.price(price_model)
    result = build_result(evaluator, best, met=met, target_retention=target_retention,
                          resolution=resolution, price=price, resamples=resamples, seed=seed)
    held = None
    if held_data is not None:
        held = check_share(ShareEvaluator(held_data, pipeline, **settings), best, target_retention=target_retention,
                           resamples=resamples, seed=seed)
    return replace(result, n=len(data.examples), holdout=float(holdout), held_out=held, note=note,
                   adaptive=getattr(pipeline, "adaptive", None) is not None, tuned_on=_tuned_on(data, pipeline, tokenizer))


def _tuned_on(data: Any, pipeline: str | Pipeline, tokenizer: str) -> dict[str, Any] | None:
    """The data ``pipeline``'s settings were chosen on, when ``data`` is one of those sets (else None)."""
    from evals.sweep import in_sample, resolve_pipelines, tuned_on

    name, pipe = resolve_pipelines([pipeline], tokenizer=tokenizer)[-1]
    tuned = tuned_on(name, pipe)
    return tuned if in_sample(str(getattr(data, "name", "")), tuned)["in_sample"] else None


def search(evaluator: ShareEvaluator, shares: Sequence[float], *, target_retention: float, resolution: float) -> tuple[float, bool]:
    """``(share, met)``: the coarse scan over ``shares`` then bisection, never below one token at the median size.

    Raises ValueError when the full context's metric is 0 (every budget would "meet" the target).
    """
    evaluator.evaluate([1.0])  # the full context first: its size sets the floor, its metric the target
    full_value = evaluator.full_value()
    if full_value is None:
        raise ValueError(f"no example of {evaluator.dataset_name!r} counts for {evaluator.metric!r} (e.g. all answers are yes/no or empty); pick another metric or dataset")
    if full_value <= 0:
        raise ValueError(
            f"the full context scores {evaluator.metric} = 0 on the {len(evaluator.data.examples)} examples of "
            f"{evaluator.dataset_name!r} the search uses, so any budget, even an empty context, keeps "
            f"{target_retention:g} x 0 and the target is meaningless; check that the chunks hold the answers "
            "('ragtrim eval' counts them as 'not in any chunk'), or pick another metric or dataset"
        )
    floor = evaluator.one_token_share()
    grid = [s for s in shares if s >= floor]  # shares below one token give empty contexts: not budgets
    evaluator.evaluate(grid)

    def ok(share: float) -> bool:
        return holds(evaluator.value(share), full_value, target_retention)

    first = next((i for i, s in enumerate(grid) if ok(s)), None)
    if first is None:
        return 1.0, False
    lo = grid[first - 1] if first > 0 else 0.0
    return bisect_share(lo, grid[first], ok, resolution=resolution, floor=floor), True


def bisect_share(lo: float, hi: float, ok: Callable[[float], bool], *, resolution: float, floor: float = 0.0) -> float:
    """The smallest share in ``(lo, hi]`` where ``ok`` holds, given ``ok(hi)`` (bisection).

    Stops when the bracket is narrower than ``resolution * hi`` or ``floor``, whichever is wider,
    and never tries (nor returns) a share below ``floor`` (one token), unless ``hi`` already is.

    >>> bisect_share(0.0, 1.0, lambda s: s >= 0.3, resolution=0.01)
    0.30078125
    >>> bisect_share(0.2, 0.3, lambda s: True, resolution=0.5)
    0.3
    >>> bisect_share(0.0, 0.02, lambda s: True, resolution=0.005, floor=0.003)
    0.003
    """
    while hi - lo > max(resolution * hi, floor):
        mid = max(round((lo + hi) / 2, 9), floor)
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
        ids = hashlib.sha256("\n".join(str(e.id) for e in data.examples).encode("utf-8", "surrogatepass")).hexdigest()
        self.scope = (self.dataset_name, len(data.examples), ids, config, tokenizer, reader_key)
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
        """The smallest share that is one token at the median full size (the search never goes below it)."""
        median_full = int(self.median_full_tokens())
        return smallest_share(median_full) if median_full > 0 else 0.0


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
    base, paired = paired_values(full_rows, best_rows, metric)
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
        n=len(evaluator.data.examples), n_metric=len(values), n_tune=len(evaluator.data.examples),
        retention_ci=retention_ci(base, paired, resamples=resamples, seed=seed) if full_value else None,
        tokens_mean=float(m.tokens_mean), tokens_full_mean=float(m.tokens_full_mean),
        tokens_full_median=float(median_full),
        tokens_saved_per_1k=rounded((full_run.metrics.prompt_tokens_mean - m.prompt_tokens_mean) * 1000),
        cost_saved_per_1k=m.cost_saved_per_1k, price_model=price.model, resolution=float(resolution),
        evaluations=evaluations,
        fails_above=tuple(s for s, v in evaluations if s > best and not holds(v, full_value, target_retention)),
    )


def paired_values(full_rows: Sequence[Any], rows: Sequence[Any], metric: str) -> tuple[list[float], list[float]]:
    """``(full, arm)`` values of ``metric`` over the example ids where both count, in the arm's order."""
    by_id = {r.id: _metric_of(r, metric) for r in full_rows}
    pairs = [(by_id.get(r.id), _metric_of(r, metric)) for r in rows]
    kept = [(a, b) for a, b in pairs if a is not None and b is not None]
    return [a for a, _ in kept], [b for _, b in kept]


def check_share(
    evaluator: ShareEvaluator, share: float, *, target_retention: float, resamples: int, seed: int,
) -> HeldOutCheck:
    """Measure ``share`` once on the evaluator's examples (the held-out part): metric, retention, intervals, verdict."""
    from evals.aggregate import paired_delta

    metric, rows, full_rows = evaluator.metric, evaluator.rows(share), evaluator.full_rows()
    value, full_value = metric_mean(rows, metric), metric_mean(full_rows, metric)
    values = [v for v in (_metric_of(r, metric) for r in rows) if v is not None]
    base, paired = paired_values(full_rows, rows, metric)
    delta = paired_delta(full_rows, rows, lambda r: _metric_of(r, metric), resamples=resamples, seed=seed)
    return HeldOutCheck(
        n=len(rows), n_metric=len(values), metric=rounded(value), full_metric=rounded(full_value),
        retention=rounded(value / full_value) if value is not None and full_value else None,
        retention_ci=retention_ci(base, paired, resamples=resamples, seed=seed) if full_value else None,
        ci=mean_ci(values, resamples=resamples, seed=seed) if values else None,
        delta=delta.delta if delta is not None else None,
        delta_ci=tuple(delta.ci95) if delta is not None else None,
        tokens_mean=rounded(statistics.fmean(r.tokens for r in rows)),
        tokens_full_mean=rounded(statistics.fmean(r.tokens_full for r in rows)),
        met=bool(full_value) and holds(value, full_value, target_retention),
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
    "DEFAULT_GRID", "METRICS", "MIN_SPLIT", "HeldOutCheck", "ShareEvaluator", "TuneResult", "bisect_share", "build_result",
    "check_share", "evaluate_at", "holds", "mean_ci", "metric_mean", "paired_values", "retention_ci", "search",
    "split_examples", "tune_budget",
]

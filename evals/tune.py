"""Find the smallest budget that keeps a metric within a target of the full context.

:func:`tune_budget` searches the budget as a *share* of each example's full rendered
context: a coarse scan over a grid of shares, then bisection between the last share that
misses the target and the first that meets it, down to ``resolution`` (0.5 % of the share
by default, never finer than one token at the data's median full size). A share ``s``
*meets the target* when ``metric(s) >= target_retention * metric(full)``. With ``confidence=C``
it must also have a one-sided ``C`` bootstrap lower bound of that retention reaching the target
(:mod:`evals.tune_rule`): a budget picked with a margin rather than at the boundary, never smaller.

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
the search's own numbers are always labelled in-sample. The split is stratified
(:func:`split_examples`): the examples that count for the metric are spread over both parts, so
a held-out part is never left with nothing to check while the other has it all. When the
held-out part still has nothing to compare (e.g. every held-out reader call failed), the check
says "not checked" (:attr:`HeldOutCheck.checked` False): not a miss.

**Paired comparisons.** A share is compared with the full context on the example ids where both
have a value of the metric (:func:`compare`), never on two different sets of examples: a reader
call that fails for one of the two leaves that example out of both means. Failed reader calls are
counted (:attr:`TuneResult.reader_failures`, with how many examples each comparison left out).

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
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from evals.datasets import check_unique_ids
from evals.readers.cache import reader_identity
from evals.records import REFERENCE, Arm, rounded
from evals.tune_rule import LOWER_BOUND, ChoiceRule, check_confidence, resampled_retention
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
    metric counts for both the chosen budget and the full context (paired); ``ci`` is the 95 %
    bootstrap interval of ``metric``, ``retention_ci`` that of ``metric / full_metric`` and
    ``delta_ci`` that of the paired delta. ``met`` says whether
    ``metric >= target_retention * full_metric`` on these examples.

    ``checked`` is False when there was nothing to check against (no held-out example counts for
    the metric, or the full context scores 0 on them): ``met`` is then False too, ``note`` says
    why, and it is not a miss. ``reader_failures`` counts the failed reader calls of the check,
    ``pipeline_failures`` the examples the pipeline (or the full context) raised on, and
    ``n_left_out`` the examples either left out of the comparison.
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
    tokens_mean: float | None
    tokens_full_mean: float | None
    met: bool
    checked: bool = True
    note: str = ""
    reader_failures: int = 0
    n_left_out: int = 0
    pipeline_failures: int = 0

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
    ``evaluations`` lists every ``(share, metric)`` evaluated (the metric over the examples where the
    share and the full context both count, as the search compared them), ``fails_above`` the shares
    above ``budget`` that missed the target (non-monotonicity; empty when none was seen).

    ``metric``, ``ci``, ``retention`` (with ``retention_ci``), ``delta``, ``met``, the token
    figures and the savings are measured on the ``n_tune`` examples that chose the budget:
    **in-sample**, optimistic. ``metric`` and ``full_metric`` are means over the same ``n_metric``
    examples (those where both count). ``held_out`` is the chosen budget measured on the other
    ``n - n_tune`` examples (None when nothing was held out; ``note`` says why).

    ``reader_failures``: reader calls that failed during the search (every share and the full
    context); ``n_left_out``: examples a failed call (or a pipeline run that raised) left out of the
    comparison at ``budget``; ``first_reader_error``: the first failure's message (None without failures).
    ``pipeline_failures``: examples the pipeline (or the full context) raised on at any budget
    (:func:`evals.sweep.failed_row`), search and held-out check together; ``first_pipeline_error`` the first error.
    ``n_saved``: the examples ``tokens_saved_per_1k`` and ``cost_saved_per_1k`` are over, those both the budget and
    the full context ran on (paired by example id; fewer than ``n_tune`` when a pipeline raised).

    ``adaptive``: the pipeline has an adaptive budget rule, which caps each context on its own, so
    share 1.0 is "no hard cap beyond the rule", not the whole context. ``tuned_on``: the data the
    pipeline's settings were chosen on when this dataset is one of them (:func:`evals.sweep.tuned_on`),
    so even the held-out half is not new to it.

    ``rule``: what chose the budget, ``"point"`` (its in-sample retention reaches the target) or
    ``"lower_bound"`` (also its one-sided ``confidence`` bootstrap lower bound, :mod:`evals.tune_rule`);
    ``retention_bound`` is that bound at ``budget`` (in-sample; None under the point rule).
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
    ci: tuple[float, float] | None
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
    reader_failures: int = 0
    n_left_out: int = 0
    first_reader_error: str | None = None
    pipeline_failures: int = 0
    first_pipeline_error: str | None = None
    price_note: str = ""
    n_saved: int | None = None
    rule: str = "point"
    confidence: float | None = None
    retention_bound: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (what ``ragtrim tune --format json`` prints)."""
        out = asdict(self)
        out["ci"] = list(self.ci) if self.ci is not None else None  # None: no example pairs at the budget
        out["delta_ci"] = list(self.delta_ci)
        out["retention_ci"] = list(self.retention_ci) if self.retention_ci is not None else None
        out["evaluations"] = [{"budget": s, "metric": v} for s, v in self.evaluations]
        out["fails_above"] = list(self.fails_above)
        out["in_sample"] = ["metric", "ci", "retention", "retention_ci", "retention_bound", "delta", "delta_ci", "met",
                            "tokens_saved_per_1k", "cost_saved_per_1k"]
        out["held_out"] = self.held_out.to_dict() if self.held_out is not None else None
        return out

    def verdict(self) -> str:
        """The headline: met or missed, and on which examples."""
        if not self.met and self.adaptive:
            return (f"MISSES even at budget 1.0, where the pipeline's adaptive rule still caps each context "
                    f"({self.tokens_mean:.0f} of {self.tokens_full_mean:.0f} tokens on average; the whole context was "
                    "not tried): loosen the rule (e.g. a higher mass) or lower the target")
        if not self.met and self._bound_misses_at_full():
            return (f"MISSES even at budget 1.0 under the {self.confidence:g} lower bound: retention {self.retention:.4f} "
                    f"reaches {self.target_retention:g} but its lower bound is {_fmt(self.retention_bound)} on the "
                    f"{self.n_metric} examples that chose it, too few to be that sure; tune on more examples, lower "
                    "--confidence, or leave it unset for the point estimate")
        if not self.met:
            return self._miss_at_full_budget()
        if self.held_out is None:
            return f"meets on the {self.n_tune} examples that chose it (in-sample only, no held-out check)"
        if not self.held_out.checked:
            return (f"meets on the {self.n_tune} examples that chose it; NOT CHECKED on the {self.held_out.n} held-out "
                    f"examples ({self.held_out.note})")
        word = "meets" if self.held_out.met else "MISSES"
        return f"{word} on {self.held_out.n} held-out examples (budget chosen on the other {self.n_tune})"

    def _bound_misses_at_full(self) -> bool:
        """Budget 1.0 failed only the lower bound: its point retention reaches the target."""
        return self.confidence is not None and self.retention is not None and holds(self.retention, 1.0, self.target_retention)

    def _miss_at_full_budget(self) -> str:
        """Why budget 1.0 misses: the pipeline's own selection keeps less than the whole context, or it keeps it all."""
        if self.tokens_mean < self.tokens_full_mean - 0.5:
            return (f"MISSES even at budget 1.0, where the pipeline keeps {self.tokens_mean:,.0f} of "
                    f"{self.tokens_full_mean:,.0f} tokens on average: its own selection loses the answer, not the budget "
                    "(the whole context meets the target); let its steps keep more (e.g. a larger k) or lower the target")
        return (f"MISSES even at budget 1.0, where the pipeline keeps the whole context ({self.tokens_full_mean:,.0f} "
                "tokens on average) in its own order and rendering; lower the target")

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
            "  rule       " + self._rule_line(),
        ]
        if self.held_out is not None:
            lines.append("  held out   " + _held_out_line(self.held_out))
        lines += self._failure_lines()
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
            + f", measured on the {self.n_tune} examples that chose the budget (in-sample)"
            + (f"; over the {self.n_saved} of them both the budget and the full context ran on (paired)"
               if self.n_saved is not None and self.n_saved < self.n_tune else "")
            + self._savings_label(),
            *([f"  prices     {self.price_note}"] if self.price_note and self.cost_saved_per_1k is not None else []),
            f"  searched   {len(self.evaluations)} budgets, resolution {self.resolution:.4g} of the share",
        ]
        if self.fails_above:
            shown = ", ".join(f"{s:.4g}" for s in self.fails_above)
            lines.append(f"  warning    not monotone: the target is missed at larger budgets too: {shown}")
        return "\n".join(lines)

    def _rule_line(self) -> str:
        """Which rule chose the budget, and the lower bound there under the lower-bound rule."""
        if self.rule != LOWER_BOUND:
            return (f"point estimate: the smallest budget whose retention reaches {self.target_retention:g} on the examples "
                    "that chose it (no margin for new examples; --confidence 0.9 adds one)")
        return (f"lower bound: the smallest budget whose retention's one-sided {_pct(self.confidence)} bootstrap lower bound "
                f"reaches {self.target_retention:g} on the examples that chose it; bound at the budget "
                f"{_fmt(self.retention_bound)} (in-sample)")

    def _failure_lines(self) -> list[str]:
        """Failed reader calls and the examples they left out of the comparisons (none: no line)."""
        lines = []
        if self.reader_failures:
            lines.append(f"  failures   {self.reader_failures} reader calls failed during the search; at the chosen budget "
                         f"{self.n_left_out} of the {self.n_tune} examples were left out of the comparison (budget and "
                         f"full context compared on the same {self.n_metric}); first error: {_short(self.first_reader_error)}")
        h = self.held_out
        if h is not None and h.reader_failures:
            lines.append(f"  failures   {h.reader_failures} reader calls failed on the held-out examples; {h.n_left_out} of "
                         f"the {h.n} were left out of the check")
        if self.pipeline_failures:
            lines.append(f"  failures   the pipeline raised an error on {self.pipeline_failures} examples, left out of the "
                         f"comparisons where it did (search and held-out check); first error: {_short(self.first_pipeline_error)}")
        return lines

    def failure_warning(self) -> str | None:
        """One line for people when reader calls failed or pipeline runs raised (None when none did): how many, what
        they left out, the fix."""
        failed = self.reader_failures + (self.held_out.reader_failures if self.held_out is not None else 0)
        raised = (f"the pipeline raised an error on {self.pipeline_failures} examples, left out of the comparisons where it "
                  f"did (the first: {_short(self.first_pipeline_error)}); fix the pipeline or its config and rerun"
                  if self.pipeline_failures else "")
        if not failed:
            return raised or None
        if raised:
            return f"{raised}; also {self._reader_failure_warning(failed)}"
        return self._reader_failure_warning(failed)

    def _reader_failure_warning(self, failed: int) -> str:
        held = (f" and {self.held_out.n_left_out} of the {self.held_out.n} held-out examples"
                if self.held_out is not None and self.held_out.n_left_out else "")
        return (f"{failed} reader calls failed; {self.n_left_out} of the {self.n_tune} examples that chose the budget{held} "
                f"were left out of the comparison (the full context and the budget are compared on the same examples); "
                f"first error: {_short(self.first_reader_error)}; rerun to retry them (--cache keeps the answers that worked)")

    def _savings_label(self) -> str:
        """What the savings line must add when the budget it prices does not meet the target."""
        if not self.met and self._bound_misses_at_full():
            return " (at budget 1.0, whose lower bound MISSES the target: not a saving to count on)"
        if not self.met:
            return " (at budget 1.0, which MISSES the target: not a saving to count on)"
        if self.held_out is not None and not self.held_out.checked:
            return " (at a budget NOT CHECKED on the held-out examples)"
        if self.held_out is not None and not self.held_out.met:
            return " (at a budget that MISSES the target on the held-out examples)"
        return ""


def _held_out_line(h: HeldOutCheck) -> str:
    """The held-out check's line: its scores and verdict, or why it was not checked."""
    if not h.checked:
        return f"{h.n} examples: NOT CHECKED ({h.note}); not a miss, but nothing confirms the budget"
    return (_scores_line(h.n, h.full_metric, h.metric, h.ci, h.delta, h.delta_ci, h.retention, h.retention_ci)
            + (" -> meets the target" if h.met else " -> MISSES the target"))


def _fmt(value: float | None) -> str:
    """A retention for people (``n/a`` when there is none)."""
    return "n/a" if value is None else f"{value:.4f}"


def _pct(level: float | None) -> str:
    """``0.9`` as ``90 %``."""
    return f"{(level or 0) * 100:g} %"


def _short(text: str | None, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters (for one-line messages)."""
    text = text or "no error recorded"
    return text if len(text) <= limit else text[:limit] + "..."


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
    ratios = resampled_retention(full, values, resamples=resamples, seed=seed)
    if not len(ratios):
        return None
    low, high = np.percentile(ratios, [2.5, 97.5])
    return (rounded(float(low)), rounded(float(high)))


def split_examples(
    examples: Sequence[Any], holdout: float, seed: int, counts: Callable[[Any], bool] | None = None,
) -> tuple[list[Any], list[Any]]:
    """``(tune, held_out)``: a seeded random ``holdout`` share of ``examples`` held out, each part in file order.

    Stratified by ``counts`` (whether an example counts for the metric, see :func:`counts_for`): the
    examples that count and those that do not are each split in the ``holdout`` share, so with two or
    more examples that count both parts get some (a lone one stays in the part that chooses the
    budget, which needs it). Stratifying rather than reporting an empty held-out part as "not
    checked" keeps the check possible whenever the data allows it; :func:`check_share` still says
    "not checked" for what is left (e.g. held-out reader calls that all failed). When every example
    counts (or ``counts`` is None) the split is the plain seeded one.

    >>> tune, held = split_examples(list(range(10)), 0.5, seed=0)
    >>> len(tune), len(held), sorted(tune + held) == list(range(10)), tune == sorted(tune)
    (5, 5, True, True)
    >>> split_examples(list(range(10)), 0.5, seed=0) == (tune, held)
    True
    >>> tune, held = split_examples(list(range(10)), 0.5, seed=0, counts=lambda i: i < 2)  # only 0 and 1 count
    >>> sorted(set(tune + held) & {0, 1}) == [0, 1] and {0, 1} & set(tune) != set() != {0, 1} & set(held)
    True
    """
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_held = min(max(round(len(examples) * holdout), 1), len(examples) - 1)
    if counts is None:
        held = set(order[:n_held])
    else:
        held = _stratified_held(order, [bool(counts(e)) for e in examples], holdout, n_held)
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def _stratified_held(order: list[int], flags: list[bool], holdout: float, n_held: int) -> set[int]:
    """The held-out indices: ``holdout`` of those that count (at least one and one left, given two) and the rest
    from those that do not, each taken in the shuffled ``order``."""
    counting = [i for i in order if flags[i]]
    rest = [i for i in order if not flags[i]]
    n_count = min(max(round(len(counting) * holdout), 1), len(counting) - 1) if len(counting) >= 2 else 0
    n_rest = min(max(n_held - n_count, 0), len(rest))
    if n_count + n_rest == 0:  # nothing would be held out (one example counts and nothing else can go)
        return set()
    return set(counting[:n_count]) | set(rest[:n_rest])


def counts_for(metric: str) -> Callable[[Any], bool]:
    """Whether an example can count for ``metric`` before anything is run (a reader call may still fail)."""
    from evals.metrics import counts_for_recall, normalize
    from evals.retrieval import all_gold_ids

    if metric == "answer_recall":
        return lambda ex: counts_for_recall(ex.answers)
    if metric == "evidence_recall":
        return lambda ex: bool(all_gold_ids(ex))
    return lambda ex: any(normalize(a) for a in ex.answers)


def _parts(data: Any, holdout: float, seed: int, metric: str) -> tuple[Any, Any | None, str]:
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
    tune, held = split_examples(examples, holdout, seed, counts=counts_for(metric))
    if not held:
        return data, None, ("only one example counts for the metric: it must choose the budget, so nothing is held out "
                            "(in-sample, optimistic); use more examples for a held-out check")
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
    confidence: float | None = None,
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
    confidence:
        None (the default): choose the smallest share whose retention reaches the target on the
        examples that choose it (the point estimate). A level ``C`` in (0, 1), e.g. 0.9: the share
        must also have a one-sided ``C`` bootstrap lower bound of its retention (``resamples``
        paired resamples drawn with ``seed``) reaching the target (:mod:`evals.tune_rule`); a
        larger budget that holds more often on new examples. The result names the rule
        (``rule``, ``confidence``) and gives the bound at the budget (``retention_bound``).
    """
    from evals.cost import load_prices

    shares = _check_args(metric, target_retention, reader, resolution, grid)
    unit_interval(holdout, "holdout (the share of examples held out to check the budget)", closed_low=True, open_high=True, example=0.5)
    positive_int(resamples, "resamples", what="bootstrap resamples")
    non_negative_int(seed, "seed")
    rule = ChoiceRule(float(target_retention), check_confidence(confidence), resamples=resamples, seed=seed)
    data = _as_dataset(dataset, limit)
    check_unique_ids(data.examples, str(getattr(data, "name", "dataset")))  # before the split: the user's positions
    name = _pipeline_name(pipeline)
    if name == REFERENCE:
        raise ValueError("'full' is the reference (the whole context); tune another pipeline, e.g. 'default'")
    table = prices if prices is not None else load_prices()
    tune_data, held_data, note = _parts(data, holdout, seed, metric)
    settings = dict(metric=metric, reader=reader if metric in READER_METRICS else None, tokenizer=tokenizer,
                    prices=table, price_model=price_model, seed=seed, progress=progress, memo=memo)
    evaluator = ShareEvaluator(tune_data, pipeline, **settings)
    best, met = search(evaluator, shares, target_retention=target_retention, resolution=resolution, rule=rule)
    price = table.price(price_model)
    result = build_result(evaluator, best, met=met, target_retention=target_retention,
                          resolution=resolution, price=price, resamples=resamples, seed=seed, rule=rule)
    held, first_error = None, result.first_reader_error
    raised, first_raised = result.pipeline_failures, result.first_pipeline_error
    if held_data is not None:
        held_evaluator = ShareEvaluator(held_data, pipeline, **settings)
        held = check_share(held_evaluator, best, target_retention=target_retention, resamples=resamples, seed=seed)
        failed = held_evaluator.failed_rows()
        first_error = first_error or (failed[0].reader_error if failed else None)
        raised += held.pipeline_failures
        first_raised = first_raised or next((r.pipeline_error for r in held_evaluator.raised_rows()), None)
    return replace(result, n=len(data.examples), holdout=float(holdout), held_out=held, note=note,
                   first_reader_error=first_error, pipeline_failures=raised, first_pipeline_error=first_raised, adaptive=getattr(pipeline, "adaptive", None) is not None,
                   tuned_on=_tuned_on(data, pipeline, tokenizer))


def _tuned_on(data: Any, pipeline: str | Pipeline, tokenizer: str) -> dict[str, Any] | None:
    """The data ``pipeline``'s settings were chosen on, when ``data`` is one of those sets (else None)."""
    from evals.sweep import in_sample, resolve_pipelines, tuned_on

    name, pipe = resolve_pipelines([pipeline], tokenizer=tokenizer)[-1]
    tuned = tuned_on(name, pipe)
    return tuned if in_sample(str(getattr(data, "name", "")), tuned)["in_sample"] else None


def _stop_if_every_run_raised(evaluator: ShareEvaluator) -> None:
    """ValueError, quoting the first error, when the pipeline (or the full context) raised on every example at
    budget 1.0: no budget could be measured, and "misses even at budget 1.0" would be the wrong reason."""
    for label, rows in ((evaluator.name, evaluator.rows(1.0)), (REFERENCE, evaluator.full_rows())):
        if rows and all(_raised(r) for r in rows):
            raise ValueError(f"{label!r} raised on every one of the {len(rows)} examples at budget 1.0, so no budget can be "
                             f"measured; the first error: {_short(rows[0].pipeline_error)}; fix the pipeline or its "
                             "config and rerun")


def search(
    evaluator: ShareEvaluator, shares: Sequence[float], *, target_retention: float, resolution: float,
    rule: ChoiceRule | None = None,
) -> tuple[float, bool]:
    """``(share, met)``: the coarse scan over ``shares`` then bisection, never below one token at the median size.

    A share passes when ``rule`` holds for it (:class:`~evals.tune_rule.ChoiceRule`; the point rule at
    ``target_retention`` by default). Neither the metric nor the lower bound need be monotone in the share:
    the answer is the first share passing after the first grid point that passes, found by bisection
    between that grid point and the one below it. Bisection only moves its upper end to a share that
    passed, so the answer always passes (checked again before returning); a smaller share that passes
    may exist below a failing one (those above the answer that fail are in ``fails_above``). Since a
    share that passes the lower-bound rule passes the point rule, the lower-bound rule's answer is never
    below the point rule's on the same examples.

    Raises ValueError when the full context's metric is 0 (every budget would "meet" the target).
    """
    rule = rule if rule is not None else ChoiceRule(target_retention)
    evaluator.evaluate([1.0])  # the full context first: its size sets the floor, its metric the target
    _stop_if_every_run_raised(evaluator)
    full_value = evaluator.full_value()
    if full_value is None:
        raise ValueError(f"no example of {evaluator.dataset_name!r} counts for {evaluator.metric!r}: "
                         f"{why_nothing_counts(evaluator.metric, evaluator.full_rows())}")
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
        return rule.ok(*evaluator.paired(share))

    first = next((i for i, s in enumerate(grid) if ok(s)), None)
    if first is None:
        return 1.0, False
    lo = grid[first - 1] if first > 0 else 0.0
    best = bisect_share(lo, grid[first], ok, resolution=resolution, floor=floor)
    if not ok(best):  # bisection keeps a share that passed as its upper end: this would be a bug, not a data case
        raise AssertionError(f"the search chose share {best} that does not pass the {rule.name} rule")
    return best, True


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
    config, the tokenizer and the reader (:func:`~evals.readers.cache.reader_identity`: its model, settings and
    template), so one dict can serve several searches.
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
        reader_key = reader_identity(reader) if reader is not None else None  # another template or setting: other rows
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
                reference_rows=self.memo.get((self.scope, REFERENCE)),  # full is run and read once, in the first batch
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

    def comparison(self, share: float) -> Comparison:
        """``share`` versus the full context on the examples where both count (:func:`compare`)."""
        return compare(self.full_rows(), self.rows(share), self.metric)

    def paired(self, share: float) -> tuple[list[float], list[float]]:
        """``(full, share)`` values of the metric over the examples where both count (:func:`paired_values`)."""
        rows = self.rows(share)  # runs the share (and the full context) when not evaluated yet
        return paired_values(self.full_rows(), rows, self.metric)

    def value(self, share: float) -> float | None:
        """The metric at ``share`` over the examples where it and the full context both count."""
        return self.comparison(share).value

    def full_value(self) -> float | None:
        """The full context's metric over every example where it counts (sets the target and the checks)."""
        return metric_mean(self.full_rows(), self.metric)

    def failed_rows(self) -> list[Any]:
        """Rows of a failed reader call, over the full context and every share evaluated (each once)."""
        return [r for r in self._seen_rows() if _failed(r)]

    def raised_rows(self) -> list[Any]:
        """Rows of a pipeline run that raised, over the full context and every share evaluated (each once)."""
        return [r for r in self._seen_rows() if _raised(r)]

    def _seen_rows(self) -> list[Any]:
        return [r for rows in (self.full_rows(), *self.rows_by_share.values()) for r in rows]

    def median_full_tokens(self) -> float:
        sizes = [r.tokens_full for r in self.full_rows() if r.tokens_full is not None]
        return statistics.median(sizes) if sizes else 0.0

    def one_token_share(self) -> float:
        """The smallest share that is one token at the median full size (the search never goes below it)."""
        median_full = int(self.median_full_tokens())
        return smallest_share(median_full) if median_full > 0 else 0.0


def metric_mean(rows: Sequence[Any], metric: str) -> float | None:
    """Mean of ``metric`` over the rows where it counts (None when none does)."""
    got = [v for v in (_metric_of(r, metric) for r in rows) if v is not None]
    return sum(got) / len(got) if got else None


@dataclass(frozen=True)
class Comparison:
    """A share versus the full context on the same examples: both means over the ``n`` ids where both count.

    ``left_out``: examples where a reader call failed for one of the two (or both), so they are in neither mean.
    """

    full: float | None
    value: float | None
    n: int
    left_out: int = 0


def compare(full_rows: Sequence[Any], rows: Sequence[Any], metric: str) -> Comparison:
    """``rows`` versus ``full_rows`` on the example ids where both have a value of ``metric`` (paired means).

    >>> from types import SimpleNamespace as S
    >>> full = [S(id=i, answer_recall=1, reader_called=False) for i in "ab"]
    >>> compare(full, [S(id="a", answer_recall=1, reader_called=False), S(id="b", answer_recall=None, reader_called=False)],
    ...         "answer_recall")
    Comparison(full=1.0, value=1.0, n=1, left_out=0)
    """
    base, values = paired_values(full_rows, rows, metric)
    left_out = len({r.id for r in [*full_rows, *rows] if _failed(r) or _raised(r)})
    if not base:
        return Comparison(None, None, 0, left_out)
    return Comparison(sum(base) / len(base), sum(values) / len(values), len(base), left_out)


def meets(c: Comparison, target_retention: float) -> bool:
    """Whether a comparison meets the target (never when the paired full context has nothing to keep)."""
    return c.full is not None and c.full > 0 and holds(c.value, c.full, target_retention)


NOTHING_COUNTS = {
    "answer_recall": "every example's answers are yes/no or empty; pick evidence_recall or another dataset",
    "evidence_recall": "no chunk is marked gold (\"gold\": true in the data), so there is no evidence to recall; mark the "
                       "gold chunks or pick answer_recall",
    "accuracy": "no example has a non-empty answer to score the reader against; pick another dataset",
}
"""Why no example counts for a metric, and what to do (reader metrics share the accuracy line)."""


def why_nothing_counts(metric: str, rows: Sequence[Any]) -> str:
    """Why ``metric`` has no value on ``rows``: failed reader calls (quoting the first error), else the metric's reason."""
    failed = [r for r in rows if _failed(r)]
    if metric in READER_METRICS and failed:
        called = sum(1 for r in rows if r.reader_called)
        return (f"{len(failed)} of the {called} reader calls failed (the first error: {_short(failed[0].reader_error)}); "
                "check the reader (--base-url, --model, the server) and rerun")
    return NOTHING_COUNTS.get(metric, NOTHING_COUNTS["accuracy"])


def _failed(row: Any) -> bool:
    """A reader call that was made and gave no answer (an error, a timeout)."""
    return bool(getattr(row, "reader_called", False) and getattr(row, "prediction", None) is None)


def _raised(row: Any) -> bool:
    """A pipeline run that raised on its example (:func:`evals.sweep.failed_row`): no context, no metrics."""
    return bool(getattr(row, "pipeline_error", None))


def _mean_or_none(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not None (rows whose pipeline raised have no tokens), or None."""
    got = [v for v in values if v is not None]
    return statistics.fmean(got) if got else None


def build_result(
    evaluator: ShareEvaluator, best: float, *, met: bool, target_retention: float, resolution: float,
    price: Any, resamples: int, seed: int, rule: ChoiceRule | None = None,
) -> TuneResult:
    """The :class:`TuneResult` at share ``best``, with the harness's aggregation at full resamples.

    ``rule`` is the one that chose ``best`` (the point rule at ``target_retention`` by default): it names
    the rule, gives the lower bound at ``best`` and decides which larger shares go in ``fails_above``."""
    rule = rule if rule is not None else ChoiceRule(target_retention, resamples=resamples, seed=seed)
    from evals.aggregate import aggregate, paired_prompt_means

    metric, full_rows, best_rows = evaluator.metric, evaluator.full_rows(), evaluator.rows(best)
    c = evaluator.comparison(best)
    full_value, best_value = c.full, c.value
    runs = aggregate(list(full_rows) + list(best_rows), [Arm(REFERENCE, None), Arm(evaluator.name, best)],
                     usd_per_million=price.input_per_million, resamples=resamples, seed=seed)
    full_run, best_run = runs
    m = best_run.metrics
    delta = best_run.delta(metric)
    base, paired = paired_values(full_rows, best_rows, metric)
    median_full = evaluator.median_full_tokens()
    evaluations = tuple(sorted((s, rounded(evaluator.value(s))) for s in evaluator.rows_by_share))
    failed, raised = evaluator.failed_rows(), evaluator.raised_rows()
    plain_delta = best_value - full_value if best_value is not None and full_value is not None else 0.0
    means = paired_prompt_means(full_rows, best_rows)  # over the examples both ran on
    saved_tokens, n_saved = (means[0] - means[1], means[2]) if means is not None else (0.0, 0)
    return TuneResult(
        dataset=evaluator.dataset_name, pipeline=evaluator.name, metric_name=metric,
        target_retention=float(target_retention), met=met, budget=best,
        tokens=int(math.floor(best * median_full + 1e-9)),
        metric=rounded(best_value), full_metric=rounded(full_value),
        retention=rounded(best_value / full_value) if full_value and best_value is not None else None,
        ci=mean_ci(paired, resamples=resamples, seed=seed) if paired else None,
        delta=float(delta.delta) if delta is not None else plain_delta,
        delta_ci=tuple(delta.ci95) if delta is not None else (plain_delta,) * 2,
        n=len(evaluator.data.examples), n_metric=c.n, n_tune=len(evaluator.data.examples),
        retention_ci=retention_ci(base, paired, resamples=resamples, seed=seed) if full_value else None,
        tokens_mean=float(m.tokens_mean), tokens_full_mean=float(m.tokens_full_mean),
        tokens_full_median=float(median_full),
        tokens_saved_per_1k=rounded(saved_tokens * 1000), n_saved=n_saved,
        cost_saved_per_1k=m.cost_saved_per_1k, price_model=price.model, resolution=float(resolution),
        evaluations=evaluations,
        fails_above=tuple(s for s, _ in evaluations if s > best and not rule.ok(*evaluator.paired(s))),
        rule=rule.name, confidence=rule.confidence, retention_bound=rounded(rule.bound(base, paired)),
        reader_failures=len(failed), n_left_out=c.left_out, first_reader_error=failed[0].reader_error if failed else None,
        pipeline_failures=len({r.id for r in raised}), first_pipeline_error=raised[0].pipeline_error if raised else None,
        price_note=price_mismatch(evaluator.tokenizer, price.model),
    )


def price_mismatch(tokenizer: Any, price_model: str) -> str:
    """:func:`evals.cost.encoding_note` when ``tokenizer`` counts with another encoding than ``price_model`` does, else "".

    >>> print(price_mismatch("cl100k_base", "gpt-4o"))  # doctest: +ELLIPSIS
    Tokens counted with cl100k_base, but gpt-4o counts with o200k_base: ... pass --tokenizer o200k_base ...
    >>> price_mismatch("o200k_base", "gpt-4o"), price_mismatch("cl100k_base", "gpt-4")
    ('', '')
    """
    from evals.cost import encoding_note, model_encoding
    from optimizer.tokenizer import get_tokenizer

    counted, theirs = get_tokenizer(tokenizer).name, model_encoding(price_model)
    return encoding_note(counted, {"model": price_model, "encoding": theirs}) if counted != theirs else ""


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
    c = compare(full_rows, rows, metric)
    value, full_value = c.value, c.full
    base, paired = paired_values(full_rows, rows, metric)
    delta = paired_delta(full_rows, rows, lambda r: _metric_of(r, metric), resamples=resamples, seed=seed)
    note = _not_checked_note(c, metric, [*full_rows, *rows])
    return HeldOutCheck(
        n=len(rows), n_metric=c.n, metric=rounded(value), full_metric=rounded(full_value),
        retention=rounded(value / full_value) if value is not None and full_value else None,
        retention_ci=retention_ci(base, paired, resamples=resamples, seed=seed) if full_value else None,
        ci=mean_ci(paired, resamples=resamples, seed=seed) if paired else None,
        delta=delta.delta if delta is not None else None,
        delta_ci=tuple(delta.ci95) if delta is not None else None,
        tokens_mean=rounded(_mean_or_none(r.tokens for r in rows)),
        tokens_full_mean=rounded(_mean_or_none(r.tokens_full for r in rows)),
        met=not note and meets(c, target_retention), checked=not note, note=note,
        reader_failures=sum(1 for r in [*full_rows, *rows] if _failed(r)), n_left_out=c.left_out,
        pipeline_failures=len({r.id for r in [*full_rows, *rows] if _raised(r)}),
    )


def _not_checked_note(c: Comparison, metric: str, rows: Sequence[Any]) -> str:
    """Why a held-out comparison checks nothing ("" when it checks the budget)."""
    if c.n == 0 and any(_failed(r) for r in rows):
        return f"no held-out example counts for {metric}: {why_nothing_counts(metric, rows)}"
    if c.n == 0:
        return (f"no held-out example counts for {metric}: the few examples that do all chose the budget; use more "
                "examples that count for it")
    if not c.full:
        return f"the full context scores {metric} = 0 on the held-out examples: there is nothing to keep"
    return ""


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
    "DEFAULT_GRID", "METRICS", "MIN_SPLIT", "Comparison", "HeldOutCheck", "ShareEvaluator", "TuneResult", "bisect_share",
    "build_result", "check_share", "compare", "counts_for", "evaluate_at", "holds", "mean_ci", "meets", "metric_mean",
    "paired_values", "retention_ci", "search", "split_examples", "tune_budget", "why_nothing_counts",
]

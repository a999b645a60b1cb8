"""The eval harness's records: an arm of a sweep, one example's row, and the reference's name.

Everything the harness computes per example is an :class:`ExampleRow`; aggregation
(:mod:`evals.aggregate`) turns rows into per-arm metrics. Records are frozen; ``to_dict()``
is called only where they become JSON.

>>> Arm("default", 0.25).label, Arm(REFERENCE, None).label
('default@25%', 'full')
>>> rounded(1 / 3), rounded(None), rounded(-0.0)
(0.333333, None, 0.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from optimizer.budget import Budget, budget_label

REFERENCE = "full"
"""The reference arm: the ``full`` preset (every chunk), run once without a budget."""

REFERENCE_BUDGET = 1.0
"""The budget ``results.json`` and ``examples.jsonl`` write for the reference: the whole context (DESIGN.md allows
only a share in (0, 1] or a token count > 1). Files written before say ``null``; readers take either."""


def written_budget(pipeline: str, budget: Budget | None) -> Budget | None:
    """The budget an arm is written with: :data:`REFERENCE_BUDGET` for the reference, else its own.

    >>> written_budget(REFERENCE, None), written_budget("default", 0.25)
    (1.0, 0.25)
    """
    return REFERENCE_BUDGET if pipeline == REFERENCE and budget is None else budget


def is_reference(run: Any) -> bool:
    """Whether a ``results.json`` run (or ``examples.jsonl`` row) is the reference, in this layout or the one before.

    ``full`` runs once, as the reference; a sweep never runs it at a budget (:func:`evals.sweep.make_arms`).

    >>> is_reference({"pipeline": "full", "budget": 1.0}), is_reference({"pipeline": "full", "budget": None})
    (True, True)
    >>> is_reference({"pipeline": "default", "budget": 1.0})
    False
    """
    return run["pipeline"] == REFERENCE and run.get("budget") in (None, REFERENCE_BUDGET)


def rounded(x: float | None, digits: int = 6) -> float | None:
    """``x`` rounded for reports and JSON (None stays None; -0.0 becomes 0.0)."""
    return None if x is None else float(round(float(x), digits)) + 0.0


def budget_key(budget: Budget | None) -> tuple[str, Budget | None]:
    """``(kind, value)`` of a budget: a share (float) and a token count (int) never compare equal.

    >>> budget_key(1.0) == budget_key(1), budget_key(0.25), budget_key(None)
    (False, ('share', 0.25), ('full', None))
    """
    if budget is None:
        return ("full", None)
    return ("share" if isinstance(budget, float) else "tokens", budget)


@dataclass(frozen=True, eq=False)
class Arm:
    """One (pipeline, budget) cell of a sweep; ``budget`` None only for the ``full`` reference.

    Arms compare by pipeline and budget *kind and value*: ``1.0`` (the whole context) and ``1``
    (one token) are different arms.

    >>> Arm("x", 1.0) == Arm("x", 1), Arm("x", 300) == Arm("x", 300), len({Arm("x", 1.0), Arm("x", 1)})
    (False, True, 2)
    """

    pipeline: str
    budget: Budget | None

    def _key(self) -> tuple[str, tuple[str, Budget | None]]:
        return (self.pipeline, budget_key(self.budget))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arm) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def label(self) -> str:
        """``default@25%``, or ``full``."""
        return self.pipeline if self.budget is None else f"{self.pipeline}@{budget_label(self.budget)}"


@dataclass(frozen=True)
class ExampleRow:
    """What one pipeline at one budget did on one example (and what the reader said).

    ``pipeline_error``: what the pipeline raised on this example (None: it ran). Such a row has no
    context and no metrics (``None``): it is left out of every mean and counted in its arm's
    ``pipeline_failures``, as a failed reader call is left out of the reader metrics.
    """

    id: str
    pipeline: str
    budget: Budget | None
    context: str | None  # None: the pipeline raised (pipeline_error)
    tokens: int | None
    tokens_full: int | None
    prompt_tokens: int | None
    kept_ids: tuple[str, ...]
    answer_recall: int | None
    evidence_recall: float | None
    latency_ms: float | None
    prediction: str | None = None
    reader_called: bool = False
    reader_error: str | None = None
    reader_latency_ms: float | None = None
    reader_cached: bool | None = None
    accuracy: int | None = None
    em: int | None = None
    f1: float | None = None
    miss: str | None = None  # where the answer was lost (evals.metrics.miss): "cut", "dropped", "absent"
    pipeline_error: str | None = None
    reader_finish_reason: str | None = None  # the reader's finish_reason ("stop", "length"...), None if unknown or cached

    @property
    def arm(self) -> Arm:
        return Arm(self.pipeline, self.budget)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kept_ids"] = list(self.kept_ids)
        out["budget"] = written_budget(self.pipeline, self.budget)
        return out


@dataclass(frozen=True)
class ArmMetrics:
    """One arm's metrics over its examples (see :mod:`evals.aggregate` for the rules).

    Means are over the examples where a metric counts (``n_answer_recall``...), None where
    none does; reader metrics are None when the reader was not asked for this arm.
    ``miss_cut``, ``miss_dropped`` and ``miss_absent`` split the answer-recall examples that
    lost the answer by where it was lost (:func:`evals.metrics.miss`), as shares of
    ``n_answer_recall``: they add up to ``1 - answer_recall``.
    """

    answer_recall: float | None
    evidence_recall: float | None
    tokens_mean: float | None
    tokens_full_mean: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    accuracy: float | None
    em: float | None
    f1: float | None
    n: int
    n_answer_recall: int
    n_evidence_recall: int
    compression: float | None
    token_share: float | None
    prompt_tokens_mean: float | None
    cost_per_1k_queries: float | None
    cost_saved_per_1k: float | None
    reader_calls: int
    n_reader: int
    n_accuracy: int
    reader_failures: int
    reader_latency_ms_p50: float | None
    reader_latency_ms_p95: float | None
    miss_cut: float | None = None
    miss_dropped: float | None = None
    miss_absent: float | None = None
    pipeline_failures: int = 0  # rows whose pipeline raised (ExampleRow.pipeline_error)
    n_cost_saved: int | None = None  # examples cost_saved_per_1k is over: those both this arm and full have a prompt for
    cost_saved_share: float | None = None  # cost_saved_per_1k / full's cost on those same examples

    def value(self, metric: str) -> float | None:
        """A metric by name (``answer_recall``, ``tokens_mean``...); unknown names raise, listing the metrics."""
        if metric not in self.__dataclass_fields__:
            raise KeyError(f"unknown metric {metric!r}; metrics: {', '.join(self.__dataclass_fields__)}")
        return getattr(self, metric)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Delta:
    """An arm versus ``full`` on the same examples: both means, the paired delta and its 95 % interval."""

    baseline: float | None
    value: float | None
    delta: float | None
    ci95: tuple[float | None, float | None]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "value": self.value, "delta": self.delta, "ci95": list(self.ci95), "n": self.n}


@dataclass(frozen=True)
class ArmRun:
    """The aggregate of one arm: its metrics and, except for ``full``, its deltas versus ``full`` by metric."""

    pipeline: str
    budget: Budget | None
    label: str
    metrics: ArmMetrics
    vs_full: dict[str, Delta | None] | None

    @property
    def arm(self) -> Arm:
        return Arm(self.pipeline, self.budget)

    def delta(self, metric: str) -> Delta | None:
        """The delta of ``metric`` versus ``full`` (None for ``full`` itself or where no example pairs)."""
        return (self.vs_full or {}).get(metric)

    def to_dict(self) -> dict[str, Any]:
        """The run's entry in ``results.json``."""
        vs = None if self.vs_full is None else {k: (d.to_dict() if d is not None else None) for k, d in self.vs_full.items()}
        return {"pipeline": self.pipeline, "budget": written_budget(self.pipeline, self.budget), "label": self.label,
                "metrics": self.metrics.to_dict(), "vs_full": vs}

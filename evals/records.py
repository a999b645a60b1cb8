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


def rounded(x: float | None, digits: int = 6) -> float | None:
    """``x`` rounded for reports and JSON (None stays None; -0.0 becomes 0.0)."""
    return None if x is None else float(round(float(x), digits)) + 0.0


@dataclass(frozen=True)
class Arm:
    """One (pipeline, budget) cell of a sweep; ``budget`` None only for the ``full`` reference."""

    pipeline: str
    budget: Budget | None

    @property
    def label(self) -> str:
        """``default@25%``, or ``full``."""
        return self.pipeline if self.budget is None else f"{self.pipeline}@{budget_label(self.budget)}"


@dataclass(frozen=True)
class ExampleRow:
    """What one pipeline at one budget did on one example (and what the reader said)."""

    id: str
    pipeline: str
    budget: Budget | None
    context: str
    tokens: int
    tokens_full: int
    prompt_tokens: int
    kept_ids: tuple[str, ...]
    answer_recall: int | None
    evidence_recall: float | None
    latency_ms: float
    prediction: str | None = None
    reader_called: bool = False
    reader_error: str | None = None
    reader_latency_ms: float | None = None
    reader_cached: bool | None = None
    accuracy: int | None = None
    em: int | None = None
    f1: float | None = None

    @property
    def arm(self) -> Arm:
        return Arm(self.pipeline, self.budget)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["kept_ids"] = list(self.kept_ids)
        return out

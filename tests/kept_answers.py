"""The runs of a question that lose its answer: for tests that an answer reaches the reader at small budgets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optimizer import Pipeline


def lost_runs(query: str, chunks: Sequence[Any], needle: str, budgets: Sequence[float],
              presets: Sequence[str] = ("default", "quality")) -> list[tuple[str, float, str]]:
    """``(preset, budget, context)`` of each run whose context lacks ``needle``: none when every preset keeps it at every budget."""
    runs = ((p, b, Pipeline.preset(p).run(query, list(chunks), budget=b).text) for p in presets for b in budgets)
    return [run for run in runs if needle not in run[2]]

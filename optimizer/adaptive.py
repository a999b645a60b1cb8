"""Query-adaptive budgets: spend fewer tokens when the relevance is concentrated.

A fixed budget gives every question the same share of its context. An
:class:`AdaptiveBudget` looks at how the query's relevance is spread over the context and
sets a per-query token budget, which the stages and the packer then fill; the pipeline's
hard budget still caps it (the adaptive budget is ``min(hard, adaptive)``), so the
hard-budget contract is untouched.

The rule. The context is split into units (sentences, or whole chunks); each unit gets a
BM25+ score against the query (title-prefixed, as the ``rerank-bm25`` stage does). Scores are
turned into a distribution ``p_i = softmax(z_i / temperature)`` over their z-scores (so the
temperature does not depend on BM25's scale, which varies with query length). Units are
taken best first until they hold ``mass`` of the relevance mass; the budget is their tokens
plus the renderer's overhead for their chunks, at least ``min_tokens``. With
``rule="gap"`` the cut is instead at the largest drop between consecutive sorted scores
(the "Adaptive-k" score-gap cutoff of Taguchi et al., *Efficient Context Selection for
Long-Context QA: No Tuning, No Iteration, Just Adaptive-k*, 2025).

Only the *amount* comes from this cheap lexical scorer: which sentences or chunks fill it is
still decided by the pipeline's own stages, so it works with any stage list.

>>> from optimizer import Chunk
>>> from optimizer.stage import StageContext
>>> chunks = [Chunk(id="a", text="Paris is the capital of France. Paris has museums."),
...           Chunk(id="b", text="Bananas are yellow. Apples are red. Cherries are small. Grapes are sweet.")]
>>> rule = AdaptiveBudget(mass=0.5, min_tokens=0)
>>> budget, notes = rule.budget_for("What is the capital of France?", chunks, StageContext.default())
>>> budget, notes["units_kept"], notes["units"]
(7, 1, 6)
>>> AdaptiveBudget.from_dict(AdaptiveBudget(mass=0.8, unit="chunk").to_dict())
AdaptiveBudget(mass=0.8, temperature=1.0, unit='chunk', rule='mass', min_tokens=32)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from optimizer.records import Chunk
from optimizer.scoring import best_first, bm25_scores, titled_text
from optimizer.stage import StageContext
from optimizer.validate import non_negative_int, one_of, positive_number, unit_interval

UNITS = ("sentence", "chunk")
RULES = ("mass", "gap")


@dataclass(frozen=True)
class AdaptiveBudget:
    """Per-query budget from the query's relevance mass (see the module doc for the rule).

    Parameters
    ----------
    mass:
        Share of the relevance mass the kept units must hold, in (0, 1].
    temperature:
        Softmax temperature over the units' score z-scores (> 0); lower concentrates the
        mass on the best units, so fewer tokens.
    unit:
        ``"sentence"`` or ``"chunk"``: what is scored and counted.
    rule:
        ``"mass"`` (cover ``mass``) or ``"gap"`` (cut at the largest score gap; ``mass``
        and ``temperature`` are then unused).
    min_tokens:
        Floor of the adaptive budget (the hard budget still caps it).
    """

    mass: float = 0.9
    temperature: float = 1.0
    unit: str = "sentence"
    rule: str = "mass"
    min_tokens: int = 32

    def __post_init__(self) -> None:
        unit_interval(self.mass, "adaptive mass (share of the relevance mass)", example=0.9)
        positive_number(self.temperature, "adaptive temperature", example=1.0)
        one_of(self.unit, "adaptive unit", UNITS)
        one_of(self.rule, "adaptive rule", RULES)
        non_negative_int(self.min_tokens, "adaptive min_tokens", what="tokens")

    def to_dict(self) -> dict[str, Any]:
        """Plain settings for a pipeline config."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptiveBudget:
        """Build from :meth:`to_dict`'s output; unknown keys raise, naming the valid ones."""
        if not isinstance(data, Mapping):
            raise ValueError(f"adaptive must be a mapping such as {{'mass': 0.9}}, got {data!r}")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"unknown adaptive settings {unknown}; valid: {', '.join(valid)}")
        return cls(**dict(data))

    def budget_for(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> tuple[int, dict[str, Any]]:
        """The adaptive token budget for ``query`` over ``chunks`` (before any hard cap) and trace notes."""
        units = self._units(chunks)
        if not units:
            return self.min_tokens, {"units": 0, "units_kept": 0, "adaptive_tokens": self.min_tokens}
        scores = bm25_scores(query, [titled_text(chunks[ci].title, text) for ci, text in units])
        order = best_first(scores)
        k = self._cut([scores[i] for i in order])
        kept = order[:k]
        body = sum(context.count(units[i][1]) for i in kept)
        owners = sorted({units[i][0] for i in kept})
        overhead = context.overhead([chunks[ci] for ci in owners])
        tokens = max(self.min_tokens, body + overhead)
        return tokens, {"units": len(units), "units_kept": k, "adaptive_tokens": tokens}

    def _units(self, chunks: Sequence[Chunk]) -> list[tuple[int, str]]:
        if self.unit == "chunk":
            return [(ci, c.text) for ci, c in enumerate(chunks) if c.text.strip()]
        from optimizer.sentences import split_sentences

        return [(ci, c.text[s:e]) for ci, c in enumerate(chunks) for s, e in split_sentences(c.text)]

    def _cut(self, ranked: Sequence[float]) -> int:
        """How many of the best units to keep, given their scores sorted best first."""
        n = len(ranked)
        if n == 1:
            return 1
        if self.rule == "gap":
            gaps = [ranked[i] - ranked[i + 1] for i in range(n - 1)]
            return 1 + max(range(n - 1), key=lambda i: (gaps[i], -i))
        weights = softmax_weights(ranked, self.temperature)
        total = 0.0
        for i, w in enumerate(weights):
            total += w
            if total >= self.mass - 1e-12:
                return i + 1
        return n


def softmax_weights(scores: Sequence[float], temperature: float = 1.0) -> list[float]:
    """``softmax(z / temperature)`` of the scores' z-scores; uniform when all scores are equal.

    >>> [round(w, 3) for w in softmax_weights([3.0, 1.0, 1.0])]
    [0.807, 0.097, 0.097]
    >>> softmax_weights([2.0, 2.0])
    [0.5, 0.5]
    """
    n = len(scores)
    mean = sum(scores) / n
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / n)
    if std == 0:
        return [1.0 / n] * n
    z = [(s - mean) / std / temperature for s in scores]
    top = max(z)
    e = [math.exp(v - top) for v in z]
    total = sum(e)
    return [v / total for v in e]


__all__ = ["AdaptiveBudget", "softmax_weights"]

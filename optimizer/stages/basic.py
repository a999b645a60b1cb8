"""Baseline stages: keep the first chunks (truncate), the top k, or those above a score."""

from __future__ import annotations

from collections.abc import Sequence

from optimizer.packer import cut_to_tokens
from optimizer.records import Chunk
from optimizer.stage import Stage, StageContext, StageOutput, relevance_of


class Truncate(Stage):
    """Keep chunks in the order given until the budget is spent; cut the one that crosses it.

    This is the naive baseline: "the first N tokens of the context". ``at`` chooses where
    the crossing chunk is cut: ``"token"`` (exactly at the budget) or ``"sentence"``.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> ctx = StageContext.default(budget=4)
    >>> [c.text for c in Truncate()("q", [Chunk(id="a", text="one two three four five six")], ctx)]
    ['one two three four']
    """

    name = "truncate"

    def __init__(self, *, at: str = "token") -> None:
        if at not in ("token", "sentence"):
            raise ValueError(f"truncate: at must be 'token' or 'sentence', got {at!r}")
        self.at = at

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        if context.budget is None:
            return StageOutput(list(chunks))
        out: list[Chunk] = []
        reasons: dict[str, str] = {}
        used = 0
        for chunk in chunks:
            overhead = context.overhead(out + [chunk]) - context.overhead(out)
            cost = overhead + context.count(chunk.text)
            if used + cost <= context.budget:
                out.append(chunk)
                used += cost
                continue
            room = context.budget - used - overhead
            if room > 0:
                if self.at == "token":
                    k = context.tokenizer.prefix_within(chunk.text, room)
                    cut = chunk.keep_text_range(0, k)
                else:
                    cut, _ = cut_to_tokens(chunk, room, context)
                if cut.text:
                    out.append(cut)
                    reasons[chunk.id] = f"truncate: cut at the budget ({self.at} boundary)"
                    used = context.budget
            break
        for chunk in chunks[len(out):]:
            reasons.setdefault(chunk.id, "truncate: after the budget")
        return StageOutput(out, reasons=reasons)


class TopK(Stage):
    """Keep the ``k`` most relevant chunks whole (relevance, else the caller's score, else list order).

    With ``fit_budget=True``, chunks are taken whole in relevance order, skipping any that
    would not fit in what is left of the budget (the usual "top-k" retrieval baseline at a
    token budget, never cutting a chunk; ``k=None`` means no fixed cap).

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> chunks = [Chunk(id="a", text="x", score=0.1), Chunk(id="b", text="y", score=0.9)]
    >>> [c.id for c in TopK(k=1)("q", chunks, StageContext.default())]
    ['b']
    >>> [c.id for c in TopK(k=None, fit_budget=True)("q", chunks, StageContext.default(budget=1))]
    ['b']
    """

    name = "top-k"

    def __init__(self, *, k: int | None = 5, fit_budget: bool = False) -> None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"top-k: k must be a positive integer or None, got {k!r}")
        if k is None and not fit_budget:
            raise ValueError("top-k: k=None needs fit_budget=True (otherwise nothing limits the chunks)")
        self.k = k
        self.fit_budget = fit_budget

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        ranked = sorted(range(len(chunks)), key=lambda i: (-relevance_of(chunks[i]), i))
        if self.k is not None:
            ranked = ranked[: self.k]
        keep: list[int] = []
        if self.fit_budget and context.budget is not None:
            used = 0
            for i in ranked:
                chosen = [chunks[j] for j in keep]
                cost = context.overhead(chosen + [chunks[i]]) - context.overhead(chosen) + context.count(chunks[i].text)
                if used + cost > context.budget:
                    continue  # skip it; a smaller, less relevant chunk may still fit whole
                keep.append(i)
                used += cost
        else:
            keep = ranked
        kept = set(keep)
        why = "does not fit the budget whole" if self.fit_budget else f"not among the {self.k} most relevant"
        reasons = {c.id: f"top-k: {why}" for i, c in enumerate(chunks) if i not in kept}
        return StageOutput([chunks[i] for i in keep], reasons=reasons)


class ScoreThreshold(Stage):
    """Drop chunks whose relevance (else score) is below ``min_score``.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> chunks = [Chunk(id="a", text="x", score=0.1), Chunk(id="b", text="y", score=0.9)]
    >>> [c.id for c in ScoreThreshold(min_score=0.5)("q", chunks, StageContext.default())]
    ['b']
    """

    name = "score-threshold"

    def __init__(self, *, min_score: float = 0.0, keep_at_least: int = 1) -> None:
        self.min_score = float(min_score)
        self.keep_at_least = int(keep_at_least)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        ranked = sorted(range(len(chunks)), key=lambda i: (-relevance_of(chunks[i]), i))
        keep = {i for i in ranked if relevance_of(chunks[i]) >= self.min_score}
        keep |= set(ranked[: self.keep_at_least])
        reasons = {
            c.id: f"score-threshold: {relevance_of(c):.4g} < {self.min_score:g}"
            for i, c in enumerate(chunks)
            if i not in keep
        }
        return StageOutput([c for i, c in enumerate(chunks) if i in keep], reasons=reasons)

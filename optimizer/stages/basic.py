"""Baseline stages: keep the first chunks (truncate), the top k, or those above a score."""

from __future__ import annotations

from collections.abc import Sequence

from optimizer.packer import cut_to_tokens
from optimizer.records import Chunk
from optimizer.scoring import by_relevance
from optimizer.stage import Stage, StageContext, StageOutput, relevance_of
from optimizer.validate import positive_int


def all_fit(chunks: Sequence[Chunk], context: StageContext) -> bool:
    """Whether ``chunks``, rendered in this order, fit ``context.budget`` by the exact count.

    The greedy passes below count each header and separator alone, an upper bound that would
    cut even at a budget of the whole context.
    """
    budget = context.budget
    if budget is None or sum(context.count(c.text) for c in chunks) > budget:
        return budget is None
    rendered = context.rendered(chunks)
    return rendered is not None and rendered <= budget


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

    name = "select-truncate"

    def __init__(self, *, at: str = "token") -> None:
        if at not in ("token", "sentence"):
            raise ValueError(f"select-truncate: at must be 'token' or 'sentence', got {at!r}")
        self.at = at

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        if context.budget is None or all_fit(chunks, context):
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
                    reasons[chunk.id] = f"select-truncate: cut at the budget ({self.at} boundary)"
                    used = context.budget
            break
        for chunk in chunks[len(out):]:
            reasons.setdefault(chunk.id, "select-truncate: after the budget")
        return StageOutput(out, reasons=reasons)


class TopK(Stage):
    """Keep the ``k`` most relevant chunks (relevance, else the caller's score, else list order).

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> chunks = [Chunk(id="a", text="x", score=0.1), Chunk(id="b", text="y", score=0.9)]
    >>> [c.id for c in TopK(k=1)("q", chunks, StageContext.default())]
    ['b']
    """

    name = "select-top-k"

    def __init__(self, *, k: int = 5) -> None:
        positive_int(k, "select-top-k: k")
        self.k = k

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        keep = by_relevance(chunks)[: self.k]
        kept = set(keep)
        reasons = {c.id: f"select-top-k: not among the {self.k} most relevant" for i, c in enumerate(chunks) if i not in kept}
        return StageOutput([chunks[i] for i in keep], reasons=reasons)


class WholeChunks(Stage):
    """Keep the most relevant chunks that fit the budget **whole**; never cut one.

    Chunks are taken in relevance order, skipping any that would not fit in what is left
    (the usual "top-k" retrieval baseline at a token budget). Without a budget all chunks
    are kept, best first.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> chunks = [Chunk(id="big", text="word " * 50, score=0.9), Chunk(id="small", text="tiny", score=0.1)]
    >>> [c.id for c in WholeChunks()("q", chunks, StageContext.default(budget=10))]
    ['small']
    """

    name = "select-whole"

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        ranked = by_relevance(chunks)
        if context.budget is None or all_fit([chunks[i] for i in ranked], context):
            return StageOutput([chunks[i] for i in ranked])
        keep: list[Chunk] = []
        reasons: dict[str, str] = {}
        used = 0
        for i in ranked:
            chunk = chunks[i]
            cost = context.overhead(keep + [chunk]) - context.overhead(keep) + context.count(chunk.text)
            if used + cost > context.budget:
                reasons[chunk.id] = f"select-whole: needs {cost} tokens, {context.budget - used} left"
                continue  # a smaller, less relevant chunk may still fit
            keep.append(chunk)
            used += cost
        return StageOutput(keep, reasons=reasons)


class ScoreThreshold(Stage):
    """Drop chunks whose relevance (else score) is below ``min_score``.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> chunks = [Chunk(id="a", text="x", score=0.1), Chunk(id="b", text="y", score=0.9)]
    >>> [c.id for c in ScoreThreshold(min_score=0.5)("q", chunks, StageContext.default())]
    ['b']
    """

    name = "select-threshold"

    def __init__(self, *, min_score: float = 0.0, keep_at_least: int = 1) -> None:
        self.min_score = float(min_score)
        self.keep_at_least = int(keep_at_least)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        ranked = by_relevance(chunks)
        keep = {i for i in ranked if relevance_of(chunks[i]) >= self.min_score}
        keep |= set(ranked[: self.keep_at_least])
        reasons = {
            c.id: f"select-threshold: {relevance_of(c):.4g} < {self.min_score:g}"
            for i, c in enumerate(chunks)
            if i not in keep
        }
        return StageOutput([c for i, c in enumerate(chunks) if i in keep], reasons=reasons)

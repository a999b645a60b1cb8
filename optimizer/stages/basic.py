"""Baseline stages: keep the first chunks (truncate), the top k, or those above a score."""

from __future__ import annotations

from collections.abc import Sequence

from optimizer.packer import cut_to_tokens, token_cut
from optimizer.records import Chunk
from optimizer.render import is_blank, visible
from optimizer.score_reading import ScoreReading
from optimizer.scoring import best_first, by_relevance
from optimizer.stage import Stage, StageContext, StageOutput, relevance_of
from optimizer.validate import finite_number, non_negative_int, positive_int


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


# How far a chunk's estimated cost may pass the room left and still be checked on the exact rendering:
# the estimate counts a block's marker, separator and text apart, and they merge when rendered
# ("[1] " and " Paris", ".\n\n"), so it overstates a block by a token or two.
BORDERLINE_TOKENS = 3


def _rendered_or(chunks: Sequence[Chunk], bound: int, context: StageContext) -> int:
    """Exact tokens of ``chunks`` rendered, or ``bound`` without a renderer."""
    rendered = context.rendered(chunks)
    return bound if rendered is None else rendered


def _fits(chunks: Sequence[Chunk], context: StageContext) -> bool:
    """Whether ``chunks`` rendered fit ``context.budget`` by the exact count (False without a renderer)."""
    rendered = context.rendered(chunks)
    return rendered is not None and rendered <= context.budget


BLANK_REASON = "blank: the chunk has no text (empty or white space only), so nothing to keep; its header would cost tokens"


def _without_blanks(chunks: Sequence[Chunk], name: str) -> tuple[list[Chunk], dict[str, str]]:
    """``(non-blank chunks in order, {blank chunk id: reason})``: a packing baseline skips blank chunks, saying why."""
    kept = visible(chunks)
    return kept, {c.id: f"{name}: {BLANK_REASON}" for c in chunks if is_blank(c)}


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
        # a blank chunk renders as a header alone (or not at all): charging it would end the context before any text
        chunks, reasons = _without_blanks(chunks, self.name)
        if context.budget is None or all_fit(chunks, context):
            return StageOutput(list(chunks), reasons=reasons)
        out: list[Chunk] = []
        used = 0
        tally = context.overhead_tally()  # what each chunk adds after ``out``, not every block counted again
        for chunk in chunks:
            overhead = tally.added(chunk)
            cost = overhead + context.count(chunk.text)
            if used + cost <= context.budget:
                out.append(chunk)
                tally.take(chunk)
                used += cost
                continue
            room = context.budget - used - overhead
            if room > 0:
                if self.at == "token":
                    cut = chunk.keep_text_range(0, token_cut(chunk.text, room, context))
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
        keep = by_relevance(chunks, context)[: self.k]
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

    A chunk's cost is estimated with its marker and text counted apart, which overstates it by
    a token or so (``"[1] "`` and ``" Paris"`` merge when rendered); one the estimate says passes
    the room by at most :data:`BORDERLINE_TOKENS` is checked on the exact rendering instead, so a
    chunk that fits exactly is kept:

    >>> from optimizer import Pipeline
    >>> chunks = [{"id": "a", "text": "Paris is the capital of France."}, {"id": "b", "text": "Lyon is a city in France."}]
    >>> Pipeline.preset("full").run("q", chunks[:1]).tokens
    10
    >>> Pipeline.preset("bm25-topk").run("capital of France", chunks, budget=10).text
    '[1] Paris is the capital of France.'
    """

    name = "select-whole"

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        chunks, reasons = _without_blanks(chunks, self.name)  # a blank chunk's header would take a real chunk's room
        ranked = by_relevance(chunks, context)
        if context.budget is None or all_fit([chunks[i] for i in ranked], context):
            return StageOutput([chunks[i] for i in ranked], reasons=reasons)
        keep: list[Chunk] = []
        used, exact = 0, True  # tokens of ``keep`` rendered: exact, or an upper bound
        tally = context.overhead_tally()  # what each chunk adds after ``keep``, not every block counted again
        for i in ranked:
            chunk = chunks[i]
            cost = tally.added(chunk) + context.count(chunk.text)
            if used + cost > context.budget and not exact:  # tighten the bound before rejecting on it
                used, exact = _rendered_or(keep, used, context), True
            if used + cost <= context.budget:
                keep.append(chunk)
                tally.take(chunk)
                used, exact = used + cost, False
            elif used + cost - context.budget <= BORDERLINE_TOKENS and _fits(keep + [chunk], context):
                keep.append(chunk)  # the estimate's header and text, counted apart, merge when rendered
                tally.take(chunk)
                used, exact = _rendered_or(keep, used + cost, context), True
            else:  # a smaller, less relevant chunk may still fit
                reasons[chunk.id] = f"select-whole: needs {cost} tokens, {context.budget - used} left"
        return StageOutput(keep, reasons=reasons)


class ScoreThreshold(Stage):
    """Drop chunks whose relevance (else score) is below ``min_score``.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> chunks = [Chunk(id="a", text="x", score=0.1), Chunk(id="b", text="y", score=0.9)]
    >>> [c.id for c in ScoreThreshold(min_score=0.5)("q", chunks, StageContext.default())]
    ['b']

    The threshold is on the caller's own units. When the run reads the scores as distances
    (lower is better: they rise along the given order, or the sentence stage's ``retriever`` says
    ``"distance"``; :mod:`optimizer.score_reading`), ``min_score`` is the largest distance kept, so
    give it as one (the default 0.0 then keeps distance 0 only, besides ``keep_at_least``). A
    rerank stage's ``relevance`` is always higher-is-better. A chunk without a score counts as
    the worst given one.

    >>> l2 = [Chunk(id=k, text=k, score=s) for k, s in zip("abcd", [0.2, 0.5, 0.9, 1.4])]
    >>> out = ScoreThreshold(min_score=0.6)("q", l2, StageContext.default())
    >>> [c.id for c in out], out.reasons["d"]
    (['a', 'b'], 'select-threshold: distance 1.4 > 0.6 (scores read as distances: min_score is the largest distance kept)')
    """

    name = "select-threshold"

    def __init__(self, *, min_score: float = 0.0, keep_at_least: int = 1) -> None:
        self.min_score = finite_number(
            min_score, f"{self.name}: min_score (the lowest relevance kept; with distances, the largest distance)", example=0.5
        )
        self.keep_at_least = non_negative_int(
            keep_at_least, f"{self.name}: keep_at_least (the best chunks kept whatever their score)", what="chunks"
        )

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        reading = context.score_reading(chunks)
        rel = [relevance_of(c, reading) for c in chunks]
        ranked = best_first(rel)
        keep = {i for i in ranked if rel[i] >= (-self.min_score if _distance(chunks[i], reading) else self.min_score)}
        keep |= set(ranked[: self.keep_at_least])
        reasons = {c.id: self._reason(rel[i], _distance(c, reading)) for i, c in enumerate(chunks) if i not in keep}
        return StageOutput([c for i, c in enumerate(chunks) if i in keep], reasons=reasons)

    def _reason(self, relevance: float, distance: bool) -> str:
        if distance:
            return (f"select-threshold: distance {-relevance:.4g} > {self.min_score:g} "
                    "(scores read as distances: min_score is the largest distance kept)")
        return f"select-threshold: {relevance:.4g} < {self.min_score:g}"


def _distance(chunk: Chunk, reading: ScoreReading) -> bool:
    """Whether ``chunk`` is ranked by a score read as a distance (not by a rerank stage's relevance)."""
    return chunk.relevance is None and reading.direction == "distance"

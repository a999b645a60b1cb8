"""Shared plumbing of the framework integrations: items in, pipeline run, kept text out.

A framework object (a LlamaIndex node, a LangChain document) becomes an :class:`Item`
with a position-unique chunk id; :func:`run_items` runs the pipeline and says, for each
kept item in rendered order, which text and which original character ranges survived.
Items without text never reach the pipeline; they are reported as a ``skip-non-text``
step at the head of the trace, so ``Result.dropped`` lists them too.

>>> from optimizer import Pipeline
>>> items = [Item(0, "a", "Paris is the capital of France."), Item(1, "b", "")]
>>> run = run_items(Pipeline(budget=50), "capital?", items)
>>> [(k.item.id, k.text) for k in run.kept], run.skipped
([('a', 'Paris is the capital of France.')], (1,))
>>> run.result.dropped[0].reason
'no text (non-text node or empty text); skipped'
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from optimizer.budget import parse_budget
from optimizer.pipeline import Pipeline
from optimizer.records import Chunk, Drop, Result, StageTrace
from optimizer.render import Renderer

logger = logging.getLogger("optimizer.integrations")

SPANS_KEY = "ragtrim_spans"
FRAME_KEY = "ragtrim_frame"  # chunk metadata: the [head, tail] a framework prints around the text
SKIP_STEP = "skip-non-text"
SKIP_REASON = "no text (non-text node or empty text); skipped"
PASS_REASON = "no text (non-text node or empty text); passed through unchanged after the kept ones, not counted in the budget"


@dataclass(frozen=True)
class Item:
    """One framework object as ragtrim sees it; ``index`` is its position in the caller's list."""

    index: int
    id: str
    text: str
    title: str | None = None
    score: float | None = None
    metadata: Mapping[str, Any] | None = None
    embedding: Any = None
    frame: tuple[str, str] | None = None  # printed around the text by the framework (see Renderer.frames)


@dataclass(frozen=True)
class Kept:
    """An item that survived: its kept text and kept ``(start, end)`` ranges of its original text."""

    item: Item
    text: str
    spans: tuple[tuple[int, int], ...]
    relevance: float | None


@dataclass(frozen=True)
class Run:
    result: Result
    kept: tuple[Kept, ...]  # rendered order
    skipped: tuple[int, ...]  # indices of items without text


def make_pipeline(
    pipeline: Pipeline | None, *, preset: str, budget: Any, tokenizer: str, owner: str, renderer: Renderer | None = None
) -> tuple[Pipeline, Any]:
    """The pipeline to run and the budget override (``None`` keeps the pipeline's own).

    ``budget`` alone builds preset ``preset``; with ``pipeline`` it overrides that
    pipeline's budget. One of the two is required. ``renderer``: run with it instead of the
    pipeline's own (on a copy; the caller's pipeline is left alone).
    """
    built, override = _pick_pipeline(pipeline, preset=preset, budget=budget, tokenizer=tokenizer, owner=owner)
    if renderer is not None:
        built = copy.copy(built)
        built.renderer = renderer
    return built, override


class PipelineCache:
    """A wrapper's pipeline for its current settings, built again when one of them has changed.

    Framework objects are pydantic models whose fields a user may set after construction
    (``post.budget = 200``, ``model_copy(update=...)``); the next call runs with the new values.
    """

    def __init__(self) -> None:
        self._key: Any = None
        self._built: tuple[Pipeline, Any] | None = None

    def get(self, pipeline: Pipeline | None, *, preset: str, budget: Any, tokenizer: str, owner: str,
            renderer: Renderer | None) -> tuple[Pipeline, Any]:
        """:func:`make_pipeline` of these settings, reused while they stay the same."""
        key = (id(pipeline), preset, repr(budget), tokenizer, renderer)
        if self._built is None or key != self._key:
            self._built = make_pipeline(pipeline, preset=preset, budget=budget, tokenizer=tokenizer, owner=owner, renderer=renderer)
            self._key = key
        return self._built


def _pick_pipeline(pipeline: Pipeline | None, *, preset: str, budget: Any, tokenizer: str, owner: str) -> tuple[Pipeline, Any]:
    budget = parse_budget(budget)
    if pipeline is None:
        if budget is None:
            raise ValueError(
                f"{owner} needs a budget or a pipeline, got neither; pass e.g. budget=300 (tokens), "
                "budget=0.25 (a share of the retrieved context) or pipeline=Pipeline.preset('default', budget=300)"
            )
        return Pipeline.preset(preset, budget=budget, tokenizer=tokenizer), None
    if not isinstance(pipeline, Pipeline):
        raise TypeError(
            f"{owner}: pipeline must be an optimizer.Pipeline, got {type(pipeline).__name__}: {pipeline!r:.80}; "
            "build one with Pipeline.preset('default', budget=300) or Pipeline([...], budget=300)"
        )
    return pipeline, budget


def title_from(metadata: Mapping[str, Any] | None, keys: str | Sequence[str] | None) -> str | None:
    """The first non-empty string value among ``keys`` of ``metadata``.

    >>> title_from({"file_name": "a.txt"}, ["title", "file_name"])
    'a.txt'
    >>> title_from({"title": ""}, "title") is None
    True
    """
    if not metadata or keys is None:
        return None
    for key in [keys] if isinstance(keys, str) else keys:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def unique_ids(ids: Sequence[str | None]) -> list[str]:
    """Make chunk ids unique within one call: a missing id becomes the position, a repeat gets ``#n``.

    >>> unique_ids(["a", None, "a", "a#2"])
    ['a', '1', 'a#2', 'a#2#2']
    """
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(ids):
        base = str(raw) if raw is not None and str(raw) != "" else str(i)
        candidate, n = base, 1
        while candidate in seen:
            n += 1
            candidate = f"{base}#{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def run_items(pipeline: Pipeline, query: str, items: Sequence[Item], *, budget: Any = None, non_text: str = "skip") -> Run:
    """Run ``pipeline`` on the items that have text; map the kept chunks back to items.

    Items without text are reported in a ``skip-non-text`` trace step: dropped with a warning
    (``non_text="skip"``) or, with ``"keep"``, noted as passed through (the caller returns them).
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}: {query!r:.80}")
    with_text = [it for it in items if it.text and it.text.strip()]
    no_text = [it for it in items if not (it.text and it.text.strip())]
    by_id = {it.id: it for it in with_text}
    chunks = [
        Chunk(id=it.id, text=it.text, title=it.title, score=it.score, embedding=it.embedding,
              metadata={FRAME_KEY: list(it.frame)} if it.frame else None)
        for it in with_text
    ]
    result = pipeline.run(query, chunks, budget=budget)
    if no_text:
        result = replace(result, trace=(_no_text_step(items, no_text, passed=non_text == "keep"), *result.trace))
    kept = tuple(
        Kept(item=by_id[c.id], text=c.text, spans=c.kept_pieces, relevance=c.relevance)
        for c in result.chunks
        if c.text
    )
    return Run(result=result, kept=kept, skipped=tuple(it.index for it in no_text))


def _no_text_step(items: Sequence[Item], no_text: Sequence[Item], *, passed: bool) -> StageTrace:
    """The trace step for items without text: dropped (logged), or passed through untouched."""
    ids = [it.id for it in no_text]
    if not passed:
        logger.warning("ragtrim skipped %d input(s) without text (an image node, an empty document): ids %s", len(ids), ids)
    return StageTrace(
        name=SKIP_STEP,
        tokens_in=0,
        tokens_out=0,
        ms=0.0,
        chunks_in=len(items),
        chunks_out=len(items) - (0 if passed else len(ids)),
        dropped=() if passed else tuple(Drop(i, SKIP_REASON) for i in ids),
        notes={"passed_through": ids, "reason": PASS_REASON} if passed else {"skipped": len(ids)},
    )


def compose_spans(text: str, previous: Any, spans: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...] | None:
    """``spans`` of ``text`` as ranges of the text ``previous`` were kept from, or None if they do not fit it.

    ``text`` is an earlier run's output: the ``previous`` ranges of an original text, joined by
    white space. Run ragtrim on it again and the new ranges are of ``text``; this maps them back,
    so ``ragtrim_spans`` always points into the original.

    >>> original = "Paris is big. Lyon is old. Nice is sunny."
    >>> text = "Paris is big. Nice is sunny."          # an earlier run kept (0, 13) and (27, 41)
    >>> compose_spans(text, [[0, 13], [27, 41]], [(14, 28)])
    ((27, 41),)
    >>> compose_spans("edited", [[0, 13]], [(0, 6)]) is None  # the text no longer matches those ranges
    True
    """
    if not isinstance(previous, (list, tuple)) or not all(
        isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(v, int) for v in r) and 0 <= r[0] < r[1] for r in previous
    ):
        return None
    starts, at = [], 0
    for k, (s, e) in enumerate(previous):
        if k:
            gap = at
            while at < len(text) and text[at].isspace():
                at += 1
            if at == gap:
                return None
        piece = text[at : at + (e - s)]
        if len(piece) != e - s or piece[:1].isspace() or piece[-1:].isspace():
            return None
        starts.append(at)
        at += e - s
    if at != len(text):
        return None
    out: list[tuple[int, int]] = []
    for a, b in spans:
        for (s, e), st in zip(previous, starts):
            lo, hi = max(a, st), min(b, st + (e - s))
            if lo < hi:
                out.append((s + lo - st, s + hi - st))
    return tuple(out)


def original_spans(text: str, previous: Any, spans: Sequence[tuple[int, int]], name: str) -> tuple[tuple[int, int], ...] | None:
    """:func:`compose_spans`, with a warning naming ``name`` when ``previous`` no longer fits ``text``."""
    composed = compose_spans(text, previous, spans)
    if composed is None:
        logger.warning("%s: metadata[%r] does not match its text (edited since?); its ranges are now of the text as given",
                       name, SPANS_KEY)
    return composed


def as_float(value: Any) -> float | None:
    """A float score, or None: NaN, infinities (a log-probability of -inf, say) and non-numbers are no score."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(out):
        logger.warning("ragtrim read a retriever score of %r as no score (only finite scores rank chunks)", value)
        return None
    return out


def as_embedding(value: Any) -> Any:
    """A float32 vector from a list/array embedding, or None."""
    if value is None:
        return None
    import numpy as np

    try:
        vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    return vec if vec.ndim == 1 and vec.size else None

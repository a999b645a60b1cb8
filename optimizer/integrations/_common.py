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

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from optimizer.budget import parse_budget
from optimizer.pipeline import Pipeline
from optimizer.records import Chunk, Drop, Result, StageTrace

logger = logging.getLogger("optimizer.integrations")

SPANS_KEY = "ragtrim_spans"
SKIP_STEP = "skip-non-text"
SKIP_REASON = "no text (non-text node or empty text); skipped"


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
    pipeline: Pipeline | None, *, preset: str, budget: Any, tokenizer: str, owner: str
) -> tuple[Pipeline, Any]:
    """The pipeline to run and the budget override (``None`` keeps the pipeline's own).

    ``budget`` alone builds preset ``preset``; with ``pipeline`` it overrides that
    pipeline's budget. One of the two is required.
    """
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


def run_items(pipeline: Pipeline, query: str, items: Sequence[Item], *, budget: Any = None) -> Run:
    """Run ``pipeline`` on the items that have text; map the kept chunks back to items."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}: {query!r:.80}")
    with_text = [it for it in items if it.text and it.text.strip()]
    no_text = [it for it in items if not (it.text and it.text.strip())]
    by_id = {it.id: it for it in with_text}
    chunks = [
        Chunk(id=it.id, text=it.text, title=it.title, score=it.score, embedding=it.embedding) for it in with_text
    ]
    result = pipeline.run(query, chunks, budget=budget)
    if no_text:
        logger.warning(
            "ragtrim skipped %d input(s) without text (e.g. image nodes): ids %s",
            len(no_text),
            [it.id for it in no_text],
        )
        head = StageTrace(
            name=SKIP_STEP,
            tokens_in=0,
            tokens_out=0,
            ms=0.0,
            chunks_in=len(items),
            chunks_out=len(with_text),
            dropped=tuple(Drop(it.id, SKIP_REASON) for it in no_text),
            notes={"skipped": len(no_text)},
        )
        result = replace(result, trace=(head, *result.trace))
    kept = tuple(
        Kept(item=by_id[c.id], text=c.text, spans=c.kept_pieces, relevance=c.relevance)
        for c in result.chunks
        if c.text
    )
    return Run(result=result, kept=kept, skipped=tuple(it.index for it in no_text))


def as_float(value: Any) -> float | None:
    """A float score, or None (NaN and non-numbers become None)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if out != out else out


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

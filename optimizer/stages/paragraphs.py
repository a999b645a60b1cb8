"""Paragraph views: score a long chunk's paragraphs as passages of their own, then put the chunk back together.

A retriever over split documents often hands over long chunks that hold several paragraphs
(a PDF page, a web page's sections, a 1,024-token ``SentenceSplitter`` node). The sentence
stage's passage-level signals (the chunk prior, a passage's lead, the second hop's links) then
see one big passage and lose what they are for. :func:`paragraph_views` cuts each chunk with
two or more blank-line separated paragraphs into one *view* per paragraph: the same chunk (same
id, title and original text) keeping only that paragraph, so every offset stays in the chunk's
own coordinates. :func:`merge_views` turns the kept views back into one chunk per input chunk,
so the renderer prints each chunk once and provenance is unchanged.

>>> from optimizer.records import Chunk
>>> c = Chunk(id="c", text="Paris\\nParis is big.\\n\\nLyon\\nLyon is old.")
>>> views = paragraph_views([c])
>>> [v.text for v in views]
['Paris\\nParis is big.', 'Lyon\\nLyon is old.']
>>> merged = merge_views(StageOutput([views[1].keep([(26, 38)])]), [c])
>>> merged.chunks[0].id, merged.chunks[0].text
('c', 'Lyon is old.')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from optimizer.records import Chunk
from optimizer.sentences import paragraph_spans
from optimizer.stage import StageOutput
from optimizer.stages.sentence_select import CUT_REASON


def paragraphs(chunk: Chunk) -> list[tuple[int, int]]:
    """The chunk's kept text split at blank lines: ``(start, end)`` ranges of its original text, empty ones left out."""
    original = chunk.original_text
    return [span for ps, pe in chunk.kept_pieces for span in paragraph_spans(original, ps, pe)]


def paragraph_views(chunks: Sequence[Chunk]) -> list[Chunk] | None:
    """One view per paragraph of every chunk that has two or more; ``None`` when no chunk has.

    A chunk of one paragraph is its own (only) view. Views of a chunk share its id.
    """
    views: list[Chunk] = []
    split = False
    for c in chunks:
        parts = paragraphs(c)
        if len(parts) < 2:
            views.append(c)
            continue
        split = True
        views.extend(c.keep([p]) for p in parts)
    return views if split else None


def merge_views(out: StageOutput, chunks: Sequence[Chunk]) -> StageOutput:
    """The kept views of ``out`` as one chunk per input chunk (first-kept order, best view's relevance).

    A chunk some of whose views were kept is not reported dropped; one that lost text gets
    the sentence stage's reason for a partly kept chunk.
    """
    given = {c.id: c for c in chunks}
    pieces: dict[str, list[tuple[int, int]]] = {}
    relevance: dict[str, float | None] = {}
    for v in out.chunks:
        pieces.setdefault(v.id, []).extend(v.kept_pieces)
        best = relevance.get(v.id)
        relevance[v.id] = v.relevance if best is None or (v.relevance is not None and v.relevance > best) else best
    merged = [replace(given[i].keep(p), relevance=relevance[i]) for i, p in pieces.items()]
    reasons = {i: r for i, r in out.reasons.items() if i not in pieces}
    for m in merged:
        if m.kept_pieces != given[m.id].kept_pieces:
            reasons[m.id] = CUT_REASON
    return StageOutput(merged, reasons=reasons, notes={**out.notes, "paragraph_views": True})

"""A sentence made of hard-wrapped quoted or bullet lines, too long for the room left, taken cut at its line ends.

:func:`~optimizer.sentences.split_sentences` reads the lines a hard wrap joins (a quoted e-mail paragraph,
a wrapped bullet item: :mod:`optimizer.wrapped_lines`) as prose, so a sentence wrapped over three ``> ``
lines is one unit; a73d3e0 split them per line, and a budget that held one line kept the line that
answered. The join keeps those line ends as fallback cut points: when such a sentence does not fit the
room left, the greedy pass may take the run of its lines that fits and names the most query words (the
earliest such run, so the leading lines when none names any), with its own exact range of the source, so
the lines kept keep their ``> `` marks.

>>> from optimizer import Chunk
>>> from optimizer.stage import StageContext
>>> from optimizer.stages.sentence_signals import split_chunks
>>> text = "> Hi team, we agreed with the auditors to extend the\\n> deadline for the audit report to April 30, provided\\n> the draft reaches them by April 15."
>>> ctx = StageContext.default()
>>> sents = split_chunks([Chunk(id="x", text=text)], ctx)
>>> cuts = LineCuts([Chunk(id="x", text=text)], sents, "audit deadline", ctx)
>>> [text[start:end] for start, end, _ in (cuts.fit(0, 14), cuts.fit(0, 24))]
['> deadline for the audit report to April 30, provided', '> deadline for the audit report to April 30, provided\\n> the draft reaches them by April 15.']
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import replace

from optimizer.records import Chunk, indent_start
from optimizer.sentences import wrapped_lines
from optimizer.stage import StageContext
from optimizer.stages.sentence_signals import Sentence, memo_terms, terms, terms_memo

LINES_REASON = "sentences: lines of its wrapped sentence left out for the room left (a run of its lines kept)"
"""The trace's reason for the lines of a wrapped sentence left out when a run of its lines was taken in its place."""

Part = tuple[int, int, int]
"""A line run taken of a sentence: its start and end (offsets of the chunk's original text) and its tokens."""


def sentence_lines(text: str, start: int, end: int, lines: Sequence[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """The wrapped lines (``lines``, else :func:`~optimizer.sentences.wrapped_lines` of ``text``) of the sentence
    ``text[start:end]``, each clipped to it; empty unless it holds two or more (a sentence within one line has no
    line end to cut at)."""
    if "\n" not in text[start:end] and "\r" not in text[start:end]:
        return []
    lines = wrapped_lines(text) if lines is None else lines
    at = bisect.bisect_right(lines, (start, end)) - 1  # the line holding start, or the first after it
    out = [(max(a, start), min(b, end)) for a, b in lines[max(at, 0):] if a < end and start < b and a < b]
    return out if len(out) > 1 else []


class LineCuts:
    """The line runs of one selection's wrapped sentences (``sents`` of ``chunks``), valued by the query words they name."""

    def __init__(self, chunks: Sequence[Chunk], sents: Sequence[Sentence], query: str, context: StageContext, stem: int = 0) -> None:
        self._chunks, self._sents, self._context, self._stem = chunks, sents, context, stem
        self._words = set(terms(query, stem))
        self._memo = terms_memo(context, stem)
        self._lines: dict[int, list[tuple[int, int]]] = {}
        self._wrapped: dict[int, tuple[tuple[int, int], ...]] = {}  # per chunk (a text past the split cache's bound is split once here)
        self._tokens: dict[tuple[int, int], int] = {}

    def lines(self, i: int) -> list[tuple[int, int]]:
        """Sentence ``i``'s wrapped lines (:func:`sentence_lines`), found once."""
        if i not in self._lines:
            s = self._sents[i]
            text = self._chunks[s.chunk].original_text
            if s.chunk not in self._wrapped and ("\n" in s.text or "\r" in s.text):
                self._wrapped[s.chunk] = wrapped_lines(text)
            self._lines[i] = sentence_lines(text, s.start, s.end, self._wrapped.get(s.chunk, ()))
        return self._lines[i]

    def fit(self, i: int, room: int) -> Part | None:
        """The run of sentence ``i``'s lines to take within ``room`` tokens (see the module), never the whole
        sentence; None when it has no line ends or no line fits."""
        lines = self.lines(i)
        if room <= 0 or not lines:
            return None
        text = self._chunks[self._sents[i].chunk].original_text
        best: tuple[int, Part] | None = None
        for a in range(len(lines)):
            run = None
            for b in range(a, len(lines) - (a == 0)):  # from the first line, never to the last: that is the whole
                tokens = self._count(text, lines[a][0], lines[b][1])
                if tokens > room:
                    break
                run = (lines[a][0], lines[b][1], tokens)
            if run is not None:
                value = len(self._words.intersection(memo_terms(text[run[0] : run[1]], self._stem, self._memo)))
                if best is None or value > best[0]:
                    best = (value, run)
                if run[1] == lines[-1][1]:  # a later start runs to the end too: a part of this run, worth no more
                    break
        return None if best is None else best[1]

    def take(self, i: int, room: int, parts: dict[int, Part]) -> bool:
        """Whether a run of sentence ``i``'s lines fits ``room`` (:meth:`fit`); if so it goes into ``parts``."""
        part = self.fit(i, room)
        if part is not None:
            parts[i] = part
        return part is not None

    def _count(self, text: str, start: int, end: int) -> int:
        """Tokens of ``text[start:end]`` as a sentence there is counted (with its indentation), counted once."""
        if (start, end) not in self._tokens:
            self._tokens[start, end] = self._context.count(text[indent_start(text, start) : end])
        return self._tokens[start, end]


def with_parts(sents: Sequence[Sentence], parts: dict[int, Part]) -> list[Sentence]:
    """``sents`` with each sentence of ``parts`` narrowed to the line run taken of it."""
    out = list(sents)
    for i, (start, end, tokens) in parts.items():
        s = sents[i]
        out[i] = replace(s, start=start, end=end, text=s.text[start - s.start : end - s.start], tokens=tokens)
    return out


def left_out(sents: Sequence[Sentence], kept: Sequence[Sentence]) -> dict[int, list[tuple[int, int]]]:
    """Per chunk, the ranges of its sentences left out around the line runs taken of them (``kept``: :func:`with_parts`)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for s, k in zip(sents, kept):
        if k is not s:
            out.setdefault(s.chunk, []).extend(r for r in ((s.start, k.start), (k.end, s.end)) if r[0] < r[1])
    return out

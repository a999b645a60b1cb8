"""Page furniture: the lines a PDF or web extraction repeats on every page, found in one call's chunks.

A PDF page's running header ("ACME Corporation Annual Report 2023") and footer ("- 8 -",
"Page 7"), a web page's menu, cookie banner and "Was this page helpful?" line come with every
chunk cut from that source. They end no sentence, so the splitter glued them to the sentence
before or after (a sentence across a page break carried the footer and the next page's header),
and a header as a chunk's first line read as every paragraph's heading, printed with every kept block.

:func:`find_furniture` finds them from the call's chunks alone, by how a line repeats: a line
(white space collapsed; digits masked, so ``Page 7`` is ``Page 9``, unless it ends like a sentence,
whose numbers are its news, or is a labelled number, ``Weight: 340 g``) is furniture when it stands
in at least :data:`MIN_CHUNKS` chunks and in half of the call's distinct chunks, once in most of
those. Half, because furniture is on every page of its source while a line some chunks truly
share is not (the heading ``Configuration`` of four of ten chunks of a manual's section): a call
that mixes sources leaves the furniture of a source giving fewer than half its chunks as it was.
Once, because a page holds its header once, a table its repeated cells many times.

Never furniture: a Markdown heading (``#``: the title logic reads chunks of one document
titled alike), a question (a FAQ's, joined to its answer), a code fence or a line of a fenced
code block, a line without a letter or digit, and a row beside another row of the same shape
(:func:`~optimizer.sentences.field_counts`, or both ``key: value``) that does not repeat itself:
a CSV chunk's header row over its data. Nor are the lines sliding windows share (one's last lines
another's first, :func:`window_overlaps`): text, however many windows repeat it.

A furniture line is then no sentence's part (:func:`strip_furniture` cuts it out with
:meth:`~optimizer.records.Chunk.keep`, so a sentence across a page break is two pieces), no
paragraph's heading (:class:`~optimizer.stages.paragraphs.ParagraphViews` ``skip``), and never kept.
Never all of a chunk: a chunk whose every line would be furniture keeps them.

A chunk holding such a line more often than it holds pages (a sidebar's ``Configuration``,
then the section's own heading ``Configuration``) keeps the extra ones as text: its pages are the
count its furniture lines most often have (two in a chunk across a page break: two headers, two
footers), and the extra occurrences are those with the fewest furniture lines beside them.

>>> pages = [Chunk(id=f"p{n}", text=f"ACME Report\\nPart {n} says {w}.\\nPage {n}") for n, w in enumerate("abcd")]
>>> found = find_furniture(pages)
>>> [pages[0].text[s:e] for s, e in found["p0"]]
['ACME Report', 'Page 0']
>>> [c.text for c in strip_furniture(pages, found)][:2]
['Part 0 says a.', 'Part 1 says b.']
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from optimizer.records import Chunk
from optimizer.stage import StageOutput
from optimizer.sentences import FENCE, code_blocks, field_counts, is_record_line, line_view, strip_range

MIN_CHUNKS = 3
"""The fewest chunks a furniture line stands in: a call of two chunks never has any."""

REASON = "furniture: a line repeated in most of the call's chunks (a page header or footer, a site's menu) left out"
"""The trace's reason for a furniture line left out."""

_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_LINE = re.compile(r"[^\n]+")
_ALNUM = re.compile(r"[^\W_]")
_SENTENCE_END = re.compile(r"[.!…。！][\"'”’)\]]*$")


@dataclass(frozen=True)
class Line:
    """A non-blank line of a chunk's original text: its stripped ``(start, end)`` and its :func:`line_key`."""

    start: int
    end: int
    key: str | None


def line_key(line: str) -> str | None:
    """What ``line`` repeats as (white space collapsed; digits masked unless it ends like a sentence), or ``None``
    when it is never furniture.

    >>> line_key("  Page 7 "), line_key("HARLOW BULLETIN No. 14   -   3 -"), line_key("It rose 4 percent.")
    ('Page 0', 'HARLOW BULLETIN No. 0 - 0 -', 'It rose 4 percent.')
    >>> [line_key(x) for x in ("## Usage", "How do I reset it?", "```python", "-----", "Weight: 340 g")]
    [None, None, None, None, None]
    """
    text = line.strip()
    if not _ALNUM.search(text) or text.startswith("#") or text.endswith(("?", "？")) or FENCE.match(line):
        return None
    if _SENTENCE_END.search(text):
        return _SPACE.sub(" ", text)  # a sentence repeats word for word, or its numbers are its news
    if is_record_line(text) and _DIGITS.search(text):
        return None  # a labelled number ("Weight: 340 g") is a datum
    return _SPACE.sub(" ", _DIGITS.sub("0", text))


def chunk_lines(chunk: Chunk) -> list[Line]:
    """The chunk's non-blank lines that are wholly kept; a line of a fenced code block has no key."""
    text = line_view(chunk.original_text)
    code = code_blocks(text)
    kept = chunk.kept_pieces
    kept_ends, code_ends = [e for _, e in kept], [e for _, e in code]
    out: list[Line] = []
    for m in _LINE.finditer(text):
        s, e = strip_range(text, m.start(), m.end())
        k = bisect.bisect_left(kept_ends, e)  # the first piece ending at or after the line's end
        if s >= e or k == len(kept) or kept[k][0] > s:
            continue
        b = bisect.bisect_right(code_ends, s)  # the first code block ending after the line's start
        in_code = b < len(code) and code[b][0] <= s
        out.append(Line(s, e, None if in_code else line_key(text[s:e])))
    return out


def _repeated(per_chunk: Sequence[Sequence[str]], need: int) -> set[str]:
    """The keys in at least ``need`` of ``per_chunk`` (each a chunk's keys), once in most of the chunks holding them."""
    held: Counter[str] = Counter()
    once: Counter[str] = Counter()
    for keys in per_chunk:
        counts = Counter(keys)
        held.update(counts.keys())
        once.update(k for k, n in counts.items() if n == 1)
    return {k for k, n in held.items() if n >= need and 2 * once[k] >= n}


def _same_shape(a: str, b: str) -> bool:
    """Whether two lines are rows of one table or listing: a separator count in common, or both ``key: value``."""
    return any(x == y > 0 for x, y in zip(field_counts(a), field_counts(b))) or (is_record_line(a) and is_record_line(b))


def _eligible(text: str, lines: Sequence[Line], candidates: set[str]) -> list[int]:
    """Indices of ``lines`` whose key is in ``candidates``, less rows beside a row of their shape that is no candidate (data)."""
    out: list[int] = []
    for i, ln in enumerate(lines):
        if ln.key not in candidates:
            continue
        near = [lines[j] for j in (i - 1, i + 1) if 0 <= j < len(lines) and lines[j].key not in candidates]
        if not any(_same_shape(text[ln.start : ln.end], text[o.start : o.end]) for o in near):
            out.append(i)
    return out


def _placed(lines: Sequence[Line], eligible: Sequence[int], keys: set[str]) -> list[tuple[int, int]]:
    """The ranges of the furniture lines: ``eligible`` ones (indices into ``lines``) of ``keys``, a key's extra
    occurrences (more than the chunk's pages) left as text."""
    where: dict[str, list[int]] = {}
    for i in eligible:
        if lines[i].key in keys:
            where.setdefault(lines[i].key, []).append(i)  # type: ignore[arg-type]
    if not where:
        return []
    counts = Counter(len(v) for v in where.values())
    pages = max(counts, key=lambda n: (counts[n], n))
    furniture = {i for v in where.values() for i in v}
    text: set[int] = set()
    for found in where.values():
        if len(found) > pages:  # the extra ones with the fewest furniture lines beside them, the later first
            beside = {i: (i - 1 in furniture) + (i + 1 in furniture) for i in found}
            text.update(sorted(found, key=lambda i: (beside[i], -i))[: len(found) - pages])
    furniture -= text
    if len(furniture) == len(lines):  # furniture is around a page's text, never all of it
        return []
    return [(lines[i].start, lines[i].end) for i in sorted(furniture)]


def find_furniture(chunks: Sequence[Chunk], check: Callable[[str], None] | None = None) -> dict[str, tuple[tuple[int, int], ...]]:
    """Each chunk id with furniture lines: their ``(start, end)`` ranges of its original text (see the module doc).

    ``check`` (a run's :meth:`~optimizer.stage.StageContext.check_deadline`) is called before each chunk is read.
    """
    distinct: dict[str, Chunk] = {}
    for c in chunks:
        distinct.setdefault(c.original_text, c)  # a chunk given twice counts once
    need = max(MIN_CHUNKS, math.ceil(len(distinct) / 2))
    if len(distinct) < need:
        return {}
    lines: dict[str, list[Line]] = {}
    for k, c in enumerate(chunks):
        if check is not None:
            check(f"finding page furniture (chunk {k} of {len(chunks)})")
        lines[c.id] = chunk_lines(c)
    overlaps = window_overlaps(chunks, lines)
    lines = {i: _unkeyed(found, overlaps.get(i, set())) for i, found in lines.items()}
    firsts = list(distinct.values())
    candidates = _repeated([[ln.key for ln in lines[c.id] if ln.key] for c in firsts], need)
    if not candidates:
        return {}
    eligible = {c.id: _eligible(c.original_text, lines[c.id], candidates) for c in chunks}
    keys = _repeated([[lines[c.id][i].key for i in eligible[c.id]] for c in firsts], need)  # type: ignore[misc]
    out = {c.id: tuple(_placed(lines[c.id], eligible[c.id], keys)) for c in chunks} if keys else {}
    return {i: spans for i, spans in out.items() if spans}


WINDOW_LINES = 2
"""The fewest lines one chunk's end and another's start share for the two to read as overlapping windows."""


def window_overlaps(chunks: Sequence[Chunk], lines: Mapping[str, Sequence[Line]]) -> dict[str, set[int]]:
    """Indices of each chunk's ``lines`` in an overlap of sliding windows: at least :data:`WINDOW_LINES` lines
    that end one chunk, after lines of its own, and start another, word for word. A window's lines repeat in
    the next ones (each in four windows at a stride of a quarter) as text, never as furniture.

    >>> text = [f"Line {n} of the text." for n in range(8)]
    >>> windows = [Chunk(id=str(k), text="\\n".join(text[k : k + 4])) for k in range(0, 5, 2)]
    >>> overlaps = window_overlaps(windows, {c.id: chunk_lines(c) for c in windows})
    >>> {i: sorted(v) for i, v in overlaps.items()}
    {'0': [2, 3], '2': [0, 1, 2, 3], '4': [0, 1]}
    """
    texts = {c.id: [c.original_text[ln.start : ln.end] for ln in lines[c.id]] for c in chunks}
    starting: dict[tuple[str, ...], list[str]] = {}
    for i, t in texts.items():
        if len(t) >= WINDOW_LINES:
            starting.setdefault(tuple(t[:WINDOW_LINES]), []).append(i)
    out: dict[str, set[int]] = {}
    for i, t in texts.items():
        for k in range(1, len(t) - WINDOW_LINES + 1):
            for j in starting.get(tuple(t[k : k + WINDOW_LINES]), ()):
                n = len(t) - k
                if j != i and texts[j][:n] == t[k:]:  # i's last n lines are j's first n
                    out.setdefault(i, set()).update(range(k, len(t)))
                    out.setdefault(j, set()).update(range(n))
    return out


def _unkeyed(lines: Sequence[Line], indices: set[int]) -> list[Line]:
    """``lines`` with those at ``indices`` never furniture (no key)."""
    return [Line(ln.start, ln.end, None) if k in indices else ln for k, ln in enumerate(lines)]


def strip_furniture(chunks: Sequence[Chunk], found: Mapping[str, Sequence[tuple[int, int]]]) -> list[Chunk]:
    """``chunks`` without their ``found`` furniture lines (:meth:`Chunk.keep`: provenance stays exact)."""
    return [c.keep(_between(found[c.id], len(c.original_text))) if found.get(c.id) else c for c in chunks]


def with_reasons(out: StageOutput, found: Mapping[str, Sequence[tuple[int, int]]]) -> StageOutput:
    """``out`` (a stage's output from chunks :func:`strip_furniture` cut) with :data:`REASON` for the furniture
    lines of each chunk it kept (``range_reasons``, for the trace) and a note of how many lines went."""
    kept = {c.id for c in out.chunks}
    ranges = {i: [*r] for i, r in out.range_reasons.items()}
    for i, spans in found.items():
        if i in kept:
            ranges.setdefault(i, []).extend((s, e, REASON) for s, e in spans)
    lines = sum(len(spans) for spans in found.values())
    return replace(out, range_reasons=ranges, notes={**out.notes, "furniture_lines": lines})


def _between(spans: Sequence[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """The ranges of ``[0, length)`` around ``spans`` (sorted, disjoint)."""
    out: list[tuple[int, int]] = []
    pos = 0
    for s, e in spans:
        out.append((pos, s))
        pos = e
    return out + [(pos, length)]

"""Page furniture: the running headers, page-number footers and menus a PDF or web extraction repeats on every page.

They end no sentence, so the splitter glued them to the sentence next to them (a sentence across a
page break carried the footer and the next page's header: 40 tokens grew to 53 and lost its place),
and a header as a chunk's first line headed every kept paragraph block. :func:`find_furniture`
finds them from one call's chunks, narrowly, since a line many chunks share is usually content
(a product sheet's ``Price`` label, a chat's speaker, a recipe's ``2 eggs``, a passage quoted by
several near-copies). A line is furniture only when all of these hold:

1. **Exact repeat, beside a page number.** Its text (white space collapsed) stands in at least
   :data:`MIN_CHUNKS` and in half of the call's distinct chunks, counting only those whose furniture
   holds a page number. A line at most chunks' edge with no page number beside it is a per-item
   field as often as a menu (``In stock``, ``Serves 4``, a signature, a byline ``By Jane Doe``; cutting
   it kept the minority value, ``Out of stock``): never furniture, so a web page's menu and footer
   stay unless a page number runs with them. Only a page number
   may differ (:func:`page_number_key`): a number after a page word (``Page 7``, ``p. 7``,
   ``Seite 7 von 20``; ``S. 12`` only as the whole line, never ``Berliner Str. 12``), ``7 of 20`` (a
   word: ``4/5`` is a rating), a number alone framed only by dashes, brackets or spaces (``7``,
   ``- 7 -``, ``[7]``; never ``$30``, ``§ 3``, ``50%``), or set off by dashes at the line's end
   (``BULLETIN No. 14 - 3 -``). No other digit is masked: ``Galaxy S21`` is not ``Galaxy S23``.
2. **A furniture shape** (:func:`line_key`): at most :data:`MAX_WORDS` words, at least one letter or
   digit; not ending like a sentence (:func:`~optimizer.sentences.ends_sentence`, ``।`` and ``۔``
   included) or a clause (``:`` ``;`` ``,`` ``{`` ``}``); not indented, not a Markdown heading, list item,
   ``key: value`` record, fence or fenced code line; not starting in lower case or wrapping into
   the next line (hard-wrapped prose); not a table row beside a row of its shape.
3. **At a page edge.** It is in the chunk's top run (its first lines, all such lines) or its bottom
   run, and one of them holds a text line (a page number alone, :func:`page_only`, is a film's year,
   a cue number, a value under its label as often: never furniture by itself); or in a run of two
   or more in between that holds a text line seen at some chunk's edge (a running header, not a
   ``Calories`` label) and a page number or only lines of the chunk's own top and bottom runs (a
   footer and the next page's header). A run holds each line once: the sidebar's ``Configuration``
   then the section's heading ``Configuration`` is a menu, then content.
4. **Not a template.** A chunk in which such a repeated line stands alone inside the text (not in
   a run, not a copy of one) is a template (``Question``/``Answer``, ``Alice``/``Bob``,
   ``Price``/``Rating``, ``Ingredients``/``Method``): nothing is cut from it, and it does not count
   towards rule 1 (counted again over the chunks left).
5. **Never all of a chunk.**

What a page line says beside its number is said once (:func:`copies`): the first copy, in call order, of a
footer that carries text (``All prices exclude VAT | Page 7``, ``Annual Report 2023 | Page 9``) stays in
the text (never a paragraph's heading); its copies go, as do page numbers alone (``Page 7``, ``- 7 -``) and
lines without one (a running header, a menu).

The first line of a top run, the chunk's first, that is not only a page number, in a chunk without a
title (``HARLOW BULLETIN No. 14 - 3 -`` too), is the document's title line (``ACME Corporation Annual Report 2023``, ``Employee Handbook``,
``Acme X200 Cordless Drill User Manual``): the chunk's only identifier, so it stays (a stage may not
set a title, and it is the heading of the chunk's first paragraph, as before); its copies at a page
break inside the chunk go. In a titled chunk the title identifies it, and the line goes.
:func:`strip_furniture` cuts the lines out with :meth:`~optimizer.records.Chunk.keep` (provenance
exact; a sentence across a page break is two pieces).

One pass keys every line once; counting and runs are dictionary look-ups: linear in the lines.

>>> pages = [Chunk(id=f"p{n}", text=f"ACME Report\\nPart {n} says {w}.\\nPage {n}") for n, w in enumerate("abcd")]
>>> found = find_furniture(pages)
>>> [pages[0].text[s:e] for s, e in found["p0"]]
['Page 0']
>>> [c.text for c in strip_furniture(pages, found)][:2]
['ACME Report\\nPart 0 says a.', 'ACME Report\\nPart 1 says b.']
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from optimizer.records import Chunk
from optimizer.sentences import FENCE, code_blocks, ends_sentence, field_counts, is_record_line, line_view, strip_range
from optimizer.stage import StageOutput
from optimizer.text import words

MIN_CHUNKS = 3
"""The fewest chunks a furniture line stands in: a call of two chunks never has any."""

MAX_WORDS = 12
"""The most words a furniture line has (a running header, a footer, a menu item)."""

REASON = "furniture: a page header, footer or menu line repeated beside a page number at the edge of most of the call's chunks, left out"
"""The trace's reason for a furniture line left out."""

_SPACE = re.compile(r"\s+")
_LINE = re.compile(r"[^\n]+")
_ALNUM = re.compile(r"[^\W_]")
_NUMBER = re.compile(r"(?<![\w.,])\d+(?![\w.,]\d|\w)")
_PAGE_WORD = r"(?:page|pages|pg\.?|pp?\.|seite|p[áa]gina|p[áa]g\.|страница|стр\.|sayfa|strona|sida|side|blad)"
_OF = r"(?:of|von|de|sur|di|из)"
_FRAME = r"[\s\-–—\[\]()]*"  # dashes, brackets, spaces: never $ € £ % § / : (a price, a section, a rating, a time)
_PAGE_NUMBER = (
    re.compile(rf"(?i)(?<!\w){_PAGE_WORD}\s*\d+(?:\s+{_OF}\s+\d+)?(?!\w|[.,]\d)"),  # Page 7, p. 7, Seite 7 von 20
    re.compile(rf"(?i)^{_FRAME}(?:s|str)\.\s*\d+{_FRAME}$"),  # S. 12, str. 12: the whole line (never Berliner Str. 12)
    re.compile(rf"(?i)^{_FRAME}\d+\s+{_OF}\s+\d+{_FRAME}$"),  # 7 of 20 (a word: 4/5 is a rating)
    re.compile(rf"^{_FRAME}\d+{_FRAME}$"),  # 7, - 7 -, [7]
    re.compile(r"(?:^|\s)[-–—]\s*\d+\s*[-–—]$"),  # ... No. 14 - 3 -
)
_CLAUSE_END = (":", ";", ",", "{", "}", "：", "；", "，")
_LIST_ITEM = re.compile(r"^(?:[-*+\u2022]\s|\d+[.)]\s)")


def page_number_key(line: str) -> tuple[str, bool]:
    """``(key, is_page_line)``: ``line`` (stripped, white space collapsed) with its page numbers as ``#``.

    >>> page_number_key("Annual Report 2023 | Page 9"), page_number_key("- 8 -"), page_number_key("Galaxy S21")
    (('Annual Report 2023 | Page #', True), ('- # -', True), ('Galaxy S21', False))
    >>> page_number_key("HARLOW BULLETIN No. 14   -   3 -")[0], page_number_key("$29.99"), page_number_key("4/5")
    ('HARLOW BULLETIN No. 14 - # -', ('$29.99', False), ('4/5', False))
    """
    key, page, _ = _page_match(line)
    return key, page


def page_only(line: str) -> bool:
    """Whether ``line`` is a page number and nothing else (``7``, ``- 7 -``, ``Page 7``, ``7 of 20``): no text
    furniture of its own (a year, a cue number, a value under its label looks the same).

    >>> page_only("- 8 -"), page_only("Page 8"), page_only("Annual Report 2023 | Page 9"), page_only("$30")
    (True, True, False, False)
    """
    return _page_match(line)[2]


def _page_match(line: str) -> tuple[str, bool, bool]:
    """``(key, is_page_line, page_only)`` of ``line``: see :func:`page_number_key` and :func:`page_only`."""
    text = _SPACE.sub(" ", line.strip())
    for pattern in _PAGE_NUMBER:
        m = pattern.search(text)
        if m and not re.search(r"\d[.,]\d", m.group()):
            masked = _NUMBER.sub("#", m.group())
            return text[: m.start()] + masked + text[m.end() :], True, m.start() == 0 and m.end() == len(text)
    return text, False, False


def line_key(line: str, following: str = "") -> tuple[str, bool] | None:
    """``(key, is_page_line)`` of a line that has a furniture shape (rule 2 of the module doc), else ``None``.

    ``following`` is the next line when it comes right after (no blank line between): prose wrapped
    at a fixed width continues in lower case. A line that is only a page number (:func:`page_only`)
    skips the list item and lower-case checks (``- 7 -``, ``page 7``); a page number beside text
    is checked like any line (``See page 12.`` is a sentence).

    >>> line_key("ACME Corporation | Annual Report 2023"), line_key("Page 7"), line_key("See page 12.")
    (('ACME Corporation | Annual Report 2023', False), ('Page #', True), None)
    >>> [line_key(x) for x in ("## Usage", "How do I reset it?", "    except ValueError:", "It rose.", "बांध 1936 में बना।", "Weight: 340 g")]
    [None, None, None, None, None, None]
    >>> line_key("The warranty covers defects in materials", "for a period of 36 months from purchase,")
    """
    text = line.strip()
    key, page, alone = _page_match(text)
    if not _ALNUM.search(text) or sum(1 for w in text.split() if _ALNUM.search(w)) > MAX_WORDS or FENCE.match(line):
        return None
    if alone:
        return key, True
    if line[:1].isspace() or text.startswith("#") or _LIST_ITEM.match(text) or text[:1].islower():
        return None
    if ends_sentence(text) or text.endswith(_CLAUSE_END) or is_record_line(text):
        return None
    if following and _wraps_into(text, following.strip()):
        return None
    return key, page


def _wraps_into(first: str, following: str) -> bool:
    """Whether ``following`` continues ``first`` as hard-wrapped prose (as
    :func:`~optimizer.stages.paragraphs.wraps_into` reads it: lower case, a wrapped line's length)."""
    return following[:1].islower() and len(following) <= 100 and 2 * len(first) >= len(following)


@dataclass(frozen=True)
class Line:
    """A non-blank, wholly kept line of a chunk: its stripped ``(start, end)``, its key (``None``: never furniture),
    whether it holds a page number and whether it is only one (``bare``: no text furniture of its own)."""

    start: int
    end: int
    key: str | None
    page: bool = False
    bare: bool = False


def chunk_lines(chunk: Chunk) -> list[Line]:
    """The chunk's non-blank lines that are wholly kept, keyed by :func:`line_key` (a fenced code line: no key)."""
    text = line_view(chunk.original_text)
    code = code_blocks(text)
    kept = chunk.kept_pieces
    spans = [(m.start(), m.end()) for m in _LINE.finditer(text)]
    out: list[Line] = []
    ci = ki = 0
    for n, (ls, le) in enumerate(spans):
        s, e = strip_range(text, ls, le)
        if s >= e:
            continue
        while ki < len(kept) and kept[ki][1] < e:
            ki += 1
        if ki == len(kept) or kept[ki][0] > s:
            continue  # not wholly kept
        while ci < len(code) and code[ci][1] <= s:
            ci += 1
        in_code = ci < len(code) and code[ci][0] <= s
        following = text[spans[n + 1][0] : spans[n + 1][1]] if n + 1 < len(spans) and spans[n + 1][0] == le + 1 else ""
        found = None if in_code else line_key(text[ls:le], following)
        page = bool(found and found[1])
        out.append(Line(s, e, found[0] if found else None, page, page and page_only(text[ls:le])))
    return out


def _rows(text: str, lines: Sequence[Line]) -> list[Line]:
    """``lines`` less the keys of table rows beside a row of their shape (a CSV header over its data)."""
    counts = [field_counts(text[ln.start : ln.end]) for ln in lines]
    out: list[Line] = []
    for i, ln in enumerate(lines):
        row = any(c > 0 and any(0 <= j < len(lines) and counts[j][k] == c for j in (i - 1, i + 1)) for k, c in enumerate(counts[i]))
        out.append(replace(ln, key=None) if ln.key is not None and row else ln)
    return out


def _edge_runs(lines: Sequence[Line], keys: Mapping[str, int] | set[str]) -> tuple[list[int], list[int]]:
    """``(top, bottom)`` indices of the runs of ``lines`` over ``keys`` at the chunk's edges: none unless one of them
    holds a text furniture line (rule 3: a page number alone, like a film's year, is no page's frame); a run of
    plain numbers only (``2010``, not ``- 7 -`` or ``Page 7``) not even then (a site's name above a film's year)."""
    def run(order: Sequence[int]) -> list[int]:
        seen: set[str] = set()
        out: list[int] = []
        for i in order:
            k = lines[i].key
            if k is None or k not in keys or k in seen:
                break
            seen.add(k)
            out.append(i)
        return out

    top = run(range(len(lines)))
    bottom = [i for i in run(range(len(lines) - 1, -1, -1)) if i >= len(top)]
    top, bottom = (r if any(lines[i].key != "#" for i in r) else [] for r in (top, bottom))  # a plain number: only beside text
    if all(lines[i].bare for i in top + bottom):
        return [], []
    return top, bottom


def _middle_runs(lines: Sequence[Line], keys: Mapping[str, int] | set[str], top: Sequence[int], bottom: Sequence[int], edge_keys: set[str]) -> list[int]:
    """Indices of the page breaks between ``top`` and ``bottom``: runs of two or more over ``keys`` that hold a text
    line seen at some chunk's edge (``edge_keys``: a running header or footer, not a label beside its value) and a
    page number or only lines of this chunk's own edge runs (rule 3)."""
    own = {lines[i].key for i in [*top, *bottom]}
    middle: list[int] = []
    i, hi = len(top), len(lines) - len(bottom)
    while i < hi:
        j = i
        seen: set[str] = set()
        while j < hi and lines[j].key in keys and lines[j].key not in seen:
            seen.add(lines[j].key)  # type: ignore[arg-type]
            j += 1
        seg = range(i, j)
        framed = any(not lines[k].bare and lines[k].key in edge_keys for k in seg)
        if len(seg) >= 2 and framed and (any(lines[k].page for k in seg) or all(lines[k].key in own for k in seg)):
            middle.extend(seg)
        i = max(j, i + 1)
    return middle


def _text_keys(lines: Sequence[Line], cut: Sequence[int]) -> set[str]:
    """The keys of the text furniture lines (no bare page number) among ``cut``."""
    return {lines[i].key for i in cut if not lines[i].bare}  # type: ignore[misc]


def _templated(lines: Sequence[Line], keys: set[str], cut: set[int]) -> bool:
    """Whether a repeated line stands alone inside the text, no copy of a run's line (rule 4: labels, speakers)."""
    cut_keys = {lines[i].key for i in cut}
    return any(ln.key in keys and i not in cut and ln.key not in cut_keys for i, ln in enumerate(lines))


def _held(per_chunk: Sequence[set[str]], need: int) -> set[str]:
    """The keys in at least ``need`` of ``per_chunk``."""
    held: Counter[str] = Counter()
    for keys in per_chunk:
        held.update(keys)
    return {k for k, n in held.items() if n >= need}


def _lined(chunk: Chunk) -> bool:
    """Whether ``chunk``'s text has a line break (a line view's: a lone carriage return ends a line too)."""
    text = chunk.original_text
    return "\n" in text or "\r" in text


def find_furniture(chunks: Sequence[Chunk], check: Callable[[str], None] | None = None) -> dict[str, tuple[tuple[int, int], ...]]:
    """Each chunk id with furniture (see the module doc) to its lines' ``(start, end)`` ranges of its original text.

    ``check`` (a run's :meth:`~optimizer.stage.StageContext.check_deadline`) is called before each chunk is read.
    """
    distinct: dict[str, Chunk] = {}
    for c in chunks:
        distinct.setdefault(c.original_text, c)  # a chunk given twice counts once
    need = max(MIN_CHUNKS, math.ceil(len(distinct) / 2))
    if len(distinct) < need or not any(_lined(c) for c in distinct.values()):
        return {}  # furniture is never all of a chunk: without a chunk of two lines or more there is none
    lines: dict[str, list[Line]] = {}
    for k, c in enumerate(chunks):
        if check is not None:
            check(f"finding page furniture (chunk {k} of {len(chunks)})")
        if c.id not in lines:
            lines[c.id] = _rows(line_view(c.original_text), chunk_lines(c))
    firsts = list(distinct.values())
    candidates = _held([{ln.key for ln in lines[c.id] if ln.key} for c in firsts], need)
    if not candidates:
        return {}
    runs = {c.id: _edge_runs(lines[c.id], candidates) for c in firsts}
    edge_keys = {k for i, (top, bottom) in runs.items() for k in _text_keys(lines[i], [*top, *bottom])}
    edges: dict[str, set[int]] = {}
    for c in firsts:
        top, bottom = runs[c.id]
        cut = {*top, *bottom, *_middle_runs(lines[c.id], candidates, top, bottom, edge_keys)}
        if cut and not _templated(lines[c.id], candidates, cut):
            edges[c.id] = cut
    keys = _repeated({i: lines[i] for i in edges}, edges, need)
    if not keys:
        return {}
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for c in chunks:
        if distinct[c.original_text].id not in edges:
            continue
        found = _furniture(c, lines[c.id], keys, edge_keys & keys)
        if found:
            out[c.id] = found
    return out


def _repeated(lines: Mapping[str, Sequence[Line]], cuts: Mapping[str, set[int]], need: int) -> set[str]:
    """The keys of ``cuts`` repeated enough (rule 1): in ``need`` (half) of the call's chunks, counting only those whose
    cut holds a page number (a page's header and footer). With no page number beside it, a line at most chunks' edge
    is a field as often as a menu (``In stock``, ``Serves 4``, a signature, a byline): never furniture."""
    return _held([{lines[i][k].key for k in cut} for i, cut in cuts.items() if any(lines[i][k].page for k in cut)], need)  # type: ignore[misc]


def _furniture(chunk: Chunk, lines: Sequence[Line], keys: set[str], edge_keys: set[str]) -> tuple[tuple[int, int], ...]:
    """``chunk``'s furniture line ranges over the call's furniture ``keys``: none when they would be all of it."""
    top, bottom = _edge_runs(lines, keys)
    middle = _middle_runs(lines, keys, top, bottom, edge_keys)
    if top[:1] == [0] and not lines[0].bare and not chunk.title:
        top = top[1:]  # an untitled chunk's title line (a page number beside it too): its identifier
    cut = sorted({*top, *bottom, *middle})
    if len(cut) == len(lines):
        return ()
    return tuple((lines[i].start, lines[i].end) for i in cut)


def copies(chunks: Sequence[Chunk], found: Mapping[str, Sequence[tuple[int, int]]]) -> dict[str, tuple[tuple[int, int], ...]]:
    """``found`` (:func:`find_furniture`) less the first copy, in ``chunks``' order, of each page line that carries
    text: what it says stays once, and nothing else of the furniture does.

    >>> pages = [Chunk(id=f"p{n}", title="ACME", text=f"Price list\\nItem {n} costs {n} euros.\\nPrices exclude VAT | Page {n}") for n in range(4)]
    >>> found = find_furniture(pages)
    >>> [[c.original_text[s:e] for s, e in spans] for c in pages for spans in [copies(pages, found).get(c.id, ())]]
    [['Price list'], ['Price list', 'Prices exclude VAT | Page 1'], ['Price list', 'Prices exclude VAT | Page 2'], ['Price list', 'Prices exclude VAT | Page 3']]
    """
    seen: set[str] = set()
    out: dict[str, tuple[tuple[int, int], ...]] = {}
    for c in chunks:
        if c.id in out or not found.get(c.id):
            continue
        cut = []
        for s, e in found[c.id]:
            key, page, alone = _page_match(c.original_text[s:e])
            if page and not alone and key not in seen:
                seen.add(key)
                continue
            cut.append((s, e))
        out[c.id] = tuple(cut)
    return out


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

"""Frames of nested structure: the less-indented lines that say what a kept line belongs to.

A block split per line (:func:`~optimizer.sentences.split_sentences`: YAML, JSON, TOML, code) is
chosen line by line, so a kept ``memory: 1Gi`` could come without the ``limits:`` and ``worker:``
above it, which say whose limit it is, and a ``services:`` could be kept with nothing under it.
:func:`line_frames` finds, for each line of a genuinely nested block, its chain of ancestor lines
(each the nearest line above with less indentation, back to the block's least indentation; a TOML
or INI ``[section]`` header for the lines under it; a table's header row for its rows, its ``|---|`` rule left out): its
*frame*, kept and counted with it. An HTML table's rows are read per sentence, on lines of their own or
cut from one scraped line (:mod:`optimizer.inline_records`): a ``<tr>`` of ``<th>`` cells heads the
``<tr>`` rows of ``<td>`` cells under it. A line that says nothing alone (a bare key such as ``worker:``,
``"server": {``, a ``[section]`` header, only brackets such as ``{`` and ``},``, a table's header row,
its ``|---|`` rule, a ``<table>`` or ``<tbody>`` tag on its own) is *frame-only*: printed as a frame,
never chosen alone (a header row offered comes with the best row under it), but for a table's header row
when no row under it fits beside it: it names the columns, and ``Which columns ...?`` asks for nothing else.
A flat block of one record's ``key: value`` fields (a support ticket) frames each field line by the record's first
line when that line names it (``Ticket #48231``; :func:`_frame_fields`).

A block is nested structure when its lines have two indentations or more (or it has a section
header), at most a quarter of them read as prose (:func:`_prose_line`), no sentence runs on past its
line (hard-wrapped prose, its paragraphs' first lines indented), outside a code fence at least half its
lines bear a mark of structure (:data:`_MARKED`: not verse, not an address), and it is no diff. Fenced
code is one block across its blank lines; other blocks end at a blank line.

>>> t = "worker:\\n  resources:\\n    limits:\\n      memory: 1Gi\\n  replicas: 3"
>>> spans = [(0, 7), (10, 20), (25, 32), (39, 50), (53, 64)]
>>> f = line_frames(t, spans)
>>> [t[slice(*spans[k])] for k in f.frames[3]], f.frame_only
(['worker:', 'resources:', 'limits:'], [True, True, True, False, False])
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from optimizer.sentences import FENCE, code_blocks, is_record_line, line_view

_BLANK_BETWEEN = re.compile(r"\n[ \t\r\f\v]*\n")
_KEY_ONLY = re.compile(r"(?:[-*+]\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s:=\[\]{}()\"']+)\s*(?::|=|:?\s*[\[{(]|=\s*[\[{(])")
_SECTION = re.compile(r"\[\[?[^\[\]\s][^\[\]]*\]\]?")
_HUNK = re.compile(r"^@@ ", re.M)
_TABLE_RULE = re.compile(r"\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?")
_CELL_SEPARATORS = (",", "\t", ";")
_NUMBER = re.compile(r"[-+$€£]?\d[\d.,:%]*")
_PROSE_END = re.compile(r"[.!?][\"'”’)\]]*$")
_TABLE_TAG = re.compile(r"</?(?:table|thead|tbody|tfoot)\b[^>]*>", re.I)
_ROW_START = re.compile(r"<tr\b[^>]*>", re.I)
_ROW_END = re.compile(r"</tr\s*>", re.I)
_HTML_CELL = re.compile(r"<t([hd])\b", re.I)
_ROW_OPEN = re.compile(r"<tr[\s>]", re.I)
_TABLE_OPEN = re.compile(r"\s*<table\b", re.I)
_TABLE_CLOSE = re.compile(r"</table\s*>", re.I)
_MARKED = re.compile(
    r"[:=\[\]{}()<>;|]|^\s*(?:[-*+•]\s|\d+[.)]\s|#|//)"
    r"|^\s*(?:def|class|if|elif|else|for|while|return|import|from|fn|let|const|var|func|function|try|except|catch|finally|end|fi|done|do|then)\b"
)
"""A mark of structure on a line: a key, a bracket, a bullet or number, a comment, a keyword (an unfenced block needs it on half its lines)."""
PROSE_WORDS = 6
"""A line of this many words or more that ends like a sentence reads as prose."""


@dataclass(frozen=True)
class LineFrames:
    """Per sentence: ``frames`` (indices of its ancestor lines, outermost first), ``frame_only`` and ``header_row``
    (a frame-only table header row, Markdown, CSV or HTML ``<th>``: kept alone when no row under it fits beside it;
    empty: none)."""

    frames: list[tuple[int, ...]]
    frame_only: list[bool]
    header_row: list[bool] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(self.frames) or any(self.frame_only)

    def stands_alone(self, i: int) -> bool:
        """Whether frame-only sentence ``i`` may be kept alone when the best line it frames cannot come with it."""
        return bool(self.header_row) and self.header_row[i]


def frame_only_line(line: str) -> bool:
    """Whether a line of nested structure says nothing alone: a bare key or opener, a section header, no letter or digit
    (a bracket, a rule line).

    >>> [frame_only_line(x) for x in ("worker:", '"server": {', "[tool.ruff]", "},", "-----", "else:", "memory: 1Gi", "def f(x):", "pass")]
    [True, True, True, True, True, True, False, False, False]
    """
    line = line.strip()
    return bool(_KEY_ONLY.fullmatch(line) or not any(ch.isalnum() for ch in line) or _SECTION.fullmatch(line))


def _prose_line(line: str) -> bool:
    """A line of :data:`PROSE_WORDS` words or more that ends like a sentence (a quoted or wrapped passage, a comment)."""
    return len(line.split()) >= PROSE_WORDS and bool(_PROSE_END.search(line.rstrip()))


def _first_line(text: str, s: int, e: int) -> tuple[int, int]:
    """``(start, end)`` of the line of ``text`` a sentence ``text[s:e]`` is read by: its first line, or the next
    one when that is a code fence joined to it (:func:`~optimizer.sentences._code_lines`)."""
    ls = text.rfind("\n", 0, s) + 1
    le = text.find("\n", s)
    le = len(text) if le < 0 else le
    if FENCE.match(text, ls, le) and le < e:
        ls = le + 1
        le = text.find("\n", ls)
        le = len(text) if le < 0 else le
    return ls, le


def _groups(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[list[int], bool]]:
    """Runs of consecutive ``spans`` with no blank line between them (inside one fenced block, blank lines too),
    each with whether it lies in a fenced block."""
    fences = code_blocks(text)
    starts = [fs for fs, _ in fences]

    def block_of(pos: int) -> int:
        k = bisect.bisect_right(starts, pos) - 1
        return k if k >= 0 and pos < fences[k][1] else -1

    groups: list[list[int]] = []
    for k, (s, _) in enumerate(spans):
        if groups:
            prev = spans[k - 1][1]
            same_fence = block_of(s) >= 0 and block_of(s) == block_of(prev - 1)
            if same_fence or (prev <= s and not _BLANK_BETWEEN.search(text, prev, s)):
                groups[-1].append(k)
                continue
        groups.append([k])
    return [(g, block_of(spans[g[0]][1] - 1) >= 0) for g in groups]


def line_frames(text: str, spans: Sequence[tuple[int, int]], viewed: bool = False) -> LineFrames:
    """:class:`LineFrames` of the sentences ``spans`` (in order, ranges of ``text``, one chunk's) (see the module docstring).
    ``viewed``: ``text`` is already its :func:`~optimizer.sentences.line_view` (the caller made it once for
    all the views of one chunk)."""
    frames: list[tuple[int, ...]] = [()] * len(spans)
    only = [False] * len(spans)
    header = [False] * len(spans)
    if len(spans) < 2:
        return LineFrames(frames, only, header)
    view = text if viewed else line_view(text)
    first, last = spans[0][0], spans[-1][1]
    if "\n" not in view[first:last]:  # one line: nothing nests (most prose chunks), but a scraped table's rows have a header
        if _ROW_OPEN.search(view, first, last):
            _frame_html_table(view, spans, list(range(len(spans))), frames, only, header)
        return LineFrames(frames, only, header)
    for group, fenced in _groups(view, spans):
        if len(group) > 1:
            _frame_group(view, spans, group, frames, only, header, fenced)
    return LineFrames(frames, only, header)


def _within_line(text: str, end: int, line_end: int) -> bool:
    """Whether a sentence ending at ``end`` ends on its line (ending at ``line_end``), or just past it
    with a closing code fence joined to it."""
    return end <= line_end or (text.count("\n", line_end, end) == 1 and bool(FENCE.match(text, line_end + 1, end)))


def _table_head(bodies: Sequence[str]) -> int:
    """How many first lines of a block head a table whose header row is printed with each of its rows: 2
    for a Markdown pipe table (the header row and its ``|---|`` rule), 1 for a CSV block whose first row names its
    columns (every row has as many separators, the first row no number and no cell of a later row, a later
    row a number), else 0.

    >>> _table_head(["| a | b |", "|---|---|", "| 1 | 2 |"]), _table_head(["name,age", "Ann,31", "Bo,4"]), _table_head(["a,b", "c,d"])
    (2, 1, 0)
    """
    if len(bodies) >= 3 and "|" in bodies[0] and _TABLE_RULE.fullmatch(bodies[1].strip()):
        return 2
    for sep in _CELL_SEPARATORS:
        counts = {b.count(sep) for b in bodies}
        if len(bodies) >= 3 and len(counts) == 1 and counts != {0}:
            cells = [[c.strip() for c in b.split(sep)] for b in bodies]
            values = {c for row in cells[1:] for c in row}
            if (not any(_NUMBER.fullmatch(c) for c in cells[0]) and any(_NUMBER.fullmatch(c) for c in values)
                    and not values.intersection(cells[0])):  # a first row whose cell recurs below is a row of data
                return 1
    return 0


def _frame_group(text: str, spans: Sequence[tuple[int, int]], group: list[int], frames: list[tuple[int, ...]], only: list[bool],
                 header: list[bool], fenced: bool = False) -> None:
    """Fill ``frames``, ``only`` and ``header`` (a table's header row) for the sentences ``group`` of one block, when it
    is nested structure."""
    if _ROW_OPEN.search(text, spans[group[0]][0], spans[group[-1]][1]) and _frame_html_table(text, spans, group, frames, only, header):
        return
    lines = [_first_line(text, *spans[k]) for k in group]
    bodies = [text[ls:le] for ls, le in lines]
    runs_on = [not _within_line(text, spans[k][1], le) for k, (_, le) in zip(group, lines)]
    if any(runs_on):  # prose (hard-wrapped, its paragraphs' first lines indented), or a record's field wrapped on
        if not fenced and all(is_record_line(b) for b, on in zip(bodies, runs_on) if on) and len({_indent(b) for b in bodies}) == 1:
            _frame_fields(text, group, lines, bodies, frames)
        return
    head = _table_head(bodies)
    if head:  # each row under the header row (a |---| rule is left out: no letter or digit, no frame)
        for pos, k in enumerate(group[head:], start=head):
            frames[k] = (group[0],) if lines[pos] != lines[0] else ()
        only[group[0]] = header[group[0]] = any(frames[k] for k in group[head:])  # the header row comes with a row
        if head == 2:
            only[group[1]] = True
        return
    indents = [_indent(b) for b in bodies]
    sections = [bool(_SECTION.fullmatch(b.strip())) for b in bodies]
    if not fenced and len(set(indents)) == 1 and _frame_fields(text, group, lines, bodies, frames):
        return
    if _HUNK.search(text, lines[0][0], lines[-1][1]) or 4 * sum(_prose_line(b) for b in bodies) > len(bodies):
        return
    if len(set(indents)) < 2 and not any(sections):
        return
    if not fenced and 2 * sum(bool(_MARKED.search(b)) for b in bodies) < len(bodies):
        return  # most lines without a key, bracket, bullet or keyword: verse, an address, a quotation
    least = min(indents)
    stack: list[int] = []  # positions in group of the open ancestors, indentation rising
    section: int | None = None
    for pos, k in enumerate(group):
        on_line_of_previous = pos > 0 and lines[pos] == lines[pos - 1]
        if on_line_of_previous:  # a second record on one line: the same frame as the line's first
            frames[k] = frames[group[pos - 1]]
            continue
        while stack and indents[stack[-1]] >= indents[pos]:
            stack.pop()
        chain = [group[p] for p in stack]
        if sections[pos] and indents[pos] == least:
            section, stack = pos, []
        elif section is not None:  # the stack was emptied at the section: all it holds is under it
            chain = [group[section], *chain]
        frames[k] = tuple(chain)
        only[k] = frame_only_line(bodies[pos])
        stack.append(pos)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _frame_fields(text: str, group: list[int], lines: Sequence[tuple[int, int]], bodies: Sequence[str],
                  frames: list[tuple[int, ...]]) -> bool:
    """Frame the field lines of one record by its first line, when the sentences ``group`` (on ``lines``, reading
    ``bodies``, all at one indentation) are one: its block's first line is among them (no heading took it), and heads three lines or more,
    two in three of them ``key: value`` fields (:func:`~optimizer.sentences.is_record_line`) with no key twice (no
    transcript, no run of records), under a line that names the record: no field itself (``Ticket #9001``), or one
    whose key holds a number (:data:`_NUMBERED`: ``Ticket #48213 | Status: Open``, ``Order 1234: shipped``; not
    ``level_0_section:``). Whether it framed them.

    A support ticket's ``Resolution: Customer added our DKIM record.`` kept alone says nothing of whose ticket it is
    nor which issue it resolves; its first line, printed with it when the budget holds both, says which ticket.

    >>> t = "Ticket #48177 | Status: Resolved\\nCustomer: Delta Co\\nIssue: Spam.\\nResolution: DKIM added."
    >>> spans = [(0, 32), (33, 51), (52, 64), (65, 87)]
    >>> line_frames(t, spans).frames
    [(), (0,), (0,), (0,)]
    """
    head = bodies[0].strip()
    above = text.rfind("\n", 0, max(lines[0][0] - 1, 0)) + 1
    if lines[0][0] > 0 and text[above : lines[0][0]].strip():
        return False  # the block's first line is no sentence here: a heading printed with the view, or left out
    distinct = [b.strip() for pos, b in enumerate(bodies) if pos == 0 or lines[pos] != lines[pos - 1]]
    fields = [b for b in distinct[1:] if is_record_line(b)]
    keys = [_field_key(b) for b in fields]
    if len(distinct) < 3 or 3 * (len(fields) + is_record_line(head)) < 2 * len(distinct) or len(set(keys)) < len(keys):
        return False
    if is_record_line(head) and not _NUMBERED.search(_field_key(head)):
        return False  # a definition list's or a listing's first entry (``Retention period: ...``, ``name: app``)
    if _sequence(_field_key(head) if is_record_line(head) else "", keys):
        return False  # ``Step 1:`` ... ``Step 5:``, ``Day 1:``, ``Q1:``: the first of a sequence names no record
    for pos, k in enumerate(group):
        if lines[pos] != lines[0]:
            frames[k] = (group[0],)
    return any(frames[k] for k in group)


_NUMBERED = re.compile(r"(?:^|[\s#])\d")
"""A number in a record's key, on its own or after ``#``: the record's id."""


_DIGITS = re.compile(r"\d+")


def _sequence(head: str, keys: Sequence[str]) -> bool:
    """Whether the field keys ``keys`` under the first line's key ``head`` (``""`` when it is no field) number a
    sequence: ``head`` without its number is the stem of another key without its number (``step 1``, ``step 2``...),
    or most keys hold a number (``day 2``, ``q3``).

    >>> _sequence("step 1", ["step 2", "step 3"]), _sequence("", ["q1", "q2", "notes"]), _sequence("ticket #48213", ["customer", "issue"])
    (True, True, False)
    """
    stems = {_DIGITS.sub("", k).strip(" #") for k in keys}
    if head and _DIGITS.search(head) and _DIGITS.sub("", head).strip(" #") in stems:
        return True
    return 2 * sum(_DIGITS.search(k) is not None for k in keys) > len(keys)


def _field_key(line: str) -> str:
    """The key of a ``key: value`` line, case folded."""
    return re.split(r"[:：]", line, maxsplit=1)[0].strip().casefold()


def _html_row(sentence: str) -> str | None:
    """What a sentence of an HTML table is: ``"head"`` (one ``<tr>`` of ``<th>`` cells), ``"row"`` (one ``<tr>``
    with a ``<td>`` cell), ``"tags"`` (only ``<table>``, ``<thead>``, ``<tbody>``, ``<tfoot>`` tags, opening or
    closing), each with those tags around it; else None.

    >>> [_html_row(x) for x in ("<table><tr><th>a</th></tr>", "<tr><th>x</th><td>1</td></tr></table>", "</tbody>", "<tr>", "A <tr> row.")]
    ['head', 'row', 'tags', None, None]
    """
    core = _TABLE_TAG.sub(" ", sentence).strip()
    if not core:
        return "tags"
    start = _ROW_START.match(core)
    if start is None or _ROW_OPEN.search(core, start.end()):  # not a row, or two rows
        return None
    end = _ROW_END.search(core, start.end())
    if end is not None and core[end.end() :].strip():  # text after the row: prose naming a tag
        return None
    cells = {c.lower() for c in _HTML_CELL.findall(core, start.end(), end.start() if end else len(core))}
    return "row" if "d" in cells else "head" if cells else None


def _frame_html_table(text: str, spans: Sequence[tuple[int, int]], group: list[int], frames: list[tuple[int, ...]],
                      only: list[bool], header: list[bool]) -> bool:
    """Frame the rows of the HTML tables among the sentences ``group`` with the header rows above them (a run of
    ``<th>`` rows, none past its table's end); whether a row got one. A run of ``<th>`` rows after rows of data (a
    section row, ``<tr><th colspan=4>Business plans</th></tr>``) heads the rows under it together with the table's
    first run, its column headers. Then each header row that heads a row (a ``header`` row), and each sentence of bare
    table tags, is frame-only; the other sentences are left as they were. Each sentence is one row (on its line, or cut from one
    line by :mod:`optimizer.inline_records`)."""
    heads: list[int] = []
    columns: list[int] | None = None  # the table's first run of header rows, once a row of data came
    tags: list[int] = []
    under_rows = False  # a row of data came after the current header rows
    for k in group:
        sentence = text[slice(*spans[k])]
        kind = _html_row(sentence)
        if kind is None or _TABLE_OPEN.match(sentence):
            heads, columns, under_rows = [], None, False  # no part of a table, a new table
        elif kind == "head" and under_rows:  # a section of the table: under its column headers
            heads, under_rows = list(columns or ()), False
        if kind == "head":
            heads.append(k)
        elif kind == "row":
            columns = list(heads) if columns is None else columns
            if heads:
                frames[k] = tuple(heads)
                for h in heads:
                    only[h] = header[h] = True
                under_rows = True
        elif kind == "tags":
            tags.append(k)
        if _TABLE_CLOSE.search(sentence):
            heads, columns, under_rows = [], None, False
    framed = any(frames[k] for k in group)
    if framed:
        for k in tags:
            only[k] = True
    return framed

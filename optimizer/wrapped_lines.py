"""Lines of a structured block that a hard wrap joins: quoted e-mail text and wrapped bullet items.

A block of ``> `` lines (a quoted e-mail) or of ``- `` items counts as structured, and is split per
line; wrapped at a fixed width, one sentence then became two (``> ... extend the deadline for the audit
report`` | ``> to April 30, provided ...``) and the kept half lost what it said. :func:`wrapped_groups`
groups the lines a wrap joins, which are split as prose on :func:`unquoted` (their quote marks blanked):

- quoted lines at one depth (``>``, ``>>``, ``> >``) where the break is one of hard-wrapped prose
  (the splitter's ``_wraps_at``: the next line goes on in lower case and its first word would not
  have fitted); once a quote holds such a wrap, a break before a capitalised word or a number counts
  too when the line does not end a sentence and its next word would not have fitted;
- a bullet item (``- ``, ``* ``, ``+ ``, ``•``) and the lines indented under it that go on in words (not
  a nested item, a quote, a ``key: value`` record (YAML), nor code indented four columns past the item)
  where its line wraps: the line before does not end a sentence, and the next goes on in lower case or
  its first word would not have fitted within the block's width (``- Fixed bugs in the parser`` over
  ``The tokenizer no longer crashes ...``, a changelog's facts a line, is no wrap).

Lines a wrap joins must read as prose (:func:`_reads_as_prose`), else each stays a line: records of one
shape (``> hostname web01 disk usage at ...`` a line, ``key: value`` lines, rows of one field count) do
not, nor do unpunctuated lines of fewer than five words.

A line of at most two words, or one ending like code (``:``, ``{``, ``(``, ``;``, ``=``, ``\\``), starts no
join, nor does a Python prompt's ``>>>``. Everything else stays one line a sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

_QUOTE = re.compile(r"(?:>[ \t]?)+")
_ITEM = re.compile(r"[-*+•][ \t]+(?=\S)")
_OPENS = re.compile(r"(?:[-*+•>|#]|\d+[.)])(?:\s|$)")
_CODE_END = tuple(":{[(;=\\")

Line = tuple[int, int]


class Shapes(NamedTuple):
    """The splitter's reading of a line (:mod:`optimizer.sentences`, which imports this module)."""

    wraps_at: Callable[[str, str, int], bool]
    """whether the break between two lines is one of hard-wrapped prose, at a width"""
    ends_sentence: Callable[[str], bool]
    is_record: Callable[[str], bool]
    """whether a line reads ``key: value``"""
    holds_end: Callable[[str], bool]
    """whether a line ends a sentence or holds a sentence end followed by more words"""
    fields: Callable[[str], tuple[int, ...]]
    """how many of each field separator a line holds (a CSV row's commas, a table's bars)"""


def _quote(text: str, line: Line) -> tuple[int, int]:
    """The quote depth of ``line`` (``>`` marks before its words; 0 when none or a ``>>>`` prompt) and where its words start."""
    m = _QUOTE.match(text, line[0], line[1])
    if m is None or m.group().rstrip() == ">>>":
        return 0, line[0]
    return m.group().count(">"), m.end()


_INDENTED_QUOTE = re.compile(r"[ \t]*((?:>[ \t]?)+)")


def quote_marks(text: str, line_start: int) -> tuple[int, int]:
    """The quote depth of the line of ``text`` starting at ``line_start`` (its ``>`` marks, after any indentation;
    0 when none or a ``>>>`` prompt) and where its marks end (``line_start`` when it has none).

    >>> quote_marks("> > Hi.", 0), quote_marks("  >Hi.", 0), quote_marks(">>> x = 1", 0), quote_marks("a > b", 0)
    ((2, 4), (1, 3), (0, 0), (0, 0))
    """
    m = _INDENTED_QUOTE.match(text, line_start)
    if m is None or m.group(1).rstrip() == ">>>":
        return 0, line_start
    return m.group(1).count(">"), m.end()


def _opens_join(words: str) -> bool:
    """Whether a line reading ``words`` can go on in the next one: three words or more, not ending like code."""
    return len(words.split()) >= 3 and not words.rstrip().endswith(_CODE_END)


def _quote_breaks(text: str, run: list[Line], shapes: Shapes) -> list[bool]:
    """Which breaks between the lines of ``run`` (quoted lines at one depth) are wraps of prose."""
    words = [text[_quote(text, ln)[1] : ln[1]] for ln in run]
    width = max(len(w) for w in words[:-1])
    wrapped = [_opens_join(a) and b[:1].isalpha() and shapes.wraps_at(a, b, width) for a, b in zip(words, words[1:])]
    if not any(wrapped):
        return wrapped
    return [w or (_opens_join(a) and b[:1].isalnum() and " " in b and not shapes.ends_sentence(a) and not shapes.is_record(b)
                  and len(a) + 1 + len(b.split(maxsplit=1)[0]) >= width)
            for w, a, b in zip(wrapped, words, words[1:])]


def _continues_item(text: str, group: list[Line], line: Line, width: int, shapes: Shapes) -> bool:
    """Whether ``line`` goes on, in words, the bullet item whose lines so far are ``group`` (the item's line
    first): it is indented under the item, and the group's last line wraps into it within ``width`` (a column)."""
    item = group[0]
    marker = _ITEM.match(text, item[0], item[1])
    if marker is None or shapes.is_record(text[marker.end() : item[1]]) or not _opens_join(text[marker.end() : item[1]]):
        return False
    indent, item_indent = line[0] - _line_start(text, line[0]), item[0] - _line_start(text, item[0])
    words = text[line[0] : line[1]]
    if not (0 < indent < item_indent + (marker.end() - item[0]) + 4 and words[:1].isalnum() and " " in words
            and _OPENS.match(words) is None and not shapes.is_record(words)):
        return False
    last = group[-1]
    if shapes.ends_sentence(text[last[0] : last[1]]):
        return False
    return words[:1].islower() or _column(text, last[1]) + 1 + len(words.split(maxsplit=1)[0]) >= width


def _column(text: str, pos: int) -> int:
    return pos - _line_start(text, pos)


_DIGITS, _LETTERS = re.compile(r"\d+"), re.compile(r"[^\W\d_]+")


def _first_word(words: str) -> str:
    """A line's first word, case folded; one holding a digit read as its shape (``web01``, ``db02``: ``a0``;
    ``2025-03-04``: ``0-0-0``), as a host name, an id or a date starts each line of a log or a listing."""
    word = words.split(maxsplit=1)[0].casefold() if words.strip() else ""
    return _LETTERS.sub("a", _DIGITS.sub("0", word)) if _DIGITS.search(word) else word


def _reads_as_prose(lines: list[str], shapes: Shapes) -> bool:
    """Whether the lines a wrap would join (their words, without quote or item marks) read as prose, not as
    records of one line each: not three or more of them (two thirds or more) starting with one word (or one
    shape of word: ``web01``, ``db02``), not all ``key: value`` records nor all rows with the same field
    separators, and a sentence ends in them or each line but the last holds five words or more.

    >>> from optimizer.sentences import _SHAPES
    >>> _reads_as_prose(["hostname web01 disk usage at ninety percent on var", "hostname web02 disk usage at ninety one",
    ...                  "hostname db01 replication lag over three hundred s"], _SHAPES)
    False
    >>> _reads_as_prose(["I think we should move the review meeting to the", "second week of June"], _SHAPES)
    True
    """
    firsts = [_first_word(ln) for ln in lines]
    most = max(firsts.count(w) for w in set(firsts))
    if most >= 3 and 3 * most >= 2 * len(lines):
        return False
    if all(shapes.is_record(ln) for ln in lines):
        return False
    counts = {shapes.fields(ln) for ln in lines}
    if len(counts) == 1 and any(next(iter(counts))):
        return False
    return any(shapes.holds_end(ln) for ln in lines) or all(len(ln.split()) >= 5 for ln in lines[:-1])


def _words(text: str, line: Line) -> str:
    """A line's words: without its quote marks or its item's marker."""
    start = _quote(text, line)[1]
    item = _ITEM.match(text, start, line[1])
    return text[item.end() if item else start : line[1]]


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def wrapped_groups(text: str, lines: list[Line], shapes: Shapes) -> list[list[Line]]:
    """``lines`` (ranges of ``text``'s non-blank lines of a block, stripped, in order) in groups, each a line
    alone or lines a wrap joins (see the module).

    >>> from optimizer.sentences import _SHAPES
    >>> t = "> We agreed to extend the deadline for the report\\n> to April 30.\\n> Raj"
    >>> [[t[s:e] for s, e in g] for g in wrapped_groups(t, [(0, 49), (50, 64), (65, 70)], _SHAPES)]
    [['> We agreed to extend the deadline for the report', '> to April 30.'], ['> Raj']]
    """
    depths = [_quote(text, ln)[0] for ln in lines]
    joined = [False] * len(lines)  # joined[k]: line k goes on line k - 1
    k = 0
    while k < len(lines):
        j = k
        while j + 1 < len(lines) and depths[j + 1] == depths[k]:
            j += 1
        if depths[k] and j > k:
            joined[k + 1 : j + 1] = _quote_breaks(text, lines[k : j + 1], shapes)
        k = j + 1
    width = max((_column(text, end) for _, end in lines[:-1]), default=0)  # a wrapped block's last line is what is left over
    groups: list[list[Line]] = []
    for k, line in enumerate(lines):
        if groups and (joined[k] or (not depths[k] and _continues_item(text, groups[-1], line, width, shapes))):
            groups[-1].append(line)
        else:
            groups.append([line])
    return [part for group in groups
            for part in ([group] if len(group) == 1 or _reads_as_prose([_words(text, ln) for ln in group], shapes)
                         else [[ln] for ln in group])]


def unquoted(text: str, group: list[Line]) -> tuple[str, dict[int, int]]:
    """``text`` from the group's first line to its last, its quote marks blanked (the same length, so an
    offset into it plus the first line's start is one into ``text``), and where each quoted line's words
    start (an offset of ``text``) mapped to its start: a sentence that starts at a line's words starts at
    its quote mark."""
    start, end = group[0][0], group[-1][1]
    parts, pos, starts = [], start, {}
    for line in group:
        depth, words = _quote(text, line)
        if depth:
            parts += [text[pos : line[0]], " " * (words - line[0])]
            pos, starts[words] = words, line[0]
    parts.append(text[pos:end])
    return "".join(parts), starts



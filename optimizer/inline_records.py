"""Records of structured text written on one line: scraped HTML and minified JSON.

A scraped table, list or definition list, or a JSON API response, often comes as one line with no
sentence end, so the sentence splitter would make it one "sentence" of hundreds of tokens, which the
sentence stages can only keep or leave whole. :func:`record_cuts` finds where its records end, as a
block of one record a line ends its records at line breaks:

- markup: after each closing tag of a block element (a row ``</tr>``, an item ``</li>``, a
  definition ``</dd>``, a paragraph ``</p>``, a ``</div>``, a heading, ...; a run of them is one
  boundary) followed by another tag or the end of the text (``</tr><tr>``), and after a ``<br>``.
  Not after a cell's ``</td>`` or ``</th>``, nor a term's ``</dt>``: a cell without its row, or a
  definition without its term, does not say what it is the value of. Only text with an element of
  those opened and closed before another tag is markup: a sentence that names a tag (``use </p> to
  close``, ``wrap it in <li> and close it with </li>, then``) goes on in words after it, and is prose.
- JSON (text that starts with ``{"``, ``{}``, ``[`` and a value): after the ``,`` between the
  elements of an array that holds objects or arrays (a list of records, each record kept whole)
  and between the members of every object or array around such a list. In a block of text of its
  own (``whole``) with no such list, after the ``,`` at the shallowest depth with one (the members
  of a flat object, as a spec sheet's ``key: value`` lines). Brackets and commas inside strings do
  not count; the JSON need not be complete (a chunk may end mid-record) but must not close before
  its end.

Either needs two cuts or more inside the text (three records), as a block of lines needs three lines.

>>> t = "<ul><li>Tea</li><li>Coffee</li><li>Milk</li></ul>"
>>> [t[s:e] for s, e in cut_ranges(t, record_cuts(t, 0, len(t)), 0, len(t))]
['<ul><li>Tea</li>', '<li>Coffee</li>', '<li>Milk</li></ul>']
>>> t = '[{"a":1,"b":2},{"a":3,"b":4},{"a":5,"b":6}]'
>>> [t[s:e] for s, e in cut_ranges(t, record_cuts(t, 0, len(t)), 0, len(t))]
['[{"a":1,"b":2},', '{"a":3,"b":4},', '{"a":5,"b":6}]']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BLOCK_TAGS = (
    "tr|li|dd|p|div|h[1-6]|table|thead|tbody|tfoot|caption|ul|ol|dl|section|article|header|footer|nav|aside|main"
    "|blockquote|pre|figure|figcaption|address|details|summary|form|fieldset|option"
)
"""Elements whose closing tag ends a record (a cell, ``td`` or ``th``, is left in its row, and a term, ``dt``,
with its definition)."""
_END_TAG = rf"</(?:{BLOCK_TAGS})\s*>|<br\s*/?>"
_ENDS = re.compile(rf"(?:{_END_TAG})(?:\s*(?:{_END_TAG}))*", re.I)  # starts at a tag: no retry from each space of a long run
_CLOSE_NAME = re.compile(r"</([a-z0-9]+)", re.I)
_OPEN = re.compile(rf"<({BLOCK_TAGS})[\s>/]", re.I)
_BR = re.compile(r"<br\b", re.I)
_TO_TAG = re.compile(r"(?:&#?\w+;|[^\w<&])*")
"""What may sit between a closing tag and the next tag in scraped markup: white space, entities (``&nbsp;``),
separators (`` | ``, ``•``); a word after the closing tag is prose going on."""
_JSON_START = re.compile(r"\{\s*[\"}]|\[\s*(?:[\[{\"\]\-0-9]|true\b|false\b|null\b)")


def record_cuts(text: str, start: int, end: int, whole: bool = True) -> list[int]:
    """Offsets inside ``text[start:end]`` where a record of one-line markup or JSON ends (see the module
    docstring), in order; empty when it is neither or has fewer than two. ``whole``: the range is a
    block of its own (not one line of a block of lines), so a flat JSON object is split per member."""
    if _JSON_START.match(text, start, end):
        cuts = _json_cuts(text, start, end, whole)
    elif "<" in text[start:end]:
        cuts = _markup_cuts(text, start, end)
    else:
        return []
    return cuts if len(cuts) >= 2 else []


def cut_ranges(text: str, cuts: list[int], start: int, end: int) -> list[tuple[int, int]]:
    """``text[start:end]`` cut at ``cuts``: contiguous ranges that cover it."""
    bounds = [start, *cuts, end]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if a < b]


def _markup_cuts(text: str, start: int, end: int) -> list[int]:
    """Ends of the runs of block closing tags followed by a tag (``</tr><tr>``), and of ``<br>``, before
    ``end``, when such a run closes an element opened before it; none otherwise (prose naming a tag,
    where text goes on after the closing tag: ``close it with </li>, then``)."""
    runs = [m for m in _ENDS.finditer(text, start, end) if _BR.search(m.group()) or _next_is_tag(text, m.end(), end)]
    if not runs:
        return []
    opened: dict[str, int] = {}
    for m in _OPEN.finditer(text, start, end):
        opened.setdefault(m.group(1).lower(), m.start())
    if not any(opened.get(name.lower(), end) < m.start() for m in runs if _next_is_tag(text, m.end(), end)
               for name in _CLOSE_NAME.findall(m.group())):
        return []
    last = _last_ink(text, start, end)
    return [m.end() for m in runs if m.end() < last]


def _next_is_tag(text: str, pos: int, end: int) -> bool:
    """Whether a tag opens after ``pos``, past only white space, entities and separators (:data:`_TO_TAG`), or
    nothing but those is left before ``end``."""
    k = _TO_TAG.match(text, pos, end).end()
    return k >= end or text[k] == "<"


def _last_ink(text: str, start: int, end: int) -> int:
    """The end of ``text[start:end]`` without its trailing white space: a cut before it leaves text after it."""
    k = end
    while k > start and text[k - 1].isspace():
        k -= 1
    return k


@dataclass
class _Container:
    """An open ``{`` or ``[`` while scanning JSON."""

    kind: str
    depth: int
    commas: list[int] = field(default_factory=list)
    """offsets just after its own separating commas"""
    holds_container: bool = False
    holds_list: bool = False
    """it is, or holds at some depth, a list of records"""


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{},]')


def _json_cuts(text: str, start: int, end: int, whole: bool) -> list[int]:
    """The record ends of the JSON ``text[start:end]`` (see the module docstring); none when its first
    container closes before ``end`` (``[1] Smith, J.`` is not JSON)."""
    stack: list[_Container] = []
    cuts: list[int] = []
    by_depth: dict[int, list[int]] = {}
    for m in _JSON_TOKEN.finditer(text, start, end):
        ch = m.group()[0]
        if ch == '"':
            continue
        if not stack and m.start() > start:
            return []  # a bracket after the first value closed: not one JSON value
        if ch in "[{":
            if stack:
                stack[-1].holds_container = True
            stack.append(_Container(ch, len(stack) + 1))
        elif ch in "]}":
            _close(stack, cuts)
        else:
            stack[-1].commas.append(m.end())
            by_depth.setdefault(stack[-1].depth, []).append(m.end())
    if not stack and text[m.end() : end].strip():
        return []  # text after the value
    while stack:  # a truncated value: its open containers end with the text
        _close(stack, cuts)
    last = _last_ink(text, start, end)
    cuts = [c for c in sorted(cuts) if c < last]
    if not cuts and whole and by_depth:
        cuts = [c for c in by_depth[min(by_depth)] if c < last]
    return cuts


def _close(stack: list[_Container], cuts: list[int]) -> None:
    """Pop the innermost container; its commas are cuts when it is or holds a list of records."""
    c = stack.pop()
    if c.kind == "[" and c.commas and c.holds_container:
        c.holds_list = True
    if c.holds_list:
        cuts.extend(c.commas)
        if stack:
            stack[-1].holds_list = True

r"""Numbered clauses: a line that opens with a number of several levels (``7.1``, ``7.2(a)``, ``3.2.1.``) opens a sentence.

A contract's clauses, a paper's sections and an RFC's headings are numbered ``7.1 ...``, ``7.2 ...``. blingfire never
ends a sentence before such a number (it reads ``1.2`` as a decimal, a line break or not), so a section's clauses
came out as one "sentence" of a hundred tokens or more, which the sentence stages can only keep or leave whole.

:func:`clauses_open` cuts before a clause's number at a line's start when

- the line before ends a sentence or a lead-in (``.``, ``:``, ``;``; not an abbreviation that the number completes,
  ``see Sec.`` / ``3.2``, :func:`optimizer.abbreviations.joins`): else the line break is one of a wrapped sentence
  (``... set out in clause`` / ``7.2 and ...``, ``... in version`` / ``1.2 of the SDK``), and
- the number has a neighbour that opens a line nearby (:func:`neighbours`): the clause before or after it
  (``7.1`` / ``7.2``, ``4.1(a)`` / ``4.1(b)``), its first sub-clause (``3.2`` / ``3.2.1``) or, for a first
  sub-clause, its parent (``7.`` / ``7.1``). A decimal, a time, a date or an address that opens a line after a full
  stop has none (``Revenue rose.`` / ``3.2 percent ...``) and stays where it was.

A clause's lettered items (``(a) ...;`` / ``(b) ...; or``) stay with the clause that leads into them.

>>> t = "1.1 Alpha beta gamma delta.\n1.2 Upon termination, pay."
>>> [t[s:e] for s, e in clauses_open(t, [(0, len(t))], lambda line: line.endswith((".", ":", ";")))]
['1.1 Alpha beta gamma delta.', '1.2 Upon termination, pay.']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from optimizer.abbreviations import joins

LEVELS = r"\d{1,3}(?:\.\d{1,3})+"
"""A number of several levels: ``7.1``, ``3.2.1``."""
_CLAUSE = re.compile(rf"\n[ \t]*({LEVELS})\.?(?:\(([a-z]|\d{{1,2}})\))?[ \t]+(?=\S)")
"""A line break, then a clause's number opening the line (``7.1 ``, ``7.1. ``, ``4.1(a) ``) and its text."""
_NUMBERED = re.compile(r"^[ \t]*(\d{1,3}(?:\.\d{1,3})*)(\.?)(?:\(([a-z]|\d{1,2})\))?[ \t]+(?=\S)", re.M)
"""A line opening with a number: a clause's (several levels) or a section's or list item's (``7. ``)."""
AROUND = 2000
"""How far around a block (in characters, to whole lines) the numbers that open lines are looked for."""

Levels = tuple[int, ...]


def levels(number: str, item: str | None = None) -> Levels:
    """``number``'s levels, with ``item`` (a letter or a number in brackets after it) as one more.

    >>> levels("3.2.1"), levels("4.1", "b"), levels("4.1", "2")
    ((3, 2, 1), (4, 1, 2), (4, 1, 2))
    """
    out = tuple(int(n) for n in number.split("."))
    if item:
        out += (int(item) if item.isdigit() else ord(item) - ord("a") + 1,)
    return out


def numbered_lines(text: str, start: int, end: int) -> set[Levels]:
    r"""The levels of the numbers that open lines of ``text[start:end]`` and the text around it (:data:`AROUND`):
    clauses' numbers, and one-level numbers with their full stop (a section's heading, ``7. TERMINATION``).

    >>> sorted(numbered_lines("7. TERMINATION\n7.1 Notice.\n7.2(a) Breach;\n2 mg daily", 0, 10))
    [(7,), (7, 1), (7, 2, 1)]
    """
    lo = text.rfind("\n", 0, max(start - AROUND, 0)) + 1
    hi = text.find("\n", min(end + AROUND, len(text)))
    out: set[Levels] = set()
    for m in _NUMBERED.finditer(text, lo, len(text) if hi < 0 else hi):
        number, stop, item = m.groups()
        if "." in number or stop:
            out.add(levels(number, item))
    return out


def neighbours(number: Levels, numbers: set[Levels]) -> bool:
    """Whether ``numbers`` hold a neighbour of ``number``: the one before or after it at its level, its first
    sub-clause, or its parent when it is a first sub-clause.

    >>> neighbours((7, 2), {(7, 3)}), neighbours((3, 2), {(3, 2, 1)}), neighbours((7, 1), {(7,)}), neighbours((3, 5), {(3, 7)})
    (True, True, True, False)
    """
    *parent, last = number
    return (
        (*parent, last - 1) in numbers
        or (*parent, last + 1) in numbers
        or (*number, 1) in numbers
        or (last == 1 and tuple(parent) in numbers)
    )


def clauses_open(text: str, ranges: Sequence[tuple[int, int]], ends_lead: Callable[[str], bool]) -> list[tuple[int, int]]:
    """``ranges`` (sentences of ``text``, in order) cut before each clause's number that opens a line inside one,
    when the line before ends a sentence or a lead-in (``ends_lead`` of the line, stripped) and the number has a
    neighbour (:func:`neighbours`) among the numbers opening lines in and around the ranges (:func:`numbered_lines`)."""
    out: list[tuple[int, int]] = []
    numbers: set[Levels] | None = None  # found when first needed
    for s, e in ranges:
        for m in _CLAUSE.finditer(text, s, e):
            newline = m.start()
            line = max(s, text.rfind("\n", 0, newline) + 1)
            prev = text[line:newline].rstrip()
            if not prev or not ends_lead(prev) or joins(text, (line, line + len(prev)), (m.start(1), e)):
                continue
            if numbers is None:
                numbers = numbered_lines(text, ranges[0][0], ranges[-1][1])
            if neighbours(levels(m.group(1), m.group(2)), numbers):
                out.append((s, line + len(prev)))
                s = m.start(1)
        out.append((s, e))
    return out

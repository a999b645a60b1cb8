"""Markdown ``#`` headings that end a paragraph with no blank line before them, as CommonMark reads them.

An ATX heading interrupts a paragraph: a changelog written tight (``## v3.1.4`` / ``### Fixed`` /
``- Memory leak ...``, no blank lines) has the same sections as one with blank lines between them.
:func:`~optimizer.sentences.paragraph_spans` cuts a blank-line block before each such line
(:func:`heading_cuts`), so the heading frames and outlines of :mod:`optimizer.stages.paragraphs` apply.

A ``#`` line heads nothing when it is code's or configuration's: a comment inside a fenced code block (its
own block, never cut), an indented one (a heading here starts at the line's start), or one in a block that
reads as unfenced code (:data:`_CODE_LINE`: an assignment or ``key = value``, a call, a shell command, a
brace or semicolon at a line's end, a ``[section]``, an indented ``key: value``). Nor is ``#hashtag``,
``#123`` (no space after the marks), ``# of seats`` ("number of"), a quoted ``> # `` line, or a line that
reads as a sentence (a title ending ``.``, ``,`` or ``;``, or of more than :data:`TITLE_WORDS` words).

>>> t = "# Changelog\\n## v1.2 - 2025-05-12\\n### Fixed\\n- A leak."
>>> [t[k:t.find("\\n", k)] for k in heading_cuts(t, 0, len(t))]
['## v1.2 - 2025-05-12', '### Fixed']
>>> t = "import os\\n# Read the config\\ncfg = load()"
>>> heading_cuts(t, 0, len(t)), heading_cuts("Top 3:\\n#1 pick\\n#ragtrim", 0, 20)
([], [])
"""

from __future__ import annotations

import re

TITLE_WORDS = 12
"""A heading's title has at most this many words (a longer ``#`` line is a comment's sentence)."""

_HEADING = re.compile(r"^#{1,6}[ \t]+(\S[^\n]*)$", re.M)
_NOT_A_TITLE = re.compile(r"of\s|.*[.,;{(\[]\s*$", re.S)
_CODE_LINE = re.compile(
    r"^[ \t]*(?:(?:export|local|readonly|const|let|var)[ \t]+)?[A-Za-z_$][\w.$-]*(?:\[[^\]\n]*\])?[ \t]*[-+*/|&:]?=(?!=)"  # x = 1, key = value
    r"|^[ \t]*[\w.$]+\([^\n]*\)[ \t\r]*$"  # a call: load(cfg)
    r"|[{};\\][ \t\r]*$"  # a brace, a semicolon, a line continuation
    r"|^[ \t]*(?:\$ |>>> |#!|\.{0,2}/[\w.-]|\[[^\]\n]+\][ \t\r]*$)"  # a prompt, a shebang, a path run, an INI [section]
    r"|^[ \t]*(?:def|class|if|elif|else|for|while|try|except|with|finally|async)\b[^\n]*:[ \t\r]*$"  # a Python block's line
    r"|^[ \t]*(?:import|from)[ \t]+[\w.]+(?:[ \t]+import\b|[ \t]*;?[ \t]*$)"  # an import
    r"|^[ \t]*(?:return\b|(?:fi|done|esac|then|endif)[ \t\r]*$)"  # a block's end
    r"|^[ \t]*(?:sudo[ \t]+)?(?:pip3?|npm|npx|yarn|apt(?:-get)?|brew|git|cd|make|docker|kubectl|curl|wget|python3?|cargo|go)[ \t]+\S"
    r"|^[ \t]*[a-z][\w.-]*(?:[ \t]+[\w./=:@-]+)*?[ \t]+--?[A-Za-z][\w-]*(?:[ \t=]|$)"  # a command with options: tar -xzf x
    r"|^[ \t]+(?![-*+][ \t]|\d+[.)][ \t])[\w.-]+:(?:[ \t]|$)"  # an indented YAML key: value
    r"|^[ \t]*\"[^\"\n]+\"[ \t]*:",  # a JSON key
    re.M,
)
"""A line of unfenced code or configuration: a block holding one cuts at no ``#`` line."""


def heading_cuts(text: str, start: int, end: int) -> list[int]:
    """The starts of the lines of ``text[start:end]`` (a blank-line block outside any code fence, no white space
    at either end) that are Markdown ``#`` headings ending the paragraph before them; none when the block reads as code.
    """
    if text.find("\n#", start, end) < 0:
        return []
    cuts = [m.start() for m in _HEADING.finditer(text, start, end) if m.start() > start and _titled(m.group(1))]
    if not cuts:
        return []
    heads = {m.start() for m in _HEADING.finditer(text, start, end)}
    pos = start
    while pos < end:  # any other line of code: a comment, not a heading
        stop = text.find("\n", pos, end)
        stop = end if stop < 0 else stop
        if pos not in heads and _CODE_LINE.search(text, pos, stop):
            return []
        pos = stop + 1
    return cuts


def _titled(title: str) -> bool:
    """Whether ``title`` (a ``#`` line's text) reads as a heading's: a few words, not ending like a sentence or a clause."""
    title = title.rstrip()
    return not _NOT_A_TITLE.match(title) and len(title.split()) <= TITLE_WORDS

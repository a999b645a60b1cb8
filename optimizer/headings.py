"""Heading lines, and what a chunk says it is about: its title and the heading line it opens with.

A heading line (:func:`heading_line`) titles the paragraph under it (:mod:`optimizer.stages.paragraphs`).
A chunk's **subject** (:func:`subject`) is what the dedupers and the sentence stage read as "the same
page": pages built from one template (a product variant's spec sheet, a city's store page) repeat
their sibling's sentences word for word, but those sentences are about another model or city, so
they repeat nothing. Chunks of one subject can copy each other; chunks of two cannot.

>>> subject(Chunk(id="a", title="Paris store", text="Open daily.")) == subject(Chunk(id="b", title="Lyon store", text="Open daily."))
False
>>> heading_of("X300 drill\\nMotor: 18 V"), heading_of("It rained.\\nThen it stopped.")
('X300 drill', None)
"""

from __future__ import annotations

import re

from optimizer.records import Chunk
from optimizer.sentences import FENCE
from optimizer.text import words

HEADING_WORDS = 12
"""A heading line has at most this many words."""

LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]\s|\d+[.)]\s)")
MARKUP = ("<", "![", "[![", "|", ">")
_TEXT_START = re.compile(r"\s*")
_ANY_TEXT = re.compile(r"\S")


def heading_line(line: str) -> str | None:
    """The title a line reads as when it heads a paragraph, else ``None``.

    A heading has 1 to :data:`HEADING_WORDS` words, does not end like a sentence (``.``, ``!``,
    ``?``) or a clause (``,``, ``;``), is not a list item, and is not markup (a code fence, an HTML
    tag, an image or badge, a table row, a quote, or, unless it starts with ``#``, a line with a link);
    Markdown's ``#`` marks are left out of the title.

    >>> heading_line("## Early life"), heading_line("Paris"), heading_line("It rained.")
    ('Early life', 'Paris', None)
    >>> [heading_line(x) for x in ("- first item", " ", "<details open>", "[![CI](badge.svg)](ci)", "| a | b |")]
    [None, None, None, None, None]
    """
    title = line.strip().lstrip("#").strip()
    if not title or FENCE.match(line) or "\n" in title or title[-1] in ".!?,;" or LIST_ITEM.match(line):
        return None
    if title.startswith(MARKUP) or ("](" in title or "://" in title) and not line.lstrip().startswith("#"):
        return None  # markup, or a line of prose that links somewhere
    return title if len(title.split()) <= HEADING_WORDS else None


def heading_of(text: str) -> str | None:
    """The title of ``text``'s first line when it is a heading line (:func:`heading_line`) with more text under it, else None.

    Read without copying ``text`` (the paragraph views of a long chunk all ask about its one text).
    """
    start = _TEXT_START.match(text).end()  # type: ignore[union-attr]  # matches the empty string
    end = text.find("\n", start)
    if end < 0 or not _ANY_TEXT.search(text, end):
        return None
    return heading_line(text[start:end])


def subject(chunk: Chunk) -> tuple[str, str]:
    """What ``chunk`` says it is about: its title and the heading line its original text opens with
    (:func:`heading_of`), each read as its words (case and punctuation do not count), ``""`` for none."""
    heading = heading_of(chunk.original_text)
    return " ".join(words(chunk.title or "")), " ".join(words(heading or ""))

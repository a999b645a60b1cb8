"""Heading lines, and what a chunk says it is about: its title and the heading line it opens with.

A heading line (:func:`heading_line`) titles the paragraph under it (:mod:`optimizer.stages.paragraphs`).
A chunk's **subject** (:func:`subject`) is what the dedupers and the sentence stage read as "the same
page": pages built from one template (a product variant's spec sheet, a city's store page) repeat
their sibling's sentences word for word about another model or city. Whether such a page is a copy
depends on the question (:func:`named_words`): when the query names its subject and not its original's
(``X300``, ``Marseille``), it is what was asked about: it stays, and the other page is deduped against it
(:class:`Subjects`; both stay whole only when the query names each apart, a comparison); when it names
neither, the pages are copies like any others (a mirror under another file name, ``report (1).pdf``, is one).

>>> subject(Chunk(id="a", title="Paris store", text="Open daily.")) == subject(Chunk(id="b", title="Lyon store", text="Open daily."))
False
>>> heading_of("X300 drill\\nMotor: 18 V"), heading_of("It rained.\\nThen it stopped.")
('X300 drill', None)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from optimizer.records import Chunk
from optimizer.sentences import FENCE
from optimizer.text import content_words, words

HEADING_WORDS = 12
"""A heading line has at most this many words."""

LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]\s|\d+[.)]\s)")
MARKUP = ("<", "![", "[![", "|", ">")
SUBJECT_PREFIX = 4
"""A query word names a subject word it begins, or that begins it, when the shorter has at least this many
letters (``drills`` names ``drill``, ``stores`` names ``store``); a word with a digit or an underscore
(``X300``, ``max_size``) names only itself, as the sentence stage's stemming keeps it whole."""

_WHOLE = re.compile(r"[\d_]")
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


def subject_words(chunk: Chunk) -> frozenset[str]:
    """The words of ``chunk``'s :func:`subject` (its title and heading line)."""
    return frozenset(" ".join(subject(chunk)).split())


def named_words(query_words: Sequence[str], subject: frozenset[str]) -> frozenset[str]:
    """The ``query_words`` (content words, :func:`~optimizer.text.content_words`) that name a word of ``subject``:
    the same word, or for words of letters one that begins the other, the shorter of :data:`SUBJECT_PREFIX`
    letters or more (a plural, an ``-ing``). A word with a digit or an underscore names only itself.

    >>> sorted(named_words(["drills", "x300", "car"], frozenset({"drill", "x3000", "cargo"})))
    ['drills']
    """
    found = {q for q in query_words if q in subject}
    for q in query_words:
        if q in found or _WHOLE.search(q):
            continue
        if any(_begins(q, s) for s in subject if not _WHOLE.search(s)):
            found.add(q)
    return frozenset(found)


def _begins(a: str, b: str) -> bool:
    """Whether the shorter of ``a``, ``b`` begins the other and has at least :data:`SUBJECT_PREFIX` letters."""
    short, long = sorted((a, b), key=len)
    return len(short) >= SUBJECT_PREFIX and long.startswith(short)


def named_subjects(query: str, chunks: Sequence[Chunk]) -> list[frozenset[str]]:
    """For each chunk, the query's words that name its subject (:func:`named_words`; empty when none do).

    A copy is kept apart from its original when the query names its subject and not the original's
    (:func:`asked_apart`).
    """
    return list(_Named(query, chunks))


def asked_apart(copy: frozenset[str], original: frozenset[str]) -> frozenset[str]:
    """The query words naming the copy's subject and not its original's (``copy``, ``original``: their
    :func:`named_subjects`); any one makes the copy what the query asks about, no duplicate of the original."""
    return copy - original


class _Named(Sequence):  # type: ignore[type-arg]
    """:func:`named_subjects`, each chunk's read when first asked for (most runs ask for none or a few: a chunk's
    subject is read only when it has a near-copy, or a sentence another chunk says word for word)."""

    def __init__(self, query: str, chunks: Sequence[Chunk]) -> None:
        self.chunks = chunks
        self.query_words = list(dict.fromkeys(content_words(query)))
        self._memo: dict[int, frozenset[str]] = {}

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        found = self._memo.get(i)
        if found is None:
            found = self._memo[i] = named_words(self.query_words, subject_words(self.chunks[i])) if self.query_words else frozenset()
        return found

    def __len__(self) -> int:
        return len(self.chunks)


class Subjects:
    """Which of a query's words name each chunk's subject (:func:`named_subjects`, ``named[i]``), and how two copies
    of one text stand to the query.

    A word names chunk ``c`` apart from ``o`` (:meth:`apart`) when it names ``c``'s subject and neither ``o``'s subject
    nor a word of ``o``'s text (``third quarter`` in a title, said by both articles, tells no copy apart). Then ``c``
    is what was asked about: :meth:`outranks` (``o`` is the copy, deduped against ``c``) unless ``o`` is named apart
    from ``c`` as well (:meth:`both`: a comparison, each kept).
    """

    def __init__(self, query: str, chunks: Sequence[Chunk]) -> None:
        self.chunks = chunks
        self.named = _Named(query, chunks)
        self._said: dict[int, frozenset[str]] = {}

    def apart(self, c: int, o: int) -> frozenset[str]:
        """The query words naming ``c``'s subject apart from ``o`` (not ``o``'s subject, not in ``o``'s text)."""
        words_ = asked_apart(self.named[c], self.named[o])
        if not words_:
            return words_
        said = self._said.get(o)
        if said is None:
            said = self._said[o] = frozenset(words(self.chunks[o].original_text))
        return words_ - named_words(list(words_), said)

    def both(self, c: int, o: int) -> bool:
        """Whether the query names each of ``c`` and ``o`` apart from the other (a comparison)."""
        return c != o and bool(self.apart(c, o)) and bool(self.apart(o, c))

    def outranks(self, c: int, o: int) -> bool:
        """Whether ``c`` is what the query asks about and ``o`` is not: ``o`` is the copy of the two."""
        return c != o and bool(self.apart(c, o)) and not self.apart(o, c)

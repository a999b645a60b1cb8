"""When a paragraph's heading lines may be left out: a line that names what each of them names.

A run's best line that fits the budget alone but not under its paragraph's headings (a long ``## Configuring the
retry policy for outbound webhook deliveries`` over a one-sentence answer) is lost whole when the heading is
required, though the line says what the heading says. It may be printed without them
(:meth:`~optimizer.stages.paragraphs.ParagraphViews.context`'s ``unheaded``) only when the call holds other heading
lines to tell its own from (a lone heading's terms say nothing of which of them matter), and for each of its heading
lines:

- every **name** the line holds is a word of it (:func:`names`: a word with a digit or an underscore, one with
  a capital past its first letter, one capitalized past the heading's first word when the heading is not written
  in title case): ``Requests are limited to 100 per minute per API key.`` is not printed without
  ``## API v1 rate limits`` (it does not say ``v1``), nor ``Idle connections are closed after 60 seconds.`` without
  ``## ... for MySQL 8 deployments``;
- it shares a term (:func:`terms`: a content word with its plural or past ending cut, first
  :data:`STEM` letters; a word with a digit or an underscore whole) with the heading line that **no other heading
  line** of the call has (:class:`HeadingNames`): the term that tells the section from its siblings. Under
  ``## Retry policy for emails`` beside ``## Retry policy for webhooks``, ``Failed deliveries are retried up to 8
  times.`` keeps its heading (it does not say ``emails``); a heading whose every term another heading has keeps it.

And the line names every term of the **question** that a heading of the call names: a question about webhooks, where
a heading says ``Webhook timeout``, is not answered by ``Failed deliveries are retried up to 5 times.`` printed
without its ``## Email retry policy``.

A definition under its term, an answer under its question (``Two years.``), a plan's values under its name say
none of it: they keep their headings.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from optimizer.text import STOPWORDS, cased_words, content_words, words

STEM = 6
"""Terms are compared on their first this many letters, after a plural or past ending is cut (:func:`terms`)."""

_ENDINGS = (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("s", ""))
_KEPT_WHOLE = re.compile(r"[\d_]")
_INNER_CAPITAL = re.compile(r".\S*[A-Z]")
_DOTTED = re.compile(r"(?<![\w.])\d+(?:\.\d+)+(?![\w]|\.\d)")


def terms(text: str) -> set[str]:
    """The terms of ``text`` compared with a heading's: content words, a plural or past ending cut
    (``retried`` is ``retry``, ``deliveries`` ``delivery``), cut to :data:`STEM` letters; a word with a digit or an
    underscore whole (``APP_UPLOAD_MAX_MB``, ``v3``).

    >>> sorted(terms("Failed deliveries are retried")), sorted(terms("APP_UPLOAD_MAX_MB v3"))
    (['delive', 'fail', 'retry'], ['app_upload_max_mb', 'v3'])
    """
    return {_term(w) for w in content_words(text)}


def _term(word: str) -> str:
    if _KEPT_WHOLE.search(word):
        return word
    for ending, instead in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            return (word[: -len(ending)] + instead)[:STEM]
    return word[:STEM]


def names(line: str) -> set[str]:
    """The names a heading line holds (lower-cased), each of which a line printed without it must say: a word with a
    digit or an underscore (``v3``, ``15``, ``POOL_MAX``; a dotted number whole, ``4.2.0``), with a capital past its first letter (``PostgreSQL``,
    ``MySQL``, ``API``), or capitalized past the line's first word when some content word of it is not (``Redis``
    in ``Tuning the cache for Redis``; in a title-cased ``Tuning The Cache`` capitals name nothing).

    >>> sorted(names("## Configuring the connection pool for PostgreSQL 15 deployments"))
    ['15', 'postgresql']
    >>> sorted(names("**API v1 rate limits**")), sorted(names("Tuning the cache for Redis")), names("Tuning The Cache")
    (['api', 'v1'], ['redis'], set())
    >>> sorted(names("## Version 4.2.0"))
    ['0', '2', '4', '4.2.0']
    """
    cased = [w for w in cased_words(line) if w.lower() not in STOPWORDS]
    title_case = all(w[:1].isupper() or not w[:1].isalpha() for w in cased)
    found = set()
    for k, w in enumerate(cased):
        if _KEPT_WHOLE.search(w) or _INNER_CAPITAL.match(w) or (k and not title_case and w[:1].isupper()):
            found.add(w.lower())
    return found | set(_DOTTED.findall(line))


class HeadingNames:
    """The heading lines of one call (their texts, each once), read for :meth:`restated`: what tells each one
    from the others (its terms no other line has) and the names it holds.

    >>> heads = HeadingNames(["## Retry policy for webhooks", "## Retry policy for emails", "## API v1 rate limits"])
    >>> heads.restated("Failed webhook deliveries are retried up to 8 times.", ["## Retry policy for webhooks"])
    True
    >>> heads.restated("Failed webhook deliveries are retried up to 8 times.", ["## Retry policy for webhooks"], "API limits?")
    False
    >>> heads.restated("Failed deliveries are retried up to 8 times.", ["## Retry policy for emails"])
    False
    >>> heads.restated("Requests are limited to 100 per minute per API key.", ["## API v1 rate limits"])
    False
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = {line.strip(): (terms(line), names(line)) for line in lines if line.strip()}
        self.spread = Counter(t for line_terms, _ in self.lines.values() for t in line_terms)

    def restated(self, text: str, lines: Sequence[str], query: str = "") -> bool:
        """Whether ``text`` names what each of the heading ``lines`` names (see the module): the call has other
        heading lines, every name of each one is a word of ``text``, it shares a term with each one that no other
        heading line of the call has, and it names every term of ``query`` a heading line of the call does."""
        own_lines = {line.strip() for line in lines}
        if not own_lines or not set(self.lines) - own_lines:
            return False
        said, said_words = terms(text), set(words(text)) | set(_DOTTED.findall(text))
        for line in own_lines:
            line_terms, line_names = self.lines.get(line) or (terms(line), names(line))
            own = {t for t in line_terms if self.spread[t] <= 1}
            if not own & said or not line_names <= said_words:
                return False
        return terms(query) & set(self.spread) <= said

"""Word-level text helpers shared by lexical stages: tokenizing for BM25 and shingling.

>>> words("The U.S. Army's 2nd Division, in 1917!")
['the', 'u', 's', 'army', 's', '2nd', 'division', 'in', '1917']
>>> content_words("What is the capital of France?")
['capital', 'france']
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")

# A small English stop list (function words only); lexical scoring ignores these.
STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto over under about as
    is are was were be been being am do does did doing have has had having it its it's this that these those
    there here what which who whom whose when where why how i me my we our you your he him his she her they
    them their not no nor so than too very can could should would will shall may might must also just only
    s t d ll m o re ve y""".split()
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens; CJK characters become one token each."""
    found = _WORD.findall(text.lower())
    if not _CJK.search(text):
        return found
    out: list[str] = []
    for w in found:
        if _CJK.search(w):
            out.extend(ch for ch in w)
        else:
            out.append(w)
    return out


def content_words(text: str) -> list[str]:
    """:func:`words` without stop words."""
    return [w for w in words(text) if w not in STOPWORDS]


_SPACE = re.compile(r"\s+", re.UNICODE)
_NUMBER = re.compile(r"\d")
# A run of capitalized words (allowing inner "of", "the", "de", ... and digits), e.g. "Chief of Protocol".
_ENTITY = re.compile(
    r"(?<![\w])(?:[A-Z][\w'’.-]*|\d[\w.,]*)(?:\s+(?:(?:of|the|de|la|von|van|and|du|del|der)\s+){0,2}(?:[A-Z][\w'’.-]*|\d[\w.,]*))*",
    re.UNICODE,
)


def normalized(text: str) -> str:
    """Text folded for duplicate detection: NFKC, case-folded, punctuation dropped, spaces collapsed.

    >>> normalized("The  Eiffel Tower, completed in 1889!") == normalized("the eiffel tower completed in 1889")
    True
    """
    import unicodedata

    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in folded)
    return _SPACE.sub(" ", folded).strip()


def shingles(text: str, n: int = 3) -> set[str]:
    """Word ``n``-grams of :func:`words` (the whole text as one shingle when it is shorter).

    >>> sorted(shingles("a b c d", n=3))
    ['a b c', 'b c d']
    """
    if n < 1:
        raise ValueError(f"shingle size must be a positive integer, got {n!r}")
    toks = words(text)
    if not toks:
        return set()
    if len(toks) <= n:
        return {" ".join(toks)}
    return set(map(" ".join, zip(*(toks[i:] for i in range(n)))))  # the n-grams toks[i : i + n]


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity of two sets (0 when both are empty).

    >>> jaccard({"a", "b"}, {"b", "c"})
    0.3333333333333333
    """
    if not a and not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)  # = len(a | b), without building the union


def entities(text: str) -> list[str]:
    """Capitalized phrases and numbers in ``text`` (a cheap stand-in for named entities).

    A capitalized word at the start of a sentence counts too; callers weigh terms by
    rarity, so common words that happen to be capitalized matter little.

    >>> entities("She served as Chief of Protocol of the United States from 1976.")
    ['She', 'Chief of Protocol of the United States', '1976']
    """
    return [m.group(0).rstrip(".,") for m in _ENTITY.finditer(text)]


def has_number(text: str) -> bool:
    """True when ``text`` contains a digit.

    >>> has_number("born in 1932"), has_number("born long ago")
    (True, False)
    """
    return bool(_NUMBER.search(text))

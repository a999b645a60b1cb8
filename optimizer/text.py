"""Word-level text helpers shared by lexical stages: tokenizing for BM25 and shingling.

>>> words("The U.S. Army's 2nd Division, in 1917!")
['the', 'u', 's', 'army', 's', '2nd', 'division', 'in', '1917']
>>> content_words("What is the capital of France?")
['capital', 'france']
"""

from __future__ import annotations

import re
import unicodedata

import regex

_WORD = re.compile(r"\w+", re.UNICODE)  # ASCII text only: there Python's \w is the regex module's
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
# letters and marks of scripts written without spaces between words (Thai, Lao, Khmer, Myanmar)
_CJK_CHAR = re.compile(f"[{_CJK}]")
_UNSPACED = r"[\p{L}\p{M}]&&[\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}]"
# a CJK character; a run of unspaced-script letters; any other run of word characters (the regex
# module's \w, which unlike Python's takes in combining marks: "दिल्ली" is one word, not three)
_TOKEN = regex.compile(rf"[{_CJK}]|(?P<unspaced>[{_UNSPACED}]+)|[\w--[{_CJK}]--[{_UNSPACED}]]+", regex.V1)
_CLUSTER = regex.compile(r"\X")
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u2060\ufeff"))
"""Soft hyphen, zero-width space, word joiner and byte-order mark: dropped, so a word they sit in stays whole."""
_HAS_INVISIBLE = re.compile("[\u00ad\u200b\u2060\ufeff]")
_SAME_LINE_SPACE = r"[^\S\n\r\v\f\x85\u2028\u2029]*"
# A word hyphenated at a line end, as PDF extraction leaves it ("devel-\nopment", "devel- \r\nopment"):
# a letter, a hyphen, spaces, one line break, spaces, a lower-case letter. Group 1 is the word before
# the hyphen (a look-behind: it is not consumed, so in "ab-\nc-\nde" the second break finds "c"),
# group 2 the word after the break. Upper case after the break ("Asia-\nPacific") is a name, not joined.
_LINE_END_HYPHEN = regex.compile(
    rf"(?<=(\w*[\p{{L}}\p{{M}}]))[-\u2010]{_SAME_LINE_SPACE}(?:\r\n|[\n\r\v\f\x85\u2028\u2029]){_SAME_LINE_SPACE}(\p{{Ll}}\w*)"
)
# what Python's \w and the regex module's part ways on (marks, joiners, connectors other than "_", numbers
# such as Bengali fractions, letter-like symbols), or a CJK or unspaced letter: text without any is read with
# Python's re, the same words (but for letters newer than Python's Unicode tables)
_NEEDS_REGEX = regex.compile(rf"[{_CJK}]|[{_UNSPACED}]|\p{{M}}|[\p{{Pc}}--_]|[\u200c\u200d]|\p{{No}}"
                             r"|[\p{Alphabetic}--\p{L}--\p{Nl}]", regex.V1)

# A small English stop list (function words only); lexical scoring ignores these.
STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto over under about as
    is are was were be been being am do does did doing have has had having it its it's this that these those
    there here what which who whom whose when where why how i me my we our you your he him his she her they
    them their not no nor so than too very can could should would will shall may might must also just only
    s t d ll m o re ve y""".split()
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` read as Unicode NFKC, soft hyphens and zero-width
    characters dropped (so NFC and NFD copies, fullwidth ``２０２３`` and ``2023`` read the same).

    A CJK character is one token, other runs of word characters (marks included) stay whole. A run
    of Thai, Lao, Khmer or Myanmar letters, written without spaces between words, becomes its
    overlapping pairs of characters (:func:`_pairs`), as a search engine indexes such text without
    a dictionary: a word of the query shares its pairs with the same word in a sentence.

    >>> words("2023年收入"), words("दिल्ली"), words("ก้านกล้วย")
    (['2023', '年', '收', '入'], ['दिल्ली'], ['ก้า', 'าน', 'นก', 'กล้', 'ล้ว', 'วย'])

    A word hyphenated at a line end (:func:`dehyphenated`'s rule) is read as both its halves and
    the joined word: "devel-\\nopment" matches "development", and a compound the line happened to
    break at its own hyphen ("long-\\nterm", which no rule tells from "devel-\\nopment" without a
    dictionary) still matches "long" and "term", as before.

    >>> words("devel-\\nopment of long-\\nterm")
    ['devel', 'opment', 'development', 'of', 'long', 'term', 'longterm']
    """
    return _tokens(text, lower=True)


def word_count(text: str) -> int:
    """How many words ``text`` holds, whatever its script: runs of word characters, a CJK, kana or hangul
    character each, a run of Thai, Lao, Khmer or Myanmar letters one (a lower bound there). Punctuation and
    white space only separate: a CSV row's fields are words as a sentence's are.

    >>> word_count("ORD-5004,Customer4,Austin"), word_count("访客车辆最多可停放24小时。"), word_count("}")
    (4, 12, 0)
    """
    if text.isascii():
        return len(_WORD.findall(text))
    return sum(1 for _ in _TOKEN.finditer(text))


def mostly_cjk(text: str) -> bool:
    """Whether at least half of ``text``'s characters but white space are CJK, kana or hangul (a sentence
    written without spaces between its words).

    >>> mostly_cjk("访客车辆最多可停放24小时。"), mostly_cjk("resp = self._session.get(url)"), mostly_cjk("")
    (True, False, False)
    """
    if text.isascii():
        return False
    shown = len(text) - sum(ch.isspace() for ch in text)
    return shown > 0 and 2 * len(_CJK_CHAR.findall(text)) >= shown


def cased_words(text: str) -> list[str]:
    """:func:`words` with their case kept: the same tokens but for lower-casing (which in rare
    non-ASCII text can change a token, so compare each with its :func:`words` token before use).

    >>> cased_words("Call getUserById, not get_user.")
    ['Call', 'getUserById', 'not', 'get_user']
    """
    return _tokens(text, lower=False)


def _tokens(text: str, *, lower: bool) -> list[str]:
    """The tokens of :func:`words`, lower-cased when ``lower``."""
    if text.isascii():  # the common case, and already in normal form
        text = _with_joined_words(text)
        return _WORD.findall(text.lower() if lower else text)
    if _HAS_INVISIBLE.search(text):
        text = text.translate(_INVISIBLE)
    text = _with_joined_words(unicodedata.normalize("NFKC", text))
    if lower:
        text = text.lower()
    if not _NEEDS_REGEX.search(text):  # most accented text: Python's \w+ reads it as the regex module would, 4x faster
        return _WORD.findall(text)
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        if m.group("unspaced") is None:
            out.append(m.group())
        else:
            out.extend(_pairs(m.group()))
    return out


def _may_hyphenate(text: str) -> bool:
    """A quick test before :data:`_LINE_END_HYPHEN`: a hyphen and a line break are both in ``text``."""
    return ("-" in text or "\u2010" in text) and any(ch in text for ch in "\n\r\v\f\x85\u2028\u2029")


def _with_joined_words(text: str) -> str:
    """``text`` with each word hyphenated at a line end written as its halves, then the joined word (for :func:`words`)."""
    return _LINE_END_HYPHEN.sub(r" \2 \1\2", text) if _may_hyphenate(text) else text


def dehyphenated(text: str) -> str:
    """``text`` with each word hyphenated at a line end joined again: what the embedders read.

    The rule: a letter, a hyphen (``-`` or U+2010), optional spaces, one line break (``\\n``,
    ``\\r\\n``, ``\\r``, ...), optional spaces, then a lower-case letter. Upper case after the
    break ("Asia-\\nPacific") is left as it is, and so is a hyphen with no letter before it or a
    blank line after it. Only scoring reads this text: what is rendered, and the spans, are the
    chunk's own characters.

    >>> dehyphenated("We spent $812 million on re-\\nsearch and devel- \\r\\nopment in Asia-\\nPacific.")
    'We spent $812 million on research and development in Asia-\\nPacific.'
    """
    return _LINE_END_HYPHEN.sub(r"\2", text) if _may_hyphenate(text) else text


def _pairs(run: str) -> list[str]:
    """Overlapping pairs of the characters of ``run``, a character being a letter with its marks
    (a grapheme cluster), so no mark stands alone; a one-character run is its own token.

    >>> _pairs("สนามบิน")
    ['สน', 'นา', 'าม', 'มบิ', 'บิน']
    """
    chars = _CLUSTER.findall(run)
    return [a + b for a, b in zip(chars, chars[1:])] or chars


def content_words(text: str) -> list[str]:
    """:func:`words` without stop words."""
    return [w for w in words(text) if w not in STOPWORDS]


_SPACE = re.compile(r"\s+", re.UNICODE)
_NUMBER = re.compile(r"\d")
# A run of capitalized words (allowing inner "of", "the", "de", ... and digits), e.g. "Chief of Protocol".
_ENTITY_PATTERN = r"(?<![\w])(?:[A-Z][\w'’.-]*|\d[\w.,]*)(?:\s+(?:(?:of|the|de|la|von|van|and|du|del|der)\s+){0,2}(?:[A-Z][\w'’.-]*|\d[\w.,]*))*"
_ENTITY_ASCII = re.compile(_ENTITY_PATTERN)  # ASCII text (the common case: Python's re is twice as fast as regex here)
_ENTITY = regex.compile(_ENTITY_PATTERN)  # other text: the regex module's \w takes in combining marks (a decomposed "Zürich" is one word)


def normalized(text: str, *, joined: bool = False) -> str:
    """Text folded for duplicate detection: NFKC, case-folded, punctuation dropped, spaces collapsed.

    Combining marks stay (Devanagari's vowel signs tell "किला" from "कोला"); soft hyphens and
    zero-width characters go, as in :func:`words`. With ``joined``, punctuation that makes two
    words one name or number stays (:data:`_JOINED`: ``server.port``, ``max_upload_size``, ``3.9``,
    ``10:00``, ``C++``, ``C#``); a hyphen between words (``well-known``) still goes.

    >>> normalized("The  Eiffel Tower, completed in 1889!") == normalized("the eiffel tower completed in 1889")
    True
    >>> normalized("Set server.port in C++."), normalized("Set server.port in C++.", joined=True)
    ('set server port in c', 'set server.port in c++')
    """
    folded = unicodedata.normalize("NFKC", text.translate(_INVISIBLE) if _HAS_INVISIBLE.search(text) else text).casefold()
    if joined and "/" in folded:
        folded = _DIGIT_SLASH.sub("/", folded)  # 10 / 11 is 10/11
    kept = {k for m in _JOINED.finditer(folded) for k in range(*m.span())} if joined else ()
    folded = "".join(ch if ch.isalnum() or ch.isspace() or unicodedata.category(ch)[0] == "M" or k in kept else " "
                     for k, ch in enumerate(folded))
    return _SPACE.sub(" ", folded).strip()


_DIGIT_SLASH = re.compile(r"(?<=\d)\s*/\s*(?=\d)")
_JOINED = re.compile(r"(?<=[^\W_])[_./:@\\](?=[^\W_])|(?<=[^\W_])[+#]+(?![^\W_])")
"""Punctuation :func:`normalized` keeps with ``joined``: an ``_ . / : @ \\`` between two letters or digits
(``server.port``, ``max_upload_size``, ``Gb/s``, ``3.9``), a run of ``+`` or ``#`` ending a word (``C++``, ``C#``;
not ``Ctrl+C``)."""

_CASE_UNIT = re.compile(r"\d[ \u00a0]?(m(?:Wh|W|Ah|A|VA|V|Hz|J|Pa|\u03a9)|[kKMGTP]b(?:/s|ps)?)(?![^\W_])")
"""A unit after a figure whose case changes what it says: ``m`` (milli) where ``M`` is mega (``5 mW``, ``20 mA``), a
small ``b`` (bit) where ``B`` is byte (``10 Gb/s``, ``100 Mbps``, ``4 kb``)."""
_DIGIT_LETTER = re.compile(r"\d[ \u00a0]?[kKmMGTP]")


def case_marks(text: str) -> str:
    """The units of ``text`` whose case changes what they say, as written (:data:`_CASE_UNIT`: ``5 mW`` is not ``5 MW``,
    ``10 Gb/s`` not ``10 GB/s``); ``""`` when there is none, or when ``text`` is written all in capitals.

    Case as style does not count: ``9 AM`` / ``9 am``, ``100 MPH``, ``5 KG``, ``PhD`` / ``PHD``, ``iPhone``, ``McAllen``,
    a word in capitals. Duplicate keys fold case, and add these.

    >>> case_marks("Output 5 mW at 3 GHz on iOS, 10 Gb/s."), case_marks("THE FEE IS 5 MW."), case_marks("It is 5 MW, 9 AM")
    ('mW Gb/s', '', '')
    """
    if not _DIGIT_LETTER.search(text) and text.isascii():
        return ""  # the common case, without NFKC: no figure followed by a prefix letter
    nfkc = text if text.isascii() else unicodedata.normalize("NFKC", text)
    found = [m.group(1) for m in _CASE_UNIT.finditer(nfkc)]
    if not found or not any(ch.islower() for ch in nfkc):
        return ""
    return " ".join(dict.fromkeys(found))


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
    return [m.group(0).rstrip(".,") for m in entity_matches(text)]


def entity_matches(text: str) -> list[re.Match[str]]:
    """The matches :func:`entities` reads its phrases from (each phrase's place in ``text``; a trailing "." included).

    >>> [(m.start(), m.group(0)) for m in entity_matches("It was shot in Riga, Latvia.")]
    [(0, 'It'), (15, 'Riga'), (21, 'Latvia.')]
    """
    return list((_ENTITY_ASCII if text.isascii() else _ENTITY).finditer(text))


def has_number(text: str) -> bool:
    """True when ``text`` contains a digit.

    >>> has_number("born in 1932"), has_number("born long ago")
    (True, False)
    """
    return bool(_NUMBER.search(text))

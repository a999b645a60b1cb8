"""Where a prefix of a sentence may end: after a whole word, never inside a figure.

The selector gives the room its fill left to a prefix of a sentence too long for it
(:meth:`~optimizer.stages.sentence_select.SentenceSelector.prefix`). A cut at the last word that
fits can end inside a space-grouped number (``equal 1`` of ``1 250 000 EUR``) or between a number and
its unit or month (``amended on 12`` of ``12 March 2024``): a wrong figure, worse than none. So a
cut backs up before the whole figure, and, when a clause ends (``,`` ``;`` ``:``) among its last
few words, it may end there instead of mid-clause.
"""

from __future__ import annotations

import re

CLAUSE_WORDS = 6
"""How many of the last words a prefix may give up to end after its clause's ``,`` ``;`` or ``:``."""

_FIGURE = re.compile(r"[(\[]?[+\-−]?[$€£¥]?\d(?:[\d.,:/\-]*\d)?(?:%|[)\]])?")
"""A word that is a number, a number group (``250``), a date or time written in figures, or an amount."""
_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|December"
           "|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
_UNIT_WORD = (
    rf"(?:{_MONTHS})\.?|[A-Z]{{3}}|[%€$£¥‰]|[aApP]\.?[mM]\.?"
    r"|(?:percent|thousand|million|billion|trillion|bn|mn|k|m|km|cm|mm|kg|g|mg|t|l|ml|s|ms|h|min|hrs?"
    r"|[kKMGT]?B|[kMG]Hz|[kMG]?W|kWh|mph|kph|°[CF]?|euros?|dollars?|pounds?|yen|francs?"
    r"|(?:kilo|milli|centi)?(?:grams?|metres?|meters?|litres?|liters?)|tonnes?|tons?|miles?|feet|foot|inch(?:es)?"
    r"|seconds?|minutes?|hours?|days?|weeks?|months?|years?)"
)
_UNIT = re.compile(rf"(?:{_UNIT_WORD})(?:/(?:{_UNIT_WORD}))*")
"""A word that belongs to the number before it: a month, a currency code or sign, a unit, a multiplier."""
_CLAUSE_END = re.compile(r"[,;:](?=\s)")
_NEXT_WORD = re.compile(r"\s*(\S+)")


def word_end(text: str, k: int) -> int:
    """``k`` (a cut inside ``text``) moved back to the end of the last word before it, white space
    stripped; ``k`` itself when no white space precedes it (a CJK sentence, a record without spaces).
    A cut that would end a figure the next words go on (``1 250`` of ``1 250 000 EUR``, ``12`` of
    ``12 March``) backs up before the whole figure; 0 when nothing is left before it.

    >>> t = "the caps in Section 10 apply"
    >>> t[: word_end(t, 14)], t[: word_end(t, len(t))], word_end("東京は大きい", 3)
    ('the caps in', 'the caps in Section 10 apply', 3)
    >>> t = "caps equal 1 250 000 EUR per claim, as amended on 12 March 2024"
    >>> t[: word_end(t, 20)], t[: word_end(t, 25)], t[: word_end(t, 56)], t[: word_end(t, 59)]
    ('caps equal', 'caps equal 1 250 000 EUR', 'caps equal 1 250 000 EUR per claim, as amended on', 'caps equal 1 250 000 EUR per claim, as amended on')
    """
    if k >= len(text) or text[k].isspace():
        end = len(text[:k].rstrip())
    else:
        space = _last_space(text, k)
        if space <= 0:
            return k
        end = len(text[:space].rstrip())
    return _before_figure(text, end)


def clause_end(text: str, end: int, floor: int = 0) -> int | None:
    """The end, after its ``,`` ``;`` or ``:``, of the last clause that ends among the last
    :data:`CLAUSE_WORDS` words of ``text[:end]`` and after ``floor``; None when none does.

    >>> t = "caps equal 1 250 000 EUR per claim, 3 000 000 EUR in aggregate"
    >>> t[: clause_end(t, len(t) - 10)], clause_end(t, len(t)), clause_end(t, 24)
    ('caps equal 1 250 000 EUR per claim,', None, None)
    """
    start = end
    for _ in range(CLAUSE_WORDS):
        start = _last_space(text, start)
        if start <= 0:
            start = 0
            break
        start = len(text[:start].rstrip())
    marks = [m.end() for m in _CLAUSE_END.finditer(text, max(start, floor), end)]
    return marks[-1] if marks else None


def _last_space(text: str, k: int) -> int:
    """The offset of the last white space before ``k`` (any: a no-break space groups digits in much of
    Europe, ``1\u00a0250\u00a0000``), -1 when none."""
    k -= 1
    while k >= 0 and not text[k].isspace():
        k -= 1
    return k


def _word_start(text: str, end: int) -> int:
    """The start of the word that ends at ``end``."""
    return _last_space(text, end) + 1


def _before_figure(text: str, end: int) -> int:
    """``end`` (a word end) moved back, word by word, while its last word is a figure, or a month or
    unit after a figure, that the next word goes on with (another group, its unit, its month or year)."""
    nxt = _NEXT_WORD.match(text, end)
    after = nxt.group(1).rstrip(".,;:)]") if nxt else ""
    while end > 0 and after and (_FIGURE.fullmatch(after) or _UNIT.fullmatch(after)):
        start = _word_start(text, end)
        word = text[start:end]
        before = start
        while before > 0 and text[before - 1].isspace():
            before -= 1
        if not (_FIGURE.fullmatch(word) or (_UNIT.fullmatch(word) and _FIGURE.fullmatch(text[_word_start(text, before) : before]))):
            break
        end, after = before, word
    return end

"""Sentence ends that blingfire puts after an abbreviation, taken back.

blingfire knows most abbreviations, but cuts after some in some places: a case name's ``v.``
(``In Miranda v.`` | ``Arizona the Court ruled 5-4 ...``), a title or a place's ``St.``/``Mt.`` that opens a
sentence (``Lt.`` | ``Col.`` | ``Ray retired.``, ``St.`` | ``Mary's Hospital paid ...``), an exhibit
(``See Exh.`` | ``A for the map.``) and a page or article number (``p.`` | ``45.``). A kept ``In Miranda v.``
says nothing, and what the sentence said goes with its other half. :func:`joins` tells when two
such pieces are one sentence:

- ``v.`` or ``vs.`` after a capitalised word, before a capitalised word (a case name, a match);
- a piece that is nothing but titles (``Dr.``, ``Lt. Col.``; :data:`TITLES`), before a capitalised
  word: no sentence is a lone ``Dr.``. A title that ends a longer piece stays an end, as a street's
  ``St.`` or a drive's ``Dr.`` can (``We drove to Main St.`` | ``It was late.``);
- ``Exh.``/``exh.`` before a single capital letter or a number (``Exh. A``, ``exh. 3``), ``Ex.`` before a number
  only (``Ex. 12``): ``my Ex.`` | ``I regret it.`` and ``my Ex.`` | ``A new job helped.`` are two sentences;
- ``p.``, ``pp.``, ``No.``, ``Art.``, ``Sec.``, ``Fig.`` ending a piece of more words, before a number
  (``No.`` alone is an answer: ``Was it him?`` | ``No.``);
- a day's ordinal (``1.`` to ``31.``, as German, Dutch, Nordic, Polish or Czech dates write it) before a
  month's name, full or short (:data:`MONTHS`): ``endet am 15.`` | ``Mai 2024.`` is one date. A lowercase name
  always makes one (``le 1.`` | ``mars à Lyon``); a capitalised one, which may be a name or an English word
  (``Augustus``, ``Mayo``, ``Julio``, ``Mei``, ``April``), only with a year or a stop right after it or a date's word
  before the day (``am``, ``zum``, ``bis``, ``den``, ``op``...): ``He scored 12.`` | ``April was ...``, ``in AD 14.`` |
  ``Augustus was succeeded ...`` and ``The class had 25.`` | ``Mei Ling was ...`` are two sentences, ``am 1.`` |
  ``August nach Hause`` is one. A German month (:data:`GERMAN_MONTHS`), no English word, makes one too, in German
  text or quoted in English (``ist der 15.`` | ``Mai für alle``, ``reopens on 7.`` | ``Januar after the break``,
  ``Termin: 3.`` | ``Dezember, 14 Uhr``), unless it reads as a name or an English clause's subject: a capitalised
  word or an English verb right after it (``21.`` | ``Mai Tai drinks ...``, ``12.`` | ``Juni was ...``).

The words are matched as written (``no.`` and ``ex.`` are words of their own).

>>> t = "In Miranda v. Arizona the Court ruled 5-4."
>>> joins(t, (0, 13), (14, len(t)))
True
>>> t = "We drove to Main St. It was late."
>>> joins(t, (0, 20), (21, len(t)))
False
"""

from __future__ import annotations

import re

TITLES = (
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Rev", "Fr", "Sr", "Hon", "Pres", "Sen", "Rep", "Gov",
    "Lt", "Col", "Gen", "Maj", "Capt", "Cpt", "Sgt", "Cpl", "Pvt", "Adm", "Cmdr", "Brig",
    "St", "Mt", "Ft",
)
"""Titles, ranks and the saints, mounts and forts of place names: written before a capitalised name."""

MONTHS = (
    "Januar", "Jänner", "Februar", "Feber", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
    "November", "Dezember",  # German
    "janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre",
    "décembre",  # French
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "setiembre", "octubre",
    "noviembre", "diciembre",  # Spanish
    "gennaio", "febbraio", "aprile", "maggio", "giugno", "luglio", "settembre", "ottobre", "dicembre",  # Italian
    "januari", "februari", "maart", "mei", "augustus",  # Dutch
    "januar", "februar", "marts", "mars", "juni", "juli", "augusti", "desember", "december", "maj",  # Nordic
    "stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca", "lipca", "sierpnia", "września", "października",
    "listopada", "grudnia",  # Polish (genitive, as dates write them)
    "ledna", "února", "března", "dubna", "května", "června", "července", "srpna", "září", "října", "listopadu",
    "prosince",  # Czech (genitive)
    "Jan", "Feb", "Mär", "Mrz", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Okt", "Oct", "Nov", "Dez", "Dec",
    "janv", "févr", "avr", "juil", "déc", "mrt", "okt",
)
"""Month names, full and short, of languages that write a day as an ordinal with a full stop (``15. Mai``),
or whose dates a text in such a language quotes; matched whatever their case. Short forms that are words too
(French ``des``, Italian ``gen``, ``mag``) are left out."""

GERMAN_MONTHS = frozenset({
    "januar", "jänner", "februar", "feber", "märz", "mai", "juni", "juli", "oktober", "dezember", "mär", "mrz", "okt", "dez",
})
"""The German forms of :data:`MONTHS` that are no English words: German capitalises them, so capitalised they make a
date in German text (:data:`_GERMAN`) without a year, a stop or a date's word (``ist der 15. Mai für alle``)."""

_VERSUS = re.compile(r"(?<!\S)[A-Z][\w'’.&-]*\s+vs?\.$")
_ONLY_TITLES = re.compile(rf"(?:(?:{'|'.join(TITLES)})\.\s+)*(?:{'|'.join(TITLES)})\.")
_EXHIBIT = re.compile(r"\b(?:Exh|exh)\.$")
_EX = re.compile(r"\bEx\.$")  # also a former partner: a lone capital after it opens a sentence (``I``, ``A``)
_NUMBERED = re.compile(r"\S\s+(?:p|pp|No|Nos|Art|Sec|Fig)\.$")
_DAY = re.compile(r"(?<![\d.,])(?:0?[1-9]|[12]\d|3[01])\.$")
_MONTH = re.compile(rf"(?:{'|'.join(sorted(set(MONTHS), key=len, reverse=True))})(?![^\W\d_])", re.I)
_YEAR_OR_STOP = re.compile(r"\.?\s+\d{4}(?!\d)|[.!?]")  # after the month: ``15. April 2024``, ``1. Jan. 2024``, ``am 15. April.``
# a date's word before the day: ``am 1.``, ``bis zum 3.``, Norwegian ``den 17.``, Dutch ``op 5.``
_DATE_WORD = re.compile(r"(?<![^\W\d_])(?:am|zum|vom|bis|ab|seit|dem|den|op)\s+\d{1,2}\.$", re.I)
_GERMAN = re.compile(
    r"(?<![^\W\d_])(?:[Dd]er|[Dd]ie|[Dd]as|und|ist|sind|nicht|ein|eine|einen|mit|für|wird|wurde"
    r"|zum|zur|vom|im|auf|bei|nach|sich|bis|ab)"
    r"(?![^\W\d_])"
)
"""Words of German text, none an English word: around a German month, they tell a German date from a name."""
_NAME_OR_VERB = re.compile(
    r"[ \t]+(?:[A-ZÄÖÜ]|(?:was|is|are|were|has|have|had|will|would|can|could|shall|should|may|might|must|does|did|do)"
    r"(?![^\W\d_]))"
)
"""After a German month, what makes it a name or an English clause's subject rather than a date: a capitalised word
(``Mai Tai``) or an English verb (``Juni was``, ``Mai will``)."""
_NAME = re.compile(r"[A-Z]")
_LABEL = re.compile(r"(?:[A-Z]|\d[\w.-]*)(?![\w'’])")
_NUMBER = re.compile(r"\d")
_TAIL = 64
_LAST_WORDS = ("v", "vs", *TITLES, "Exh", "exh", "Ex", "p", "pp", "No", "Nos", "Art", "Sec", "Fig")
"""What every pattern above but a day's number has right before the piece's final full stop (:func:`joins`
reads the patterns only after one of these, or a digit, there)."""


def joins(text: str, piece: tuple[int, int], following: tuple[int, int]) -> bool:
    """Whether ``text[piece]``, cut by blingfire, goes on in ``text[following]`` (the next piece, with only
    white space between): it ends in an abbreviation that the next piece's first word completes."""
    (s, e), (f, _) = piece, following
    if text[e - 1] != "." or text[e:f].strip():
        return False
    before = text[max(s, e - 5) : e - 1]  # a cheap test first: no pattern can end here (most sentences)
    if not (before.endswith(_LAST_WORDS) or before[-1:].isdigit()):
        return False
    tail = max(s, e - _TAIL)  # the patterns end at the piece's end: look at its last words only
    if _VERSUS.search(text, tail, e) or _ONLY_TITLES.fullmatch(text, s, e):
        return _NAME.match(text, f) is not None
    if _EXHIBIT.search(text, tail, e):
        return _LABEL.match(text, f) is not None
    if _EX.search(text, tail, e):
        return _NUMBER.match(text, f) is not None
    if _DAY.search(text, tail, e) and _dated(text, (tail, e), _MONTH.match(text, f)):
        return True
    return _NUMBERED.search(text, tail, e) is not None and _NUMBER.match(text, f) is not None


def _dated(text: str, day: tuple[int, int], month: re.Match[str] | None) -> bool:
    """Whether ``month`` (a match of a month's name right after the piece ``text[day]`` that ends in a day's ordinal)
    goes with that day: always when it is lowercase; capitalised (a name or an English word), only with a year or a
    stop right after it or a date's word before the day. A capitalised German month (:data:`GERMAN_MONTHS`) goes with
    it with German words before the day or after the month (:data:`_GERMAN`), else unless a capitalised word or an
    English verb follows it (:data:`_NAME_OR_VERB`: ``21. Mai Tai``, ``12. Juni was``).

    >>> a, b, c = "He scored 12. April was good.", "Sie endet am 15. April.", "Er kam am 1. August nach Hause."
    >>> _dated(a, (0, 13), _MONTH.match(a, 14)), _dated(b, (0, 16), _MONTH.match(b, 17)), _dated(c, (0, 12), _MONTH.match(c, 13))
    (False, True, True)
    >>> a, b = "The class had 25. Mei Ling won.", "Stichtag ist der 15. Mai für alle."
    >>> _dated(a, (0, 17), _MONTH.match(a, 18)), _dated(b, (0, 20), _MONTH.match(b, 21))
    (False, True)
    >>> a, b = "It reopens on 7. Januar after the break.", "The final score was 21. Mai Tai drinks followed."
    >>> _dated(a, (0, 16), _MONTH.match(a, 17)), _dated(b, (0, 23), _MONTH.match(b, 24))
    (True, False)
    """
    if month is None:
        return False
    if not month.group()[0].isupper():
        return True
    if _YEAR_OR_STOP.match(text, month.end()) is not None or _DATE_WORD.search(text, *day) is not None:
        return True
    if month.group().casefold() not in GERMAN_MONTHS:
        return False
    if _GERMAN.search(text, *day) is not None or _GERMAN.search(text, month.end(), month.end() + _TAIL) is not None:
        return True
    return _NAME_OR_VERB.match(text, month.end()) is None


def join_abbreviations(text: str, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``pieces`` (ranges of ``text`` in order) with each one that :func:`joins` the next joined to it.

    >>> t = "The unit moved north. Lt. Col. Ray retired."
    >>> [t[s:e] for s, e in join_abbreviations(t, [(0, 21), (22, 25), (26, 30), (31, 43)])]
    ['The unit moved north.', 'Lt. Col. Ray retired.']
    """
    out: list[tuple[int, int]] = []
    for s, e in pieces:
        if out and joins(text, out[-1], (s, e)):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out

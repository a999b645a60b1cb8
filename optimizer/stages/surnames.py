"""A person named by the surname alone: "It was directed by Valdis." names the chunk titled "Oren Valdis".

Text names a person in full once and by the surname after ("Nolan married Emma Thomas"), and a
passage that links to another often does the same. The hop's name match
(:func:`~optimizer.stages.sentence_signals.chained_links`) reads a surname alone as a share of
the name (about half of its rarity), so a chain of passages linked by surnames weakens at each
step. Here a surname alone stands for the whole name, only where it can mean nothing else:

- the chunk has a title of two to four capitalized words, none a stop word (a person's name, not
  "The Pale Harbor"; a trailing qualifier such as "(actor)" is dropped first), and its first
  sentence holds every word of that title (the chunk is about that person: its lead names them);
- the chunk reads as about a person: its lead has a parenthesis after the surname that dates a
  life ("(born 1950)", "(1876–1916)", "(née Marsh)", "(d. 1518)"), or a later sentence opens with
  a personal pronoun ("He married...", "Her paintings..."). A place, club, court or bridge titled
  like a name ("New York", "Real Madrid", "Supreme Court") has neither;
- the surname (the title's last word, a generational suffix such as "Jr." or "III" skipped) is
  a word of no other chunk's name;
- the mention is a capitalized phrase of that one word (a possessive "'s" allowed), not the
  sentence's first phrase (a capital there says nothing about a name), and not right after "in",
  "at", "to", "from", "near", "of", "the" or a capitalized word and a comma: "set in London",
  "the King", "Mainz, Germany" name places and titles, "directed by London", "married London"
  or "In 1990, London" a person; so does a possessive after a preposition ("the trail of London's
  novel", not "the King's").

Names are compared word for word, unstemmed ("Balfenmo" is not "Balfenmar").

>>> from optimizer import Chunk
>>> chunks = [Chunk(id="a", title="Oren Valdis", text="Oren Valdis (born 1950) is a director."),
...           Chunk(id="b", title="The Pale Harbor", text="The Pale Harbor is a film."),
...           Chunk(id="c", title="New Harbor", text="New Harbor is a port. It was founded in 1890.")]
>>> found = surname_chunks(chunks, [c.title for c in chunks], [c.text for c in chunks])
>>> found
{'valdis': 0}
>>> lone_surnames("It was shot by Valdis's crew in Harbor.", found), lone_surnames("Valdis shot it.", found)
({'valdis'}, set())
>>> lone_surnames("It was shot in Valdis.", found)
set()
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from optimizer.records import Chunk
from optimizer.text import STOPWORDS, entity_matches, words

_QUALIFIER = re.compile(r"\s*\([^()]*\)\s*$")
_NAME_WORD = re.compile(r"[A-Z][\w'’.-]*")
_POSSESSIVE = re.compile(r"['’]s$")
_OPENING = " \t\r\n\"'“‘«([*_#>-"
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv"})  # generational suffixes: "Harry Connick Jr." is a Connick
# a parenthesis that dates a life: born / née / died, "b. 1820", "d. c. 1518", or a span of years "1876–1916"
_LIFE = re.compile(r"\b(?:born|née|né|died)\b|\b[bd]\.\s*(?:c\.\s*)?\d|\b\d{3,4}\b[^()]*?[–—-][^()]*?\b\d{3,4}\b", re.I)
_PAREN = re.compile(r"\(([^()]*)")
# a sentence after the first that opens with a personal pronoun (its subject is a person)
_PRONOUN_OPENING = re.compile(r"[.!?][\"'”’)]*\s+[\"'“‘(]*(?:He|She|His|Her)\b")
# a capitalized word right after these names a place or a title ("set in London", "the King"), and after a capitalized
# word and a comma a region or a suffix ("Mainz, Germany", "Sammy Davis, Jr."); after a clause's comma it is a name
# ("In 1990, Lumet directed ...")
_PLACE_BEFORE = re.compile(r"(?:\b(?:[Ii]n|[Aa]t|[Tt]o|[Ff]rom|[Nn]ear|[Oo]f|[Tt]he)\s+|\b[A-Z][\w'’.-]*,\s*)$")


def surname_chunks(chunks: Sequence[Chunk], names: Sequence[str], leads: Sequence[str]) -> dict[str, int]:
    """Each unambiguous surname (a lower-cased word) and the index of the chunk it names (see the module).

    ``names`` are the texts the chunks' names are read from (the title, else the first capitalized phrase:
    :func:`~optimizer.stages.sentence_signals.chunk_name`), ``leads`` each chunk's first sentence ("" for none).
    """
    count = Counter(w for name in names for w in set(words(_QUALIFIER.sub("", name))))
    out: dict[str, int] = {}
    for j, c in enumerate(chunks):
        surname = _surname(c.title or "")
        if not surname or count[surname] != 1 or not set(words(_QUALIFIER.sub("", c.title or ""))) <= set(words(leads[j])):
            continue
        if _about_a_person(c.text, leads[j], surname):
            out[surname] = j
    return out


def _surname(title: str) -> str | None:
    """The surname ``title`` gives if it reads as a person's name: two to four capitalized words, no stop word."""
    title_words = _QUALIFIER.sub("", title).split()
    if not 2 <= len(title_words) <= 4 or not all(_NAME_WORD.fullmatch(w) for w in title_words):
        return None
    found = words(" ".join(title_words))
    if len(found) != len(title_words) or any(w in STOPWORDS for w in found):
        return None
    while found and found[-1] in _SUFFIXES:
        found = found[:-1]
    return found[-1] if len(found) >= 2 else None


def _about_a_person(text: str, lead: str, surname: str) -> bool:
    """True when the chunk reads as about a person: its lead dates a life after ``surname``, or a later sentence opens with he / she."""
    for m in _PAREN.finditer(lead):
        if _LIFE.search(m.group(1)) and surname in words(lead[: m.start()]):
            return True
    return bool(_PRONOUN_OPENING.search(text))


def lone_surnames(text: str, surnames: dict[str, int]) -> set[str]:
    """The ``surnames`` that ``text`` mentions alone: a capitalized phrase of one word, not the text's first phrase (see the module)."""
    if not surnames:
        return set()
    found = entity_matches(text)
    if found and found[0].start() == len(text) - len(text.lstrip(_OPENING)):
        found = found[1:]
    out: set[str] = set()
    for m in found:
        ent = m.group(0).rstrip(".,")
        if " " in ent or not ent[:1].isupper() or _placed(text, m.start(), ent):
            continue
        w = words(_POSSESSIVE.sub("", ent))
        if len(w) == 1 and w[0] in surnames:
            out.add(w[0])
    return out


def _placed(text: str, start: int, ent: str) -> bool:
    """True when the phrase ``ent`` at ``start`` reads as a place or a title by what comes before it (see the module).

    A possessive is a person's still but after "the" ("the trail of Hui's film", "sold in Rovelli's home country";
    not "the University's").
    """
    found = _PLACE_BEFORE.search(text, 0, start)
    return bool(found) and not (_POSSESSIVE.search(ent) and found.group(0).strip().lower() != "the")

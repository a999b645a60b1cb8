"""A person named by the surname alone: "It was directed by Valdis." names the chunk titled "Oren Valdis".

Text names a person in full once and by the surname after ("Nolan married Emma Thomas"), and a
passage that links to another often does the same. The hop's name match
(:func:`~optimizer.stages.sentence_signals.chained_links`) reads a surname alone as a share of
the name (about half of its rarity), so a chain of passages linked by surnames weakens at each
step. Here a surname alone stands for the whole name, only where it can mean nothing else:

- the chunk has a title of two to four capitalized words, none a stop word (a person's name, not
  "The Pale Harbor"; a trailing qualifier such as "(actor)" is dropped first), and its first
  sentence holds every word of that title (the chunk is about that person: its lead names them);
- the surname (the title's last word) is a word of no other chunk's name;
- the mention is a capitalized phrase of that one word (a possessive "'s" allowed), not the
  sentence's first phrase (a capital there says nothing about a name).

Names are compared word for word, unstemmed ("Balfenmo" is not "Balfenmar").

>>> from optimizer import Chunk
>>> chunks = [Chunk(id="a", title="Oren Valdis", text="Oren Valdis is a director."),
...           Chunk(id="b", title="The Pale Harbor", text="The Pale Harbor is a film.")]
>>> found = surname_chunks(chunks, [c.title for c in chunks], [c.text for c in chunks])
>>> found
{'valdis': 0}
>>> lone_surnames("It was shot by Valdis's crew in Harbor.", found), lone_surnames("Valdis shot it.", found)
({'valdis'}, set())
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from optimizer.records import Chunk
from optimizer.text import STOPWORDS, entities, words

_QUALIFIER = re.compile(r"\s*\([^()]*\)\s*$")
_NAME_WORD = re.compile(r"[A-Z][\w'’.-]*")
_POSSESSIVE = re.compile(r"['’]s$")
_OPENING = " \t\r\n\"'“‘«([*_#>-"


def surname_chunks(chunks: Sequence[Chunk], names: Sequence[str], leads: Sequence[str]) -> dict[str, int]:
    """Each unambiguous surname (a lower-cased word) and the index of the chunk it names (see the module).

    ``names`` are the texts the chunks' names are read from (the title, else the first capitalized phrase:
    :func:`~optimizer.stages.sentence_signals.chunk_name`), ``leads`` each chunk's first sentence ("" for none).
    """
    count = Counter(w for name in names for w in set(words(_QUALIFIER.sub("", name))))
    out: dict[str, int] = {}
    for j, c in enumerate(chunks):
        title = _QUALIFIER.sub("", c.title or "").split()
        if not 2 <= len(title) <= 4 or not all(_NAME_WORD.fullmatch(w) for w in title):
            continue
        found = words(" ".join(title))
        if len(found) != len(title) or any(w in STOPWORDS for w in found):
            continue
        if count[found[-1]] == 1 and set(found) <= set(words(leads[j])):
            out[found[-1]] = j
    return out


def lone_surnames(text: str, surnames: dict[str, int]) -> set[str]:
    """The ``surnames`` that ``text`` mentions alone: a capitalized phrase of one word, not the text's first phrase."""
    if not surnames:
        return set()
    found = entities(text)
    if found and text.lstrip(_OPENING).startswith(found[0]):
        found = found[1:]
    lone = (words(_POSSESSIVE.sub("", ent)) for ent in found if " " not in ent and ent[:1].isupper())
    return {w[0] for w in lone if len(w) == 1 and w[0] in surnames}

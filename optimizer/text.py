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
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if _CJK.search(w):
            out.extend(ch for ch in w)
        else:
            out.append(w)
    return out


def content_words(text: str) -> list[str]:
    """:func:`words` without stop words."""
    return [w for w in words(text) if w not in STOPWORDS]

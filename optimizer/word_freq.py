"""How informative a word is in general English: the weight BM25 gives a query word.

BM25's IDF is estimated from the chunks of one call. A retriever hands over chunks that all
share the question's words, so among 10-20 of them the question's subject ("giants" in "when
was the last time giants won superbowl") can look as common as "won" or "time". The shipped
table (``optimizer/data/english-word-freq.tsv.gz``, from the ``wordfreq`` package's English
lists, CC BY-SA 4.0; rebuilt by ``bench/build_word_freq.py``) gives each word's frequency in
general English on the Zipf scale (log10 of occurrences per billion words). A word's
*surprisal* is ``9 - zipf`` (about 1 for "the", 5 for "giants"); a word the table does not
hold counts as rarer than every word it does.

>>> round(surprisal("giants") / surprisal("time"), 2)
1.73
>>> surprisal("zzyzxqua") > surprisal("corliss") > surprisal("season")
True
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

ZIPF_CEILING = 9.0  # one occurrence per word in a billion words is Zipf 0


@functools.lru_cache(maxsize=1)
def _table() -> tuple[dict[str, float], float]:
    """``(word -> Zipf value, the Zipf value of a word not in the table)``; read once per process."""
    raw = resources.files("optimizer.data").joinpath("english-word-freq.tsv.gz").read_bytes()
    zipf: dict[str, float] = {}
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        if line and not line.startswith("#"):
            word, value = line.split("\t")
            zipf[word] = float(value)
    return zipf, min(zipf.values()) - 0.5


def surprisal(word: str) -> float:
    """``9 - zipf`` of a lower-cased word (see the module docstring); always > 0."""
    zipf, unknown = _table()
    return ZIPF_CEILING - zipf.get(word, unknown)


def term_weights(query_words: list[str], stem: int, power: float) -> dict[str, float]:
    """Per query term (truncated to ``stem`` letters when set): ``surprisal ** power`` of its rarest word."""
    out: dict[str, float] = {}
    for w in query_words:
        term = w[:stem] if stem else w
        out[term] = max(out.get(term, 0.0), surprisal(w) ** power)
    return out

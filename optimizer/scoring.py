"""Scoring helpers shared by the stages, the adaptive budget and the eval harness's retriever.

One BM25 (over word lists, or over texts with :func:`optimizer.text.content_words`), one
"best first" order, one way to put a chunk's title in front of its text.

>>> best_first([0.2, 0.9, 0.2])
[1, 0, 2]
>>> titled_text("Paris", "It is the capital.")
'Paris. It is the capital.'
>>> [round(s, 2) for s in bm25_scores("capital France", ["Paris is the capital of France.", "Lyon."])]
[3.99, 2.2]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from optimizer.records import Chunk
from optimizer.score_reading import read_scores
from optimizer.stage import StageContext, relevance_of
from optimizer.text import content_words

EMPTY_DOC = "\u2205"
"""Stands in for a document without words, so BM25's statistics stay defined."""

BM25_VARIANTS = ("plus", "okapi")


class BM25Index:
    """BM25 statistics of a fixed list of documents (word lists), scored against many queries.

    ``variant="plus"`` is BM25+ (Lv & Zhai, *Lower-Bounding Term Frequency Normalization*,
    CIKM 2011): its IDF stays positive on the small candidate sets a pipeline sees (Okapi's
    is 0 or negative for a term in half the documents or more, which breaks ranking of 2-10
    chunks). ``"okapi"`` is the classic BM25 of Robertson & Zaragoza, *The Probabilistic
    Relevance Framework: BM25 and Beyond*, 2009, which suits a large corpus. Both come from
    ``rank_bm25``. Empty documents count as one placeholder word (:data:`EMPTY_DOC`).

    >>> index = BM25Index([["paris", "capital"], ["lyon"]])
    >>> [round(float(s), 2) for s in index.scores(["capital"])]
    [2.05, 1.1]
    """

    def __init__(self, docs: Sequence[Sequence[str]], *, variant: str = "plus", k1: float = 1.5, b: float = 0.75) -> None:
        if variant not in BM25_VARIANTS:
            raise ValueError(f"BM25 variant must be one of {', '.join(BM25_VARIANTS)}, got {variant!r}")
        from rank_bm25 import BM25Okapi, BM25Plus

        self.n = len(docs)
        model = BM25Plus if variant == "plus" else BM25Okapi
        self._bm25 = model([list(d) or [EMPTY_DOC] for d in docs], k1=k1, b=b) if docs else None

    def scores(self, query_terms: Sequence[str]) -> Any:
        """One score per document (a numpy array); all 0 without documents or query terms."""
        import numpy as np

        if self._bm25 is None or not query_terms:
            return np.zeros(self.n)
        return self._bm25.get_scores(list(query_terms))


def bm25_term_scores(query_terms: Sequence[str], docs: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """BM25+ scores of word-list ``docs`` for ``query_terms`` (see :class:`BM25Index`).

    >>> [round(s, 2) for s in bm25_term_scores(["capital"], [["paris", "capital"], []])]
    [2.05, 1.1]
    """
    return [float(s) for s in BM25Index(docs, k1=k1, b=b).scores(query_terms)]


def bm25_plus_scores(
    query_terms: Sequence[str], docs: Sequence[Sequence[str]], *, k1: float = 1.5, b: float = 0.75
) -> list[float]:
    """:func:`bm25_term_scores`, bit for bit, computed for the query's words only.

    rank_bm25 first builds a word-count dict per document and a document frequency for
    every word, then looks each query word up in every document's dict, all in Python.
    BM25+ needs only each document's length and the query words' counts in it
    (``list.count``), then adds each query word's term with rank_bm25's own expression, in
    the same order and with the same types (``tests/test_scoring.py`` checks the equality
    on random documents).

    >>> [round(s, 2) for s in bm25_plus_scores(["capital"], [["paris", "capital"], []])]
    [2.05, 1.1]
    """
    import math

    import numpy as np

    n = len(docs)
    if not n or not query_terms:
        return [0.0] * n
    docs = [d if len(d) else (EMPTY_DOC,) for d in docs]  # as BM25Index does
    lengths = [len(d) for d in docs]
    doc_len = np.array(lengths)
    avgdl = sum(lengths) / n
    counts = {q: np.array([d.count(q) for d in docs]) for q in dict.fromkeys(query_terms)}  # rank_bm25's q_freq
    delta = 1  # rank_bm25's BM25Plus default
    score = np.zeros(n)
    for q in query_terms:
        q_freq = counts[q]
        freq = int(np.count_nonzero(q_freq))
        idf = (math.log((n + 1) / freq) if freq else 0) or 0
        score += idf * (delta + (q_freq * (k1 + 1)) / (k1 * (1 - b + b * doc_len / avgdl) + q_freq))
    return [float(x) for x in score]


def bm25_scores(query: str, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """BM25+ scores of ``texts`` for ``query``, both split into content words (stop words out)."""
    return bm25_term_scores(content_words(query), [content_words(t) for t in texts], k1=k1, b=b)


def best_first(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; ties keep the given order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def by_relevance(chunks: Sequence[Chunk], context: StageContext | None = None) -> list[int]:
    """Indices of ``chunks`` best first by :func:`~optimizer.stage.relevance_of` (ties: given order).

    Scores are read as ``context`` reads them (:meth:`~optimizer.stage.StageContext.relevances`: the
    run's reading, a distance being lower when better); without one, as read from ``chunks``
    (:func:`~optimizer.score_reading.read_scores`).

    >>> by_relevance([Chunk(id="a", text="x", score=0.1), Chunk(id="b", text="y", relevance=0.5)])
    [1, 0]
    """
    if context is not None:
        return best_first(context.relevances(chunks))
    reading = read_scores(chunks)
    return best_first([relevance_of(c, reading) for c in chunks])


def with_relevance(chunks: Sequence[Chunk], scores: Sequence[float]) -> list[Chunk]:
    """Copies of ``chunks`` carrying ``scores`` as ``relevance``, best first (the caller's ``score`` untouched)."""
    scored = [replace(c, relevance=float(s)) for c, s in zip(chunks, scores)]
    return [scored[i] for i in best_first(scores)]


def titled_text(title: str | None, text: str, *, use_title: bool = True) -> str:
    """``"Title. text"`` when there is a title (and ``use_title``), else ``text``: what lexical and dense scorers read."""
    return f"{title}. {text}" if use_title and title else text


def chunk_texts(chunks: Sequence[Chunk], *, use_title: bool = True) -> list[str]:
    """:func:`titled_text` of each chunk."""
    return [titled_text(c.title, c.text, use_title=use_title) for c in chunks]


def rrf(rankings: Sequence[Sequence[int]], *, k: int = 60, weights: Sequence[float] | None = None) -> list[float]:
    """Reciprocal rank fusion: item ``i`` gets ``sum_r w_r / (k + rank_r(i))`` (ranks from 1).

    Cormack, Clarke & Büttcher, *Reciprocal Rank Fusion outperforms Condorcet and individual
    Rank Learning Methods*, SIGIR 2009. Each ranking lists item indices best first.

    >>> [round(s, 4) for s in rrf([[0, 1, 2], [1, 0, 2]], k=1)]
    [0.8333, 0.8333, 0.5]
    """
    n = 1 + max((max(r) for r in rankings if len(r)), default=-1)
    weights = weights if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"rrf: need one weight per ranking, got {len(weights)} weights for {len(rankings)} rankings")
    out = [0.0] * n
    for w, ranking in zip(weights, rankings):
        for rank, item in enumerate(ranking, start=1):
            out[item] += w / (k + rank)
    return out


def minmax(values: Sequence[float]) -> list[float]:
    """Scale to [0, 1] (all equal: all 1 if positive else 0).

    Values within a millionth of each other (relative to their size) count as equal: float32
    rounding makes the cosines of identical vectors differ in the seventh digit (0.99999994 against
    0.99999982), and stretching that noise to 0..1 would outweigh every real signal it is mixed with.

    >>> minmax([2.0, 4.0, 3.0])
    [0.0, 1.0, 0.5]
    >>> minmax([0.99999994, 0.99999982]), minmax([1e-7, 9e-7, 5e-7])
    ([1.0, 1.0], [0.0, 1.0, 0.5])
    """
    if not len(values):
        return []
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-6 * max(abs(hi), abs(lo)):  # relative only: a signal on a tiny scale keeps its spread
        return [1.0 if hi > 0 else 0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


__all__ = [
    "BM25Index", "EMPTY_DOC", "best_first", "bm25_plus_scores", "bm25_scores", "bm25_term_scores", "by_relevance", "chunk_texts",
    "minmax", "rrf", "titled_text", "with_relevance",
]

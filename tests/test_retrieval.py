"""Retrieval mode: one deduplicated corpus, top-k per question, gold flags, unique ids, no mutation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evals.datasets import Dataset, parse_example
from evals.retrieval import build_corpus, corpus_embeddings, retrieval_recall, retrieve_dataset

VOCAB = ["paris", "france", "rome", "italy", "berlin", "germany", "seine", "tiber", "filler"]


class KeywordEmbedder:
    """A fake embedder: counts of a few keywords (plus a constant so no vector is zero)."""

    name = "keyword-fake"
    dim = len(VOCAB) + 1

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            low = t.lower()
            for j, w in enumerate(VOCAB):
                out[i, j] = low.count(w)
            out[i, -1] = 0.1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


SHARED = "Filler filler paragraph shared by every question."


def tiny_dataset() -> Dataset:
    rows = [
        ("q-paris", "Which river is in Paris, France?", ["Seine"], "The Seine flows through Paris in France.", "Paris"),
        ("q-rome", "Which river is in Rome, Italy?", ["Tiber"], "The Tiber flows through Rome in Italy.", "Rome"),
        ("q-berlin", "Where is Berlin?", ["Germany"], "Berlin is the capital of Germany.", "Berlin"),
    ]
    examples = []
    for qid, question, answers, gold_text, title in rows:
        examples.append(
            parse_example(
                {
                    "id": qid,
                    "question": question,
                    "answers": answers,
                    # every example uses chunk ids "0", "1": ids collide across examples
                    "chunks": [
                        {"id": "0", "title": title, "text": gold_text, "gold": True, "gold_spans": [[0, 9]]},
                        {"id": "1", "text": SHARED, "gold": False},
                    ],
                    "meta": {"source": "tiny"},
                }
            )
        )
    return Dataset(name="tiny", path=Path("tiny.jsonl"), examples=tuple(examples))


def snapshot(ds: Dataset) -> list[dict]:
    return [ex.to_dict() for ex in ds.examples]


def test_corpus_is_deduplicated_by_text_with_unique_ids():
    corpus = build_corpus(tiny_dataset().examples)
    texts = [p.text for p in corpus]
    assert len(texts) == len(set(texts)) == 4  # three gold paragraphs + the shared one once
    assert len({p.id for p in corpus}) == 4
    assert all("gold" not in p.metadata for p in corpus)


@pytest.mark.parametrize("retriever", ["faiss", "bm25"])
def test_retrieval_gold_flags_topk_ids_and_no_mutation(retriever):
    pytest.importorskip("faiss")
    ds = tiny_dataset()
    before = snapshot(ds)
    out = retrieve_dataset(ds, top_k=2, retriever=retriever, embedder=KeywordEmbedder())
    assert snapshot(ds) == before
    assert out is not ds and out.name == ds.name and len(out) == len(ds)
    gold_text = {ex.id: ex.chunks[0].text for ex in ds.examples}
    for ex, orig in zip(out.examples, ds.examples):
        assert (ex.id, ex.question, ex.answers) == (orig.id, orig.question, orig.answers)
        assert len(ex.chunks) == 2
        ids = [c.id for c in ex.chunks]
        assert len(set(ids)) == len(ids)
        scores = [c.score for c in ex.chunks]
        assert scores == sorted(scores, reverse=True)
        # the question's own gold paragraph wins; other questions' gold paragraphs are not gold here
        assert ex.chunks[0].text == gold_text[ex.id]
        for c in ex.chunks:
            assert c.metadata["gold"] is (c.text == gold_text[ex.id])
        assert ex.chunks[0].metadata["gold_spans"] == [[0, 9]]
        assert ex.meta["source"] == "tiny"
        assert ex.retrieval["gold_retrieved"] == 1 and ex.retrieval["gold_total"] == 1
    assert retrieval_recall(out) == 1.0


def test_faiss_scores_are_cosine_similarities():
    pytest.importorskip("faiss")
    model = KeywordEmbedder()
    ds = tiny_dataset()
    out = retrieve_dataset(ds, top_k=4, retriever="faiss", embedder=model)
    ex = out.examples[0]
    q = model.encode([ex.question])[0]
    for c in ex.chunks:
        p = model.encode([f"{c.title}. {c.text}" if c.title else c.text])[0]
        assert c.score == pytest.approx(float(q @ p), abs=1e-5)
        np.testing.assert_allclose(c.embedding, p, atol=1e-6)  # the passage vector rides along
    bare = retrieve_dataset(ds, top_k=2, retriever="faiss", embedder=model, attach_embeddings=False)
    assert all(c.embedding is None for ex in bare.examples for c in ex.chunks)
    assert all(c.embedding is None for ex in retrieve_dataset(ds, top_k=2, retriever="bm25").examples for c in ex.chunks)


def test_top_k_clipped_to_corpus_and_recall_below_one():
    pytest.importorskip("faiss")
    ds = tiny_dataset()
    out = retrieve_dataset(ds, top_k=50, embedder=KeywordEmbedder())
    assert all(len(ex.chunks) == 4 for ex in out.examples)
    one = retrieve_dataset(ds, top_k=1, embedder=KeywordEmbedder(), retriever="faiss")
    assert all(len(ex.chunks) == 1 for ex in one.examples)
    # the top-1 for the Berlin question is its gold paragraph; flip it to the filler by asking about filler
    odd = Dataset("odd", Path("odd.jsonl"), (parse_example({**ds.examples[2].to_dict(), "question": "filler?"}),))
    odd_out = retrieve_dataset(odd, top_k=1, embedder=KeywordEmbedder())
    assert odd_out.examples[0].chunks[0].text == SHARED
    assert retrieval_recall(odd_out) == 0.0


def test_corpus_embeddings_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    model = KeywordEmbedder()
    texts = ["Paris in France", "Rome in Italy"]
    first = corpus_embeddings(model, texts, cache=True)
    second = corpus_embeddings(model, texts, cache=True)
    assert model.calls == 1
    np.testing.assert_allclose(first, second)
    assert list((tmp_path / "corpus").glob("keyword-fake-2-*.npy"))
    corpus_embeddings(model, texts + ["Berlin"], cache=True)  # other texts, other key
    assert model.calls == 2
    corpus_embeddings(model, texts, cache=False)
    assert model.calls == 3


def test_bad_arguments_are_clear():
    ds = tiny_dataset()
    with pytest.raises(ValueError, match="top_k must be"):
        retrieve_dataset(ds, top_k=0)
    with pytest.raises(ValueError, match="unknown retriever"):
        retrieve_dataset(ds, top_k=2, retriever="elastic")
    with pytest.raises(TypeError, match="embedder must be"):
        retrieve_dataset(ds, top_k=2, embedder=42)
    with pytest.raises(TypeError, match="evals.datasets.Dataset"):
        retrieve_dataset([{"id": "x"}], top_k=2)

"""Core leftovers: a chunk's embedding is read-only, examples pickle, and a step's copies are guarded too.

DESIGN.md contract 2: nothing the caller passed in is changed, in place either; and every kept
span maps back to the caller's text. (1) An in-place write to a chunk's numpy embedding
(``chunk.embedding /= norm``) raises before it changes the caller's vector (the chunk holds a
read-only view, no copy). (2) A loaded :class:`evals.datasets.Example` pickles and round-trips
equal (a multiprocessing pool, a cache). (3) A later step that changes an earlier step's copy
past the frozen dataclass (``object.__setattr__``) is refused like a change to the caller's chunk.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import numpy as np
import pytest

from optimizer import Chunk, Pipeline, make_stage
from optimizer.embeddings import HashingEmbedder, chunk_vectors
from test_pipeline_contracts import mutating

PARIS = "Paris is the capital of France. It has 2.1 million people."
LYON = "Lyon is a city in France. It is known for food."




def _normalise_in_place(c: Chunk) -> None:
    if c.embedding is not None:
        c.embedding /= np.linalg.norm(c.embedding)


# -- 1. a chunk's numpy embedding is read-only --------------------------------------------------------
def test_an_in_place_write_to_a_chunks_embedding_raises_before_changing_the_callers_array():
    given = np.array([3.0, 4.0], dtype=np.float32)
    chunk = Chunk(id="a", text=PARIS, embedding=given)
    with pytest.raises(ValueError, match="read-only"):
        chunk.embedding /= 5.0
    with pytest.raises(ValueError, match="read-only"):
        chunk.embedding[0] = 0.0
    assert given.tolist() == [3.0, 4.0] and chunk.embedding.tolist() == [3.0, 4.0]
    assert given.flags.writeable  # the caller's own array keeps its flag
    assert np.shares_memory(chunk.embedding, given)  # a view, not a copy
    given[0] = 6.0  # the caller may still write to its own array
    assert chunk.embedding[0] == 6.0


def test_a_stage_normalising_in_place_is_stopped_before_it_changes_the_callers_vectors():
    vectors = [np.array([3.0, 4.0], dtype=np.float32), np.array([0.0, 2.0], dtype=np.float32)]
    chunks = [Chunk(id="a", text=PARIS, embedding=vectors[0]), Chunk(id="b", text=LYON, embedding=vectors[1])]
    with pytest.raises(ValueError, match="read-only") as info:
        Pipeline([("normalise", mutating("normalise", _normalise_in_place))], budget=50).run("capital?", chunks)
    assert any("normalise" in note for note in info.value.__notes__)  # the step is named
    assert vectors[0].tolist() == [3.0, 4.0] and vectors[1].tolist() == [0.0, 2.0]  # before: [0.6, 0.8], then the guard
    steps = [make_stage("rerank-bm25"), ("later", mutating("later", _normalise_in_place))]  # on rerank-bm25's copies
    with pytest.raises(ValueError, match="read-only"):
        Pipeline(steps, budget=50).run("capital?", chunks)
    assert vectors[0].tolist() == [3.0, 4.0]


def test_the_read_only_view_survives_pickle_copy_replace_and_from_dict():
    given = np.array([3.0, 4.0], dtype=np.float32)
    chunk = Chunk(id="a", text=PARIS, title="Paris", score=0.5, metadata={"tags": ["city"]}, embedding=given)
    for other in (
        pickle.loads(pickle.dumps(chunk)),
        pickle.loads(pickle.dumps(chunk, protocol=5)),
        pickle.loads(pickle.dumps(chunk, protocol=0)),
        copy.deepcopy(chunk),
        copy.copy(chunk),
        dataclasses.replace(chunk, relevance=0.3),
        chunk.keep([(0, 31)]),
        Chunk.from_dict({"id": "a", "text": PARIS, "embedding": given}),
    ):
        assert other.embedding.tolist() == [3.0, 4.0]
        assert not other.embedding.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            other.embedding *= 2
    assert pickle.loads(pickle.dumps(chunk)) == chunk
    assert dataclasses.replace(chunk, relevance=0.3).embedding is chunk.embedding  # no new view per copy
    assert given.flags.writeable and given.tolist() == [3.0, 4.0]


def test_read_only_arrays_are_held_as_given_and_lists_as_today():
    frozen = np.array([1.0, 2.0])
    frozen.flags.writeable = False
    assert Chunk(id="a", text="x", embedding=frozen).embedding is frozen
    vector = [0.1, 0.2]
    assert Chunk(id="a", text="x", embedding=vector).embedding is vector
    assert Chunk.from_dict({"id": "a", "text": "x", "embedding": vector}).embedding is vector
    assert pickle.loads(pickle.dumps(Chunk(id="a", text="x", embedding=vector))).embedding == vector


def test_dense_stages_read_the_read_only_vectors_and_normalise_copies(static_as_hashing):
    embedder = HashingEmbedder(dim=64)
    own = embedder.encode([f"Paris\n{PARIS}", f"Lyon\n{LYON}"]) * 3.0  # the embedder's vectors, not unit length
    given = [np.array(v) for v in own]
    chunks = [Chunk(id="a", title="Paris", text=PARIS, embedding=given[0]),
              Chunk(id="b", title="Lyon", text=LYON, embedding=given[1])]
    vectors = chunk_vectors(embedder, chunks)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors, own / 3.0, rtol=1e-5)
    static_as_hashing(64)
    for name in ("rerank-static", "dedupe-semantic", "rerank-mmr"):
        result = Pipeline([make_stage(name)], budget=60).run("capital of France?", chunks)
        assert result.tokens > 0
    np.testing.assert_array_equal(given[0], own[0])
    np.testing.assert_array_equal(given[1], own[1])


def test_the_guard_still_sees_a_write_past_the_read_only_view():
    given = np.array([3.0, 4.0], dtype=np.float32)

    def through_base(c: Chunk) -> None:
        if c.embedding is not None:
            c.embedding.base[:] = 0.0  # the caller's array behind the view

    chunks = [Chunk(id="a", text=PARIS, embedding=given), Chunk(id="b", text=LYON)]
    with pytest.raises(ValueError, match="stage 'base' changed the caller's chunk 'a' in place: its embedding"):
        Pipeline([("base", mutating("base", through_base))], budget=50).run("capital?", chunks)


# -- 2. examples pickle --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["hotpotqa", "2wiki", "squad2-pools", "nq-multidoc"])
def test_a_loaded_example_pickles_and_round_trips_equal(name):
    from evals.datasets import load_dataset

    ds = load_dataset(name, limit=3)
    for ex in ds.examples:
        back = pickle.loads(pickle.dumps(ex))
        assert back == ex and back.to_dict() == ex.to_dict()
        assert [c.metadata for c in back.chunks] == [c.metadata for c in ex.chunks]
        assert copy.deepcopy(ex) == ex
        with pytest.raises(TypeError):
            back.meta["x"] = 1  # still read-only
    assert pickle.loads(pickle.dumps(ds)).examples == ds.examples


def test_an_example_with_embeddings_and_a_retrieval_record_pickles():
    from evals.datasets import parse_example
    from evals.retrieval import retrieve_dataset
    from evals.datasets import Dataset
    from pathlib import Path

    ex = parse_example({"id": "q1", "question": "capital?", "answers": ["Paris"], "meta": {"source": "x"}, "extra": 1,
                        "chunks": [{"id": "a", "text": PARIS, "gold": True, "embedding": [0.1, 0.2]},
                                   {"id": "b", "text": LYON, "embedding": [0.3, 0.4]}]},
                       chunk_scores=True)  # the file's vectors read (--chunk-scores), else an extra field in metadata
    back = pickle.loads(pickle.dumps(ex))
    assert back == ex and back.meta == {"source": "x", "extra": 1} and back.chunks[0].embedding == [0.1, 0.2]
    retrieved = retrieve_dataset(Dataset(name="t", path=Path("t.jsonl"), examples=(ex,)), top_k=1, retriever="bm25").examples[0]
    back = pickle.loads(pickle.dumps(retrieved))
    assert back == retrieved and back.retrieval == retrieved.retrieval and back.retrieval["retriever"] == "bm25"
    with pytest.raises(TypeError):
        back.retrieval["retriever"] = "faiss"


# -- 3. a later step cannot change an earlier step's copies unnoticed -------------------------------------
@pytest.mark.parametrize(
    "field, value, shown",
    [("text", "Berlin is the capital of France.", "text"), ("title", "Lutetia", "title"), ("score", 9.0, "score"),
     ("pieces", ((0, 5),), "pieces")],
)
def test_a_later_step_changing_an_earlier_steps_copy_past_the_frozen_dataclass_is_refused(field, value, shown):
    chunks = [Chunk(id="a", title="Paris", text=PARIS, score=0.5), Chunk(id="b", title="Lyon", text=LYON, score=0.3)]
    steps = [make_stage("rerank-bm25"), ("later", mutating("later", lambda c: object.__setattr__(c, field, value)))]
    # rerank-bm25 returns copies (with its relevance), so the caller's chunks stay as they were
    with pytest.raises(ValueError, match=rf"stage 'later' changed chunk 'a' in place \(a copy an earlier step made\): its {shown}"):
        Pipeline(steps, budget=60).run("capital of France?", chunks)
    assert chunks[0] == Chunk(id="a", title="Paris", text=PARIS, score=0.5)


def test_steps_that_only_read_or_replace_copies_pass_and_give_the_same_result():
    chunks = [Chunk(id="a", title="Paris", text=PARIS, score=0.5), Chunk(id="b", title="Lyon", text=LYON, score=0.3)]
    reader = ("reader", mutating("reader", lambda c: (c.text, c.metadata)))
    plain = Pipeline([make_stage("rerank-bm25"), make_stage("select-whole")], budget=30).run("capital?", chunks)
    read = Pipeline([make_stage("rerank-bm25"), reader, make_stage("select-whole")], budget=30).run("capital?", chunks)
    assert read.text == plain.text and read.spans == plain.spans

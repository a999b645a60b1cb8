"""Every stage reads the caller's scores one way per run: a distance (lower is better) when they rise along the
order handed over, as the sentence stage reads them, or as its ``retriever`` setting says; an unscored chunk
counts as the worst given score."""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.presets import preset_config
from optimizer.render import Renderer
from optimizer.packer import pack
from optimizer.stage import StageContext
from optimizer.stages.basic import ScoreThreshold
from optimizer.stages.dedupe import ExactDedupe, MergeOverlaps, NearDedupe
from optimizer.stages.order import Order
from optimizer.tokenizer import get_tokenizer

QUERY = "Which river flows through Paris?"
P = "The Seine flows through Paris and into the English Channel at Le Havre. It is 777 km long."
NEAR = "Gustave Eiffel's company designed and built the tower for the 1889 World's Fair in Paris, France"


def given(chunks):
    return StageContext.for_chunks(chunks, tokenizer=get_tokenizer("cl100k_base"))


def l2(*pairs):
    """Chunks handed over best first with FAISS-style L2 distances (rising)."""
    return [Chunk(id=k, text=t, score=s) for k, t, s in pairs]


def ids(out):
    return [c.id for c in out]


def test_exact_dedupe_keeps_the_best_match_of_distance_copies():
    chunks = l2(("best", P, 0.21), ("lyon", "Lyon is a city in France.", 0.55),
                ("berlin", "Berlin is in Germany.", 0.8), ("worst", P.lower(), 1.3))
    out = ExactDedupe()("q", chunks, given(chunks))
    assert ids(out) == ["best", "lyon", "berlin"]
    assert out.reasons == {"worst": "exact duplicate of best"}


def test_near_dedupe_keeps_the_best_match_of_distance_copies():
    chunks = l2(("best", NEAR + ".", 0.3), ("other", "The Statue of Liberty stands in New York.", 0.5),
                ("third", "Lyon is a city in France.", 0.7), ("copy", NEAR + " last year.", 0.9))
    out = NearDedupe(differences="drop")("q", chunks, given(chunks))
    assert ids(out) == ["best", "other", "third"]
    assert out.reasons["copy"].startswith("near-duplicate of best")


def test_overlaps_keep_the_best_match_whole_with_distances():
    chunks = l2(("best", P, 0.21), ("lyon", "Lyon is a city in France.", 0.55),
                ("berlin", "Berlin is in Germany.", 0.8), ("worst", P, 1.3))
    out = MergeOverlaps()("q", chunks, given(chunks))
    assert ids(out) == ["best", "lyon", "berlin"]
    assert out.reasons == {"worst": "contained in best"}


def test_similarities_still_keep_the_highest_score():
    chunks = [Chunk(id="best", text=P, score=0.9), Chunk(id="a", text="Lyon is in France.", score=0.7),
              Chunk(id="b", text="Berlin is in Germany.", score=0.5), Chunk(id="worst", text=P, score=0.1)]
    assert ids(ExactDedupe()("q", chunks, given(chunks))) == ["best", "a", "b"]


def test_default_preset_keeps_the_best_match_of_distance_copies():
    chunks = l2(("best-match", P, 0.21), ("other1", "Lyon is a city in France known for its cuisine.", 0.55),
                ("other2", "Berlin is the capital of Germany; the Spree flows through it.", 0.8),
                ("worst-match", P, 1.3))
    result = Pipeline.preset("default", budget=200).run(QUERY, chunks)
    assert "best-match" in ids(result.chunks) and "worst-match" not in ids(result.chunks)


@pytest.mark.parametrize("preset", ["full", "truncate", "default"])
def test_packer_takes_the_best_match_first_with_distances(preset):
    chunks = l2(("rank0", "The Seine flows through Paris.", 0.2), ("rank1", "Lyon is a city in France.", 0.6),
                ("rank2", "Berlin is the capital of Germany.", 0.9), ("rank3", "Tokyo has 14 million people.", 1.4))
    result = Pipeline.preset(preset, budget=10).run(QUERY, chunks)
    assert ids(result.chunks) == ["rank0"]


def test_pack_alone_reads_rising_scores_as_distances():
    chunks = l2(("rank0", "The Seine flows through Paris.", 0.2), ("rank1", "Lyon is a city in France.", 0.6),
                ("rank2", "Berlin is the capital of Germany.", 0.9), ("rank3", "Tokyo has 14 million people.", 1.4))
    packed = pack(chunks, 7, Renderer(citations=False), given(chunks))
    assert ids(packed.chunks) == ["rank0"]


def test_order_by_relevance_puts_the_smallest_distance_first():
    chunks = l2(("a", "x", 0.1), ("b", "y", 0.2), ("c", "z", 0.4), ("d", "w", 0.8))
    assert ids(Order()("q", chunks[::-1], given(chunks))) == ["a", "b", "c", "d"]


def test_a_run_decides_once_on_all_the_chunks_it_was_given():
    # after the copy is dropped, the three left still read as distances though three scores alone would not say so
    chunks = l2(("best", P, 0.21), ("lyon", "Lyon is a city in France.", 0.55),
                ("berlin", "Berlin is the capital of Germany.", 0.8), ("worst", P, 1.3))
    pipeline = Pipeline([ExactDedupe(), Order()])
    assert ids(pipeline.run(QUERY, chunks).chunks) == ["best", "lyon", "berlin"]


def _default_with(retriever):
    config = preset_config("default")
    config["steps"][-1]["params"]["retriever"] = retriever
    return Pipeline.from_config(config, budget=200)


def test_the_sentence_stage_setting_similarity_holds_for_every_stage():
    # rising scores, said to be similarities: the copy scored 1.3 is the better one
    chunks = l2(("low", P, 0.21), ("lyon", "Lyon is a city in France known for its cuisine.", 0.55),
                ("berlin", "Berlin is the capital of Germany; the Spree flows through it.", 0.8), ("high", P, 1.3))
    result = _default_with("similarity").run(QUERY, chunks)
    assert "high" in ids(result.chunks) and "low" not in ids(result.chunks)


def test_the_sentence_stage_setting_distance_holds_for_every_stage():
    # too few scores to guess (three), said to be distances: the copy at 0.2 is the better one
    chunks = [Chunk(id="far", text=P, score=1.3), Chunk(id="lyon", text="Lyon is a city in France.", score=0.9),
              Chunk(id="near", text=P, score=0.2)]
    result = _default_with("distance").run(QUERY, chunks)
    assert "near" in ids(result.chunks) and "far" not in ids(result.chunks)
    assert "far" not in ids(_default_with("distance").run(QUERY, chunks, budget=10**6).chunks)


def test_conflicting_score_settings_in_one_pipeline_are_refused():
    config = preset_config("default")
    config["steps"][-1]["params"]["retriever"] = "distance"
    config["steps"].append({"stage": "compress-sentences", "name": "again", "params": {"retriever": "similarity"}})
    with pytest.raises(ValueError, match="retriever"):
        Pipeline.from_config(config)


def test_unscored_chunk_counts_as_the_worst_given_score_not_zero():
    # cross-encoder logits: all negative, yet scored; the unscored copy must not win over the top one
    chunks = [Chunk(id="reranked-top", text=P, score=-0.5), Chunk(id="a", text="Lyon is in France.", score=-4.0),
              Chunk(id="b", text="Berlin is in Germany.", score=-6.0), Chunk(id="unscored-copy", text=P)]
    out = ExactDedupe()("q", chunks, given(chunks))
    assert ids(out) == ["reranked-top", "a", "b"]
    result = Pipeline.preset("default", budget=200).run(QUERY, chunks)
    assert "reranked-top" in ids(result.chunks) and "unscored-copy" not in ids(result.chunks)


def test_unscored_chunk_is_packed_after_scored_ones_with_negative_scores():
    chunks = [Chunk(id="none", text="Tokyo has 14 million people."), Chunk(id="top", text="The Seine flows through Paris.", score=-0.5),
              Chunk(id="low", text="Lyon is a city in France.", score=-4.0)]
    packed = pack(chunks, 7, Renderer(citations=False), given(chunks))
    assert ids(packed.chunks) == ["top"]


def test_threshold_with_distances_keeps_those_within_min_score_as_a_largest_distance():
    chunks = l2(("a", "x", 0.2), ("b", "y", 0.5), ("c", "z", 0.9), ("d", "w", 1.4))
    out = ScoreThreshold(min_score=0.6)("q", chunks, given(chunks))
    assert ids(out) == ["a", "b"]
    assert out.reasons["d"] == "select-threshold: distance 1.4 > 0.6 (scores read as distances: min_score is the largest distance kept)"


def test_threshold_with_similarities_is_unchanged():
    chunks = [Chunk(id="a", text="x", score=0.9), Chunk(id="b", text="y", score=0.1)]
    out = ScoreThreshold(min_score=0.5)("q", chunks, given(chunks))
    assert ids(out) == ["a"] and out.reasons == {"b": "select-threshold: 0.1 < 0.5"}


def test_langchain_faiss_distances_keep_the_best_match():
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from optimizer.integrations.langchain import RagtrimCompressor

    docs = [Document(id="best-match", page_content=P, metadata={"source": "encyclopedia", "score": 0.21}),
            Document(id="other1", page_content="Lyon is a city in France known for its cuisine.", metadata={"score": 0.55}),
            Document(id="other2", page_content="Berlin is the capital of Germany; the Spree flows through it.", metadata={"score": 0.8}),
            Document(id="worst-match", page_content=P, metadata={"source": "spam-mirror", "score": 1.3})]
    out = RagtrimCompressor(budget=200).compress_documents(docs, QUERY)
    kept = {d.id: d.metadata["source"] for d in out if "source" in d.metadata}
    assert kept == {"best-match": "encyclopedia"}


def test_langchain_score_tuples_name_the_fix():
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from optimizer.integrations.langchain import RagtrimCompressor

    pairs = [(Document(page_content=P), 0.21), (Document(page_content="Lyon is in France."), 0.55)]
    with pytest.raises(TypeError, match=r"document #0 is a \(Document, score\) pair.*metadata\['score'\].*score_key"):
        RagtrimCompressor(budget=200).compress_documents(pairs, QUERY)
    with pytest.raises(TypeError, match=r"metadata\['relevance'\]"):
        RagtrimCompressor(budget=200, score_key="relevance").compress_documents(pairs, QUERY)


def test_llama_index_l2_node_scores_keep_the_best_match():
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode

    from optimizer.integrations.llama_index import RagtrimPostprocessor

    # FaissVectorStore over IndexFlatL2: node scores are L2 distances, handed over best first
    nodes = [NodeWithScore(node=TextNode(id_=k, text=t, metadata={"file_name": f}), score=s) for k, t, f, s in [
        ("canonical", P, "which river flows through paris.txt", 0.772),
        ("berlin", "Berlin is the capital of Germany; the Spree flows through it.", "b.txt", 1.179),
        ("rome", "Rome is the capital of Italy and the Tiber flows through it.", "r.txt", 1.2),
        ("mirror", P, "misc backup copy 2019.txt", 1.255),
        ("lyon", "Lyon is a city in France known for its cuisine and silk.", "l.txt", 1.283)]]
    post = RagtrimPostprocessor(budget=300, reuse_embeddings=False)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    kept = [n.node.node_id for n in out]
    assert "canonical" in kept and "mirror" not in kept

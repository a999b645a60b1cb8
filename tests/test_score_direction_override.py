"""``score_direction``: a pipeline (and the framework wrappers) can say how to read ``Chunk.score``, whatever the steps;
the run's reading goes into the trace. Similarities that happen to rise along the given order (a retriever's
best-first results put back into reading order) were read as distances, with no way to say otherwise."""

from __future__ import annotations

import json

import pytest

from optimizer import Chunk, Pipeline
from optimizer.presets import preset_config
from optimizer.stages.basic import ScoreThreshold, TopK
from optimizer.stages.compress import SentenceExtract
from optimizer.stages.dedupe import NearDedupe

QUERY = "Who is Acme's CEO?"
# document order: the intro first, the answer paragraph last; a vector store's cosine similarities, so they rise
SIMS = [0.21, 0.34, 0.47, 0.88]
TEXTS = ["Acme Corp was founded in 1990 in Ohio. It makes tools.",
         "The company has offices in three countries. Its staff is 400.",
         "Acme's products include hammers and wrenches. They sell online.",
         "Acme's CEO since 2019 is Maria Lopez. She previously led Bolt Inc."]
CHUNKS = [Chunk(id=f"c{i}", text=t, score=s) for i, (t, s) in enumerate(zip(TEXTS, SIMS))]
DUPS = [Chunk(id="a", text="Intro text about Acme tools and history in Ohio.", score=0.2),
        Chunk(id="b", text="Offices in three countries with 400 staff members.", score=0.3),
        Chunk(id="stale", text="Acme's CEO since 2019 is John Smith; he previously led Bolt Inc in Ohio.", score=0.61),
        Chunk(id="fresh", text="Acme's CEO since 2019 is John Smith; he previously led Bolt Inc in Ohio!", score=0.88)]


def ids(result):
    return [c.id for c in result.chunks]


def pack_notes(result):
    return result.trace[-1].notes


@pytest.mark.parametrize("steps, budget", [([ScoreThreshold(min_score=0.5)], None), ([TopK(k=1)], None), ([], 20)])
def test_rising_similarities_said_so_keep_the_answer(steps, budget):
    assert ids(Pipeline(steps, budget=budget).run(QUERY, CHUNKS)) != ["c3"]  # auto reads them as distances
    result = Pipeline(steps, budget=budget, score_direction="similarity").run(QUERY, CHUNKS)
    assert ids(result) == ["c3"] and "Maria Lopez" in result.text


def test_near_dedupe_keeps_the_best_copy_of_rising_similarities_said_so():
    result = Pipeline([NearDedupe()], score_direction="similarity").run(QUERY, DUPS)
    assert ids(result) == ["a", "b", "fresh"]


def test_distance_said_so_holds_for_three_scores():
    # three scores are too few for auto to read them as distances
    chunks = [Chunk(id="near", text="The CEO is Maria Lopez.", score=0.2), Chunk(id="mid", text="Offices.", score=0.7),
              Chunk(id="far", text="Hammers.", score=1.3)]
    assert ids(Pipeline([TopK(k=1)]).run(QUERY, chunks)) == ["far"]
    assert ids(Pipeline([TopK(k=1)], score_direction="distance").run(QUERY, chunks)) == ["near"]


def test_auto_distance_is_noted_with_the_override():
    result = Pipeline([TopK(k=1)]).run(QUERY, CHUNKS)
    note = pack_notes(result)["scores"]
    assert note.startswith("distance (rising along the given order") and "score_direction='similarity'" in note
    assert json.loads(json.dumps(result.to_dict()))["trace"][-1]["notes"]["scores"] == note


def test_auto_similarity_is_noted():
    result = Pipeline([TopK(k=1)]).run(QUERY, CHUNKS[::-1])
    assert pack_notes(result)["scores"].startswith("similarity")
    assert result.to_dict()["trace"][-1]["notes"]["scores"] == pack_notes(result)["scores"]


@pytest.mark.parametrize("direction", ["similarity", "distance"])
def test_a_given_direction_is_noted_as_given(direction):
    result = Pipeline([TopK(k=1)], score_direction=direction).run(QUERY, CHUNKS)
    assert pack_notes(result)["scores"] == f"given: {direction}"


def test_a_step_setting_is_noted_as_given():
    result = Pipeline([SentenceExtract(retriever="distance")], budget=30).run(QUERY, CHUNKS)
    assert pack_notes(result)["scores"] == "given: distance"


def test_no_note_without_scores():
    result = Pipeline([TopK(k=1)]).run(QUERY, [Chunk(id=c.id, text=c.text) for c in CHUNKS])
    assert "scores" not in pack_notes(result)


def test_a_bad_direction_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"score_direction must be one of 'auto', 'similarity', 'distance', got 'cosine'"):
        Pipeline([TopK(k=1)], score_direction="cosine")
    with pytest.raises(ValueError, match=r"score_direction"):
        Pipeline.from_config({"steps": [], "score_direction": "higher"})


def test_a_step_setting_that_disagrees_with_the_pipeline_is_refused():
    with pytest.raises(ValueError, match=r"score_direction='similarity'.*'compress-sentences' \(retriever='distance'\)"):
        Pipeline([SentenceExtract(retriever="distance")], score_direction="similarity")
    config = preset_config("default")
    config["steps"][-1]["params"]["retriever"] = "distance"
    with pytest.raises(ValueError, match="score_direction"):
        Pipeline.from_config(config, score_direction="similarity")
    with pytest.raises(ValueError, match="score_direction"):
        Pipeline.from_config({**config, "score_direction": "similarity"})
    assert Pipeline.from_config(config, score_direction="distance").score_direction == "distance"  # agreeing is fine


def test_preset_and_config_round_trip(tmp_path):
    pipeline = Pipeline.preset("default", budget=200, score_direction="similarity")
    assert pipeline.score_direction == "similarity"
    config = pipeline.to_config()
    assert config["score_direction"] == "similarity"
    assert Pipeline.from_config(config).to_config() == config
    path = tmp_path / "p.yaml"
    pipeline.save(path)
    assert Pipeline.load(path).score_direction == "similarity"
    assert Pipeline.load(path, score_direction="auto").score_direction == "auto"
    assert "score_direction" not in Pipeline.preset("default").to_config()  # auto: configs as before
    toml = tmp_path / "p.toml"
    pipeline.save(toml)
    assert Pipeline.load(toml).score_direction == "similarity"


def test_preset_similarity_keeps_the_answer_of_rising_similarities():
    result = Pipeline.preset("full", budget=20, score_direction="similarity").run(QUERY, CHUNKS)
    assert "Maria Lopez" in result.text


def test_langchain_compressor_passes_the_direction():
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from optimizer.integrations.langchain import RagtrimCompressor

    docs = [Document(id=c.id, page_content=c.text, metadata={"score": c.score}) for c in CHUNKS]
    auto = RagtrimCompressor(pipeline=Pipeline([TopK(k=1)]), budget=200)
    assert [d.id for d in auto.compress_documents(docs, QUERY)] == ["c0"]
    said = RagtrimCompressor(pipeline=Pipeline([TopK(k=1)]), budget=200, score_direction="similarity")
    assert [d.id for d in said.compress_documents(docs, QUERY)] == ["c3"]
    assert said.last_result.trace[-1].notes["scores"] == "given: similarity"
    preset = RagtrimCompressor(budget=200, preset="truncate", score_direction="similarity")
    assert preset.active_pipeline.score_direction == "similarity"
    preset.score_direction = "distance"  # a field set after construction applies from the next call
    assert preset.active_pipeline.score_direction == "distance"
    with pytest.raises(ValueError, match="score_direction"):
        RagtrimCompressor(budget=200, score_direction="cosine")
    with pytest.raises(ValueError, match="score_direction"):
        RagtrimCompressor(pipeline=Pipeline([], score_direction="distance"), budget=200, score_direction="similarity")


def test_llama_index_postprocessor_and_retriever_pass_the_direction():
    pytest.importorskip("llama_index.core")
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

    from optimizer.integrations.llama_index import RagtrimPostprocessor, RagtrimRetriever

    def nodes():
        return [NodeWithScore(node=TextNode(id_=c.id, text=c.text), score=c.score) for c in CHUNKS]

    auto = RagtrimPostprocessor(pipeline=Pipeline([TopK(k=1)]), budget=200)
    assert [n.node.node_id for n in auto.postprocess_nodes(nodes(), query_str=QUERY)] == ["c0"]
    said = RagtrimPostprocessor(pipeline=Pipeline([TopK(k=1)]), budget=200, score_direction="similarity")
    assert [n.node.node_id for n in said.postprocess_nodes(nodes(), query_str=QUERY)] == ["c3"]
    back = RagtrimPostprocessor.from_dict(said.to_dict())
    assert back.score_direction == "similarity" and back.active_pipeline.score_direction == "similarity"
    with pytest.raises(ValueError, match="score_direction"):
        RagtrimPostprocessor(budget=200, score_direction="cosine")

    class Fixed(BaseRetriever):
        def _retrieve(self, query_bundle):
            return nodes()

    retriever = RagtrimRetriever(Fixed(), pipeline=Pipeline([TopK(k=1)]), budget=200, score_direction="similarity")
    assert [n.node.node_id for n in retriever.retrieve(QUERY)] == ["c3"]
    retriever.score_direction = "auto"
    assert [n.node.node_id for n in retriever.retrieve(QUERY)] == ["c0"]


def test_ragtrim_optimize_takes_score_direction(tmp_path):
    from typer.testing import CliRunner

    from ragtrim.cli import app

    rows = [("c0", "Acme was founded in 1950 in Ohio.", 0.21), ("c1", "Acme sells anvils to coyotes.", 0.34),
            ("c2", "Acme has offices in Ohio and Utah.", 0.47), ("c3", "Acme CEO is Jane Roe.", 0.88)]
    path = tmp_path / "chunks.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t, "score": s}) + "\n" for i, t, s in rows))
    base = ["optimize", "-q", "Who is Acme CEO?", "-c", str(path), "-p", "full", "-b", "12"]
    auto = CliRunner().invoke(app, base)
    given = CliRunner().invoke(app, base + ["--score-direction", "similarity"])
    bad = CliRunner().invoke(app, base + ["--score-direction", "bogus"])
    assert auto.exit_code == 0 and "Jane Roe" not in auto.output  # rising similarities read as distances
    assert given.exit_code == 0 and "Jane Roe" in given.output
    assert bad.exit_code == 2 and "score_direction must be one of" in bad.output


def test_a_pipeline_pickled_before_the_setting_still_runs():
    import pickle

    p = Pipeline.preset("bm25-pack", budget=50)
    del p.__dict__["score_direction"]  # as a Pipeline pickled by an earlier version holds it
    q = pickle.loads(pickle.dumps(p))
    assert q.score_direction == "auto"
    assert q.run("who wrote it?", [{"id": "a", "text": "Ada wrote it."}]).text == "[1] Ada wrote it."

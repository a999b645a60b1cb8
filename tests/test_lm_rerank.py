"""rerank-lm: the packaged Gemma's question likelihood reranks the best candidates (loads Gemma: slow + reader)."""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.lm_rerank import LMRerank, question_likelihood, _load


def test_settings_are_checked_with_the_value_named():
    with pytest.raises(ValueError, match="candidates must be a positive integer, got 0"):
        LMRerank(candidates=0)
    with pytest.raises(ValueError, match="passage_tokens must be at least 16, got 8"):
        LMRerank(passage_tokens=8)


def test_the_thorough_preset_puts_the_lm_between_dedupe_and_sentences():
    steps = [s["stage"] for s in Pipeline.preset("thorough").to_config()["steps"]]
    assert steps == ["dedupe-overlaps", "dedupe-near", "rerank-lm", "compress-sentences"]


@pytest.fixture(scope="session")
def reranker():
    stage = LMRerank(candidates=3)
    stage.warm_up()
    return stage


QUESTION = "What is the capital of France?"
CHUNKS = [
    Chunk(id="banana", title="Banana", text="Bananas are rich in potassium and grow in tropical regions."),
    Chunk(id="paris", title="Paris", text="Paris is the capital and largest city of France, on the Seine."),
    Chunk(id="rome", title="Rome", text="Rome is the capital of Italy. It was founded, legend says, in 753 BC.", score=0.2),
    Chunk(id="tea", title="Tea", text="Tea is an aromatic drink made from the leaves of an evergreen shrub."),
    Chunk(id="lyon", title="Lyon", text="Lyon is a city in France, known for its cuisine."),
]


@pytest.mark.slow
@pytest.mark.reader
def test_a_passage_that_answers_makes_the_question_more_likely(reranker):
    llm = _load(None, reranker._n_ctx)
    answering = question_likelihood(llm, "Paris is the capital of France.", QUESTION, passage_tokens=128)
    unrelated = question_likelihood(llm, "Bananas are rich in potassium.", QUESTION, passage_tokens=128)
    assert answering < 0 and unrelated < 0  # mean log-probabilities
    assert answering > unrelated + 0.3


@pytest.mark.slow
@pytest.mark.reader
def test_only_candidates_reach_the_lm_and_the_rest_follow_below_them(reranker):
    before = [(c.id, c.text, c.score, c.relevance) for c in CHUNKS]
    out = reranker(QUESTION, CHUNKS, StageContext.default())
    assert [(c.id, c.text, c.score, c.relevance) for c in CHUNKS] == before  # inputs untouched
    assert sorted(c.id for c in out) == sorted(c.id for c in CHUNKS)  # nothing dropped
    assert out[0].id == "paris"
    rel = [c.relevance for c in out]
    assert rel == sorted(rel, reverse=True)
    spread = rel[0] - rel[2]
    assert rel[2] > rel[3] > rel[4] >= rel[2] - 0.11 * spread  # the 2 the LM never saw: just below its worst
    assert {c.id for c in out[3:]} == {"banana", "tea"}  # the first ranking's worst, by BM25 + cosine
    assert next(c for c in out if c.id == "rome").score == 0.2  # the caller's score is kept


@pytest.mark.slow
@pytest.mark.reader
def test_thorough_keeps_the_answer_within_a_tight_budget(reranker):
    out = Pipeline.preset("thorough", budget=24).run(QUESTION, CHUNKS)
    assert "Paris is the capital" in out.text
    assert out.tokens <= 24
    assert any(t.name == "rerank-lm" for t in out.trace)


def test_eval_all_leaves_thorough_out_and_naming_it_runs_it():
    from ragtrim.commands.common import resolve_pipeline_names

    everything = resolve_pipeline_names("all")
    assert "thorough" not in everything and {"default", "quality", "dense-topk"} <= set(everything)
    assert resolve_pipeline_names("default,thorough") == ["default", "thorough"]

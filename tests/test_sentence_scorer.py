"""The split sentence stage: features, the fitted scorer, its fit, and the selector on their own."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.compress import SentenceExtract
from optimizer.stages.sentence_features import BASE, RETRIEVER, sentence_features, split_chunks
from optimizer.stages.sentence_fit import fit_linear
from optimizer.stages.sentence_scorer import FittedScorer, LinearModel, load_scorer
from optimizer.stages.sentence_select import SentenceSelector

QUESTION = "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"
CHUNKS = [
    Chunk(id="film", title="Kiss and Tell", text="Kiss and Tell is a 1945 comedy film. It starred Shirley Temple as Corliss Archer."),
    Chunk(id="actress", title="Shirley Temple",
          text="Shirley Temple Black was an American actress. As an adult, she served as Chief of Protocol of the United States."),
    Chunk(id="radio", title="Radio", text="Radio programs were popular in the 1940s. Many ran on CBS."),
]


def features(chunks=CHUNKS, retriever="auto", query=QUESTION):
    context = StageContext.default()
    return sentence_features(query, chunks, split_chunks(chunks, context), context, static=None, retriever=retriever)


def linear(names, coef):
    n = len(names)
    return LinearModel(names=tuple(names), mean=np.zeros(n), scale=np.ones(n), coef=np.asarray(coef, dtype=float))


# -- features ---------------------------------------------------------------------------------
def test_features_have_one_row_per_sentence_and_every_named_column():
    f = features()
    assert f.values.shape == (6, len(f.names))
    assert set(BASE) | set(RETRIEVER) <= set(f.names)
    assert np.isfinite(f.values).all()
    assert f.column("lead").tolist() == [1, 0, 1, 0, 1, 0]


def test_second_hop_link_reaches_the_chunk_the_best_sentences_name():
    f = features()
    link = f.column("link")
    assert link[2] > 0.5  # "Shirley Temple" is named by the film's sentence
    assert link[4] == 0.0  # nothing names "Radio"


def test_retriever_columns_are_empty_without_scores_and_filled_with_them():
    plain = features()
    assert not plain.retriever
    assert not plain.column("retr_score").any() and not plain.column("retr_rank").any()
    scored = features([replace(c, score=s) for c, s in zip(CHUNKS, (0.1, 0.9, 0.5))])
    assert scored.retriever
    assert scored.column("retr_score").tolist() == [0.0, 0.0, 1.0, 1.0, 0.5, 0.5]
    assert scored.column("retr_rank")[2] > scored.column("retr_rank")[4] > scored.column("retr_rank")[0]


def test_given_order_counts_as_a_ranking_only_when_asked():
    assert not features(retriever="auto").retriever
    ranked = features(retriever="order")
    assert ranked.retriever
    assert ranked.column("retr_rank")[0] > ranked.column("retr_rank")[2] > ranked.column("retr_rank")[4]
    assert not features([replace(c, score=1.0) for c in CHUNKS], retriever="ignore").retriever


def test_unknown_retriever_mode_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="retriever must be one of auto, similarity, distance, order, ignore, got 'rank'"):
        SentenceExtract(model=None, retriever="rank")


def test_feature_lookup_names_the_missing_column():
    with pytest.raises(KeyError, match="no feature 'nope'"):
        features().column("nope")


# -- the linear model and the scorer ----------------------------------------------------------------
def test_scorer_uses_the_retriever_model_only_when_the_chunks_carry_a_signal():
    scorer = FittedScorer(plain=linear(["bm25"], [1.0]), retriever=linear(["retr_score"], [5.0]), static=None)
    plain = features()
    scored = features([replace(c, score=s) for c, s in zip(CHUNKS, (0.1, 0.9, 0.5))])
    assert scorer.model_for(plain) is scorer.plain
    assert scorer.model_for(scored) is scorer.retriever
    s = scorer.score(scored)
    assert s.max() == pytest.approx(1.0) and (s > 0).all()
    assert int(np.argmax(s)) in (2, 3)  # the chunk the retriever scored best


def test_linear_model_rejects_unknown_features_and_bad_scales():
    with pytest.raises(ValueError, match="unknown feature"):
        linear(["colour"], [1.0])
    with pytest.raises(ValueError, match="scale must be positive"):
        LinearModel(names=("bm25",), mean=np.zeros(1), scale=np.zeros(1), coef=np.ones(1))
    with pytest.raises(ValueError, match="one entry per feature"):
        LinearModel(names=("bm25", "lead"), mean=np.zeros(1), scale=np.ones(2), coef=np.ones(2))


def test_missing_weights_file_names_the_value_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match="nowhere.json.*fit_scorer"):
        load_scorer(str(tmp_path / "nowhere.json"))


def test_scorer_round_trips_through_json(tmp_path):
    scorer = FittedScorer(plain=linear(["bm25", "lead"], [1.0, 0.5]), retriever=linear(["retr_rank"], [2.0]), static=None,
                          info={"fitted_on": "test"})
    path = tmp_path / "scorer.json"
    path.write_text(json.dumps(scorer.to_dict()))
    back = load_scorer(str(path))
    assert back.plain.names == ("bm25", "lead") and back.info == {"fitted_on": "test"}
    np.testing.assert_allclose(back.plain.coef, [1.0, 0.5])


def test_shipped_scorers_load_and_cover_every_feature_they_name():
    for name in ("default", "quality"):
        scorer = load_scorer(name)
        assert scorer.static == "static-distilled"  # the model its weights were fitted with
        assert set(RETRIEVER) <= set(scorer.retriever.names)
        assert not set(RETRIEVER) & set(scorer.plain.names)
        assert scorer.info["fitted_on"]  # says what it was fitted on
    assert load_scorer("quality").dense == "minilm-int8" and load_scorer("default").dense is None



def test_fitted_presets_use_the_selector_settings_the_fit_chose():
    from optimizer.presets import preset_config

    for preset, weights in (("fitted", "default"), ("fitted-quality", "quality")):
        params = next(s["params"] for s in preset_config(preset)["steps"] if s["stage"] == "compress-sentences")
        assert params["scorer"] == "fitted" and params["weights"] == weights
        chosen = load_scorer(weights).info["selector"]
        assert {k: params[k] for k in chosen} == chosen


def test_fitted_preset_runs_within_the_budget_on_the_shipped_weights():
    result = Pipeline.preset("fitted", budget=40).run(QUESTION, CHUNKS)
    assert 0 < result.tokens <= 40
    scored = Pipeline.preset("fitted", budget=40).run(QUESTION, [replace(c, score=s) for c, s in zip(CHUNKS, (0.2, 0.9, 0.1))])
    assert 0 < scored.tokens <= 40


# -- the fit ---------------------------------------------------------------------------------
def _synthetic(seed):
    rng = np.random.default_rng(seed)
    xs, ys, gs = [], [], []
    for q in range(300):
        x = rng.normal(size=(8, 3))
        s = 2.0 * x[:, 0] - 1.0 * x[:, 1] + rng.gumbel(size=8)  # the answer is the argmax of a noisy utility
        y = np.zeros(8)
        y[int(np.argmax(s))] = 1
        xs.append(x)
        ys.append(y)
        gs.append(np.full(8, q))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def test_fit_recovers_the_direction_of_the_true_weights_and_is_deterministic():
    x, y, g = _synthetic(0)
    names = ("bm25", "cos", "lead")
    a = fit_linear(x, y, groups=g, names=names, l2=0.1)
    b = fit_linear(x, y, groups=g, names=names, l2=0.1)
    np.testing.assert_array_equal(a.coef, b.coef)
    w = a.coef / a.scale  # back to raw units
    assert w[0] > 1.2 and -1.6 < w[1] < -0.5 and abs(w[2]) < 0.4
    assert w[0] / -w[1] == pytest.approx(2.0, rel=0.35)


def test_fit_drops_questions_without_a_positive_and_rejects_unsorted_groups():
    x, y, g = _synthetic(1)
    names = ("bm25", "cos", "lead")
    base = fit_linear(x, y, groups=g, names=names)
    extra_x = np.vstack([x, np.full((4, 3), 9.0)])
    extra = fit_linear(extra_x, np.r_[y, np.zeros(4)], groups=np.r_[g, np.full(4, 10_000)], names=names)
    np.testing.assert_allclose(extra.coef, base.coef)  # the all-negative question changed nothing
    np.testing.assert_allclose(extra.mean, base.mean)
    with pytest.raises(ValueError, match="sorted by group"):
        fit_linear(x[::-1], y[::-1], groups=g[::-1], names=names)
    with pytest.raises(ValueError, match="nothing to learn"):
        fit_linear(x, np.zeros(len(y)), groups=g, names=names)


# -- the selector alone -----------------------------------------------------------------------------
def test_selector_fills_the_budget_with_the_highest_values_in_document_order():
    context = StageContext.default(budget=30)
    sents = split_chunks(CHUNKS, context)
    value = np.array([0.1, 0.2, 0.3, 1.0, 0.0, 0.0])
    out = SentenceSelector(redundancy=0.0)(QUESTION, CHUNKS, sents, value, context)
    assert out[0].id == "actress" and "Chief of Protocol" in out[0].text
    assert sum(context.count(c.text) for c in out) <= 30
    assert out.notes["target_tokens"] == 30


def test_selector_with_density_prefers_short_sentences_of_equal_value():
    context = StageContext.default(budget=12)
    chunks = [Chunk(id="a", text="Short fact here. This second sentence is a great deal longer than the first one is.")]
    sents = split_chunks(chunks, context)
    even = np.array([1.0, 1.0])
    assert SentenceSelector(density=1.0)(QUESTION, chunks, sents, even, context)[0].text == "Short fact here."


# -- the stage with the fitted scorer ---------------------------------------------------------------
def test_fitted_stage_respects_the_budget_and_maps_back(tmp_path):
    scorer = FittedScorer(plain=linear(["bm25", "link", "lead"], [1.0, 2.0, 0.3]), retriever=linear(["retr_score"], [1.0]), static=None)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scorer.to_dict()))
    stage = SentenceExtract(scorer="fitted", weights=str(path), redundancy=0.0)
    result = Pipeline([stage]).run(QUESTION, CHUNKS, budget=45)
    assert result.tokens <= 45
    assert "Chief of Protocol" in result.text  # the link feature, weighted up, finds the second hop
    for span in result.spans:
        original = next(c for c in CHUNKS if c.id == span.chunk_id).text
        assert original[span.start : span.end] in result.text


def test_fitted_stage_follows_the_retriever_when_chunks_carry_scores(tmp_path):
    scorer = FittedScorer(plain=linear(["bm25"], [1.0]), retriever=linear(["bm25", "retr_score"], [0.1, 5.0]), static=None)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scorer.to_dict()))
    twins = [Chunk(id="x", text="Paris is a large city in Europe."), Chunk(id="y", text="Lyon is a large city in Europe.")]
    q = "Which large city in Europe?"
    stage = SentenceExtract(scorer="fitted", weights=str(path), redundancy=0.0)
    budget = 14  # room for one of the two (with the renderer's marker)
    top = lambda cs: Pipeline([stage]).run(q, cs, budget=budget).chunks[0].id  # noqa: E731
    assert top([replace(twins[0], score=0.1), replace(twins[1], score=0.9)]) == "y"
    assert top([replace(twins[0], score=0.9), replace(twins[1], score=0.1)]) == "x"


def test_unknown_scorer_name_is_rejected():
    with pytest.raises(ValueError, match="scorer must be one of weighted, fitted, got 'learned'"):
        SentenceExtract(scorer="learned")

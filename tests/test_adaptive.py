"""Query-adaptive budgets: the rule, its cap by the hard budget, and its round trip through configs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer import Chunk, Pipeline
from optimizer.adaptive import AdaptiveBudget, softmax_weights
from optimizer.stage import StageContext

FOCUSED = [
    Chunk(id="a", title="Paris", text="Paris is the capital of France. The capital of France has many museums."),
    Chunk(id="b", title="Fruit", text="Bananas are yellow. Apples grow on trees. Cherries are small. Grapes are sweet."),
    Chunk(id="c", title="Weather", text="It rained on Monday. Tuesday was sunny. Wednesday brought wind and hail."),
]
# every sentence matches the query about as well: the relevance is spread out
DIFFUSE = [
    Chunk(id=f"d{i}", title=f"Town {i}", text=f"A river is near town {i}. A river runs by town {i}. A river flows in town {i}.")
    for i in range(3)
]


def budget(rule: AdaptiveBudget, query: str, chunks) -> int:
    return rule.budget_for(query, chunks, StageContext.default())[0]


def test_concentrated_relevance_gets_a_smaller_share_than_spread_relevance():
    def full(chunks):
        return Pipeline.preset("full").run("q", chunks).tokens_full

    rule = AdaptiveBudget(mass=0.8, min_tokens=0)
    focused = budget(rule, "What is the capital of France?", FOCUSED) / full(FOCUSED)
    diffuse = budget(rule, "Which river?", DIFFUSE) / full(DIFFUSE)
    assert focused < 0.5 < diffuse


@pytest.mark.parametrize("unit", ["sentence", "chunk"])
def test_more_mass_never_means_fewer_tokens(unit):
    sizes = [budget(AdaptiveBudget(mass=m, unit=unit, min_tokens=0), "capital of France", FOCUSED) for m in (0.3, 0.6, 0.9, 1.0)]
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1]


def test_lower_temperature_concentrates_the_mass():
    hot = budget(AdaptiveBudget(mass=0.9, temperature=4.0, min_tokens=0), "capital of France", FOCUSED)
    cold = budget(AdaptiveBudget(mass=0.9, temperature=0.25, min_tokens=0), "capital of France", FOCUSED)
    assert cold < hot


def test_gap_rule_cuts_at_the_largest_score_drop():
    assert AdaptiveBudget(rule="gap")._cut([9.0, 8.5, 2.0, 1.5, 1.0]) == 2
    assert AdaptiveBudget(rule="gap")._cut([9.0, 3.0, 2.5]) == 1


def test_softmax_weights_sum_to_one_and_follow_the_scores():
    w = softmax_weights([5.0, 2.0, 1.0, 1.0], temperature=0.5)
    assert sum(w) == pytest.approx(1.0)
    assert w[0] > w[1] > w[2] == w[3]


def test_min_tokens_is_a_floor():
    assert budget(AdaptiveBudget(mass=0.1, min_tokens=500), "capital of France", FOCUSED) == 500


@pytest.mark.parametrize(
    "kwargs, message",
    [({"mass": 0}, "mass"), ({"mass": 1.5}, "mass"), ({"temperature": 0}, "temperature"),
     ({"unit": "word"}, "unit"), ({"rule": "knee"}, "rule"), ({"min_tokens": -1}, "min_tokens")],
)
def test_bad_settings_say_what_to_fix(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdaptiveBudget(**kwargs)


def test_unknown_config_keys_raise():
    with pytest.raises(ValueError, match="valid: mass"):
        AdaptiveBudget.from_dict({"mas": 0.9})


def test_pipeline_uses_the_adaptive_budget_and_traces_it():
    fixed = Pipeline.preset("bm25-topk", budget=1.0).run("What is the capital of France?", FOCUSED)
    adaptive = Pipeline.preset("bm25-topk", budget=1.0, adaptive=AdaptiveBudget(mass=0.5, min_tokens=0)).run(
        "What is the capital of France?", FOCUSED
    )
    assert adaptive.tokens < fixed.tokens
    assert "capital of France" in adaptive.text
    notes = adaptive.trace[-1].notes
    assert notes["hard_budget"] == fixed.budget
    assert notes["budget"] == adaptive.budget <= notes["hard_budget"]
    assert notes["adaptive"]["units_kept"] >= 1


def test_adaptive_without_a_hard_budget_still_bounds_the_context():
    result = Pipeline.preset("bm25-topk", adaptive=AdaptiveBudget(mass=0.5, min_tokens=0)).run("capital of France", FOCUSED)
    assert result.budget is not None and result.tokens <= result.budget < result.tokens_full


def test_inputs_are_not_mutated():
    chunks = list(FOCUSED)
    Pipeline.preset("bm25-topk", budget=30, adaptive={"mass": 0.7}).run("capital of France", chunks)
    assert chunks == FOCUSED and all(c.relevance is None for c in chunks)


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="abc de.\n", min_size=1, max_size=120), min_size=1, max_size=6),
    hard=st.integers(min_value=1, max_value=80),
    mass=st.floats(min_value=0.05, max_value=1.0),
    unit=st.sampled_from(["sentence", "chunk"]),
    rule=st.sampled_from(["mass", "gap"]),
)
def test_hard_budget_caps_the_adaptive_one(texts, hard, mass, unit, rule):
    pipe = Pipeline.preset("bm25-topk", adaptive=AdaptiveBudget(mass=mass, unit=unit, rule=rule, min_tokens=0))
    # the hard budget given to the call: a pipeline refuses a bare 1 (ambiguous), a call reads it as 1 token
    result = pipe.run("a b", [Chunk(id=str(i), text=t) for i, t in enumerate(texts)], budget=hard)
    assert result.tokens <= result.budget <= hard
    assert pipe.tokenizer.count(result.text) == result.tokens


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_round_trip_through_configs_and_files(tmp_path, suffix):
    pipe = Pipeline.preset("truncate", budget=0.5, adaptive=AdaptiveBudget(mass=0.75, temperature=0.5, unit="chunk"))
    config = pipe.to_config()
    assert config["adaptive"] == {"mass": 0.75, "temperature": 0.5, "unit": "chunk", "rule": "mass", "min_tokens": 32}
    assert Pipeline.from_config(config).adaptive == pipe.adaptive
    path = tmp_path / f"pipe{suffix}"
    pipe.save(path)
    loaded = Pipeline.load(path)
    assert loaded.adaptive == pipe.adaptive and loaded.to_config() == config


def test_no_adaptive_leaves_the_config_unchanged():
    assert "adaptive" not in Pipeline.preset("truncate", budget=0.5).to_config()

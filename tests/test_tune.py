"""The budget tuner: the answer meets the target, is near the smallest budget that does, and 0.85x misses."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import evals.sweep
from evals.datasets import load_dataset
from evals.tune import TuneResult, evaluate_at, holds, tune_budget
from optimizer import Pipeline, Stage, StageOutput
from ragtrim.cli import app

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda sigma omega".split()


def synthetic_examples(n: int = 30) -> list[dict]:
    """Deterministic examples whose answer needs a different share of the context in each.

    Chunk 0 is about the question's subject; its last sentence holds the answer after a
    varying number of on-topic sentences, so both reading order (truncate) and relevance
    order (default) need a budget that grows with the example index. Four filler chunks of
    varying length come after it.
    """
    out = []
    for i in range(n):
        city = f"Zorbland{i}"
        answer = f"Quixotl{i}"
        on_topic = " ".join(f"The history of {city} mentions {WORDS[(i + k) % len(WORDS)]} rivers." for k in range(1 + i % 10))
        chunks = [{"id": f"{i}-0", "title": city, "text": f"{on_topic} The capital of {city} is {answer}."}]
        for j in range(1, 5):
            filler = " ".join(f"Unrelated {WORDS[(i * j + k) % len(WORDS)]} notes about weather." for k in range(2 + (i * j) % 6))
            chunks.append({"id": f"{i}-{j}", "title": f"Notes {j}", "text": filler})
        if i % 3 == 0:  # the answer chunk is not always first in reading order
            chunks = chunks[1:3] + chunks[:1] + chunks[3:]
        out.append({"id": f"q{i}", "question": f"What is the capital of {city}?", "answers": [answer], "chunks": chunks})
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune") / "synthetic.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in synthetic_examples()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dataset(synthetic):
    return load_dataset(synthetic)


def smallest_holding_share(dataset, pipeline, target, lo, hi, step=0.0025):
    """Brute force on a fine grid (one sweep): the smallest share in [lo, hi] meeting the target."""
    shares = []
    s = lo
    while s <= hi + 1e-12:
        shares.append(round(s, 6))
        s += step
    shares.append(hi)
    run = evals.sweep.run_eval(dataset, [pipeline], shares, resamples=1, progress=False)
    full = run.run_for("full", None).metrics.answer_recall
    for share in shares:
        if holds(run.run_for(pipeline, share).metrics.answer_recall, full, target):
            return share
    return None


# ``default`` may load an embedding model (the stages helper is still tuning it): slow; ``bm25-topk``
# stands in for a relevance-ordered pipeline in the fast suite.
PIPELINES = ["truncate", "bm25-topk", pytest.param("default", marks=pytest.mark.slow)]


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("target", [0.98, 0.9])
def test_answer_meets_target_and_085x_misses(dataset, pipeline, target):
    result = tune_budget(dataset, pipeline, target_retention=target, resamples=200)
    assert isinstance(result, TuneResult) and result.met
    at_b, full = evaluate_at(dataset, pipeline, result.budget)
    assert full == result.full_metric
    assert at_b >= target * full, (result.budget, at_b, full)
    below, _ = evaluate_at(dataset, pipeline, round(0.85 * result.budget, 6))
    assert below < target * full, (result.budget, below, full)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_answer_is_within_10_percent_of_the_smallest_budget_that_holds(dataset, pipeline):
    result = tune_budget(dataset, pipeline, target_retention=0.95, resamples=100)
    smallest = smallest_holding_share(dataset, pipeline, 0.95, lo=0.5 * result.budget, hi=result.budget)
    assert smallest is not None
    assert smallest <= result.budget <= 1.1 * smallest, (smallest, result.budget)


def test_result_reports_tokens_ci_delta_and_savings(dataset):
    result = tune_budget(dataset, "bm25-topk", target_retention=0.9, resamples=200)
    assert result.ci[0] <= result.metric <= result.ci[1]
    assert result.delta_ci[0] <= result.delta <= result.delta_ci[1]
    assert result.delta == pytest.approx(result.metric - result.full_metric, abs=1e-6)
    assert result.tokens == int(result.budget * result.tokens_full_median)
    assert result.tokens_mean < result.tokens_full_mean
    assert result.tokens_saved_per_1k > 0 and result.cost_saved_per_1k > 0
    shares = [s for s, _ in result.evaluations]
    assert result.budget in shares and shares == sorted(shares)
    # bisection went finer than the coarse grid around the answer
    assert min(abs(s - result.budget) for s in shares if s != result.budget) < 0.05
    d = result.to_dict()
    assert {"budget", "tokens", "metric", "full_metric", "ci", "retention", "cost_saved_per_1k", "evaluations"} <= set(d)


def test_memo_makes_a_second_tuning_free(dataset, monkeypatch):
    memo: dict = {}
    first = tune_budget(dataset, "truncate", target_retention=0.9, memo=memo, resamples=50)
    calls = []
    original = evals.sweep.run_eval
    monkeypatch.setattr(evals.sweep, "run_eval", lambda *a, **k: calls.append(a) or original(*a, **k))
    again = tune_budget(dataset, "truncate", target_retention=0.9, memo=memo, resamples=50)
    assert calls == [] and again == first


class HideAnswerInAWindow(Stage):
    """Drops the first chunk when the budget is between 75 % and 85 % of the context: a dip."""

    name = "hide-window"

    def __call__(self, query, chunks, context):
        full = sum(context.count(c.text) for c in chunks) + context.overhead(chunks)
        if context.budget is not None and 0.75 * full <= context.budget < 0.85 * full:
            return StageOutput(list(chunks[1:]), reasons={chunks[0].id: "test dip"})
        return list(chunks)


def test_non_monotone_metric_is_reported_above_the_answer():
    exs = [
        {"id": f"q{i}", "question": "Where is the key?", "answers": [f"drawer{i}"],
         "chunks": [{"id": f"{i}a", "text": f"The key is in drawer{i}."},
                    {"id": f"{i}b", "text": "Some filler sentence about nothing. " * 12}]}
        for i in range(6)
    ]
    from types import SimpleNamespace

    from evals.datasets import parse_example

    data = SimpleNamespace(name="dip", examples=[parse_example(e) for e in exs])
    pipe = Pipeline([HideAnswerInAWindow()], name="dip")
    result = tune_budget(data, pipe, target_retention=1.0, resamples=50)
    assert result.met and result.budget < 0.3
    assert result.fails_above == (0.8,)
    assert "not monotone" in result.summary()


def test_reader_metric_uses_the_reader(dataset):
    from evals.readers import make_reader

    reader = make_reader("fake")
    small = load_dataset(dataset.path, limit=8)
    result = tune_budget(small, "bm25-topk", metric="accuracy", target_retention=0.9, reader=reader, resamples=50)
    assert reader.calls > 0
    assert result.metric_name == "accuracy" and result.metric >= 0.9 * result.full_metric


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric": "accuracy"}, "pass a reader"),
        ({"metric": "bleu"}, "metric must be one of"),
        ({"target_retention": 1.5}, "target_retention"),
        ({"resolution": 0}, "resolution"),
        ({"grid": [0.5, 2]}, "grid"),
    ],
)
def test_bad_arguments_say_what_to_fix(dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tune_budget(dataset, "default", **kwargs)


def test_full_cannot_be_tuned(dataset):
    with pytest.raises(ValueError, match="reference"):
        tune_budget(dataset, "full")


def test_cli_tune_json(synthetic):
    out = CliRunner().invoke(app, ["tune", "--data", str(synthetic), "--pipeline", "truncate",
                                   "--target-retention", "0.95", "--format", "json", "--resamples", "50"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["met"] and 0 < d["budget"] <= 1 and d["metric"] >= 0.95 * d["full_metric"]
    assert {"tokens", "ci", "retention", "cost_saved_per_1k", "evaluations"} <= set(d)


def test_cli_tune_text_and_errors(synthetic):
    ok = CliRunner().invoke(app, ["tune", "--data", str(synthetic), "--pipeline", "bm25-topk", "--resamples", "50"])
    assert ok.exit_code == 0, ok.output
    assert "budget" in ok.stdout and "tokens" in ok.stdout and "per 1k queries" in ok.stdout
    bad = CliRunner().invoke(app, ["tune", "--data", str(synthetic), "--pipeline", "nope"])
    assert bad.exit_code == 2 and "unknown preset" in bad.output


def test_bisect_share_finds_the_threshold_within_the_resolution():
    from evals.tune import bisect_share

    calls = []

    def ok(share):
        calls.append(share)
        return share >= 0.37

    best = bisect_share(0.3, 0.4, ok, resolution=0.001)
    assert 0.37 <= best <= 0.37 + 0.001 * best and all(0.3 < s < 0.4 for s in calls)
    assert bisect_share(0.3, 0.4, ok, resolution=0.001, floor=0.2) == 0.4  # the bracket is already below the floor


def test_share_evaluator_runs_each_share_once(dataset, monkeypatch):
    from evals.tune import ShareEvaluator

    seen = []
    real = evals.sweep.run_eval

    def counting(data, pipelines, budgets, **kw):
        seen.append(list(budgets))
        return real(data, pipelines, budgets, **kw)

    monkeypatch.setattr(evals.sweep, "run_eval", counting)
    memo = {}
    ev = ShareEvaluator(dataset, "truncate", metric="answer_recall", reader=None, tokenizer="cl100k_base",
                        prices=None, price_model=None, seed=0, progress=False, memo=memo)
    ev.evaluate([0.2, 0.5])
    assert ev.value(0.5) is not None and ev.value(0.2) is not None and ev.full_value() == 1.0
    again = ShareEvaluator(dataset, "truncate", metric="answer_recall", reader=None, tokenizer="cl100k_base",
                           prices=None, price_model=None, seed=0, progress=False, memo=memo)
    again.evaluate([0.5, 0.3])
    assert seen == [[0.2, 0.5], [0.3]]

"""``tune_budget(..., confidence=C)`` / ``ragtrim tune --confidence C``: the smallest budget whose retention's
one-sided bootstrap lower bound reaches the target, never below the point rule's budget, and always passing."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from evals.datasets import load_dataset, parse_example
from evals.tune import ShareEvaluator, metric_mean, paired_values, search, tune_budget
from evals.tune_rule import ChoiceRule, lower_bound
from optimizer import Pipeline, Stage, StageOutput
from ragtrim.cli import app
from tests.test_tune import synthetic_examples


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("tuneconf") / "synthetic.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in synthetic_examples(30)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def dataset(synthetic):
    return load_dataset(synthetic)


class StepRows:
    """A stand-in for :class:`ShareEvaluator`: example ``i`` recalls its answer at shares ``>= need[i]``, except
    inside its ``dips`` (a not-monotone metric, so a not-monotone bound)."""

    def __init__(self, need: list[float], dips: list[tuple[float, float] | None]) -> None:
        self.need, self.dips = need, dips
        self.metric, self.name, self.dataset_name = "answer_recall", "stub", "stub"
        self.data = SimpleNamespace(examples=list(range(len(need))))
        self.asked: list[float] = []

    def _row(self, i: int, recall: int) -> SimpleNamespace:
        return SimpleNamespace(id=str(i), answer_recall=recall, reader_called=False, pipeline_error=None, tokens_full=1000)

    def evaluate(self, batch):
        self.asked.extend(batch)

    def rows(self, share):
        def hit(i):
            dip = self.dips[i]
            return int(share >= self.need[i] and not (dip and dip[0] <= share < dip[1]))

        return [self._row(i, hit(i)) for i in range(len(self.need))]

    def full_rows(self):
        return [self._row(i, 1) for i in range(len(self.need))]

    def full_value(self):
        return metric_mean(self.full_rows(), self.metric)

    def one_token_share(self):
        return 0.001

    def paired(self, share):
        return paired_values(self.full_rows(), self.rows(share), self.metric)


def random_stub(seed: int, n: int = 60) -> StepRows:
    rng = random.Random(seed)
    need = [rng.uniform(0.01, 0.9) for _ in range(n)]
    dips = []
    for i in range(n):
        start = rng.uniform(need[i], 1.0)
        dips.append((start, min(start + rng.uniform(0.005, 0.1), 0.99)) if rng.random() < 0.3 else None)
    return StepRows(need, dips)


GRID = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.9, 0.99])
def test_lower_bound_rule_never_chooses_below_the_point_rule_and_its_answer_passes(seed, confidence):
    point_rule = ChoiceRule(0.95, resamples=300, seed=seed)
    bound_rule = ChoiceRule(0.95, confidence, resamples=300, seed=seed)
    point, point_met = search(random_stub(seed), GRID, target_retention=0.95, resolution=0.005, rule=point_rule)
    stub = random_stub(seed)
    chosen, met = search(stub, GRID, target_retention=0.95, resolution=0.005, rule=bound_rule)
    assert point_met and met  # share 1.0: every example recalls, retention 1 and its bound 1
    assert chosen >= point, (chosen, point)
    assert bound_rule.ok(*stub.paired(chosen))  # the answer passes the rule it was chosen by
    assert lower_bound(*stub.paired(chosen), confidence=confidence, resamples=300, seed=seed) >= 0.95


def test_lower_bound_rule_chooses_at_least_the_point_budget_on_real_runs(dataset):
    for pipeline in ("truncate", "bm25-topk"):
        memo: dict = {}
        point = tune_budget(dataset, pipeline, target_retention=0.9, resamples=300, memo=memo)
        bound = tune_budget(dataset, pipeline, target_retention=0.9, resamples=300, memo=memo, confidence=0.9)
        assert point.met and bound.met
        assert bound.budget >= point.budget, (pipeline, point.budget, bound.budget)
        assert bound.retention_bound >= 0.9 and bound.retention >= 0.9


def test_the_point_rules_choice_fails_the_bound_and_the_bound_rule_pays_for_it(dataset):
    point = tune_budget(dataset, "truncate", target_retention=0.9, resamples=500, holdout=0)
    evaluator = ShareEvaluator(dataset, "truncate", metric="answer_recall", reader=None, tokenizer="cl100k_base",
                               prices=None, price_model=None, seed=0, progress=False, memo=None)
    at_point = lower_bound(*evaluator.paired(point.budget), confidence=0.9, resamples=500, seed=0)
    assert point.retention >= 0.9 > at_point  # the point rule stops at the boundary: its bound is below it
    bound = tune_budget(dataset, "truncate", target_retention=0.9, resamples=500, holdout=0, confidence=0.9)
    assert bound.budget > point.budget and bound.retention_bound >= 0.9
    assert bound.tokens_mean > point.tokens_mean  # the margin costs tokens


class DropEveryTenthAnswer(Stage):
    """Drops the answer chunk of the questions that say "drop", at every budget: retention 0.9 at best."""

    name = "drop-tenth"

    def __call__(self, query, chunks, context):
        if "drop" in query:
            return StageOutput(list(chunks[1:]), reasons={chunks[0].id: "test"})
        return list(chunks)


def test_a_bound_that_misses_even_at_budget_one_says_so():
    exs = [{"id": f"q{i}", "question": "Where is the key? drop" if i % 10 == 0 else "Where is the key?",
            "answers": [f"drawer{i}"], "chunks": [{"id": f"{i}a", "text": f"The key is in drawer{i}."},
                                                 {"id": f"{i}b", "text": "Filler about nothing. " * 6}]}
           for i in range(30)]
    data = SimpleNamespace(name="drops", examples=[parse_example(e) for e in exs])
    pipe = Pipeline([DropEveryTenthAnswer()], name="drops")
    assert tune_budget(data, pipe, target_retention=0.9, resamples=200).met  # the point estimate reaches 0.9
    result = tune_budget(data, pipe, target_retention=0.9, resamples=200, confidence=0.9)
    assert not result.met and result.budget == 1.0
    assert result.retention == pytest.approx(0.9) and result.retention_bound < 0.9
    assert "under the 0.9 lower bound" in result.verdict() and "--confidence" in result.verdict()
    assert "whose lower bound MISSES" in result.summary()


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.2, 90, True, "0.9", float("nan")])
def test_bad_confidence_is_refused_naming_the_fix(dataset, bad):
    with pytest.raises(ValueError, match=r"confidence must be a level in \(0, 1\), e\.g\. 0\.9"):
        tune_budget(dataset, "truncate", confidence=bad)


def test_cli_refuses_a_bad_confidence(synthetic):
    out = CliRunner().invoke(app, ["tune", "--data", str(synthetic), "--pipeline", "truncate", "--confidence", "1.5"])
    assert out.exit_code == 2 and "--confidence must be a level in (0, 1)" in out.output


def test_cli_json_and_text_name_the_rule_and_the_bound(synthetic):
    args = ["tune", "--data", str(synthetic), "--pipeline", "truncate", "--target-retention", "0.9", "--resamples", "200"]
    bound = json.loads(CliRunner().invoke(app, [*args, "--confidence", "0.9", "--format", "json"]).stdout)
    assert bound["rule"] == "lower_bound" and bound["confidence"] == 0.9 and bound["retention_bound"] >= 0.9
    assert "retention_bound" in bound["in_sample"]
    point = json.loads(CliRunner().invoke(app, [*args, "--format", "json"]).stdout)
    assert point["rule"] == "point" and point["confidence"] is None and point["retention_bound"] is None
    assert bound["budget"] >= point["budget"]
    text = CliRunner().invoke(app, [*args, "--confidence", "0.9"])
    assert text.exit_code == 0, text.output
    assert "rule       lower bound" in text.stdout and "one-sided 90 % bootstrap lower bound" in text.stdout
    assert f"bound at the budget {bound['retention_bound']:.4f}" in text.stdout
    assert "rule       point estimate" in CliRunner().invoke(app, args).stdout

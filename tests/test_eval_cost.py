"""Cost arithmetic and the price table."""

from __future__ import annotations

import pytest

from evals.aggregate import aggregate
from evals.cost import cost_per_1k_queries, load_prices
from evals.sweep import Arm, ExampleRow


def test_cost_per_1k_queries_by_hand():
    # 1,443 tokens x 1,000 queries = 1,443,000 tokens = 1.443 M at $2.50 -> $3.6075
    assert cost_per_1k_queries(1443, 2.50) == pytest.approx(3.6075)
    assert cost_per_1k_queries(0, 2.50) == 0
    with pytest.raises(ValueError, match="non-negative"):
        cost_per_1k_queries(-1, 1.0)


def test_bundled_table_is_dated_and_has_a_default():
    table = load_prices()
    assert table.default in table.prices
    for price in table.prices.values():
        assert price.date[:2] == "20" and price.source and price.input_per_million >= 0


def test_user_price_file_adds_and_overrides(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('date = "2030-01-01"\n[models."my-llm"]\ninput_per_million = 1.0\n[models."gpt-4o"]\ninput_per_million = 9.0\n')
    table = load_prices(f)
    assert table.price("my-llm").input_per_million == 1.0 and table.price("my-llm").date == "2030-01-01"
    assert table.price("gpt-4o").input_per_million == 9.0
    assert "gpt-4o-mini" in table.prices  # bundled ones stay


def test_unknown_price_model_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown price model 'gpt4o'.*gpt-4o"):
        load_prices().price("gpt4o")


def test_bad_price_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('[models."x"]\ninput_per_million = "cheap"\n')
    with pytest.raises(ValueError, match="input_per_million"):
        load_prices(f)


def _row(i, pipeline, budget, tokens, prompt_tokens):
    return ExampleRow(id=i, pipeline=pipeline, budget=budget, context="", tokens=tokens, tokens_full=1000,
                      prompt_tokens=prompt_tokens, kept_ids=(), answer_recall=None, evidence_recall=None, latency_ms=0.0)


def test_cost_saved_versus_full_by_hand():
    rows = [_row("a", "full", None, 1000, 1030), _row("b", "full", None, 1000, 1050),
            _row("a", "x", 0.25, 250, 280), _row("b", "x", 0.25, 250, 300)]
    runs = aggregate(rows, [Arm("full", None), Arm("x", 0.25)], usd_per_million=2.0)
    full, cut = runs[0].metrics, runs[1].metrics
    # full: mean 1,040 input tokens -> 1.04 M per 1k queries x $2 = $2.08; cut: 290 -> $0.58
    assert full.cost_per_1k_queries == pytest.approx(2.08)
    assert cut.cost_per_1k_queries == pytest.approx(0.58)
    assert cut.cost_saved_per_1k == pytest.approx(1.50)
    assert full.cost_saved_per_1k == pytest.approx(0.0)
    assert cut.compression == pytest.approx(4.0) and cut.token_share == pytest.approx(0.25)

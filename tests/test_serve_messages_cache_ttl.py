"""1-hour prompt-cache writes on ``POST /v1/messages`` are charged their own price and reserved for.

Anthropic bills a write to the 5-minute cache 1.25x the input price and one to the 1-hour cache (``cache_control``
``{"type": "ephemeral", "ttl": "1h"}``) 2x, and reports the split in ``usage.cache_creation``
(``ephemeral_5m_input_tokens``, ``ephemeral_1h_input_tokens``). A model's ``cache_write_1h_per_million`` prices the
1-hour ones (default: 2x ``input_per_million`` when ``cache_write_per_million`` is set); a request that asks for a
1-hour cache anywhere (system, a message's block, a tool) reserves its prompt at that price, so a dollar budget holds
under a burst of them.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from ragtrim.serve.config import ServeConfig
from ragtrim.serve.messages_api import cache_writes, event, usage_counts
from ragtrim.serve.pricing import ModelPrice

import test_serve_messages as T
from serve_fixtures import budget, final_rows

CLAUDE = T.CLAUDE
N = 100_000
ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
SYSTEM_1H = [{"type": "text", "text": "long policy " * 50, "cache_control": ONE_HOUR}]


def usage(plain: int, m5: int, h1: int, out: int = 1) -> dict[str, Any]:
    return {"input_tokens": plain, "cache_creation_input_tokens": m5 + h1, "cache_read_input_tokens": 0, "output_tokens": out,
            "cache_creation": {"ephemeral_5m_input_tokens": m5, "ephemeral_1h_input_tokens": h1}}


def whole(u: dict[str, Any]) -> dict[str, Any]:
    return {"id": "m", "type": "message", "role": "assistant", "model": CLAUDE, "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "ok"}], "usage": u}


def stream_of(start_usage: dict[str, Any], delta_usage: dict[str, Any]) -> list[bytes]:
    start = event("message_start", {"message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": CLAUDE,
                                                "usage": start_usage}})
    delta = event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": delta_usage})
    return [start, *T.WORDS, event("content_block_stop", {"index": 0}), delta, event("message_stop", {})]


# the price


def claude_price() -> ModelPrice:
    return ModelPrice(model="claude", input_per_million=Decimal("3"), output_per_million=Decimal("15"), date="d",
                      cached_input_per_million=Decimal("0.3"), cache_write_per_million=Decimal("3.75"),
                      cache_write_1h_per_million=Decimal("6"))


def test_the_1h_part_of_the_writes_is_charged_the_1h_price_and_the_rest_the_5m_price():
    CLAUDE_PRICE = claude_price()
    assert CLAUDE_PRICE.cost_micro(prompt_tokens=N + 10, completion_tokens=1, cache_write_tokens=N, cache_write_1h_tokens=N) == 600045
    # 10 plain, 300 read, 1000 written of which 400 to the 1-hour cache: 30 + 90 + 600 * 3.75 + 400 * 6 + 15
    assert CLAUDE_PRICE.cost_micro(prompt_tokens=1310, completion_tokens=1, cached_tokens=300, cache_write_tokens=1000,
                                   cache_write_1h_tokens=400) == 4785
    with pytest.raises(ValueError, match="cache_write_1h_tokens"):
        CLAUDE_PRICE.cost_micro(prompt_tokens=100, completion_tokens=0, cache_write_tokens=10, cache_write_1h_tokens=11)


def test_the_worst_case_prices_the_prompt_at_the_1h_price_only_when_the_request_asks_for_it():
    CLAUDE_PRICE = claude_price()
    assert CLAUDE_PRICE.worst_micro(prompt_tokens=1000, completion_tokens=10) == 3900  # 3.75 a prompt token
    one_hour = CLAUDE_PRICE.with_1h_writes()
    assert one_hour.worst_micro(prompt_tokens=1000, completion_tokens=10) == 6150  # 6 a prompt token
    assert one_hour.max_prompt_tokens(6150, 10) == 1000 and one_hour.ref == CLAUDE_PRICE.ref


def test_the_usage_split_is_read_from_cache_creation():
    assert usage_counts(usage(10, 30, 70)) == (110, 1, 0, 100)
    assert cache_writes({"usage": usage(10, 30, 70)}) == (100, 70)
    assert cache_writes({"usage": {"input_tokens": 10, "cache_creation_input_tokens": 100, "output_tokens": 1}}) == (100, None)
    assert cache_writes({"usage": {**usage(10, 30, 70), "input_tokens": None}}) == (0, 0)  # no prompt count: no cache
    bad = {**usage(10, 30, 70), "cache_creation": {"ephemeral_1h_input_tokens": "70"}}
    assert cache_writes({"usage": bad}) == (100, None)  # not a count: as if not reported


# the config


def models_of(**claude: Any) -> Any:
    return ServeConfig.from_dict({"upstreams": {"claude": {"kind": "anthropic", "base_url": "http://127.0.0.1:9"}},
                                  "models": {"c": {"upstream": "claude", **claude}}})


def price_of(**claude: Any) -> ModelPrice:
    from ragtrim.serve.pricing import model_price

    return model_price(models_of(**claude).models["c"], None)


def test_the_1h_price_defaults_to_twice_the_input_price_when_cache_writes_are_priced():
    assert price_of(**T.PRICES).cache_write_1h_per_million == Decimal("6")
    assert price_of(**T.PRICES, cache_write_1h_per_million=7.5).cache_write_1h_per_million == Decimal("7.5")
    # no cache-write price: every write (either cache) costs the input price, as before
    plain = price_of(input_per_million=3.0, output_per_million=15.0)
    assert plain.cache_write_1h_per_million is None
    assert plain.cost_micro(prompt_tokens=100, completion_tokens=0, cache_write_tokens=100, cache_write_1h_tokens=100) == 300


@pytest.mark.parametrize(("claude", "words"), [
    ({"cache_write_1h_per_million": 6.0}, "cache_write_1h_per_million needs input_per_million"),
    ({**T.PRICES, "cache_write_1h_per_million": -1.0}, "cache_write_1h_per_million must be a finite number >= 0"),
    ({**T.PRICES, "cache_write_1h_per_million": float("inf")}, "cache_write_1h_per_million must be a finite number >= 0"),
    ({**T.PRICES, "cache_write_1h_per_million": "6"}, "cache_write_1h_per_million must be a finite number >= 0"),
])
def test_the_config_refuses_a_1h_price_it_cannot_use(claude, words):
    with pytest.raises(ValueError, match=words):
        models_of(**claude)


# the route: charged


def test_a_1h_write_is_charged_twice_the_input_price(tmp_path):
    req = {"model": CLAUDE, "max_tokens": 16, "system": SYSTEM_1H, "messages": [{"role": "user", "content": "hi"}]}
    with T.gateway_before(T.answering(200, whole(usage(10, 0, N))), tmp_path) as s:
        budget(s.service, "acme", "usd", 10_000_000)
        r = s.post(req)
        [row] = final_rows(s.service)
    assert r.status_code == 200 and (row["prompt_tokens"], row["cache_write_tokens"]) == (N + 10, N)
    assert row["cost_micro"] == math.ceil(10 * 3 + N * 6.0 + 15) == 600045


def test_mixed_5m_and_1h_writes_are_each_charged_their_price(tmp_path):
    with T.gateway_before(T.answering(200, whole(usage(10, 600, 400))), tmp_path) as s:
        r = s.post({"model": CLAUDE, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
        [row] = final_rows(s.service)
    assert r.status_code == 200 and row["cost_micro"] == math.ceil(10 * 3 + 600 * 3.75 + 400 * 6.0 + 15) == 4695


@pytest.mark.parametrize("delta_usage", [{"output_tokens": 3}, {"input_tokens": 10, "output_tokens": 3},
                                         {"input_tokens": 10, "cache_creation": {"ephemeral_5m_input_tokens": 600}, "output_tokens": 3}])
def test_a_streamed_1h_write_is_charged_the_1h_price_merged_field_by_field(tmp_path, delta_usage):
    with T.gateway_before(T.scripted(stream_of({**usage(10, 600, 400), "output_tokens": 1}, delta_usage)), tmp_path) as s:
        budget(s.service, "acme", "usd", 10_000_000)
        with s.client().messages.stream(model=CLAUDE, max_tokens=50, system=SYSTEM_1H,
                                        messages=[{"role": "user", "content": "hi"}]) as stream:
            stream.get_final_message()
        [row] = final_rows(s.service)
    assert (row["prompt_tokens"], row["cache_write_tokens"], row["completion_tokens"]) == (1010, 1000, 3)
    assert row["cost_micro"] == math.ceil(10 * 3 + 600 * 3.75 + 400 * 6.0 + 3 * 15) == 4725


def test_writes_without_their_split_are_charged_the_1h_price_when_the_request_asked_for_it(tmp_path):
    unsplit = {"input_tokens": 10, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 0, "output_tokens": 1}
    with T.gateway_before(T.answering(200, whole(unsplit)), tmp_path) as s:
        asked = s.post({"model": CLAUDE, "max_tokens": 16, "system": SYSTEM_1H, "messages": [{"role": "user", "content": "hi"}]})
        not_asked = s.post({"model": CLAUDE, "max_tokens": 16, "system": "p", "messages": [{"role": "user", "content": "hi"}]})
        rows = final_rows(s.service)
    assert asked.status_code == not_asked.status_code == 200
    assert [r["cost_micro"] for r in rows] == [30 + 6000 + 15, 30 + 3750 + 15]


# the route: reserved


def _reserved(tmp_path: Any, req: dict[str, Any], **headers: str) -> int:
    with T.gateway_before(T.answering(200, whole(usage(10, 0, 0))), tmp_path) as s:
        budget(s.service, "acme", "usd", 10_000_000)
        r = s.post(req, **headers)
        [row] = final_rows(s.service)
    assert r.status_code == 200, r.text
    return int(row["reserved_micro"])


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("where", ["system", "message", "tool_result", "tool"])
def test_a_1h_cache_control_anywhere_reserves_the_prompt_at_the_1h_price(tmp_path, where):
    block = {"type": "text", "text": "long policy " * 50}
    body: dict[str, Any] = {"model": CLAUDE, "max_tokens": 16, "system": [block], "messages": HI}
    tool = {"name": "t", "description": "long policy " * 50, "input_schema": {"type": "object"}}
    if where == "system":
        plain_cost = _reserved(tmp_path / "a", body)
        body = {**body, "system": [{**block, "cache_control": ONE_HOUR}]}
    elif where == "message":
        plain_cost = _reserved(tmp_path / "a", {**body, "system": "p", "messages": [{"role": "user", "content": [block]}]})
        body = {**body, "system": "p", "messages": [{"role": "user", "content": [{**block, "cache_control": ONE_HOUR}]}]}
    elif where == "tool_result":
        result = {"type": "tool_result", "tool_use_id": "t1", "content": [{**block, "cache_control": ONE_HOUR}]}
        body = {**body, "system": "p", "messages": [{"role": "user", "content": "q"},
                                                     {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "t", "input": {}}]},
                                                     {"role": "user", "content": [result]}], "tools": [tool]}
        plain_cost = _reserved(tmp_path / "c", {**body, "messages": [*body["messages"][:2], {"role": "user", "content": [
            {**result, "content": [block]}]}]})
    else:  # a 5-minute cache_control (no ttl) is reserved at the 5-minute price
        body = {**body, "system": "p", "tools": [{**tool, "cache_control": ONE_HOUR}]}
        plain_cost = _reserved(tmp_path / "d", {**body, "tools": [{**tool, "cache_control": {"type": "ephemeral"}}]})
    one_hour = _reserved(tmp_path / "b", body)
    # the prompt part of the worst case moves from 3.75 to 6 a token; the output part (16 * 1.4 * 15) stays
    out = math.ceil(with_margin(16) * 15.0)
    assert (one_hour - out) / (plain_cost - out) == pytest.approx(6 / 3.75, rel=0.02)


def with_margin(n: int) -> int:
    from ragtrim.serve.plan import with_margin as margin

    return margin(n, T.ANTHROPIC_COUNT_MARGIN)


def test_a_burst_of_1h_writes_never_overruns_a_dollar_budget(tmp_path):
    limit = 30_000  # micro-dollars: a few requests' worth (then a few on the cheaper model, then 429s)
    system = [{"type": "text", "text": "long policy " * 500, "cache_control": ONE_HOUR}]
    # every prompt token is written to the 1-hour cache (the worst a request can cost)
    with T.live(tmp_path, answer_tokens=8, cache_write=lambda p: p, cache_write_1h=lambda p: p) as s:
        budget(s.service, "acme", "usd", limit)
        codes: list[int] = []

        def one() -> None:
            codes.append(s.post({"model": CLAUDE, "max_tokens": 8, "system": system, "messages": HI}).status_code)

        rows = T.burst(s.service, one, 16)
        spent = T.spent_and_reserved(s.service)
    assert 200 in codes and 429 in codes and len(codes) == 16
    assert all(r["cache_write_tokens"] == r["prompt_tokens"] > 1000 and r["cost_micro"] <= r["reserved_micro"] for r in rows)
    claude = [r for r in rows if r["model_used"] == CLAUDE]
    assert claude and all(r["cost_micro"] == math.ceil(r["prompt_tokens"] * 6.0 + r["completion_tokens"] * 15.0) for r in claude)
    assert spent == (sum(r["cost_micro"] for r in rows), 0) and spent[0] <= limit


def test_the_extended_cache_ttl_beta_is_passed_under_a_budget(tmp_path):
    with T.live(tmp_path) as s:
        budget(s.service, "acme", "usd", 10_000_000)
        r = s.post({"model": CLAUDE, "max_tokens": 8, "system": SYSTEM_1H, "messages": HI},
                   **{"anthropic-beta": "extended-cache-ttl-2025-04-11"})
        sent = s.fake.anthropic_headers[-1]["anthropic-beta"]
    assert r.status_code == 200, r.text
    assert sent == "extended-cache-ttl-2025-04-11"


def test_a_claude_model_priced_without_cache_prices_is_charged_anthropics_cache_multiples(tmp_path):
    # claude-haiku in T.config gives only its input (1.0) and output (5.0) prices: on an anthropic upstream its writes
    # cost 1.25x the input price, its reads 0.1x, as Anthropic bills them (they were charged the input price)
    with T.live(tmp_path, cache_read=120, cache_write=30) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        reply = s.client().messages.create(model="claude-haiku", max_tokens=16,
                                           messages=[{"role": "user", "content": T.QUESTION * 30}])
        [row] = final_rows(s.service)
        price = s.service.prices["claude-haiku"]
    u = reply.usage
    assert (price.cache_write_per_million, price.cache_write_1h_per_million, price.cached_input_per_million) == (
        Decimal("1.250"), Decimal("2.0"), Decimal("0.10"))
    exact = u.input_tokens * 1.0 + 120 * 0.1 + 30 * 1.25 + u.output_tokens * 5.0  # micro-dollars per token
    assert row["cost_micro"] == math.ceil(exact)
    assert row["reserved_micro"] >= math.ceil(row["prompt_tokens"] * 1.25 + 16 * 5.0)


def test_an_openai_model_keeps_the_input_price_for_cache_writes():
    from ragtrim.serve.config import ModelConfig
    from ragtrim.serve.pricing import model_price

    m = ModelConfig("gpt-4o", input_per_million=2.5, output_per_million=10.0)
    p = model_price(m, None)
    assert (p.cache_write_per_million, p.cached_input_per_million) == (None, None)
    assert model_price(m, None, anthropic=True).cache_write_per_million == Decimal("3.125")


def test_a_1h_write_price_below_the_5m_one_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match=r"cache_write_1h_per_million = 0.6 is below its cache_write_per_million = 3.75.*leave it out"):
        ServeConfig.from_dict({"upstreams": {"a": {"kind": "anthropic", "base_url": "http://127.0.0.1:9/"}},
                               "models": {"c": {"upstream": "a", "input_per_million": 3.0, "output_per_million": 15.0,
                                                "cache_write_per_million": 3.75, "cache_write_1h_per_million": 0.6}}})
    with pytest.raises(ValueError, match=r"is below its input_per_million = 3.0"):
        ServeConfig.from_dict({"upstreams": {"a": {"kind": "anthropic", "base_url": "http://127.0.0.1:9/"}},
                               "models": {"c": {"upstream": "a", "input_per_million": 3.0, "output_per_million": 15.0,
                                                "cache_write_1h_per_million": 2.0}}})

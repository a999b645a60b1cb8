"""Prompt caching is accounted: the prompt tokens an upstream read from its cache are charged its cached-input price.

OpenAI reports them as ``usage.prompt_tokens_details.cached_tokens`` (part of ``prompt_tokens``) and bills them at
a lower price. A model's ``cached_input_per_million`` (the price table, or inline in ``[models.X]``) prices them;
without one they are charged the full input price, as before, and still recorded. The reservation assumes no cache,
so a cached price above the input price is refused when the prices are read. Every request's ledger row has its
``cached_tokens`` (0 where no usage came); ``/v1/usage`` sums them, and ``/metrics`` counts them.

The gateway tests run on a SQLite file and on PostgreSQL (``db_engine``; PostgreSQL skipped where it is not installed,
except under ``CI=true``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from starlette.testclient import TestClient

from evals.cost import load_prices
from ragtrim.serve.app import create_app
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.keys import create_key
from ragtrim.serve.pricing import ModelPrice, model_price
from ragtrim.serve.service import Service
from ragtrim.serve.testing import serve_in_thread
from ragtrim.serve.upstream import cached_count

from quota_fixtures import db_engine, engine, pg_engine, pg_url  # noqa: F401 (fixtures)
from serve_fixtures import PEPPER, admin_key, auth, budget, chat_body, final_rows, gateway_config, stack

# gpt-4o in the bundled table: $2.50 in, $1.25 cached in, $10 out per million tokens (micro-dollars per token)
GPT4O = (Decimal("2.5"), Decimal("1.25"), Decimal("10"))
# a model priced inline with no cached price: cached tokens are charged the full input price
PLAIN = {"plain": {"upstream": "fake", "tokenizer": "cl100k_base", "input_per_million": 3.0, "output_per_million": 6.0,
                   "price_date": "2026-12-01"}}


def expected_cost(row: dict[str, Any], input_: Decimal, cached: Decimal, output: Decimal) -> int:
    exact = (Decimal(row["prompt_tokens"] - row["cached_tokens"]) * input_ + Decimal(row["cached_tokens"]) * cached
             + Decimal(row["completion_tokens"]) * output)
    return math.ceil(exact)


@pytest.fixture(scope="module")
def fake():
    app = create_fake_upstream(latency_ms=1, answer_tokens=9)
    with serve_in_thread(app) as url:
        yield url, app.state.fake


@contextmanager
def cached(fake: Any, value: Any) -> Iterator[None]:
    """The fake upstream reports ``value`` as ``usage.prompt_tokens_details.cached_tokens`` (a callable: of the prompt)."""
    fake[1].cached_tokens = value
    try:
        yield
    finally:
        fake[1].cached_tokens = None


@contextmanager
def client_on(engine: Any, url: str) -> Iterator[tuple[TestClient, Service, str]]:
    """A TestClient on a gateway over ``engine`` (tenant ``acme``, with a usd and a tokens budget), and acme's key."""
    service = Service(gateway_config(url, extra_models=PLAIN), db_url=engine.url.render_as_string(hide_password=False),
                      engine=engine, pepper=PEPPER)
    key = create_key(engine, PEPPER, tenant_id="acme")[1]
    budget(service, "acme", "usd", 10_000_000)
    budget(service, "acme", "tokens", 10_000_000)
    with TestClient(create_app(service)) as client:
        yield client, service, key


def spent(service: Service) -> dict[str, int]:
    from ragtrim.serve.schema import budget_usage, budgets

    with service.engine.connect() as c:
        q = budget_usage.join(budgets, budgets.c.id == budget_usage.c.budget_id).select()
        return {r.unit: int(r.spent) for r in c.execute(q).all()}


def stream_body(**extra: Any) -> dict[str, Any]:
    return chat_body(stream=True, stream_options={"include_usage": True}, **extra)


def streamed_usage(text: str) -> dict[str, Any]:
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    [usage] = [c["usage"] for c in chunks if c.get("usage")]
    return usage


# the cost


def test_cost_charges_cached_tokens_the_cached_price_exactly_rounded_up():
    p = ModelPrice(model="gpt-4o", input_per_million=GPT4O[0], output_per_million=GPT4O[2], date="d",
                   cached_input_per_million=GPT4O[1])
    # 400 * 2.5 + 600 * 1.25 + 7 * 10 = 1000 + 750 + 70
    assert p.cost_micro(prompt_tokens=1000, completion_tokens=7, cached_tokens=600) == 1820
    assert p.cost_micro(prompt_tokens=1, completion_tokens=0, cached_tokens=1) == 2  # 1.25, rounded up
    assert p.cost_micro(prompt_tokens=1000, completion_tokens=7) == 2570  # no cache: as before (the reservation)
    assert p.cost_micro(prompt_tokens=3, completion_tokens=0, cached_tokens=3) == 4  # 3.75 exactly, not a float's 3.7499...


def test_without_a_cached_price_cached_tokens_cost_the_full_input_price():
    p = ModelPrice(model="m", input_per_million=Decimal("3"), output_per_million=Decimal("6"), date="d")
    assert p.cost_micro(prompt_tokens=1000, completion_tokens=10, cached_tokens=900) == 3060


@pytest.mark.parametrize("cached_tokens", [-1, 1001])
def test_a_cached_count_outside_the_prompt_is_a_bug_not_a_discount(cached_tokens):
    p = ModelPrice(model="m", input_per_million=Decimal("3"), output_per_million=Decimal("6"), date="d",
                   cached_input_per_million=Decimal("0"))
    with pytest.raises(ValueError, match="cached_tokens"):
        p.cost_micro(prompt_tokens=1000, completion_tokens=0, cached_tokens=cached_tokens)


@pytest.mark.parametrize(("usage", "count"), [
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 8}}, 8),
    ({"prompt_tokens": 10}, 0),
    ({"prompt_tokens": 10, "prompt_tokens_details": None}, 0),
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": -5}}, 0),
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": "8"}}, 0),
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 8.0}}, 0),
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": True}}, 0),
    ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 10**12}}, 0),
    ({"prompt_tokens": 10, "prompt_tokens_details": [8]}, 0),
])
def test_the_cached_count_is_read_with_the_usage_rules(usage, count):
    assert cached_count({"usage": usage}) == count
    assert cached_count({"choices": []}) == 0 and cached_count(None) == 0


# the price table


def write(tmp_path: Any, text: str) -> str:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_the_bundled_table_has_openais_cached_prices_and_the_others_none():
    table = load_prices()
    assert {m: table.price(m).cached_input_per_million for m in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini")} == {
        "gpt-4o": 1.25, "gpt-4o-mini": 0.075, "gpt-4.1": 0.50, "gpt-4.1-mini": 0.10}
    assert table.price("claude-3.5-sonnet").cached_input_per_million is None
    assert table.to_dict()["models"]["gpt-4o"]["cached_input_per_million"] == 1.25
    assert "cached_input_per_million" not in table.to_dict()["models"]["claude-3.5-sonnet"]


def test_a_price_file_gives_cached_prices_exactly_to_the_gateway(tmp_path):
    path = write(tmp_path, '[models."m"]\ninput_per_million = 0.15\noutput_per_million = 0.6\ncached_input_per_million = 0.075\n')
    table = load_prices(path)
    assert table.price("m").cached_input_per_million == 0.075
    cfg = ServeConfig.from_dict({"models": {"m": {"upstream": "local"}}})
    price = model_price(cfg.model("m"), table)
    assert price.cached_input_per_million == Decimal("0.075")
    assert price.cost_micro(prompt_tokens=40, completion_tokens=0, cached_tokens=40) == 3  # 40 * 0.075 = 3 exactly


@pytest.mark.parametrize("value", ["-0.1", "nan", "inf", '"cheap"', "true"])
def test_a_price_file_refuses_a_cached_price_that_is_not_one(tmp_path, value):
    path = write(tmp_path, f'[models."m"]\ninput_per_million = 1\ncached_input_per_million = {value}\n')
    with pytest.raises(ValueError, match=r"model 'm' has cached_input_per_million = .*finite non-negative number"):
        load_prices(path)


def test_a_price_file_refuses_a_cached_price_above_the_input_price(tmp_path):
    path = write(tmp_path, '[models."m"]\ninput_per_million = 1\ncached_input_per_million = 1.5\n')
    with pytest.raises(ValueError) as err:
        load_prices(path)
    message = str(err.value)
    assert "cached_input_per_million = 1.5 is above its input_per_million = 1" in message, message
    assert "reservation" in message and "upper bound" in message, message


# the serve config


def test_an_inline_cached_price_is_used():
    cfg = ServeConfig.from_dict({"models": {"m": {"upstream": "local", "input_per_million": 2, "output_per_million": 8,
                                                  "cached_input_per_million": 0.5}}})
    price = model_price(cfg.model("m"), load_prices())
    assert (price.input_per_million, price.cached_input_per_million) == (Decimal("2.0"), Decimal("0.5"))


@pytest.mark.parametrize(("model", "words"), [
    ({"input_per_million": 1, "output_per_million": 2, "cached_input_per_million": 1.5},
     "model 'm': cached_input_per_million = 1.5 is above its input_per_million = 1"),
    ({"input_per_million": 1, "output_per_million": 2, "cached_input_per_million": float("nan")},
     "model 'm': cached_input_per_million must be a finite number >= 0"),
    ({"input_per_million": 1, "output_per_million": 2, "cached_input_per_million": -1},
     "model 'm': cached_input_per_million must be a finite number >= 0"),
    ({"cached_input_per_million": 0.5}, "model 'm': cached_input_per_million needs input_per_million"),
])
def test_the_config_refuses_a_cached_price_it_cannot_use_when_read(model, words):
    with pytest.raises(ValueError) as err:
        ServeConfig.from_dict({"models": {"m": {"upstream": "local", **model}}})
    assert words in str(err.value), str(err.value)
    if "above" in words:
        assert "reservation" in str(err.value) and "upper bound" in str(err.value)


# the gateway


def test_a_non_streamed_answer_is_charged_the_cached_price(fake, db_engine):
    with client_on(db_engine, fake[0]) as (client, service, key), cached(fake, lambda prompt: prompt - 5):
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 200, r.text
        [row] = final_rows(service)
        assert row["usage_source"] == "upstream" and row["cached_tokens"] == row["prompt_tokens"] - 5 > 0
        cost = expected_cost(row, *GPT4O)
        assert row["cost_micro"] == cost < expected_cost({**row, "cached_tokens": 0}, *GPT4O)
        out = r.json()["ragtrim"]
        assert (out["cost_micro"], out["cached_tokens"]) == (cost, row["cached_tokens"])
        assert r.headers["X-Ragtrim-Cost-Micro"] == str(cost)
        assert r.json()["usage"]["prompt_tokens_details"] == {"cached_tokens": row["cached_tokens"]}  # relayed as it came
        # a usd budget is charged the lower cost; a tokens budget every token, a cached one too
        assert spent(service) == {"usd": cost, "tokens": row["prompt_tokens"] + row["completion_tokens"]}
        assert row["reserved_micro"] >= expected_cost({**row, "cached_tokens": 0}, *GPT4O)  # the reservation assumed no cache


def test_a_streamed_answer_is_charged_the_cached_price(fake, db_engine):
    with client_on(db_engine, fake[0]) as (client, service, key), cached(fake, 7):
        r = client.post("/v1/chat/completions", json=stream_body(), headers=auth(key))
        assert r.status_code == 200, r.text
        assert streamed_usage(r.text)["prompt_tokens_details"] == {"cached_tokens": 7}
        [row] = final_rows(service)
        assert (row["usage_source"], row["cached_tokens"]) == ("upstream", 7)
        assert row["cost_micro"] == expected_cost(row, *GPT4O)
        assert spent(service) == {"usd": row["cost_micro"], "tokens": row["prompt_tokens"] + row["completion_tokens"]}


def test_a_model_without_a_cached_price_charges_cached_tokens_in_full_and_records_them(fake, db_engine):
    with client_on(db_engine, fake[0]) as (client, service, key), cached(fake, lambda prompt: prompt):
        r = client.post("/v1/chat/completions", json=chat_body(model="plain"), headers=auth(key))
        assert r.status_code == 200, r.text
        [row] = final_rows(service)
        assert row["cached_tokens"] == row["prompt_tokens"] > 0
        assert row["cost_micro"] == expected_cost({**row, "cached_tokens": 0}, Decimal(3), Decimal(3), Decimal(6))
        assert r.json()["ragtrim"]["cached_tokens"] == row["prompt_tokens"]


@pytest.mark.parametrize(("reported", "stream"), [(-5, False), ("12", False), (12.0, True), (True, False), ([3], True),
                                                  ({"n": 3}, False), (10**12, True)])
def test_a_cached_count_that_is_not_one_is_charged_as_no_cache(fake, db_engine, reported, stream):
    with client_on(db_engine, fake[0]) as (client, service, key), cached(fake, reported):
        r = client.post("/v1/chat/completions", json=stream_body() if stream else chat_body(), headers=auth(key))
        assert r.status_code == 200, r.text
        [row] = final_rows(service)
        assert (row["usage_source"], row["cached_tokens"]) == ("upstream", 0)
        assert row["cost_micro"] == expected_cost(row, *GPT4O) and "cached" not in row["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_cached_count_above_the_prompt_is_clamped_to_it_and_said(fake, db_engine, stream):
    with client_on(db_engine, fake[0]) as (client, service, key), cached(fake, lambda prompt: prompt + 50):
        r = client.post("/v1/chat/completions", json=stream_body() if stream else chat_body(), headers=auth(key))
        assert r.status_code == 200, r.text
        [row] = final_rows(service)
        assert row["cached_tokens"] == row["prompt_tokens"] > 0
        assert row["cost_micro"] == expected_cost(row, *GPT4O)
        assert f"cached_tokens {row['prompt_tokens'] + 50} above its prompt_tokens {row['prompt_tokens']}" in row["error"]


def test_a_prompt_count_replaced_by_the_gateways_is_charged_no_cache(tmp_path):
    # prompt_tokens 1 for a whole prompt is not a count: the gateway's own count is charged, and the cached count of
    # the same usage is not trusted to lower it
    from starlette.responses import JSONResponse

    def answer(body: dict[str, Any]) -> Any:
        return JSONResponse({"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 1}}})

    with stack(tmp_path, answer) as s:
        r = s.post(messages=[{"role": "user", "content": "a question long enough to be more than one token " * 20}])
        assert r.status_code == 200, r.text
        [row] = final_rows(s.service)
        assert row["usage_source"] == "counted" and row["prompt_tokens"] > 100 and row["cached_tokens"] == 0
        assert r.json()["ragtrim"]["cached_tokens"] == 0
        assert row["cost_micro"] == expected_cost(row, *GPT4O)


def test_usage_and_metrics_sum_the_cached_tokens_of_charged_rows(fake, db_engine):
    with client_on(db_engine, fake[0]) as (client, service, key), cached(fake, 6):
        for body in (chat_body(), stream_body(), chat_body("FAIL_UPSTREAM")):
            client.post("/v1/chat/completions", json=body, headers=auth(key))
        rows = final_rows(service)
        assert sorted((r["action"], r["cached_tokens"]) for r in rows) == [("failed", 0), ("ok", 6), ("ok", 6)]
        totals = client.get("/v1/usage", headers=auth(key)).json()["totals"]
        assert totals["cached_tokens"] == 12 and totals["cost_micro"] == sum(r["cost_micro"] for r in rows)
        by_model = client.get("/v1/usage", params={"by": "model"}, headers=auth(key)).json()["rows"]
        assert [(r["model"], r["cached_tokens"]) for r in by_model] == [("gpt-4o", 12)]
        metrics = client.get("/metrics", headers=auth(admin_key(service))).text
        counted = [line for line in metrics.splitlines() if line.startswith("ragtrim_cached_prompt_tokens_total{")]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == 12, counted


def test_the_usage_page_and_cli_show_cached_tokens(fake, db_engine, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from ragtrim.serve.commands import register
    from ragtrim.serve.page import render_page
    from ragtrim.serve.usage import usage_summary

    with client_on(db_engine, fake[0]) as (client, service, key), cached(fake, 6):
        assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(key)).status_code == 200
        app = typer.Typer()
        register(app)
        monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
        out = CliRunner().invoke(app, ["usage", "--db", service.db_url, "--tenant", "acme", "--format", "json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["totals"]["cached_tokens"] == 6
        table = CliRunner().invoke(app, ["usage", "--db", service.db_url, "--tenant", "acme"])
        assert table.exit_code == 0, table.output
        head, row = table.stdout.splitlines()[:2]
        assert row.split()[head.split().index("cached_tokens")] == "6", table.stdout
        totals = usage_summary(service.engine, tenant_id="acme", by=[])["totals"]
        page = render_page("acme", [], totals, [], [], [])
        assert f'id="total-cached">6 / {totals["prompt_tokens"]:,}<' in page

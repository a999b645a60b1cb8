"""Fixes from the second bug hunt on ``ragtrim serve``: tool-call output is charged, values the
ledger cannot hold are clear 400s (PostgreSQL enforces column sizes), prices are finite and
non-negative, ``/metrics`` needs a credential, usage days are checked, and the command line
fails in one line instead of crash-looping, printing a traceback or creating an empty database."""

from __future__ import annotations

import json
import os

import pytest
import typer
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from typer.testing import CliRunner

from optimizer.budget import budget_label
from optimizer.tokenizer import get_tokenizer
from ragtrim.serve.commands import register
from ragtrim.serve.config import MAX_BUDGET_TOKENS, ServeConfig
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.ledger import MAX_BUDGET_USED, LedgerEntry, column_size
from ragtrim.serve.schema import ledger
from ragtrim.serve.testing import postgres_available, serve_in_thread, temp_postgres
from ragtrim.serve.upstream import output_texts, reply_text

from serve_fixtures import admin_key, auth, budget, chat_body, gateway, tenant_with_key


def rows(service) -> list[dict]:
    with service.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(ledger.select().order_by(ledger.c.ts)).all()]


@pytest.fixture(scope="module")
def fake():
    with serve_in_thread(create_fake_upstream(latency_ms=1, answer_tokens=10)) as url:
        yield url


# A. a reply that is a tool call, from an upstream that reports no usage

ARGS = json.dumps({"query": "capital of France " * 60})
CALL = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": ARGS}}
CHUNK = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o"}


def _sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


async def _tool_call_chat(request):
    body = await request.json()
    if body.get("stream"):
        async def events():
            first = {"index": 0, **CALL, "function": {"name": "search", "arguments": ""}}
            yield _sse({**CHUNK, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [first]}}]})
            for i in range(0, len(ARGS), 20):
                yield _sse({**CHUNK, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ARGS[i:i + 20]}}]}}]})
            yield _sse({**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
            yield b"data: [DONE]\n\n"
        return StreamingResponse(events(), media_type="text/event-stream")
    return JSONResponse({"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [CALL]},
                                      "finish_reason": "tool_calls"}]})


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_reply_without_usage_is_charged_its_tokens(stream):
    app = Starlette(routes=[Route("/v1/chat/completions", _tool_call_chat, methods=["POST"])])
    arg_tokens = get_tokenizer("cl100k_base").count(ARGS)
    assert arg_tokens > 150
    with serve_in_thread(app) as up, gateway(up) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        r = client.post("/v1/chat/completions", json=chat_body(max_tokens=400, stream=stream), headers=auth(key))
        assert r.status_code == 200, r.text
        if stream:
            assert ARGS[:20].replace('"', '\\"') in r.text  # relayed as it came
        [row] = rows(service)
    assert row["usage_source"] == "counted" and row["action"] == "ok"
    assert arg_tokens <= row["completion_tokens"] <= arg_tokens + 5  # the arguments and the function's name
    assert row["cost_micro"] > row["prompt_tokens"] * 2.5  # the output is paid for (gpt-4o: $2.50 in, $10 out)


def test_a_output_texts_cover_refusals_tool_calls_and_legacy_function_calls():
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that.",
               "tool_calls": [CALL, {"id": "c2", "function": {"name": "lookup", "arguments": "{\"id\": 7}"}}, "junk"],
               "function_call": {"name": "legacy", "arguments": "{}"}}
    assert output_texts(message) == ["I can't help with that.", "search", ARGS, "lookup", "{\"id\": 7}", "legacy", "{}"]
    assert output_texts(None) == [] and output_texts({"content": 3, "tool_calls": "x"}) == []
    assert "legacy" in reply_text({"choices": [{"message": message}]})
    assert reply_text({"choices": []}) == "" and reply_text({"choices": [{"message": {"content": "hi"}}]}) == "hi"


# B. values the ledger cannot hold: a 400 up front, never a database error

def test_b_names_longer_than_their_ledger_column_are_a_400_with_a_row(fake):
    assert (column_size("model_asked"), column_size("preset")) == (120, 60)
    with gateway(fake) as (client, service):
        key = tenant_with_key(service, "acme")
        cases = [("/v1/chat/completions", chat_body(model="m" * 121), "model", "at most 120"),
                 ("/v1/chat/completions", chat_body(preset="p" * 61), "preset", "at most 60"),
                 ("/v1/optimize", {"query": "q", "chunks": ["a b c"], "model": "m" * 150}, "model", "at most 120"),
                 ("/v1/optimize", {"query": "q", "chunks": ["a b c"], "preset": "p" * 61}, "preset", "at most 60")]
        for path, body, param, text in cases:
            r = client.post(path, json=body, headers=auth(key))
            assert r.status_code == 400 and r.json()["error"]["param"] == param and text in r.json()["error"]["message"], r.text
        assert [(x["action"], x["status"]) for x in rows(service)] == [("failed", 400)] * 4


def test_b_token_budgets_fit_the_ledger(fake):
    assert len(budget_label(MAX_BUDGET_TOKENS)) <= column_size("budget_asked")
    with gateway(fake) as (client, service):
        key = tenant_with_key(service, "acme")
        r = client.post("/v1/chat/completions", json=chat_body(budget=3_000_000_000), headers=auth(key))
        assert r.status_code == 200, r.text
        assert rows(service)[-1]["budget_used"] == MAX_BUDGET_USED  # above any context: recorded as INTEGER's largest
        for path, body in (("/v1/chat/completions", chat_body(budget=10**17)),
                           ("/v1/optimize", {"query": "q", "chunks": ["a b c"], "budget": 10**17})):
            r = client.post(path, json=body, headers=auth(key))
            assert r.status_code == 400 and "above the largest the gateway takes" in r.json()["error"]["message"], r.text
        assert [x["status"] for x in rows(service)] == [200, 400, 400]
    with pytest.raises(ValueError, match="budget of 100000000000000000 tokens"):
        ServeConfig.from_dict({"budget": 10**17})


def test_b_ledger_values_fit_every_column():
    v = LedgerEntry(id="r", ts=0.0, tenant_id="acme", endpoint="chat", action="failed", price_ref="x" * 500,
                    model_asked="m" * 500, preset="p" * 500, budget_asked="9" * 50, user="u" * 500, error="e" * 5000,
                    budget_used=10**12).values()
    for column in ledger.c:
        size = getattr(column.type, "length", None)
        if size is not None and isinstance(v.get(column.name), str):
            assert len(v[column.name]) <= size, column.name
    assert v["budget_used"] == 2**31 - 1 and len(v["error"]) == 2000


def test_b_a_failed_ledger_write_does_not_turn_a_4xx_into_a_500(fake):
    with gateway(fake) as (client, service):
        key = tenant_with_key(service, "acme")
        broke = tenant_with_key(service, "broke")
        budget(service, "broke", "tokens", 1)

        def broken(entry):
            raise OperationalError("INSERT", {}, Exception("value too long for type character varying(60)"))

        service.quota.record = broken
        assert client.post("/v1/chat/completions", json=chat_body(preset="nope"), headers=auth(key)).status_code == 400
        assert client.post("/v1/optimize", json={"query": "q", "chunks": ["a"], "preset": "nope"}, headers=auth(key)).status_code == 400
        assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(broke)).status_code == 429


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available() and os.environ.get("CI") != "true", reason="PostgreSQL is not installed")
def test_b_on_postgres_long_values_are_400s_with_their_rows(fake):
    cases = [("/v1/chat/completions", chat_body(model="m" * 121), 400),
             ("/v1/chat/completions", chat_body(preset="p" * 61), 400),
             ("/v1/chat/completions", chat_body(budget=3_000_000_000), 200),
             ("/v1/chat/completions", chat_body(budget=10**17), 400),
             ("/v1/optimize", {"query": "q", "chunks": ["a b c"], "model": "m" * 150}, 400)]
    with temp_postgres(max_connections=50) as url, gateway(fake, db_url=url) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        got = [client.post(path, json=body, headers=auth(key)).status_code for path, body, _ in cases]
        written = rows(service)
        service.engine.dispose()
    assert got == [want for _, _, want in cases]
    assert sorted(r["status"] for r in written) == sorted(want for _, _, want in cases)
    assert [r["budget_used"] for r in written if r["status"] == 200] == [MAX_BUDGET_USED]


# C. prices: finite and not negative

@pytest.mark.parametrize("field", ["input_per_million", "output_per_million"])
@pytest.mark.parametrize("bad", [-2.5, float("nan"), float("inf"), "1", True])
def test_c_inline_prices_must_be_finite_and_non_negative(field, bad):
    model = {"upstream": "local", "input_per_million": 1.0, "output_per_million": 1.0, field: bad}
    with pytest.raises(ValueError, match=f"model 'cheap': {field} must be a finite number >= 0"):
        ServeConfig.from_dict({"models": {"cheap": model}})


@pytest.mark.parametrize("line", ["input_per_million = nan", "input_per_million = inf",
                                  "input_per_million = 1\noutput_per_million = -inf"])
def test_c_price_files_refuse_non_finite_prices(tmp_path, line):
    from evals.cost import load_prices

    path = tmp_path / "prices.toml"
    path.write_text(f'[models."mine"]\n{line}\n')
    with pytest.raises(ValueError, match="model 'mine'.*finite non-negative"):
        load_prices(path)


def test_c_a_model_name_longer_than_the_ledger_holds_is_refused():
    with pytest.raises(ValueError, match="the ledger holds at most 120"):
        ServeConfig.from_dict({"models": {"m" * 121: {"upstream": "local", "input_per_million": 0, "output_per_million": 0}}})


# D. /metrics shows every tenant: an admin key or the metrics token only

def test_d_metrics_needs_an_admin_key_or_the_metrics_token(fake, monkeypatch):
    monkeypatch.setenv("RAGTRIM_SERVE_METRICS_TOKEN", "scrape-token-0123456789abcdef")
    with gateway(fake) as (client, service):
        key = tenant_with_key(service, "globex")
        assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(key)).status_code == 200
        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401 and "globex" not in anonymous.text
        assert "RAGTRIM_SERVE_METRICS_TOKEN" in anonymous.json()["error"]["message"]
        assert client.get("/metrics", headers=auth("scrape-token-wrong")).status_code == 401
        assert client.get("/metrics", headers=auth(key)).status_code == 403
        for credential in ("scrape-token-0123456789abcdef", admin_key(service)):
            r = client.get("/metrics", headers=auth(credential))
            assert r.status_code == 200 and 'tenant="globex"' in r.text
    monkeypatch.delenv("RAGTRIM_SERVE_METRICS_TOKEN")
    with gateway(fake) as (client, service):  # no token set: an admin key still works, nothing else does
        assert client.get("/metrics", headers=auth("scrape-token-0123456789abcdef")).status_code == 401
        assert client.get("/metrics", headers=auth(admin_key(service))).status_code == 200


# E. usage days are checked, not compared as text

def test_e_usage_since_and_until_must_be_days(fake, tmp_path, monkeypatch):
    with gateway(fake) as (client, service):
        key = tenant_with_key(service, "acme")
        assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(key)).status_code == 200
        for query in ("since=2026-12-6", "since=last%20week", "until=tomorrow"):
            r = client.get(f"/v1/usage?{query}", headers=auth(key))
            assert r.status_code == 400 and "YYYY-MM-DD" in r.json()["error"]["message"], (query, r.text)
        ok = client.get("/v1/usage?since=20000101&until=2999-12-31", headers=auth(key)).json()
        assert ok["since"] == "2000-01-01" and ok["totals"]["requests"] == 1
        monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
        out = CliRunner().invoke(cli(), ["usage", "--db", service.db_url, "--since", "2026-12-6"])
        assert out.exit_code == 2 and "since must be a day as YYYY-MM-DD (UTC)" in out.output, out.output


# F. the command line: one clean error, never a crash loop, a traceback or a new empty database

def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_f_serve_with_workers_checks_the_config_before_starting_them(tmp_path, monkeypatch):
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append((a, k)))
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    (tmp_path / "serve.toml").write_text('default_model = "my-llama"\n[upstreams.fake]\nkind = "openai"\n'
                                         'base_url = "http://127.0.0.1:9/v1"\n[models."my-llama"]\nupstream = "fake"\n')
    for workers in ("2", "1"):
        out = CliRunner().invoke(cli(), ["serve", "--config", str(tmp_path / "serve.toml"), "--db", f"sqlite:///{tmp_path}/s.sqlite",
                                         "--workers", workers])
        assert out.exit_code == 2 and "unknown price model 'my-llama'" in out.output, out.output
    assert started == []


def test_f_an_unreachable_database_is_one_line_with_the_password_masked(tmp_path, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("started with no database"))
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    url = "postgresql://ragtrim:s3cret-pw@127.0.0.1:1/x"
    for args in (["usage", "--db", url], ["tenants", "create", "acme", "--db", url], ["serve", "--db", url, "--workers", "2"]):
        out = CliRunner().invoke(cli(), args)
        assert out.exit_code == 2, (args, out.output, out.exception)
        assert "cannot use the database postgresql://ragtrim:***@127.0.0.1:1/x" in out.output
        assert "s3cret" not in out.output and "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1


def test_f_reading_commands_never_create_a_database(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    missing = tmp_path / "typo" / "dir" / "x.sqlite"
    for args in (["usage"], ["tenants", "list"], ["keys", "list"], ["budgets", "list"], ["keys", "revoke", "abc"],
                 ["budgets", "delete", "abc"]):
        out = CliRunner().invoke(cli(), [*args, "--db", f"sqlite:///{missing}"])
        assert out.exit_code == 2 and f"no database at {missing}" in out.output, (args, out.output)
    out = CliRunner().invoke(cli(), ["usage"])  # the default database in the cache folder, before any server ran
    assert out.exit_code == 2 and "no database at" in out.output and "serve.sqlite" in out.output
    assert not (tmp_path / "typo").exists() and not (tmp_path / "serve.sqlite").exists()
    db = f"sqlite:///{tmp_path}/s.sqlite"
    assert CliRunner().invoke(cli(), ["tenants", "create", "acme", "--db", db]).exit_code == 0  # a writing command makes it
    out = CliRunner().invoke(cli(), ["usage", "--db", db, "--format", "json"])
    assert out.exit_code == 0 and json.loads(out.stdout)["rows"] == []


"""Budgets and ledger hold whatever a request carries and however it ends.

A small OpenAI-compatible upstream on loopback ("toll") bills what it is sent the way a real one
does: the messages, plus the text of tools, response formats and tool calls (fewer tokens than
their JSON). Markers in the messages make it misbehave: ``FAIL`` (HTTP 500), ``NEGUSAGE`` /
``FLOATUSAGE`` (usage that is not a count), ``INFLATE`` (1,000 prompt tokens more than it was
sent), ``SCALAR`` (stream events whose data is not an object).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ragtrim.serve.schema import budget_usage, ledger, reservations
from ragtrim.serve.testing import serve_in_thread
from ragtrim.serve.upstream import message_text, sse

from serve_fixtures import admin_key, auth, budget, chat_body, DOCS, gateway_config, PEPPER, tenant_with_key

LONG_TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "look the city up in the atlas and report its population " * 300,
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "the city"}}}}}


def _leaves(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_leaves(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _leaves(v)]
    return [str(value)]


def billed_prompt(body: dict[str, Any]) -> int:
    """What the toll upstream bills: messages as OpenAI documents, plus the words of every other field sent."""
    from optimizer.tokenizer import get_tokenizer

    tok = get_tokenizer("cl100k_base")
    total = 3
    for m in body["messages"]:
        rest = {k: v for k, v in m.items() if k not in ("role", "content") and v is not None}
        total += 3 + tok.count(m["role"]) + tok.count(message_text(m)) + tok.count(" ".join(_leaves(rest)))
    for field in ("tools", "functions", "tool_choice", "response_format"):
        if field in body:
            total += tok.count(" ".join(_leaves(body[field])))
    return total


def toll_upstream() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    calls: list[dict[str, Any]] = []

    async def chat(request: Any) -> Any:
        body = await request.json()
        calls.append(body)
        said = json.dumps(body["messages"])
        if "FAIL" in said:
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        prompt = billed_prompt(body)
        usage: dict[str, Any] = {"prompt_tokens": prompt + (1000 if "INFLATE" in said else 0), "completion_tokens": 5}
        if "NEGUSAGE" in said:
            usage = {"prompt_tokens": -1000, "completion_tokens": 5}
        if "FLOATUSAGE" in said:
            usage = {"prompt_tokens": float(prompt), "completion_tokens": 5.0}
        base = {"id": "x", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            return JSONResponse({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "a b c d e"}, "finish_reason": "stop"}]})

        async def events() -> Any:
            chunk = {**base, "object": "chat.completion.chunk"}
            yield sse({**chunk, "choices": [{"index": 0, "delta": {"content": "a b"}, "finish_reason": None}]})
            if "SCALAR" in said:
                yield b'data: 1\n\ndata: "x"\n\ndata: [1, 2]\n\ndata: {"choices": "odd"}\n\n'
            yield sse({**chunk, "choices": [{"index": 0, "delta": {"content": " c d e"}, "finish_reason": "stop"}]})
            yield sse({**chunk, "choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    app.state.calls = calls
    return app


@pytest.fixture(scope="module")
def toll():
    app = toll_upstream()
    with serve_in_thread(app) as url:
        yield url, app.state.calls


@contextmanager
def gateway(url: str, **overrides: Any) -> Iterator[tuple[Any, Any]]:
    """The gateway in-process; an unexpected error answers 500 (as in production) instead of raising in the test."""
    from starlette.testclient import TestClient

    from ragtrim.serve.app import create_app
    from ragtrim.serve.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        service = Service(gateway_config(url, **overrides), db_url=f"sqlite:///{tmp}/serve.sqlite", pepper=PEPPER)
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            yield client, service


def rows(service: Any) -> list[dict[str, Any]]:
    with service.engine.connect() as c:
        return [r._asdict() for r in c.execute(ledger.select().order_by(ledger.c.ts)).all()]


def counters(service: Any) -> dict[str, tuple[int, int]]:
    """unit -> (spent, reserved) of the tenant's budgets this period."""
    from ragtrim.serve.schema import budgets

    with service.engine.connect() as c:
        q = budget_usage.join(budgets, budgets.c.id == budget_usage.c.budget_id).select()
        return {r.unit: (int(r.spent), int(r.reserved)) for r in c.execute(q).all()}


def held(service: Any) -> int:
    with service.engine.connect() as c:
        return len(c.execute(reservations.select().where(reservations.c.state == "held")).all())


# 1. what is forwarded is counted


def test_a_long_tool_description_is_reserved_so_a_small_budget_refuses_it(toll):
    url, calls = toll
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 2_000)
        before = len(calls)
        answers = [client.post("/v1/chat/completions", json=chat_body(tools=[LONG_TOOL]), headers=auth(key)) for _ in range(3)]
        assert [r.status_code for r in answers] == [429, 429, 429], [r.text[:200] for r in answers]
        assert len(calls) == before  # never sent: the upstream would have billed ~3,600 tokens each
        spent, reserved = counters(service).get("tokens", (0, 0))
        assert spent <= 2_000 and reserved == 0
        assert {r["action"] for r in rows(service)} == {"refused"}


def test_tools_response_format_and_tool_calls_are_inside_the_worst_case(toll):
    url, calls = toll
    messages = [
        {"role": "user", "content": "What is the population of Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "lookup", "arguments": json.dumps({"city": "Paris", "why": "population of the capital " * 40})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Paris has 2.1 million inhabitants. " * 20},
        {"role": "user", "content": "And Lyon?"},
    ]
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {
        f"field_{i}": {"type": "string", "description": "a part of the answer to give"} for i in range(40)}}}}
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 1_000_000)
        body = {**chat_body(), "messages": messages, "tools": [LONG_TOOL], "tool_choice": "auto", "response_format": schema}
        r = client.post("/v1/chat/completions", json=body, headers=auth(key))
        assert r.status_code == 200, r.text
        assert calls[-1]["tools"] == [LONG_TOOL] and calls[-1]["response_format"] == schema
        [row] = rows(service)
        assert row["usage_source"] == "upstream" and row["prompt_tokens"] > 3_000
        assert row["prompt_tokens"] + row["completion_tokens"] <= row["reserved_tokens"]
        assert "above the reservation" not in row["error"]


def test_usage_above_the_reservation_is_noted_without_blaming_the_tokenizer(toll):
    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 1_000_000)
        r = client.post("/v1/chat/completions", json=chat_body("What is the capital of France? INFLATE"), headers=auth(key))
        assert r.status_code == 200
        [row] = rows(service)
        assert "usage above the reservation" in row["error"] and "tokenizer" not in row["error"]
        assert f"{row['reserved_tokens']} tokens" in row["error"]
        assert counters(service)["tokens"] == (row["prompt_tokens"] + row["completion_tokens"], 0)  # charged as reported


def test_an_image_part_is_still_a_clear_400(toll):
    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}
        r = client.post("/v1/chat/completions", json={**chat_body(), "messages": [image]}, headers=auth(key))
        assert r.status_code == 400 and "only text content parts are supported" in r.json()["error"]["message"]


# 2. every reservation ends in a settle or a release


def test_stream_options_that_is_not_an_object_is_a_400_before_reserving(toll):
    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        for bad in (True, "yes", {"include_usage": "yes"}):
            r = client.post("/v1/chat/completions", json=chat_body(stream=True, stream_options=bad), headers=auth(key))
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["param"] == "stream_options" and "stream_options" in err["message"]
        assert [(x["action"], x["status"]) for x in rows(service)] == [("failed", 400)] * 3
        assert counters(service).get("tokens", (0, 0)) == (0, 0) and held(service) == 0


@pytest.mark.parametrize("marker", ["NEGUSAGE", "FLOATUSAGE"])
@pytest.mark.parametrize("stream", [False, True])
def test_usage_that_is_not_a_count_is_replaced_by_the_gateways_count(toll, marker, stream):
    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        r = client.post("/v1/chat/completions", json=chat_body(f"What is the capital of France? {marker}", stream=stream),
                        headers=auth(key))
        assert r.status_code == 200, r.text
        if stream:
            assert r.text.rstrip().endswith("data: [DONE]") and "upstream_error" not in r.text
        [row] = rows(service)
        assert (row["action"], row["usage_source"], row["completion_tokens"]) == ("ok", "counted", 5)
        assert row["prompt_tokens"] > 0 and row["cost_micro"] > 0
        assert counters(service)["tokens"] == (row["prompt_tokens"] + 5, 0) and held(service) == 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("where", ["_headers", "_settle_values"])
def test_an_unexpected_error_after_reserving_ends_the_hold_with_a_failed_row(toll, monkeypatch, where, stream):
    """A bug before the upstream call releases the hold; one after the upstream had the request (settling its
    answer) charges the reservation as an estimate, as any failure whose usage is unknown then."""
    from ragtrim.serve import chat

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(chat, where, broken)
    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        r = client.post("/v1/chat/completions", json=chat_body(stream=stream), headers=auth(key))
        if not stream or where == "_headers":
            assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        [row] = rows(service)
        assert (row["action"], row["status"]) == ("failed" if where == "_headers" else "ok", 500)
        assert "RuntimeError: a bug" in row["error"] and (row["reserved_tokens"] > 0 or where == "_headers")
        if where == "_headers":
            assert counters(service).get("tokens", (0, 0)) == (0, 0) and row["usage_source"] == "none"
        else:
            assert row["usage_source"] == "estimated" and "charged its reservation as an estimate" in row["error"]
            assert row["prompt_tokens"] + row["completion_tokens"] == row["reserved_tokens"]
            assert counters(service)["tokens"] == (row["reserved_tokens"], 0)
        assert held(service) == 0


def test_a_stream_whose_client_is_gone_before_the_first_event_still_settles(toll):
    """The response never starts (sending its headers fails): the relay never runs, the hold is still settled."""
    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        payload = json.dumps(chat_body(stream=True)).encode()
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                 "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json"),
                             (b"content-length", str(len(payload)).encode())]}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                raise OSError("client gone")

        async def call() -> None:
            try:
                await client.app(scope, receive, send)
            except Exception:
                pass

        client.portal.call(call)
        [row] = rows(service)
        assert row["action"] == "ok" and "before its stream was relayed" in row["error"]
        assert (row["completion_tokens"], row["usage_source"]) == (0, "counted")  # the prompt the upstream was sent
        assert counters(service)["tokens"] == (row["prompt_tokens"], 0) and held(service) == 0


# 3. stream events that are not objects


def test_stream_events_that_are_not_objects_are_relayed_and_the_stream_goes_on(toll):
    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        r = client.post("/v1/chat/completions", json=chat_body("What is the capital of France? SCALAR", stream=True,
                                                               stream_options={"include_usage": True}), headers=auth(key))
        assert r.status_code == 200
        events = [e[6:] for e in r.text.split("\n\n") if e.startswith("data: ")]
        assert events[-1] == "[DONE]" and "1" in events and '"x"' in events and "upstream_error" not in r.text
        text = "".join(c["choices"][0]["delta"]["content"] for c in map(json.loads, events[:-1])
                       if isinstance(c, dict) and isinstance(c.get("choices"), list) and c["choices"])
        assert text == "a b c d e"
        [row] = rows(service)
        assert (row["action"], row["error"], row["usage_source"], row["completion_tokens"]) == ("ok", "", "upstream", 5)


# 4. the ledger's sums, the budget counters and /metrics agree


def _metric(text: str, name: str, tenant: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and f'tenant="{tenant}"' in line)


def test_usage_totals_count_only_what_was_charged_and_agree_with_budgets_and_metrics(toll, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import typer

    from ragtrim.serve.commands import register

    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 1_000_000)
        budget(service, "acme", "usd", 1_000_000)
        budget(service, "acme", "tokens", 1, scope="feature", scope_value="tiny")
        h = auth(key)
        assert client.post("/v1/chat/completions", json=chat_body(), headers=h).status_code == 200
        assert client.post("/v1/chat/completions", json=chat_body(stream=True), headers=h).status_code == 200
        assert client.post("/v1/chat/completions", json=chat_body("FAIL please"), headers=h).status_code == 502
        assert client.post("/v1/chat/completions", json=chat_body(feature="tiny"), headers=h).status_code == 429
        by_action = {r["action"]: r for r in rows(service)}
        for action in ("failed", "refused"):
            row = by_action[action]
            assert (row["prompt_tokens"], row["tokens_sent"], row["tokens_full"], row["cost_micro"], row["saved_micro"]) == (0,) * 5
        usage = client.get("/v1/usage", headers=h).json()
        totals = usage["totals"]
        assert (totals["requests"], totals["ok"], totals["failed"], totals["refused"]) == (4, 2, 1, 1)
        spent = counters(service)
        assert totals["prompt_tokens"] + totals["completion_tokens"] == spent["tokens"][0]
        assert totals["cost_micro"] == spent["usd"][0]
        metrics = client.get("/metrics", headers=auth(admin_key(service))).text
        assert totals["tokens_sent"] == _metric(metrics, "ragtrim_context_tokens_sent_total", "acme")
        assert totals["prompt_tokens"] == _metric(metrics, "ragtrim_prompt_tokens_total", "acme")
        assert totals["completion_tokens"] == _metric(metrics, "ragtrim_completion_tokens_total", "acme")
        assert totals["cost_micro"] == _metric(metrics, "ragtrim_spend_microdollars_total", "acme")
        assert totals["saved_micro"] == _metric(metrics, "ragtrim_saved_microdollars_total", "acme")
        app = typer.Typer()
        register(app)
        monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
        out = CliRunner().invoke(app, ["usage", "--db", service.db_url, "--tenant", "acme", "--format", "json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["totals"] == totals


def test_old_failed_rows_with_tokens_do_not_count_in_the_totals(toll):
    """Rows written before failed rows were zeroed still add nothing: the sum is over charged rows."""
    from ragtrim.serve.ledger import LedgerEntry

    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        service.quota.record(LedgerEntry(id="old", ts=service.clock(), tenant_id="acme", endpoint="chat", action="failed",
                                         prompt_tokens=500, tokens_sent=300, tokens_full=900, status=502))
        totals = client.get("/v1/usage", headers=auth(key)).json()["totals"]
        assert (totals["failed"], totals["prompt_tokens"], totals["tokens_sent"], totals["tokens_full"]) == (1, 0, 0, 0)


# 5. what a tenant or an admin may pass


def test_optimize_accepts_only_the_tokenizers_the_gateway_knows(toll):
    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        h = auth(key)
        for bad in ("r50k_base", "gpt2", "hf:/etc/passwd", "hf:/etc/passwd.json"):
            r = client.post("/v1/optimize", json={"query": "capital of France", "chunks": DOCS, "tokenizer": bad}, headers=h)
            assert r.status_code == 400, (bad, r.text)
            err = r.json()["error"]
            assert err["param"] == "tokenizer" and "cl100k_base, gpt-4o, gpt-4o-mini, o200k_base" in err["message"]
        for good in ("o200k_base", "cl100k_base", "gpt-4o"):
            r = client.post("/v1/optimize", json={"query": "capital of France", "chunks": DOCS, "tokenizer": good}, headers=h)
            assert r.status_code == 200, (good, r.text)
        assert [x["status"] for x in rows(service)] == [400] * 4 + [200] * 3


def test_a_budget_limit_beyond_the_maximum_is_a_400(toll):
    with gateway(toll[0]) as (client, service):
        root = auth(admin_key(service))
        tenant_with_key(service, "acme")
        for unit, limit in (("usd", "1e30"), ("usd", 10**12), ("tokens", 10**30)):
            r = client.put("/v1/admin/budgets", json={"tenant": "acme", "unit": unit, "period": "day", "limit": limit}, headers=root)
            assert r.status_code == 400, (unit, limit, r.text)
            err = r.json()["error"]
            assert err["param"] == "limit" and "at most 1000000000000000" in err["message"]
        ok = client.put("/v1/admin/budgets", json={"tenant": "acme", "unit": "usd", "period": "day", "limit": "1000000"}, headers=root)
        assert ok.status_code == 200 and ok.json()["limit"] == 10**12


def test_an_unexpected_500_before_reserving_still_writes_a_ledger_row(toll, monkeypatch):
    from ragtrim.serve import chat

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    with gateway(toll[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        monkeypatch.setattr(chat, "_smallest", broken)
        monkeypatch.setattr(service, "optimize", broken)
        assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(key)).status_code == 500
        r = client.post("/v1/optimize", json={"query": "capital of France", "chunks": DOCS}, headers=auth(key))
        assert r.status_code == 500
        got = [(x["endpoint"], x["action"], x["status"]) for x in rows(service)]
        assert got == [("chat", "failed", 500), ("optimize", "failed", 500)]
        assert all("RuntimeError: a bug" in x["error"] for x in rows(service))
        assert counters(service).get("tokens", (0, 0)) == (0, 0) and held(service) == 0

"""What ``POST /v1/messages`` left for a team running Claude agents behind the gateway: ``count_tokens``, Anthropic's
overloaded and rate-limit errors relayed with their status, and the prompt-cache writes on the ledger.

The official ``anthropic`` SDK talks real HTTP on loopback to the gateway, which talks to the fake upstream (or a
scripted one), as in ``tests/test_serve_messages.py``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from ragtrim.serve.config import ANTHROPIC_COUNT_MARGIN
from ragtrim.serve.plan import with_margin

from serve_fixtures import DOCS, admin_key, budget, final_rows, spent_and_reserved
from test_serve_messages import CLAUDE, QUESTION, gateway_before, live, prompt_of

anthropic = pytest.importorskip("anthropic")
TOOLS = [{"name": "get_weather", "description": "The weather in a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
SOURCE = "X-Ragtrim-Token-Count"


def count_rows(service: Any) -> list[dict[str, Any]]:
    return [r for r in final_rows(service) if r["endpoint"] == "count_tokens"]


# 1. POST /v1/messages/count_tokens


def test_sdk_count_tokens_is_the_upstreams_count_and_charges_nothing(tmp_path):
    with live(tmp_path, claude_ratio=1.3) as s:
        budget(s.service, "acme", "tokens", 100_000)
        body = {"model": CLAUDE, "system": "Be brief.", "tools": TOOLS,
                "messages": [{"role": "user", "content": QUESTION}]}
        raw = s.client(default_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"}).messages.with_raw_response \
            .count_tokens(**body)
        counted = raw.parse()
        sent, headers = s.fake.bodies[-1], s.fake.anthropic_headers[-1]
        reply = s.client().messages.create(max_tokens=20, **body)
        [row] = count_rows(s.service)
        spent, reserved = spent_and_reserved(s.service)
    assert counted.input_tokens == prompt_of(reply.usage)  # what the call it counts is billed
    assert raw.headers[SOURCE] == "upstream" and raw.headers["X-Ragtrim-Request-Id"] == row["id"]
    assert sent == body and headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    # recorded, never charged or reserved: the budget spent only the messages call
    assert (row["action"], row["status"], row["cost_micro"], row["prompt_tokens"], row["reserved_tokens"]) == ("ok", 200, 0, 0, 0)
    assert f"input_tokens {counted.input_tokens} (upstream)" in row["detail"]
    assert (spent, reserved) == (prompt_of(reply.usage) + reply.usage.output_tokens, 0)


def test_count_tokens_counts_the_documents_as_messages_would_send_them(tmp_path):
    extra = {"documents": DOCS, "budget": 0.5}
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        raw = s.client().messages.with_raw_response.count_tokens(
            model=CLAUDE, system="Answer in one word.", messages=[{"role": "user", "content": QUESTION}], extra_body=extra)
        counted, count_sent = raw.parse(), s.fake.bodies[-1]
        reply = s.client().messages.create(model=CLAUDE, max_tokens=20, system="Answer in one word.",
                                           messages=[{"role": "user", "content": QUESTION}], extra_body=extra)
        create_sent = s.fake.bodies[-1]
    assert count_sent["system"] == create_sent["system"] and "documents" not in count_sent and "budget" not in count_sent
    assert counted.input_tokens == prompt_of(reply.usage)
    assert int(raw.headers["X-Ragtrim-Tokens-Sent"]) < int(raw.headers["X-Ragtrim-Tokens-Full"])


def _reserved_prompt(row: dict[str, Any], max_tokens: int, margin: float) -> int:
    return row["reserved_tokens"] - with_margin(max_tokens, margin)


def test_count_tokens_answers_the_gateways_estimate_when_the_upstream_fails(tmp_path):
    body = {"model": CLAUDE, "tools": TOOLS, "messages": [{"role": "user", "content": QUESTION}]}
    with live(tmp_path, count_tokens_status=529) as s:
        budget(s.service, "acme", "tokens", 100_000)
        raw = s.client().messages.with_raw_response.count_tokens(**body)
        s.client().messages.create(max_tokens=20, **body)
        [row] = [r for r in final_rows(s.service) if r["endpoint"] == "messages"]
        [counted_row] = count_rows(s.service)
    # the count the budget check reserves: the prompt counted (the tool prompt in it) with the model's margin
    assert raw.parse().input_tokens == _reserved_prompt(row, 20, ANTHROPIC_COUNT_MARGIN)
    assert raw.headers[SOURCE].startswith("estimated") and "529" in raw.headers[SOURCE]
    assert counted_row["action"] == "ok" and "upstream answered HTTP 529" in counted_row["detail"]


def test_count_tokens_estimates_a_model_not_on_an_anthropic_upstream(tmp_path):
    with live(tmp_path) as s:
        calls = s.fake.calls
        raw = s.client().messages.with_raw_response.count_tokens(model="gpt-4o", messages=[{"role": "user", "content": QUESTION}])
        s.post({"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": QUESTION}]})
        assert s.fake.calls == calls  # nothing was sent to count it
        chat = httpx.post(f"{s.url}/v1/chat/completions", headers={"Authorization": f"Bearer {s.key}"}, timeout=30,
                          json={"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": QUESTION}]})
        [row] = [r for r in final_rows(s.service) if r["endpoint"] == "chat"]
    assert raw.parse().input_tokens == _reserved_prompt(row, 20, 0.0) and chat.status_code == 200
    assert raw.headers[SOURCE].startswith("estimated") and "not on an anthropic upstream" in raw.headers[SOURCE]


def test_count_tokens_is_authenticated_and_never_refused_by_a_spent_budget(tmp_path):
    msg = {"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]}
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 5)
        spent = s.client().messages.count_tokens(**msg)
        by_bearer = httpx.post(f"{s.url}/v1/messages/count_tokens", json=msg, headers={"Authorization": f"Bearer {s.key}"})
        with pytest.raises(anthropic.AuthenticationError):
            s.client(key="rtk_not_a_key").messages.count_tokens(**msg)
        with pytest.raises(anthropic.PermissionDeniedError):
            s.client(key=admin_key(s.service)).messages.count_tokens(**msg)
        with pytest.raises(anthropic.BadRequestError) as unknown:
            s.client().messages.count_tokens(model="claude-nope", messages=msg["messages"])
        with pytest.raises(anthropic.BadRequestError) as no_messages:
            s.client().messages.count_tokens(model=CLAUDE, messages=[])
        usage = httpx.get(f"{s.url}/v1/usage?by=endpoint", headers={"Authorization": f"Bearer {s.key}"}).json()
        rows = count_rows(s.service)
    assert spent.input_tokens > 0 and by_bearer.status_code == 200 and by_bearer.json() == {"input_tokens": spent.input_tokens}
    assert "claude-nope" in unknown.value.body["error"]["message"] and unknown.value.body["type"] == "error"
    assert "messages must be a non-empty list" in no_messages.value.body["error"]["message"]
    assert [r["action"] for r in rows] == ["ok", "ok", "failed", "failed"] and all(r["cost_micro"] == 0 for r in rows)
    [group] = usage["rows"]
    assert group["endpoint"] == "count_tokens" and (group["prompt_tokens"], group["cost_micro"]) == (0, 0)


def test_an_upstream_refusal_of_the_count_is_relayed(tmp_path):
    with live(tmp_path, count_tokens_status=400) as s:
        with pytest.raises(anthropic.BadRequestError) as bad:
            s.client().messages.count_tokens(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
        [row] = count_rows(s.service)
    assert bad.value.body["error"]["message"] == "fake count failure" and (row["action"], row["status"]) == ("failed", 400)


# 2. Anthropic's 429/500/503/529 relayed with the upstream's status, in Anthropic's shape


def answering_in_turn(answers: list[tuple[int, dict[str, Any], dict[str, str]]]) -> Any:
    """A scripted Messages upstream that answers each request with the next ``(status, body, headers)`` (the last one
    again once they run out)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    seen: list[int] = []

    async def messages(request: Any) -> Any:
        await request.json()
        status, body, headers = answers[min(len(seen), len(answers) - 1)]
        seen.append(status)
        return JSONResponse(body, status_code=status, headers=headers)

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    app.state.seen = seen
    return app


def overloaded(status: int = 529, kind: str = "overloaded_error") -> tuple[int, dict[str, Any], dict[str, str]]:
    return status, {"type": "error", "error": {"type": kind, "message": "Overloaded"}}, {"retry-after": "3"}


WHOLE = (200, {"id": "msg_1", "type": "message", "role": "assistant", "model": CLAUDE, "stop_reason": "end_turn",
               "stop_sequence": None, "content": [{"type": "text", "text": "Paris."}],
               "usage": {"input_tokens": 12, "output_tokens": 3}}, {})


@pytest.mark.parametrize("stream", [False, True])
def test_an_overloaded_upstream_is_a_529_the_sdk_knows_and_the_hold_is_released(tmp_path, stream):
    with gateway_before(answering_in_turn([overloaded()]), tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        with pytest.raises(anthropic.OverloadedError) as over:
            s.client().messages.create(model=CLAUDE, max_tokens=5, stream=stream, messages=[{"role": "user", "content": "hi"}])
        [row] = final_rows(s.service)
        _, reserved = spent_and_reserved(s.service)
    assert over.value.status_code == 529 and over.value.response.headers["retry-after"] == "3"
    assert over.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert (row["action"], row["status"], row["cost_micro"], reserved) == ("failed", 529, 0, 0)
    assert "529" in row["error"]


@pytest.mark.parametrize(("status", "kind", "sdk_error"), [(429, "rate_limit_error", "RateLimitError"),
                                                            (500, "api_error", "InternalServerError"),
                                                            (503, "overloaded_error", "ServiceUnavailableError")])
def test_the_upstreams_rate_limit_and_server_errors_keep_their_status_and_type(tmp_path, status, kind, sdk_error):
    with gateway_before(answering_in_turn([overloaded(status, kind)]), tmp_path) as s:
        with pytest.raises(getattr(anthropic, sdk_error)) as failed:
            s.client().messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        [row] = final_rows(s.service)
    assert failed.value.status_code == status and failed.value.body["error"]["type"] == kind
    assert failed.value.response.headers["retry-after"] == "3" and row["status"] == status


def test_the_sdk_retries_an_overloaded_answer_and_only_the_answer_is_charged(tmp_path):
    retry_soon = {"retry-after-ms": "10"}
    answers = [(529, overloaded()[1], retry_soon), (529, overloaded()[1], retry_soon), WHOLE]
    with gateway_before(answering_in_turn(answers), tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        client = anthropic.Anthropic(base_url=s.url, api_key=s.key, max_retries=2)
        reply = client.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        rows = final_rows(s.service)
        spent, reserved = spent_and_reserved(s.service)
    assert reply.content[0].text == "Paris."
    assert [(r["action"], r["status"]) for r in rows] == [("failed", 529), ("failed", 529), ("ok", 200)]
    assert (spent, reserved) == (15, 0)


# 3. the prompt-cache writes on the ledger, in /v1/usage and the usage command


def test_cache_writes_are_recorded_and_reported_beside_the_reads(tmp_path, monkeypatch):
    from ragtrim.cli import build_app

    with live(tmp_path, cache_read=120, cache_write=30) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        reply = s.client().messages.create(model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": QUESTION * 30}])
        with s.client().messages.stream(model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": QUESTION * 30}]) as st:
            st.get_final_message()
        rows = final_rows(s.service)
        usage = httpx.get(f"{s.url}/v1/usage?by=endpoint", headers={"Authorization": f"Bearer {s.key}"}).json()
        db = str(s.service.engine.url)
    assert reply.usage.cache_creation_input_tokens == 30
    assert [(r["cached_tokens"], r["cache_write_tokens"]) for r in rows] == [(120, 30), (120, 30)]
    u = reply.usage
    assert rows[0]["cost_micro"] == math.ceil(u.input_tokens * 3.0 + 120 * 0.3 + 30 * 3.75 + u.output_tokens * 15.0)
    assert (usage["totals"]["cached_tokens"], usage["totals"]["cache_write_tokens"]) == (240, 60)
    assert usage["rows"][0]["cache_write_tokens"] == 60
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    runner = CliRunner()
    table = runner.invoke(build_app(), ["usage", "--db", db, "--by", "endpoint"])
    as_json = runner.invoke(build_app(), ["usage", "--db", db, "--by", "endpoint", "--format", "json"])
    assert table.exit_code == 0, table.output
    head, line = table.output.splitlines()[:2]
    assert head.split()[-4:-2] == ["cached_tokens", "cache_write_tokens"] and line.split()[-4:-2] == ["240", "60"]
    assert json.loads(as_json.output)["totals"]["cache_write_tokens"] == 60



def test_a_count_cut_off_by_the_gateways_shutdown_gets_a_row_and_a_json_503_that_says_send_it_again(tmp_path, monkeypatch):
    import threading

    import uvicorn

    from ragtrim.serve.app import create_app
    from ragtrim.serve.cutoff import SHUTDOWN_CUT
    from ragtrim.serve.fake_upstream import create_fake_upstream
    from ragtrim.serve.service import Service
    from ragtrim.serve.testing import free_port, serve_in_thread

    from serve_fixtures import tenant_with_key
    from test_serve_messages import PEPPER, config

    monkeypatch.setenv("RAGTRIM_TEST_ANTHROPIC_KEY", "sk-ant-x")
    slow = create_fake_upstream(latency_ms=6000, answer_tokens=8)  # answers after the gateway has stopped
    with serve_in_thread(slow) as up:
        service = Service(config(up), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
        key = tenant_with_key(service, "acme")
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                                               access_log=False, lifespan="on", timeout_graceful_shutdown=1))
        runner = threading.Thread(target=server.run, daemon=True)
        runner.start()
        waited = threading.Event()
        while not server.started:
            waited.wait(0.02)
        got: dict[str, Any] = {}

        def count() -> None:
            got["r"] = httpx.post(f"http://127.0.0.1:{port}/v1/messages/count_tokens", headers={"x-api-key": key}, timeout=30,
                                  json={"model": CLAUDE, "messages": [{"role": "user", "content": QUESTION}]})

        client = threading.Thread(target=count)
        client.start()
        while slow.state.fake.calls < 1:
            waited.wait(0.05)
        server.should_exit = True
        client.join(30)
        runner.join(30)
        [row] = count_rows(service)
    r = got["r"]
    assert r.status_code == 503 and r.headers["x-should-retry"] == "true"
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"  # Anthropic's shape
    assert r.headers["X-Ragtrim-Request-Id"] == row["id"]
    assert (row["action"], row["status"], row["cost_micro"]) == ("failed", 503, 0) and SHUTDOWN_CUT in row["detail"]

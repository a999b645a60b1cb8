"""``POST /v1/messages``: Anthropic's Messages API through the gateway, with the guarantees of the chat route.

The official ``anthropic`` SDK (``client.messages.create``, ``client.messages.stream``, ``stream=True``) talks real
HTTP on loopback to the gateway, which talks to the fake upstream's ``/v1/messages`` (or a scripted one): documents
optimized into ``system`` and cited, the worst case reserved with the anthropic margin and settled from Anthropic's
usage (cache reads and writes at their prices), budgets that hold under a burst when Claude counts more than
tiktoken, a tool-use round trip, and errors in Anthropic's shape that the SDK raises as its own exceptions.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from ragtrim.serve.app import create_app
from ragtrim.serve.config import ANTHROPIC_COUNT_MARGIN, ServeConfig
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.messages_api import event
from ragtrim.serve.plan import with_margin
from ragtrim.serve.service import Service
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import (DOCS, PEPPER, admin_key, budget, endpoints_seen, final_rows, readme_service_block, run_readme_block,
                            spent_and_reserved, tenant_with_key)

anthropic = pytest.importorskip("anthropic")
QUESTION = "What is the capital of France?"
CLAUDE = "claude-sonnet-4-5"
PRICES = {"input_per_million": 3.0, "output_per_million": 15.0, "cached_input_per_million": 0.3, "cache_write_per_million": 3.75}


def config(up: str, **models: Any) -> ServeConfig:
    """Two Claude models on an anthropic upstream at ``up`` (a fake, or a scripted one), and an OpenAI one beside them."""
    return ServeConfig.from_dict({
        "preset": "bm25-pack", "default_model": CLAUDE, "degrade": {"floor": 40},
        "upstreams": {"claude": {"kind": "anthropic", "base_url": up, "api_key_env": "RAGTRIM_TEST_ANTHROPIC_KEY"},
                      "fake": {"kind": "openai", "base_url": f"{up}/v1"}},
        "models": {CLAUDE: {"upstream": "claude", "cheaper": "claude-haiku", **PRICES},
                   "claude-haiku": {"upstream": "claude", "input_per_million": 1.0, "output_per_million": 5.0},
                   "gpt-4o": {"upstream": "fake"}, **models}})


class Live:
    """The gateway (its URL, Service and a tenant key) in front of an upstream (the fake's state, when it is the fake)."""

    def __init__(self, url: str, service: Service, key: str, fake: Any) -> None:
        self.url, self.service, self.key, self.fake = url, service, key, fake

    def client(self, key: str | None = None, **kw: Any) -> Any:
        return anthropic.Anthropic(base_url=self.url, api_key=key or self.key, max_retries=0, **kw)

    def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/messages", json=body, headers={"x-api-key": self.key, **headers}, timeout=30)


@contextmanager
def gateway_before(upstream_app: Any, tmp_path: Any, fake: Any = None) -> Iterator[Live]:
    with serve_in_thread(upstream_app) as up:
        service = Service(config(up), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
        with serve_in_thread(create_app(service)) as base:
            yield Live(base, service, tenant_with_key(service, "acme"), fake)


@contextmanager
def live(tmp_path: Any, *, answer_tokens: int = 8, **state: Any) -> Iterator[Live]:
    fake = create_fake_upstream(latency_ms=1, answer_tokens=answer_tokens)
    for k, v in state.items():
        setattr(fake.state.fake, k, v)
    with gateway_before(fake, tmp_path, fake.state.fake) as s:
        yield s


def prompt_of(usage: Any) -> int:
    return usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)


# 1. messages.create: documents optimized into system, cited, charged from Anthropic's usage


def test_sdk_messages_create_optimizes_the_documents_into_system_and_settles_from_the_usage(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_TEST_ANTHROPIC_KEY", "sk-ant-upstream")
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        raw = s.client(default_headers={"anthropic-beta": "prompt-caching-2024-07-31"}).messages.with_raw_response.create(
            model=CLAUDE, max_tokens=64, system="Answer in one word.", metadata={"user_id": "alice"},
            messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
            extra_body={"documents": DOCS, "budget": 0.5, "feature": "support-bot"})
        reply = raw.parse()
        [row] = final_rows(s.service)
        sent, headers = s.fake.bodies[-1], s.fake.anthropic_headers[-1]
    assert reply.content[0].text == "the answer is in the documents above and" and reply.usage.output_tokens == 8
    extra = reply.model_extra["ragtrim"]
    assert extra["documents"][0]["id"] in {d["id"] for d in DOCS} and extra["tokens_sent"] <= extra["tokens_full"]
    assert raw.headers["X-Ragtrim-Action"] == "ok" and raw.headers["X-Ragtrim-Model"] == CLAUDE
    assert int(raw.headers["X-Ragtrim-Cost-Micro"]) == extra["cost_micro"] == row["cost_micro"] > 0
    # the client's system first, the documents appended as a text block; the cap as it came; our fields not forwarded
    assert sent["system"][0] == {"type": "text", "text": "Answer in one word."} and "[1]" in sent["system"][1]["text"]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    assert sent["max_tokens"] == 64 and sent["metadata"] == {"user_id": "alice"} and "documents" not in sent
    assert headers == {"anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31"}
    assert s.fake.saw_authorization[-1] == "yes"
    assert (row["endpoint"], row["feature"], row["usage_source"]) == ("messages", "support-bot", "upstream")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt_of(reply.usage), 8)
    # the worst case: the counted prompt (the system's two blocks counted as two items: a few tokens above the upstream's
    # count) and max_tokens, each with the anthropic margin (0.4 unless set)
    cap = with_margin(64, ANTHROPIC_COUNT_MARGIN)
    assert with_margin(row["prompt_tokens"], 0.4) + cap <= row["reserved_tokens"] <= with_margin(row["prompt_tokens"] + 8, 0.4) + cap
    assert spent_and_reserved(s.service) == (row["prompt_tokens"] + 8, 0)


def test_a_string_system_without_documents_goes_upstream_as_it_came(tmp_path):
    with live(tmp_path) as s:
        s.client().messages.create(model=CLAUDE, max_tokens=5, system="Be brief.", messages=[{"role": "user", "content": "hi"}])
        sent = s.fake.bodies[-1]
    assert sent["system"] == "Be brief." and sent["messages"] == [{"role": "user", "content": "hi"}] and sent["max_tokens"] == 5


# 2. streamed: event by event, event lines kept, settled from message_start + the last message_delta


def test_sdk_messages_stream_relays_the_events_and_settles_from_the_stream_usage(tmp_path):
    with live(tmp_path, cache_read=40) as s:
        budget(s.service, "acme", "tokens", 100_000)
        with s.client().messages.stream(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": QUESTION}],
                                        extra_body={"documents": DOCS}) as stream:
            kinds = [e.type for e in stream]
            final = stream.get_final_message()
        [row] = final_rows(s.service)
    assert kinds[0] == "message_start" and "content_block_delta" in kinds and kinds[-1] == "message_stop"
    assert final.content[0].text == "the answer is in the documents above and"
    assert (row["endpoint"], row["stream"], row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (
        "messages", True, prompt_of(final.usage), final.usage.output_tokens, 40)
    assert spent_and_reserved(s.service) == (row["prompt_tokens"] + row["completion_tokens"], 0)


def test_stream_true_keeps_the_event_lines_and_gives_the_documents_header(tmp_path):
    with live(tmp_path) as s:
        raw = s.client().messages.with_raw_response.create(model=CLAUDE, max_tokens=20, stream=True,
                                                           messages=[{"role": "user", "content": QUESTION}],
                                                           extra_body={"documents": DOCS})
        events = list(raw.parse())
        with httpx.stream("POST", f"{s.url}/v1/messages", headers={"x-api-key": s.key}, timeout=30,
                          json={"model": CLAUDE, "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
            text = r.read().decode()
        rows = final_rows(s.service)
    assert raw.headers["X-Ragtrim-Documents"].startswith("1=d") and events[0].type == "message_start"
    assert "event: message_start\n" in text and "event: ping\n" in text and "event: message_delta\n" in text
    assert [r["completion_tokens"] for r in rows] == [8, 8]


# 3. a tool-use round trip


def test_a_tool_use_round_trip_is_served_and_each_turn_charged(tmp_path):
    tools = [{"name": "get_weather", "description": "The weather in a city", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        first = s.client().messages.create(model=CLAUDE, max_tokens=200, tools=tools, tool_choice={"type": "auto"},
                                           messages=[{"role": "user", "content": "Weather in Paris?"}], extra_body={"documents": DOCS})
        [use] = first.content
        second = s.client().messages.create(model=CLAUDE, max_tokens=200, tools=tools, extra_body={"documents": DOCS}, messages=[
            {"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": [use.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"}]}])
        rows = final_rows(s.service)
        sent = s.fake.bodies[-1]
    assert first.stop_reason == "tool_use" and use.type == "tool_use" and use.input == {"city": "Paris"}
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    assert sent["messages"][1]["content"][0]["name"] == "get_weather" and sent["tools"] == tools
    assert [r["prompt_tokens"] for r in rows] == [prompt_of(first.usage), prompt_of(second.usage)]
    # the tool result turn counted more than the first (its tool use and result are billed input)
    assert rows[1]["reserved_tokens"] > rows[0]["reserved_tokens"]
    assert spent_and_reserved(s.service)[0] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)


# 4. usage with cache fields charged at their prices


def test_cache_reads_and_writes_are_charged_at_their_prices(tmp_path):
    with live(tmp_path, cache_read=120, cache_write=30) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        reply = s.client().messages.create(model=CLAUDE, max_tokens=16, messages=[{"role": "user", "content": QUESTION * 30}])
        [row] = final_rows(s.service)
    u = reply.usage
    assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (120, 30) and u.input_tokens > 0
    assert (row["prompt_tokens"], row["cached_tokens"]) == (u.input_tokens + 150, 120)
    exact = u.input_tokens * 3.0 + 120 * 0.3 + 30 * 3.75 + u.output_tokens * 15.0  # micro-dollars per token
    assert row["cost_micro"] == math.ceil(exact)
    # the worst case priced every prompt token at the cache-write price, the higher one
    assert row["reserved_micro"] >= math.ceil(row["prompt_tokens"] * 3.75 + 16 * 15.0)


def burst(service: Any, one: Any, n: int) -> list[dict[str, Any]]:
    """Run ``one`` on ``n`` threads at once; the ledger rows of the requests served (the refused ones left out)."""
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in final_rows(service) if r["action"] != "refused"]


# 5. the margin holds: Claude counts 30 % more than tiktoken, a burst never overruns the budget


def test_a_burst_never_overruns_a_budget_when_claude_counts_more_than_tiktoken(tmp_path):
    limit = 1200
    with live(tmp_path, answer_tokens=40, claude_ratio=1.3) as s:
        budget(s.service, "acme", "tokens", limit)
        outcomes: list[str] = []

        def one() -> None:
            client = s.client()
            try:
                client.messages.create(model="claude-haiku", max_tokens=60, messages=[{"role": "user", "content": QUESTION * 8}])
                outcomes.append("ok")
            except anthropic.RateLimitError:
                outcomes.append("refused")

        rows = burst(s.service, one, 16)
        spent, reserved = spent_and_reserved(s.service)
    assert "ok" in outcomes and "refused" in outcomes and len(outcomes) == 16
    # the upstream reported more than the gateway counted, and the reservation (with the margin) still covered it
    assert all(r["prompt_tokens"] > r["reserved_tokens"] / (1 + ANTHROPIC_COUNT_MARGIN) - 60 for r in rows)
    assert all(r["prompt_tokens"] + r["completion_tokens"] <= r["reserved_tokens"] for r in rows)
    assert spent == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) <= limit and reserved == 0


def test_an_anthropic_model_gets_the_margin_unless_it_sets_one():
    cfg = config("http://127.0.0.1:9", **{"claude-set": {"upstream": "claude", "count_margin": 0.1, **PRICES}})
    assert (cfg.models[CLAUDE].count_margin, cfg.models["claude-set"].count_margin, cfg.models["gpt-4o"].count_margin) == (
        ANTHROPIC_COUNT_MARGIN, 0.1, 0.0)
    with pytest.raises(ValueError, match="cheaper = 'gpt-4o' is on an upstream of another API"):
        config("http://127.0.0.1:9", **{"claude-x": {"upstream": "claude", "cheaper": "gpt-4o", **PRICES}})


# 6. errors in Anthropic's shape, raised by the SDK as its own classes


def test_errors_come_in_anthropics_shape_and_the_sdk_raises_its_own_classes(tmp_path):
    with live(tmp_path) as s:
        with pytest.raises(anthropic.BadRequestError) as bad:
            s.client().messages.create(model=CLAUDE, max_tokens=0, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.AuthenticationError):
            s.client(key="rtk_not_a_key").messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.PermissionDeniedError) as admin:  # an admin key makes no model calls, in x-api-key too
            s.client(key=admin_key(s.service)).messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        wrong_route = s.post({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        chat_on_claude = httpx.post(f"{s.url}/v1/chat/completions", headers={"Authorization": f"Bearer {s.key}"}, timeout=30,
                                    json={"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]})
        responses_on_claude = httpx.post(f"{s.url}/v1/responses", headers={"Authorization": f"Bearer {s.key}"}, timeout=30,
                                         json={"model": CLAUDE, "input": "hi"})
        missing = s.post({"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]})
    assert bad.value.status_code == 400 and "max_tokens must be an integer from 1 to 4096" in bad.value.body["error"]["message"]
    assert admin.value.body["error"] == {"type": "permission_error", "message": admin.value.body["error"]["message"]}
    assert missing.status_code == 400 and "max_tokens is required" in missing.json()["error"]["message"]
    assert missing.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": missing.json()["error"]["message"]}}
    assert wrong_route.status_code == 400 and "served on POST /v1/chat/completions" in wrong_route.json()["error"]["message"]
    assert chat_on_claude.status_code == 400 and "send this request to POST /v1/messages" in chat_on_claude.json()["error"]["message"]
    assert chat_on_claude.json()["error"]["param"] == "model"  # the chat route keeps OpenAI's shape
    assert responses_on_claude.status_code == 400 and "POST /v1/messages" in responses_on_claude.json()["error"]["message"]


def test_a_spent_budget_is_a_rate_limit_error_the_sdk_does_not_retry(tmp_path):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 50)
        client = anthropic.Anthropic(base_url=s.url, api_key=s.key, max_retries=2)
        with pytest.raises(anthropic.RateLimitError) as spent:
            client.messages.create(model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
        rows = final_rows(s.service)
    assert spent.value.response.headers["x-should-retry"] == "false" and "quota exceeded" in spent.value.message
    assert spent.value.body["error"]["type"] == "rate_limit_error"
    assert [r["action"] for r in rows] == ["refused"]  # one try: no retries


def test_an_image_under_a_budget_is_refused_and_served_without_one(tmp_path):
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    body = {"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": [image, {"type": "text", "text": "What is it?"}]}]}
    with live(tmp_path) as s:
        served = s.post(body)
        budget(s.service, "acme", "tokens", 100_000)
        refused = s.post(body)
    assert served.status_code == 200 and served.json()["content"][0]["type"] == "text"
    assert refused.status_code == 400 and refused.json()["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0] (an image block) is billed by tokens this gateway cannot count" in refused.json()["error"]["message"]


def test_a_server_tool_is_refused_naming_it(tmp_path):
    with live(tmp_path) as s:
        r = s.post({"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                    "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    assert r.status_code == 400 and "tools[0] has type 'web_search_20250305'" in r.json()["error"]["message"]


# 7. a stream cut before its usage


def scripted(events: list[bytes]) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def messages(request: Any) -> Any:
        await request.json()

        async def gen() -> Any:
            for e in events:
                yield e

        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


START = event("message_start", {"message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": CLAUDE,
                                            "usage": {"input_tokens": 25, "output_tokens": 1}}})
WORDS = [event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
         event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Paris is the capital of France."}})]


def test_a_stream_cut_before_its_output_usage_is_charged_its_input_and_the_text_counted(tmp_path):
    with gateway_before(scripted([START, *WORDS]), tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        with s.client().messages.stream(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
            text = "".join(stream.text_stream)
        [row] = final_rows(s.service)
    assert text == "Paris is the capital of France."
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (25, 7, "counted")
    assert spent_and_reserved(s.service) == (32, 0)


def test_a_thinking_stream_cut_before_its_usage_is_charged_its_reservation(tmp_path):
    with gateway_before(scripted([START, *WORDS]), tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        r = s.post({"model": CLAUDE, "max_tokens": 2000, "stream": True, "thinking": {"type": "enabled", "budget_tokens": 1024},
                    "messages": [{"role": "user", "content": "hi"}]})
        [row] = final_rows(s.service)
    assert r.status_code == 200 and "event: content_block_delta" in r.text
    assert row["prompt_tokens"] + row["completion_tokens"] == row["reserved_tokens"] and "reasoning tokens" in row["error"]
    assert spent_and_reserved(s.service) == (row["reserved_tokens"], 0)


def test_a_long_event_before_the_usage_cuts_the_stream_with_an_anthropic_error_event(tmp_path):
    huge = event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "x" * 2_000_000}})
    with gateway_before(scripted([START, WORDS[0], huge]), tmp_path) as s:
        r = s.post({"model": CLAUDE, "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        [row] = final_rows(s.service)
    assert r.text.rstrip().split("\n")[-2] == "event: error" and '"type":"api_error"' in r.text
    assert row["prompt_tokens"] == 25 and "max_event_bytes" in row["error"]


# 8. an upstream failure, /v1/usage and /metrics


def test_an_upstream_failure_is_an_api_error_and_the_hold_ends(tmp_path):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        with pytest.raises(anthropic.InternalServerError) as failed:
            s.client().messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "FAIL_UPSTREAM"}])
        [row] = final_rows(s.service)
        _, reserved = spent_and_reserved(s.service)
    # Anthropic's 500 is passed on with its status (the SDK retries it as its own: test_serve_messages_left.py)
    assert failed.value.status_code == 500 and failed.value.body["error"]["type"] == "api_error"
    assert row["endpoint"] == "messages" and row["status"] == 500 and reserved == 0


def test_usage_and_metrics_name_the_messages_endpoint(tmp_path):
    with live(tmp_path) as s:
        s.client().messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "q"}])
        endpoints, metrics = endpoints_seen(s.url, s.key, admin_key(s.service))
    assert endpoints == ["messages"] and 'endpoint="messages"' in metrics


# 9. the README's example runs


def test_the_readme_messages_example_runs(tmp_path):
    block = readme_service_block("### Anthropic Messages API")
    with live(tmp_path) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        reply, row = run_readme_block(block, s.client(), s.service, "messages")
    assert reply.content[0].text and reply.model_extra["ragtrim"]["documents"] and row["feature"] == "support-bot"
    assert s.fake.bodies[-1]["max_tokens"] == 200 and row["endpoint"] == "messages"


# 10. the anthropic upstream: its refusals passed on in Anthropic's shape, its key scrubbed; a JSON answer to a stream


def answering(status: int, body: dict[str, Any]) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def messages(request: Any) -> Any:
        await request.json()
        return JSONResponse(body, status_code=status)

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


def test_an_upstream_refusal_is_passed_on_in_anthropics_shape_without_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_TEST_ANTHROPIC_KEY", "sk-ant-secret-0123456789")
    refusal = {"type": "error", "error": {"type": "invalid_request_error",
                                          "message": "temperature: bad value (key sk-ant-secret-0123456789)"}}
    with gateway_before(answering(400, refusal), tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        with pytest.raises(anthropic.BadRequestError) as bad:
            s.client().messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "hi"}], extra_body={"temperature": 9})
        [row] = final_rows(s.service)
        _, reserved = spent_and_reserved(s.service)
    error = bad.value.body["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith("temperature: bad value")
    assert "sk-ant-secret" not in error["message"] and "sk-ant-secret" not in (row["error"] or "") and reserved == 0


def test_a_whole_message_answered_to_a_stream_request_is_relayed_as_its_stream(tmp_path):
    whole = {"id": "msg_1", "type": "message", "role": "assistant", "model": CLAUDE, "stop_reason": "end_turn",
             "content": [{"type": "text", "text": "Paris."}], "usage": {"input_tokens": 12, "output_tokens": 3}}
    with gateway_before(answering(200, whole), tmp_path) as s:
        with s.client().messages.stream(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "hi"}]) as stream:
            final = stream.get_final_message()
        [row] = final_rows(s.service)
    assert final.content[0].text == "Paris." and final.stop_reason == "end_turn"
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (12, 3, "upstream")


# 11. Anthropic's hidden tool-use system prompt: reserved with the model's tool_prompt_tokens


TINY_TOOL = [{"name": "t", "input_schema": {"type": "object"}}]


def test_a_tool_burst_never_overruns_a_budget_when_the_upstream_bills_its_tool_prompt(tmp_path):
    # the fake bills 346 tokens of tool-use system prompt on top of what it counts, as Anthropic does on Claude 4.x
    limit = 3000
    with live(tmp_path, tool_prompt=346) as s:
        budget(s.service, "acme", "tokens", limit)
        codes: list[int] = []

        def one() -> None:
            codes.append(s.post({"model": CLAUDE, "max_tokens": 20, "tools": TINY_TOOL,
                                 "messages": [{"role": "user", "content": "hi"}]}).status_code)

        rows = burst(s.service, one, 14)
        spent, reserved = spent_and_reserved(s.service)
    assert all(r["prompt_tokens"] > 346 for r in rows)  # the hidden prompt was billed
    assert all(r["prompt_tokens"] + r["completion_tokens"] <= r["reserved_tokens"] for r in rows)
    assert spent == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) <= limit and reserved == 0
    assert 200 in codes and 429 in codes and len(codes) == 14


def test_tool_prompt_tokens_defaults_on_an_anthropic_model_and_is_added_only_with_tools(tmp_path):
    from ragtrim.serve.config import ANTHROPIC_TOOL_PROMPT_TOKENS

    cfg = config("http://127.0.0.1:9", **{"claude-set": {"upstream": "claude", "tool_prompt_tokens": 700, **PRICES}})
    assert (cfg.models[CLAUDE].tool_prompt_tokens, cfg.models["claude-set"].tool_prompt_tokens,
            cfg.models["gpt-4o"].tool_prompt_tokens) == (ANTHROPIC_TOOL_PROMPT_TOKENS, 700, 0)
    with pytest.raises(ValueError, match="tool_prompt_tokens must be"):
        config("http://127.0.0.1:9", **{"claude-x": {"upstream": "claude", "tool_prompt_tokens": -1, **PRICES}})
    with live(tmp_path) as s:
        s.post({"model": CLAUDE, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]})
        s.post({"model": CLAUDE, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}], "tools": []})
        s.post({"model": CLAUDE, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}], "tools": TINY_TOOL})
        bare, empty, tooled = [r["reserved_tokens"] for r in final_rows(s.service)]
    # an empty tools list adds no tool prompt (only its own few JSON tokens); a tool adds the allowance, with the margin
    assert empty - bare < 50 and tooled - empty >= with_margin(ANTHROPIC_TOOL_PROMPT_TOKENS, ANTHROPIC_COUNT_MARGIN)


# 12. fields and beta headers Anthropic bills above the price, or by tokens the gateway cannot count


MSG = {"model": CLAUDE, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def test_fields_billed_above_the_price_are_refused_naming_them(tmp_path):
    with live(tmp_path) as s:
        refused = {k: s.post({**MSG, k: v}) for k, v in (("speed", "fast"), ("inference_geo", "us"), ("service_tier", "priority"))}
        beta = s.post(MSG, **{"anthropic-beta": "prompt-caching-2024-07-31, context-1m-2025-08-07"})
        fast_beta = s.post(MSG, **{"anthropic-beta": "fast-mode-2026-02-01"})
        served = [s.post({**MSG, "speed": "standard", "inference_geo": "global", "service_tier": "standard_only"}).status_code,
                  s.post({**MSG, "service_tier": "auto"}).status_code]
        calls = s.fake.calls
    for name, r in refused.items():
        assert r.status_code == 400 and r.json()["error"]["message"].startswith(f"{name} ") and "price" in r.json()["error"]["message"]
    assert beta.status_code == 400 and "anthropic-beta 'context-1m-2025-08-07'" in beta.json()["error"]["message"]
    assert fast_beta.status_code == 400 and "'fast-mode-2026-02-01'" in fast_beta.json()["error"]["message"]
    assert served == [200, 200] and calls == 2


def test_uncountable_fields_and_betas_are_refused_under_a_budget_and_served_without_one(tmp_path):
    mcp = {"mcp_servers": [{"type": "url", "url": "https://mcp.example.com/sse", "name": "big"}]}
    container = {"container": {"skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]}}
    with live(tmp_path) as s:
        free = [s.post({**MSG, **mcp}), s.post({**MSG, **container}), s.post(MSG, **{"anthropic-beta": "mcp-client-2025-04-04"})]
        forwarded = (s.fake.bodies[0]["mcp_servers"], s.fake.bodies[1]["container"], s.fake.anthropic_headers[2]["anthropic-beta"])
        budget(s.service, "acme", "tokens", 100_000)
        held = [s.post({**MSG, **mcp}), s.post({**MSG, **container}), s.post(MSG, **{"anthropic-beta": "mcp-client-2025-04-04"})]
        allowed = s.post(MSG, **{"anthropic-beta": "prompt-caching-2024-07-31,token-efficient-tools-2025-02-19,"
                                                   "interleaved-thinking-2025-05-14, fine-grained-tool-streaming-2025-05-14"})
        sent = s.fake.anthropic_headers[-1]["anthropic-beta"]
    assert [r.status_code for r in free] == [200, 200, 200]
    assert forwarded == (mcp["mcp_servers"], container["container"], "mcp-client-2025-04-04")
    assert [r.status_code for r in held] == [400, 400, 400]
    messages = [r.json()["error"]["message"] for r in held]
    assert messages[0].startswith("mcp_servers") and messages[1].startswith("container")
    assert messages[2].startswith("anthropic-beta 'mcp-client-2025-04-04'")
    assert all("cannot count" in m and "holds room in a budget" in m for m in messages)
    assert allowed.status_code == 200 and "interleaved-thinking-2025-05-14" in sent


# 13. a stream's usage merged field by field; an error event noted on the row


def _cache_stream(delta_usage: dict[str, Any]) -> list[bytes]:
    start = event("message_start", {"message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": CLAUDE,
                  "usage": {"input_tokens": 300, "cache_creation_input_tokens": 2200, "cache_read_input_tokens": 0, "output_tokens": 1}}})
    delta = event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": delta_usage})
    return [start, *WORDS, event("content_block_stop", {"index": 0}), delta, event("message_stop", {})]


@pytest.mark.parametrize("delta_usage", [{"input_tokens": 300, "output_tokens": 3},
                                         {"input_tokens": 300, "cache_creation_input_tokens": None,
                                          "cache_read_input_tokens": None, "output_tokens": 3}])
def test_a_message_delta_repeating_input_tokens_keeps_the_cache_counts_of_message_start(tmp_path, delta_usage):
    with gateway_before(scripted(_cache_stream(delta_usage)), tmp_path) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        with s.client().messages.stream(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
            usage = stream.get_final_message().usage
        [row] = final_rows(s.service)
    assert (usage.input_tokens, usage.cache_creation_input_tokens) == (300, 2200)  # what the SDK reads
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (2500, 0, 3)
    assert row["cost_micro"] == math.ceil(300 * 3.0 + 2200 * 3.75 + 3 * 15.0) == 9195


def test_an_error_event_mid_stream_is_noted_on_the_row_and_charged_as_a_cut_stream(tmp_path):
    err = event("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
    with gateway_before(scripted([START, *WORDS, err]), tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        with pytest.raises(anthropic.APIStatusError):
            with s.client().messages.stream(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
                "".join(stream.text_stream)
        [row] = final_rows(s.service)
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (25, 7, "counted")
    assert "overloaded_error" in row["error"] and "Overloaded" in row["error"]
    assert spent_and_reserved(s.service) == (32, 0)


# 14. text-bearing blocks in a tool result (a search result, a plain-text document) are counted


def test_search_results_and_text_documents_are_counted_and_a_pdf_still_refused_under_a_budget(tmp_path):
    search = {"type": "search_result", "source": "https://example.com/paris", "title": "Paris",
              "content": [{"type": "text", "text": "Paris is the capital of France. " * 40}]}
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Lyon is in France. " * 40}}
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}

    def body(*blocks: Any) -> dict[str, Any]:
        return {**MSG, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": list(blocks)}]}]}

    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        short = s.post(body({"type": "text", "text": "x"}))
        searched, documented = s.post(body(search)), s.post(body(text_doc))
        top_level = s.post({**MSG, "messages": [{"role": "user", "content": [text_doc, {"type": "text", "text": "Where is Lyon?"}]}]})
        refused = s.post(body(pdf))
        rows = final_rows(s.service)
    assert [r.status_code for r in (short, searched, documented, top_level)] == [200, 200, 200, 200]
    counted = [r["reserved_tokens"] for r in rows]
    assert counted[1] > counted[0] + 200 and counted[2] > counted[0] + 100 and counted[3] > counted[0] + 100
    assert all(r["prompt_tokens"] + r["completion_tokens"] <= r["reserved_tokens"] for r in rows)
    assert refused.status_code == 400 and "(an document block)" not in refused.text and "cannot count" in refused.text


def test_a_user_budget_holds_for_the_user_anthropic_names_in_metadata(tmp_path):
    """Anthropic's end user is ``metadata.user_id``: a user's budget applies to it (the row was untagged, the budget
    never consulted)."""
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 10, scope="user", scope_value="alice")
        alice = s.post({"model": CLAUDE, "max_tokens": 20, "metadata": {"user_id": "alice"},
                        "messages": [{"role": "user", "content": "hi"}]})
        bob = s.post({"model": CLAUDE, "max_tokens": 20, "metadata": {"user_id": "bob"},
                      "messages": [{"role": "user", "content": "hi"}]})
        rows = final_rows(s.service)
    assert alice.status_code == 429 and bob.status_code == 200, (alice.text, bob.text)
    assert sorted(r["user"] for r in rows) == ["alice", "bob"]

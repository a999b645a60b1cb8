"""``POST /v1/responses``: OpenAI's Responses API through the gateway, with the guarantees of the chat route.

The official ``openai`` SDK (``client.responses.create``, ``client.responses.stream``, ``stream=True``) talks
real HTTP on loopback to the gateway, which talks to the fake upstream's ``/v1/responses`` (or a scripted one):
documents optimized and cited, the worst case reserved and settled from the Responses usage (cached input at
the cached price, reasoning in the output), budgets that hold under a burst, ``previous_response_id`` refused
under a budget and served without one, and clear 400s.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse, StreamingResponse

from ragtrim.serve.app import create_app
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.responses_api import event, input_view
from ragtrim.serve.service import Service
from ragtrim.serve.testing import serve_in_thread
from ragtrim.serve.upstream import count_chat_tokens

from serve_fixtures import (DOCS, PEPPER, admin_key, budget, endpoints_seen, final_rows, gateway_config, readme_service_block,
                            run_readme_block, spent_and_reserved, stack, tenant_with_key)

openai = pytest.importorskip("openai")
QUESTION = "What is the capital of France?"


class Live:
    """The gateway (its URL, Service and a tenant key) in front of the fake upstream (its state)."""

    def __init__(self, url: str, service: Service, key: str, fake: Any) -> None:
        self.url, self.service, self.key, self.fake = url, service, key, fake

    def client(self) -> Any:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0)

    def post(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/responses", json=body, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


@contextmanager
def live(tmp_path: Any, *, latency_ms: float = 1, answer_tokens: int = 8, **config: Any) -> Iterator[Live]:
    fake = create_fake_upstream(latency_ms=latency_ms, answer_tokens=answer_tokens)
    with serve_in_thread(fake) as up:
        service = Service(gateway_config(up, **config), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
        with serve_in_thread(create_app(service)) as base:
            yield Live(base, service, tenant_with_key(service, "acme"), fake.state.fake)


# 1. the SDK's responses.create: documents optimized into the input, cited, charged


def test_sdk_responses_create_optimizes_the_documents_and_settles_from_the_responses_usage(tmp_path):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        raw = s.client().responses.with_raw_response.create(
            model="gpt-4o", instructions="Answer in one word.", user="alice",
            input=[{"role": "developer", "content": "Cite the documents."},
                   {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}],
            extra_body={"documents": DOCS, "budget": 0.25, "feature": "support-bot"})
        reply = raw.parse()
        [row] = final_rows(s.service)
        sent = s.fake.bodies[-1]
    assert reply.output_text == "the answer is in the documents above and" and reply.usage.output_tokens == 8
    extra = reply.model_extra["ragtrim"]
    assert extra["tokens_sent"] <= extra["tokens_full"] * 0.25 and extra["documents"][0]["id"] in {d["id"] for d in DOCS}
    assert raw.headers["X-Ragtrim-Action"] == "ok" and raw.headers["X-Ragtrim-Model"] == "gpt-4o"
    assert int(raw.headers["X-Ragtrim-Cost-Micro"]) == extra["cost_micro"] == row["cost_micro"] > 0
    # the documents are a system item after the leading developer item; instructions and the cap go as Responses names
    assert [item["role"] for item in sent["input"]] == ["developer", "system", "user"] and "[1]" in sent["input"][1]["content"]
    assert sent["instructions"] == "Answer in one word." and sent["max_output_tokens"] == 256 and "documents" not in sent
    assert "messages" not in sent and "max_completion_tokens" not in sent
    assert (row["endpoint"], row["action"], row["user"], row["feature"]) == ("responses", "ok", "alice", "support-bot")
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (reply.usage.input_tokens, 8, "upstream")
    # the gateway counted the prompt as the upstream did (input items and instructions), and reserved it plus the cap
    assert row["reserved_tokens"] == row["prompt_tokens"] + 256
    assert spent_and_reserved(s.service) == (row["prompt_tokens"] + 8, 0)


def test_a_string_input_and_the_ragtrim_object_are_read_as_chat_reads_them(tmp_path):
    with live(tmp_path) as s:
        reply = s.client().responses.create(model="gpt-4o", input=QUESTION, max_output_tokens=5,
                                            extra_body={"ragtrim": {"documents": ["Paris is the capital of France."]}})
        sent = s.fake.bodies[-1]
    assert sent["input"][-1] == {"role": "user", "content": QUESTION} and sent["input"][0]["role"] == "system"
    assert sent["max_output_tokens"] == 5 and reply.usage.output_tokens == 5
    assert reply.model_extra["ragtrim"]["documents"] == [{"n": 1, "id": "0"}]


# 2. streamed: relayed event by event, settled from response.completed


def test_sdk_responses_stream_relays_the_events_and_settles_from_response_completed(tmp_path):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        with s.client().responses.stream(model="gpt-4o", input=QUESTION, extra_body={"documents": DOCS}) as stream:
            kinds = [e.type for e in stream]
            final = stream.get_final_response()
        [row] = final_rows(s.service)
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed" and "response.output_text.delta" in kinds
    assert final.output_text == "the answer is in the documents above and"
    assert (row["endpoint"], row["stream"], row["prompt_tokens"], row["completion_tokens"]) == (
        "responses", True, final.usage.input_tokens, final.usage.output_tokens)
    assert spent_and_reserved(s.service) == (final.usage.input_tokens + final.usage.output_tokens, 0)


def test_stream_true_gives_the_raw_events_and_the_documents_header(tmp_path):
    with live(tmp_path) as s:
        raw = s.client().responses.with_raw_response.create(model="gpt-4o", input=QUESTION, stream=True,
                                                            extra_body={"documents": DOCS})
        events = list(raw.parse())
        [row] = final_rows(s.service)
    assert raw.headers["X-Ragtrim-Documents"].startswith("1=d")  # "1=d1,2=d3,...": the id each cited number is
    assert events[-1].type == "response.completed" and row["completion_tokens"] == events[-1].response.usage.output_tokens


# 3. usage: cached input at the cached price, reasoning in the output


PRICED = {"upstream": "fake", "tokenizer": "cl100k_base", "input_per_million": 2.0, "cached_input_per_million": 0.5,
          "output_per_million": 8.0, "price_date": "2026-01-01"}


@pytest.mark.parametrize("stream", [False, True])
def test_cached_input_and_reasoning_tokens_are_charged_right(tmp_path, stream):
    with live(tmp_path, extra_models={"o-test": {**PRICED, "reasoning": True}}) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        s.fake.cached_tokens, s.fake.reasoning_tokens = (lambda prompt: prompt - 4), 300
        if stream:
            with s.client().responses.stream(model="o-test", input=QUESTION, max_output_tokens=400,
                                             reasoning={"effort": "low"}) as st:
                usage = st.get_final_response().usage
        else:
            usage = s.client().responses.create(model="o-test", input=QUESTION, max_output_tokens=400,
                                                reasoning={"effort": "low"}).usage
        [row] = final_rows(s.service)
        price = s.service.prices["o-test"]
    assert usage.output_tokens_details.reasoning_tokens == 300 and usage.output_tokens == 308
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (
        usage.input_tokens, usage.input_tokens - 4, 308)
    assert row["cost_micro"] == price.cost_micro(prompt_tokens=usage.input_tokens, completion_tokens=308,
                                                 cached_tokens=usage.input_tokens - 4)
    assert row["cost_micro"] < price.cost_micro(prompt_tokens=usage.input_tokens, completion_tokens=308)


def test_a_reasoning_stream_whose_usage_never_came_is_charged_its_reservation(tmp_path):
    def cut(body: dict[str, Any]) -> Any:
        def events() -> Iterator[bytes]:
            yield event({"type": "response.created", "sequence_number": 0, "response": {"id": "r1", "status": "in_progress"}})
            yield event({"type": "response.output_text.delta", "sequence_number": 1, "delta": "Par", "item_id": "m",
                         "output_index": 0, "content_index": 0})
        return StreamingResponse(events(), media_type="text/event-stream")

    with stack(tmp_path, cut, extra_models={"o-test": {**PRICED, "reasoning": True}}) as s:
        r = httpx.post(f"{s.url}/v1/responses", headers=s.auth(), timeout=30,
                       json={"model": "o-test", "input": "q", "stream": True, "max_output_tokens": 500})
        assert r.status_code == 200 and b"response.output_text.delta" in r.content
        [row] = final_rows(s.service)
    assert row["usage_source"] == "estimated" and row["completion_tokens"] == 500 and "usage never came" in row["error"]


def test_a_json_answer_to_a_stream_request_is_relayed_as_its_events(tmp_path):
    def whole(body: dict[str, Any]) -> Any:
        return JSONResponse({"id": "r1", "object": "response", "status": "completed", "model": body["model"],
                             "output": [{"type": "message", "role": "assistant", "id": "m1",
                                         "content": [{"type": "output_text", "text": "Paris.", "annotations": []}]}],
                             "usage": {"input_tokens": 20, "output_tokens": 3}})

    with stack(tmp_path, whole) as s:
        r = httpx.post(f"{s.url}/v1/responses", headers=s.auth(), timeout=30, json={"model": "gpt-4o", "input": "q", "stream": True})
        [row] = final_rows(s.service)
    kinds = [json.loads(line[6:])["type"] for line in r.text.splitlines() if line.startswith("data: ")]
    assert kinds == ["response.created", "response.output_item.added", "response.output_item.done", "response.completed"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (20, 3, "upstream")


# 4. budgets hold under a burst


def test_a_burst_of_responses_never_overruns_the_token_budget(tmp_path):
    limit = 1500
    with live(tmp_path, latency_ms=150) as s:
        budget(s.service, "acme", "tokens", limit)
        statuses: list[int] = []

        def one() -> None:
            statuses.append(s.post({"model": "gpt-4o", "input": QUESTION, "max_output_tokens": 200, "documents": DOCS}).status_code)

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = final_rows(s.service)
        spent, reserved = spent_and_reserved(s.service)
    assert statuses.count(200) >= 2 and statuses.count(429) >= 1 and set(statuses) <= {200, 429}
    assert reserved == 0 and spent <= limit
    assert spent == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows if r["action"] in ("ok", "degraded"))
    assert all(r["endpoint"] == "responses" for r in rows)


def test_a_tight_budget_degrades_the_context_as_chat_does(tmp_path):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 150)
        raw = s.client().responses.with_raw_response.create(model="gpt-4o", input=QUESTION, max_output_tokens=20,
                                                            extra_body={"documents": DOCS})
        [row] = final_rows(s.service)
    assert raw.headers["X-Ragtrim-Action"] == "degraded" and "budget full ->" in raw.headers["X-Ragtrim-Degrade"]
    assert row["action"] == "degraded" and row["reserved_tokens"] <= 150 and spent_and_reserved(s.service)[0] <= 150


@pytest.mark.parametrize("route, body, words", [
    ("/v1/responses", {"input": QUESTION, "max_output_tokens": 2000}, "max_output_tokens 2000 and the prompt"),
    ("/v1/responses", {"input": QUESTION}, "max_output_tokens 256 (the model's default: the request sent none) and the prompt"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}], "max_completion_tokens": 2000},
     "max_completion_tokens 2000 and the prompt"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 1500},
     "max_tokens 1500 and the prompt"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": QUESTION}]},
     "max_completion_tokens 256 (the model's default: the request sent none) and the prompt"),
])
def test_a_spent_budget_names_the_cap_field_the_request_sent_and_its_value(tmp_path, route, body, words):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100)
        r = httpx.post(f"{s.url}{route}", json={"model": "gpt-4o", **body}, headers={"Authorization": f"Bearer {s.key}"},
                       timeout=30)
    assert r.status_code == 429, r.text
    message = r.json()["error"]["message"]
    assert words in message, message


# 5. previous_response_id / conversation: the upstream adds context the gateway cannot see


@pytest.mark.parametrize("field, value", [("previous_response_id", "resp_1"), ("conversation", "conv_1"),
                                          ("prompt", {"id": "pmpt_1"})])
def test_stored_context_is_refused_while_the_request_holds_room_in_a_budget(tmp_path, field, value):
    with live(tmp_path) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        r = s.post({"model": "gpt-4o", "input": "and his wife?", field: value})
        [row] = final_rows(s.service)
        calls = s.fake.calls
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == field and "send the whole conversation in input" in error["message"]
    assert calls == 0 and (row["action"], row["status"], row["cost_micro"]) == ("failed", 400, 0)


def test_an_item_reference_is_stored_context_too(tmp_path):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        r = s.post({"model": "gpt-4o", "input": [{"type": "item_reference", "id": "msg_1"}, {"role": "user", "content": "q"}]})
    assert r.status_code == 400 and "item_reference" in r.json()["error"]["param"]


def test_stored_context_without_a_budget_is_served_and_charged_the_usage_reported(tmp_path):
    with live(tmp_path) as s:
        reply = s.client().responses.create(model="gpt-4o", input="and his wife?", previous_response_id="resp_1")
        [row] = final_rows(s.service)
        sent = s.fake.bodies[-1]
    assert sent["previous_response_id"] == "resp_1" and reply.usage.input_tokens > 500  # the fake's 500 stored tokens
    assert row["prompt_tokens"] == reply.usage.input_tokens and row["action"] == "ok"
    assert "usage above the reservation" in row["error"]  # it said so: the stored context was never counted


# 6. errors in OpenAI's shape, naming the value and the fix


@pytest.mark.parametrize("body, param, words", [
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]}, "input",
     "input[0].content[0] is an input_image part"),
    ({"input": "q", "tools": [{"type": "web_search"}]}, "tools", "built-in tool"),
    ({"input": "q", "background": True}, "background", "background: false"),
    ({"input": "q", "max_output_tokens": 0}, "max_output_tokens", "max_output_tokens must be an integer from 1"),
    ({"input": []}, "input", "input must be a string or a non-empty list"),
    ({"input": [42]}, "input", "input[0] must be an object"),
    ({"input": "q", "ragtrim": {"docs": []}}, "ragtrim", "unknown field 'docs'"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}], "documents": DOCS}, "input",
     "input needs a user message with text"),
    ({"input": "q", "instructions": ["x"]}, "instructions", "instructions must be a string"),
    ({"input": "q", "service_tier": "priority"}, "service_tier", "billed above"),
    # an image or a file in a tool's output is billed by the upstream as one in a message is: refused the same way
    ({"input": [{"role": "user", "content": "q"}, {"type": "function_call_output", "call_id": "c", "output": [
        {"type": "input_text", "text": "the chart:"}, {"type": "input_image", "image_url": "http://x/y.png"}]}]}, "input",
     "input[1].output[1] is an input_image part"),
    ({"input": [{"role": "user", "content": "q"}, {"type": "custom_tool_call_output", "call_id": "c", "output": [
        {"type": "input_file", "file_url": "http://x/report.pdf"}]}]}, "input", "input[1].output[0] is an input_file part"),
    # a list of parts on an item the counter does not know is refused, not counted as its JSON
    ({"input": [{"role": "user", "content": "q"}, {"type": "shell_call_output", "call_id": "c", "output": [
        {"type": "input_image", "image_url": "http://x/y.png"}]}]}, "input", "input[1].output is a list of parts"),
])
def test_bad_bodies_are_400s_naming_the_field_and_the_fix(tmp_path, body, param, words):
    with live(tmp_path) as s:
        r = s.post({"model": "gpt-4o", **body})
        calls = s.fake.calls
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == param and words in error["message"], error
    assert error["type"] == "invalid_request_error" and calls == 0


def local_beside(up: str) -> dict[str, Any]:
    """gateway_config's settings with the in-process model as gpt-4o's cheaper model (never loaded by these tests)."""
    return {"upstreams": {"fake": {"kind": "openai", "base_url": f"{up}/v1"}, "local": {"kind": "local"}},
            "models": {"gpt-4o": {"upstream": "fake", "tokenizer": "cl100k_base", "cheaper": "gemma-3-270m"},
                       "gemma-3-270m": {"upstream": "local", "input_per_million": 0.0, "output_per_million": 0.0,
                                        "price_date": "local"}}}


def test_the_in_process_model_is_a_400_naming_the_chat_route_and_never_a_cheaper_step(tmp_path):
    from ragtrim.serve.chat import served_chain
    from ragtrim.serve.responses import parse_responses

    fake = create_fake_upstream(latency_ms=1)
    with serve_in_thread(fake) as up:
        service = Service(gateway_config(up, **local_beside(up)), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
        with serve_in_thread(create_app(service)) as base:
            key = tenant_with_key(service, "acme")
            r = httpx.post(f"{base}/v1/responses", json={"model": "gemma-3-270m", "input": "q"},
                           headers={"Authorization": f"Bearer {key}"}, timeout=30)
            chain = served_chain(service, parse_responses({"model": "gpt-4o", "input": "q"}, {}, service.config))
    error = r.json()["error"]
    assert r.status_code == 400 and error["param"] == "model" and "POST /v1/chat/completions" in error["message"]
    assert [m.name for m in chain] == ["gpt-4o"]  # the chat route's chain goes on to gemma; this one stops before it


def test_function_items_are_counted_and_forwarded(tmp_path):
    items = [{"role": "user", "content": "weather in Paris?"},
             {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
             {"type": "function_call_output", "call_id": "c1", "output": '{"temp": 21}'}]
    tools = [{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        reply = s.client().responses.create(model="gpt-4o", input=items, tools=tools)
        [row] = final_rows(s.service)
        sent = s.fake.bodies[-1]
    assert sent["input"] == items and sent["tools"] == tools
    assert row["prompt_tokens"] == reply.usage.input_tokens > count_chat_tokens(input_view(items), "cl100k_base")


def test_text_parts_in_a_tool_output_are_counted_as_text():
    text = "the quarterly revenue grew by twelve percent in Europe " * 20
    as_parts = input_view([{"type": "function_call_output", "call_id": "c1", "output": [{"type": "input_text", "text": text}]}])
    as_string = input_view([{"type": "function_call_output", "call_id": "c1", "output": text}])
    assert as_parts == as_string == [{"role": "function_call_output", "call_id": "c1", "output": text}]


def test_a_reasoning_item_sent_back_with_its_reasoning_text_is_counted_and_forwarded(tmp_path):
    thought = "The user asks for the weather; call the weather tool for Paris. " * 10
    items = [{"role": "user", "content": "weather in Paris?"},
             {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Calling the tool."}],
              "content": [{"type": "reasoning_text", "text": thought}]},
             {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
             {"type": "function_call_output", "call_id": "c1", "output": '{"temp": 21}'}]
    view = input_view(items)
    assert view[1]["content"] == thought and view[1]["summary"] == "Calling the tool."
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        r = s.post({"model": "gpt-4o", "input": items})
        [row] = final_rows(s.service)
        sent = s.fake.bodies[-1]
    assert r.status_code == 200, r.text
    assert sent["input"] == items and row["reserved_tokens"] >= row["prompt_tokens"] > len(thought) // 8


@pytest.mark.parametrize("with_budget", [True, False])
def test_a_reasoning_item_sent_by_its_id_only_is_stored_context(tmp_path, with_budget):
    items = [{"role": "user", "content": "weather in Paris?"}, {"type": "reasoning", "id": "rs_1", "summary": []},
             {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "21"}]
    with live(tmp_path) as s:
        if with_budget:
            budget(s.service, "acme", "tokens", 100_000)
        r = s.post({"model": "gpt-4o", "input": items})
        calls = s.fake.calls
    if not with_budget:  # served, and charged the usage reported
        assert r.status_code == 200 and calls == 1
        return
    error = r.json()["error"]
    assert r.status_code == 400 and calls == 0 and "input[1]" in error["param"] and "reasoning" in error["param"]
    assert "encrypted_content" in error["message"] and "without a budget" in error["message"]


def test_a_reasoning_item_with_its_encrypted_content_is_not_stored_context(tmp_path):
    items = [{"role": "user", "content": "weather in Paris?"},
             {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB" + "x" * 400},
             {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "c1", "output": "21"}]
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        r = s.post({"model": "gpt-4o", "input": items, "store": False, "include": ["reasoning.encrypted_content"]})
    assert r.status_code == 200, r.text


def test_an_upstream_failure_is_a_502_and_the_hold_ends(tmp_path):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        r = s.post({"model": "gpt-4o", "input": "FAIL_UPSTREAM"})
        [row] = final_rows(s.service)
        _, reserved = spent_and_reserved(s.service)
    assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
    assert row["endpoint"] == "responses" and row["status"] == 502 and reserved == 0


# 7. /v1/usage and /metrics name the route


def test_usage_and_metrics_name_the_responses_endpoint(tmp_path):
    with live(tmp_path) as s:
        s.client().responses.create(model="gpt-4o", input="q")
        endpoints, metrics = endpoints_seen(s.url, s.key, admin_key(s.service))
    assert endpoints == ["responses"] and 'endpoint="responses"' in metrics


# 8. the README's example runs


def test_the_readme_responses_example_runs(tmp_path):
    block = readme_service_block("OpenAI's Responses API (`POST /v1/responses`")
    with live(tmp_path) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        reply, row = run_readme_block(block, s.client(), s.service, "responses")
    assert reply.output_text and reply.model_extra["ragtrim"]["documents"] and row["feature"] == "support-bot"
    assert s.fake.bodies[-1]["max_output_tokens"] == 200 and row["endpoint"] == "responses"


@pytest.mark.parametrize("instructions, answer_tokens", [("Answer briefly. " * 400, 8), (None, 3000)])
def test_a_stream_whose_last_events_repeat_a_long_request_or_answer_is_not_cut(tmp_path, instructions, answer_tokens):
    """response.completed repeats the instructions, the tools and the whole output (output_item.done the output too): an
    event past max_event_bytes by that much is read whole and its usage charged, not cut with the usage lost."""
    tools = [{"type": "function", "name": "lookup", "description": "Look a city up. " * 60, "parameters": {"type": "object"}}]
    with live(tmp_path, answer_tokens=answer_tokens, upstream={"max_event_bytes": 4096}) as s:
        budget(s.service, "acme", "tokens", 100_000)
        extra = {"instructions": instructions} if instructions else {}
        with s.client().responses.stream(model="gpt-4o", input=QUESTION, tools=tools, max_output_tokens=answer_tokens,
                                         **extra) as stream:
            kinds = [e.type for e in stream]
            final = stream.get_final_response()
        [row] = final_rows(s.service)
    assert kinds[-1] == "response.completed" and final.usage is not None
    assert (row["error"], row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == (
        "", "upstream", final.usage.input_tokens, final.usage.output_tokens), row
    assert spent_and_reserved(s.service) == (final.usage.input_tokens + final.usage.output_tokens, 0)


def test_a_responses_event_past_the_cap_and_the_request_it_repeats_is_still_cut():
    """The allowance is the cap plus what the event may repeat (the request's echoed fields, the output so far): an event
    longer than that is still cut."""
    from ragtrim.serve.responses import ResponsesTally

    tally = ResponsesTally(1024, {"instructions": "x" * 2000, "input": "y" * 50_000})
    assert tally.feed(event({"type": "response.created", "pad": "z" * 2500}))[0][1] is False and not tally.error
    assert tally.feed(event({"type": "response.completed", "pad": "z" * 9000})) == [] and "longer than" in tally.error


def test_what_a_responses_event_may_hold_grows_with_the_output_only_and_is_bounded():
    """Review of 57cd3e2: the allowance grew with every byte streamed (padding included), so after 40 MB of small
    events one 26 MB event was held whole and parsed on the loop (2.2 s). It grows with the deltas' output only, at
    most REPEATED_OUTPUT_EVENTS times the cap."""
    from ragtrim.serve.responses import REPEATED_OUTPUT_EVENTS, ResponsesTally

    tally = ResponsesTally(1024, {"input": "q"})
    base = tally.event_cap()
    for _ in range(100):  # 50 KB of events that carry no output
        tally.feed(event({"type": "response.in_progress", "pad": "z" * 500}))
    assert tally.event_cap() == base and not tally.error
    for _ in range(40):  # 20 KB of output: the allowance follows it, to its bound
        tally.feed(event({"type": "response.output_text.delta", "delta": "w" * 500}))
    assert tally.event_cap() == base + REPEATED_OUTPUT_EVENTS * 1024 and not tally.error
    assert tally.feed(event({"type": "response.completed", "pad": "z" * (base + 9 * 1024)})) == [] and "longer than" in tally.error

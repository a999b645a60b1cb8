"""What an upstream that fails after it had the request, or misreports what it did, costs the tenant.

A scripted OpenAI-compatible upstream and the gateway both run on loopback (:func:`serve_fixtures.stack`):

1. a call the upstream had in full and then did not answer (a read timeout), or answered 200 with a
   body that is cut or not JSON, may have been done and billed: it is charged its reservation as an
   estimate (the row says so), the client gets a 502 that does not say "unreachable" and never quotes
   the body; so a client that retries cannot get more upstream work than its budget pays for. A
   connection that never reached the upstream stays uncharged;
2. a reported usage far below the gateway's own count of the same text (0 for a 200-word answer) is
   replaced by the count, and the row says so; a count a little below it is the upstream's to give;
3. a stream request the upstream answers with a whole JSON completion reaches the client as the
   stream events an OpenAI SDK reads, charged the completion's usage;
4. the gateway marks a request sent as soon as the upstream has it, so a worker that dies with it in
   flight leaves it to be charged its reservation (``test_serve_estimates``).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

from starlette.responses import JSONResponse, Response, StreamingResponse  # noqa: E402

from optimizer.tokenizer import get_tokenizer  # noqa: E402
from ragtrim.serve.config import ServeConfig, UpstreamConfig  # noqa: E402
from ragtrim.serve.schema import ledger  # noqa: E402
from ragtrim.serve.testing import free_port  # noqa: E402
from ragtrim.serve.upstream import OpenAIUpstream  # noqa: E402

from serve_fixtures import (assert_estimated, auth, budget, chat, final_rows, gateway, spent_and_reserved, stack,  # noqa: E402
                            tenant_with_key, wait_for)

ANSWER = " ".join(["word"] * 200)  # a 200-word answer: 200 tokens in cl100k_base


def completion(content: str = ANSWER, usage: dict[str, int] | None = None, **message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message},
                                        "finish_reason": "stop"}]}
    if usage is not None:
        out["usage"] = usage
    return out


def stream_events(usage: dict[str, int]) -> list[bytes]:
    """:data:`ANSWER` streamed word by word, then the usage chunk and ``[DONE]``."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    words = ANSWER.split(" ")
    chunks = [{**base, "choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}}]} for i, w in enumerate(words)]
    chunks += [{**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, {**base, "choices": [], "usage": usage}]
    return [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def tokens(text: str) -> int:
    return get_tokenizer("cl100k_base").count(text)


# 1. a call the upstream had, then failed: charged its reservation


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_that_times_out_after_the_upstream_had_it_is_charged_its_reservation(tmp_path, stream):
    gate = threading.Event()

    async def slow(body: dict[str, Any]) -> Response:
        await wait_for(gate, 10.0)  # the gateway gives up first (its timeout), then the test lets this one go
        return JSONResponse(completion(usage={"prompt_tokens": 9, "completion_tokens": 200}))

    with stack(tmp_path, slow, timeout=0.5) as s:
        try:
            r = s.post(stream=stream)
        finally:
            gate.set()
        assert r.status_code == 502, r.text
        message = r.json()["error"]["message"]
        assert "unreachable" not in message and "failed after the request was sent: ReadTimeout" in message, message
        assert "timeout of 0.5 s; raise timeout under [upstreams.fake]" in message
        assert "charged its reservation as an estimate" in message
        row = assert_estimated(s, 502, "ReadTimeout")
        assert r.headers["X-Ragtrim-Request-Id"] == row["id"] and len(s.calls) == 1  # never sent again
        assert r.headers["x-should-retry"] == "false"  # nor by an OpenAI SDK, which would be charged again
        assert row["completion_tokens"] == 50 and row["prompt_tokens"] > 0  # the reservation: the prompt and max_tokens


@pytest.mark.parametrize("body", [json.dumps(completion(content="THE SECRET ANSWER"))[:-9].encode(), b'["THE SECRET ANSWER"]'],
                         ids=["cut", "a-list"])
def test_a_200_whose_body_is_no_completion_is_charged_its_reservation_and_never_quoted(tmp_path, body):
    with stack(tmp_path, lambda _: Response(body, media_type="application/json")) as s:
        r = s.post()
        assert r.status_code == 502 and "SECRET" not in r.text, r.text
        message = r.json()["error"]["message"]
        assert f"upstream answered HTTP 200 with a body that is not a chat completion ({len(body)} bytes" in message
        row = assert_estimated(s, 502, "not a chat completion")
        assert "SECRET" not in row["error"]


def test_a_client_retrying_timeouts_cannot_get_more_upstream_work_than_its_budget_pays_for(tmp_path):
    """The OpenAI SDK sends a request that got a 502 again (twice by default). Each call the upstream had is charged,
    so the budget ends the retries: before, every one was free and the upstream did (and billed) all of them."""
    gate = threading.Event()

    async def slow(body: dict[str, Any]) -> Response:
        await wait_for(gate, 10.0)
        return JSONResponse(completion())

    with stack(tmp_path, slow, timeout=0.5) as s:
        budget(s.service, "acme", "tokens", 200)  # the stack's token budget, its limit now 200
        statuses = []
        try:
            for _ in range(10):
                statuses.append(s.post(max_tokens=20).status_code)
                if statuses[-1] == 429:
                    break
        finally:
            gate.set()
        charged = [r for r in final_rows(s.service) if r["usage_source"] == "estimated"]
        assert statuses[-1] == 429 and statuses.count(502) == len(charged) == len(s.calls) >= 2, statuses
        spent = sum(r["prompt_tokens"] + r["completion_tokens"] for r in charged)
        assert spent_and_reserved(s.service) == (spent, 0) and spent <= 200


def test_a_connection_that_never_reached_the_upstream_is_a_502_that_charges_nothing(tmp_path):
    with gateway(f"http://127.0.0.1:{free_port()}") as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 10_000)
        r = client.post("/v1/chat/completions", json=chat(), headers=auth(key))
        assert r.status_code == 502 and "upstream unreachable: ConnectError" in r.json()["error"]["message"], r.text
        assert "charged" not in r.json()["error"]["message"] and "x-should-retry" not in r.headers  # free to resend
        [row] = final_rows(service)
        assert (row["action"], row["usage_source"], row["cost_micro"], row["completion_tokens"]) == ("failed", "none", 0, 0)
        assert spent_and_reserved(service) == (0, 0)


def test_the_upstream_timeout_is_the_openai_sdks_600_s_connecting_at_most_5_and_a_bad_one_is_named():
    import asyncio

    up = OpenAIUpstream(UpstreamConfig(name="u", base_url="http://127.0.0.1:1/v1"))
    asyncio.run(up.start())
    try:
        assert up._client.timeout == httpx.Timeout(600.0, connect=5.0)
    finally:
        asyncio.run(up.aclose())
    for bad in (0, -1, "60", float("nan")):
        with pytest.raises(ValueError, match=r"upstream 'u': timeout must be seconds above 0") as err:
            ServeConfig.from_dict({"upstreams": {"u": {"base_url": "http://h/v1", "timeout": bad}}, "models": {"m": {"upstream": "u"}}})
        assert repr(bad) in str(err.value)


# 2. usage far below the gateway's own count


@pytest.mark.parametrize("stream", [False, True])
def test_a_reported_usage_of_zero_for_a_long_answer_is_replaced_by_the_count(tmp_path, stream):
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    def answer(body: dict[str, Any]) -> Response:
        if stream:
            return StreamingResponse(iter(stream_events(zero)), media_type="text/event-stream")
        return JSONResponse(completion(usage=zero))

    question = [{"role": "user", "content": "Tell me about the capital of France. " * 10}]  # ~90 prompt tokens
    with stack(tmp_path, answer) as s:
        r = s.post(stream=stream, max_tokens=300, messages=question)
        assert r.status_code == 200 and r.text.count("word") == 200
        [row] = final_rows(s.service)
        assert (row["action"], row["usage_source"], row["completion_tokens"]) == ("ok", "counted", tokens(ANSWER)), row
        assert row["prompt_tokens"] > 0 and ("upstream reported completion_tokens 0 for 999 bytes of text, below 1 token per 32 "
                                             "bytes: charged the gateway's count, 200") in row["error"]
        assert "upstream reported prompt_tokens 0" in row["error"]
        assert spent_and_reserved(s.service) == (row["prompt_tokens"] + row["completion_tokens"], 0)


def test_a_count_a_little_below_the_gateways_is_the_upstreams_to_give(tmp_path):
    """Tokenizers differ by a few percent: 90 % of the gateway's count is charged as reported."""
    usage = {"prompt_tokens": 5, "completion_tokens": tokens(ANSWER) * 9 // 10}
    with stack(tmp_path, lambda _: JSONResponse(completion(usage=usage))) as s:
        assert s.post(max_tokens=300).status_code == 200
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["prompt_tokens"], row["completion_tokens"], row["error"]) == (
            "upstream", 5, usage["completion_tokens"], "")


# 3. a JSON answer to a stream request


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_json_answer_to_a_stream_request_reaches_the_client_as_a_stream(tmp_path, include_usage):
    usage = {"prompt_tokens": 7, "completion_tokens": 200, "total_tokens": 207}
    with stack(tmp_path, lambda _: JSONResponse(completion(usage=usage))) as s:
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        r = s.post(stream=True, max_tokens=300, **options)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = [e[6:] for e in r.text.split("\n\n") if e.startswith("data: ")]
        assert data[-1] == "[DONE]"
        chunks = [json.loads(d) for d in data[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert text == ANSWER and [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]] == [None, "stop"]
        assert [c["usage"] for c in chunks if "usage" in c] == ([usage] if include_usage else [])
        [row] = final_rows(s.service)
        assert (row["action"], row["usage_source"], row["prompt_tokens"], row["completion_tokens"]) == ("ok", "upstream", 7, 200)


def test_an_openai_sdk_streaming_a_json_answer_reads_its_text_tool_calls_and_usage(tmp_path):
    openai = pytest.importorskip("openai")
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}
    usage = {"prompt_tokens": 7, "completion_tokens": 15, "total_tokens": 22}
    with stack(tmp_path, lambda _: JSONResponse(completion(content="Let me look.", usage=usage, tool_calls=[call]))) as s:
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0)
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True,
                                                     max_tokens=50, stream_options={"include_usage": True}))
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert "".join(d.content or "" for d in deltas) == "Let me look."
        [tool] = [t for d in deltas for t in d.tool_calls or []]
        assert (tool.index, tool.id, tool.function.name, tool.function.arguments) == (0, "call_1", "lookup", '{"city": "Paris"}')
        assert chunks[-1].usage.completion_tokens == 15
        [row] = final_rows(s.service)
        assert (row["usage_source"], row["completion_tokens"]) == ("upstream", 15)


def test_a_cut_json_answer_to_a_stream_request_is_charged_its_reservation(tmp_path):
    body = json.dumps(completion(content="THE SECRET ANSWER"))[:-9].encode()
    with stack(tmp_path, lambda _: Response(body, media_type="application/json")) as s:
        r = s.post(stream=True)
        assert r.status_code == 502 and "SECRET" not in r.text and "not a chat completion" in r.text, r.text
        assert_estimated(s, 502, "not a chat completion")


# 4. a request is marked sent once the upstream has it


def test_the_gateway_marks_a_request_sent_as_soon_as_the_upstream_has_it(tmp_path):
    gate, seen = threading.Event(), threading.Event()

    async def held(body: dict[str, Any]) -> Response:
        seen.set()
        await wait_for(gate, 10.0)
        return JSONResponse(completion(content="ok", usage={"prompt_tokens": 9, "completion_tokens": 1}))

    with stack(tmp_path, held) as s:
        answers: list[Any] = []
        caller = threading.Thread(target=lambda: answers.append(s.post()))
        caller.start()
        try:
            assert seen.wait(10)
            deadline, marked = time.monotonic() + 10, None
            while marked != "sent" and time.monotonic() < deadline:  # the mark is written on a thread of its own
                with s.service.engine.connect() as c:
                    marked = c.execute(ledger.select().where(ledger.c.action == "pending")).one().usage_source
                time.sleep(0.01)
            assert marked == "sent"
        finally:
            gate.set()
            caller.join(30)
        assert answers[0].status_code == 200
        [row] = final_rows(s.service)
        assert (row["action"], row["usage_source"]) == ("ok", "upstream")  # the settle replaces the mark

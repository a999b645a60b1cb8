"""``POST /v1/responses``: what the Responses route left to chat's shapes, in the Responses API's own.

A stream the upstream breaks mid-way ends with the Responses ``error`` event (and ``response.failed``), which the
official SDK raises as an ``APIError``; a reasoning model's answer spent on reasoning alone logs chat's
``reasoning_answer_cut`` warning, streamed or not; and an agent's long transcript is read up to
``[limits] responses_body_bytes``. Real HTTP on loopback: the gateway in front of a scripted upstream (:func:`stack`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse, StreamingResponse

from ragtrim.serve.fake_responses import response_object
from ragtrim.serve.responses_api import event

from serve_fixtures import budget, final_rows, spent_and_reserved, stack

openai = pytest.importorskip("openai")
PRICED = {"upstream": "fake", "tokenizer": "cl100k_base", "input_per_million": 2.0, "output_per_million": 8.0,
          "price_date": "2026-01-01"}


def sse_events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    """``(event name, data)`` of each event of a stream's text."""
    out = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        name = next((line[7:] for line in lines if line.startswith("event: ")), None)
        data = "\n".join(line[6:] for line in lines if line.startswith("data: "))
        if data:
            out.append((name, json.loads(data)))
    return out


# 1. an upstream that fails mid-stream: the Responses error event, which the SDK raises


def broken_stream(body: dict[str, Any]) -> Any:
    """A Responses stream that starts, carries a word, then breaks (the connection drops mid-answer)."""
    def events() -> Iterator[bytes]:
        created = {**response_object(1, body, "", None), "id": "resp_1", "status": "in_progress", "output": []}
        message = {"id": "m", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        at = {"item_id": "m", "output_index": 0, "content_index": 0}
        yield event({"type": "response.created", "sequence_number": 0, "response": created})
        yield event({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": message})
        yield event({"type": "response.content_part.added", "sequence_number": 2, **at,
                     "part": {"type": "output_text", "text": "", "annotations": []}})
        yield event({"type": "response.output_text.delta", "sequence_number": 3, "delta": "Par", "logprobs": [], **at})
        raise RuntimeError("upstream connection dropped")
    return StreamingResponse(events(), media_type="text/event-stream")


def test_a_stream_the_upstream_breaks_ends_with_the_responses_error_event(tmp_path):
    from openai.types.responses import ResponseErrorEvent, ResponseFailedEvent

    with stack(tmp_path, broken_stream) as s:
        r = httpx.post(f"{s.url}/v1/responses", headers=s.auth(), timeout=30,
                       json={"model": "gpt-4o", "input": "q", "stream": True, "max_output_tokens": 50})
        [row] = final_rows(s.service)
    assert r.status_code == 200
    events = sse_events(r.text)
    (error_name, error), (failed_name, failed) = events[-2:]
    # the documented shape (flat code, message, param) and the live API's (nested error), which the SDK raises
    assert (error_name, error["type"], error["code"]) == ("error", "error", "upstream_error"), error
    assert "upstream stream failed" in error["message"] and error["error"]["message"] == error["message"]
    assert error["sequence_number"] == 4 and ResponseErrorEvent.model_validate(error).message == error["message"]
    # then the response, failed, as the stream's last event
    assert (failed_name, failed["type"], failed["sequence_number"]) == ("response.failed", "response.failed", 5)
    assert failed["response"]["id"] == "resp_1" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": "server_error", "message": error["message"]}
    assert ResponseFailedEvent.model_validate(failed).response.error.message == error["message"]
    assert "upstream stream failed" in row["error"] and row["status"] == 200  # accounted as before


def test_the_sdk_raises_the_upstream_failure_of_a_responses_stream(tmp_path):
    with stack(tmp_path, broken_stream) as s:
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=0)
        seen = []
        with pytest.raises(openai.APIError) as err:
            with client.responses.stream(model="gpt-4o", input="q", max_output_tokens=50) as stream:
                seen.extend(e.type for e in stream)
        final_rows(s.service)
    assert "upstream stream failed" in err.value.message and "response.output_text.delta" in seen


def test_a_chat_stream_the_upstream_breaks_keeps_chats_error_event(tmp_path):
    def broken_chat(body: dict[str, Any]) -> Any:
        def events() -> Iterator[bytes]:
            yield b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Par"}}]}\n\n'
            raise RuntimeError("upstream connection dropped")
        return StreamingResponse(events(), media_type="text/event-stream")

    with stack(tmp_path, broken_chat) as s:
        r = httpx.post(f"{s.url}/v1/chat/completions", headers=s.auth(), timeout=30,
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}], "stream": True})
        final_rows(s.service)
    name, last = sse_events(r.text)[-1]
    assert name is None and set(last) == {"error"} and last["error"]["type"] == "upstream_error"


# 2. a reasoning model that spent its whole cap reasoning: chat's warning, streamed or not


def thinks_first(body: dict[str, Any]) -> Any:
    """A reasoning model that thinks for 1,000 tokens first: under a smaller cap it answers nothing, incomplete."""
    from ragtrim.serve.responses_api import response_events

    cap = body.get("max_output_tokens") or 10**6
    data = {**response_object(1, body, "Paris.", None), "status": "completed"}
    reasoning = {"id": "rs_1", "type": "reasoning", "summary": []}
    if cap <= 1000:
        data.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"}, output=[reasoning],
                    usage={"input_tokens": 1, "output_tokens": cap, "output_tokens_details": {"reasoning_tokens": cap}})
    else:
        data.update(output=[reasoning, *data["output"]], usage={"input_tokens": 1, "output_tokens": 1002})
    if body.get("stream"):
        return StreamingResponse(iter(response_events(data)), media_type="text/event-stream")
    return JSONResponse(data)


@pytest.mark.parametrize("stream", [False, True])
def test_a_reasoning_models_answer_spent_on_reasoning_logs_chats_warning(tmp_path, caplog, stream):
    with stack(tmp_path, thinks_first, extra_models={"o3": {**PRICED, "reasoning": True}}) as s:
        with caplog.at_level(logging.INFO, logger=s.service.log.name):
            for extra in ({}, {"max_output_tokens": 500}, {"max_output_tokens": 4000}):  # no cap, a small one, room
                r = httpx.post(f"{s.url}/v1/responses", headers=s.auth(), timeout=30,
                               json={"model": "o3", "input": "q", "stream": stream, **extra})
                assert r.status_code == 200, r.text
            rows = final_rows(s.service)
    assert [row["completion_tokens"] for row in rows] == [256, 500, 1002]  # charged as billed: the warning changes nothing else
    warned = [rec for rec in caplog.records if rec.getMessage() == "reasoning_answer_cut"]
    assert len(warned) == 2 and {w.levelno for w in warned} == {logging.WARNING}, [rec.getMessage() for rec in caplog.records]
    first, second = warned[0].fields, warned[1].fields
    assert (first["model"], first["request_id"], first["cap"], second["cap"]) == ("o3", rows[0]["id"], 256, 500)
    assert "incomplete_details.reason max_output_tokens" in first["message"] and "finish_reason" not in first["message"]
    assert 'set max_tokens_default under [models."o3"]' in first["message"]
    assert "the client sent max_output_tokens 500" in second["message"]


# 3. an agent's long transcript: read up to [limits] responses_body_bytes, not the chat routes' 1 MiB


def answers(body: dict[str, Any]) -> Any:
    """A Responses answer of one word, with usage counted the gateway's way (so the row is the upstream's count)."""
    from ragtrim.serve.responses_api import input_view
    from ragtrim.serve.upstream import count_chat_tokens

    prompt = count_chat_tokens(input_view(body["input"]), "cl100k_base")
    return JSONResponse({**response_object(1, body, "Done.", None), "usage": {"input_tokens": prompt, "output_tokens": 2}})


def transcript(items: int, chars: int) -> list[dict[str, Any]]:
    """An agent's transcript: a task, then ``items`` tool calls and their outputs (each output ``chars`` long)."""
    out: list[dict[str, Any]] = [{"role": "user", "content": "Refactor the billing module and run the tests."}]
    for i in range(items // 2):
        out += [{"type": "function_call", "call_id": f"c{i}", "name": "read_file", "arguments": json.dumps({"path": f"f{i}.py"})},
                {"type": "function_call_output", "call_id": f"c{i}", "output": (f"def f{i}(x):\n    return x + {i}\n" * 999)[:chars]}]
    return out


def test_a_long_agent_transcript_is_read_past_the_chat_routes_limit(tmp_path):
    """An agent's transcript of 400 items, tool outputs of 9,000 to 60,000 characters: above max_body_bytes (1 MiB),
    max_messages (64) and 4 x max_query_chars per message (32,000 characters), all of which are the chat's; the
    Responses route is bounded by responses_body_bytes (8 MiB)."""
    body = {"model": "gpt-4o", "input": transcript(398, 9_000) + transcript(2, 60_000), "max_output_tokens": 50}
    with stack(tmp_path, answers) as s:
        budget(s.service, "acme", "tokens", 10**7)
        size = len(httpx.Request("POST", "/", json=body).content)
        assert size > 1.5 * 2**20  # above max_body_bytes (1 MiB), within responses_body_bytes (8 MiB)
        r = httpx.post(f"{s.url}/v1/responses", headers=s.auth(), json=body, timeout=60)
        assert r.status_code == 200, r.text[:300]
        [row] = final_rows(s.service)
    assert (row["action"], row["prompt_tokens"]) == ("ok", r.json()["usage"]["input_tokens"]) and row["prompt_tokens"] > 300_000


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_responses_body_bytes_is_a_413_naming_the_setting(tmp_path, chunked):
    body = {"model": "gpt-4o", "input": transcript(10, 500)}  # about 5 KB
    with stack(tmp_path, answers) as s:
        s.service.config = replace_limits(s.service.config, responses_body_bytes=2_000, max_body_bytes=100_000)
        content = httpx.Request("POST", "/", json=body).content
        sent = iter([content[:1000], content[1000:]]) if chunked else content  # chunked: no Content-Length
        r = httpx.post(f"{s.url}/v1/responses", content=sent, timeout=30, headers={**s.auth(), "Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        message = r.json()["error"]["message"]
        for words in ("2000", "limits.responses_body_bytes", "older turns"):
            assert words in message, message
        assert s.calls == [] and [(row["action"], row["status"]) for row in final_rows(s.service)] == [("failed", 413)]
        # the chat route keeps its own limit
        s.service.config = replace_limits(s.service.config, max_body_bytes=2_000, responses_body_bytes=100_000)
        assert httpx.post(f"{s.url}/v1/responses", headers=s.auth(), json=body, timeout=30).status_code == 200
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 3000}]}
        r = httpx.post(f"{s.url}/v1/chat/completions", json=chat, headers=s.auth(), timeout=30)
        assert r.status_code == 413 and "limits.max_body_bytes" in r.json()["error"]["message"], r.text


def replace_limits(config: Any, **limits: Any) -> Any:
    from dataclasses import replace

    return replace(config, limits=replace(config.limits, **limits))


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "8MiB"])
def test_responses_body_bytes_is_a_positive_integer_8_mib_unless_set(value):
    from ragtrim.serve.config import ServeConfig

    assert ServeConfig.from_dict({}).limits.responses_body_bytes == 8 * 2**20
    assert ServeConfig.from_dict({"limits": {"responses_body_bytes": 10**7}}).limits.responses_body_bytes == 10**7
    with pytest.raises(ValueError, match=f"limits.responses_body_bytes must be a positive integer, got {value!r}"):
        ServeConfig.from_dict({"limits": {"responses_body_bytes": value}})


def on_loop() -> str:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return "thread"
    return "event loop"


def test_a_long_transcript_is_parsed_checked_and_sent_without_one_long_step_on_the_event_loop(tmp_path, monkeypatch):
    """What 8 MiB costs is never one step on the event loop (each would stall every other request of the worker, tens of
    ms): the body is parsed (json.loads, with a Python call per object so its thread lets the loop run) and checked on a
    thread, and the upstream's body is written a member and an item at a time. A chat body stays on the loop."""
    import ragtrim.serve.bodies as bodies
    import ragtrim.serve.json_pieces as json_pieces
    import ragtrim.serve.responses as responses

    where: dict[str, list[str]] = {"parse": [], "check": []}
    written: list[int] = []
    parsed, checked, dumps = bodies._parsed, responses.parse_responses, json_pieces.httpx_dumps
    monkeypatch.setattr(bodies, "_parsed", lambda *a: where["parse"].append(on_loop()) or parsed(*a))
    monkeypatch.setattr(responses, "parse_responses", lambda *a: where["check"].append(on_loop()) or checked(*a))
    monkeypatch.setattr(json_pieces, "httpx_dumps", lambda v: written.append(len(text := dumps(v))) or text)
    body = {"model": "gpt-4o", "input": transcript(398, 9_000), "max_output_tokens": 50}
    with stack(tmp_path, answers) as s:
        budget(s.service, "acme", "tokens", 10**7)
        r = httpx.post(f"{s.url}/v1/responses", headers=s.auth(), json=body, timeout=60)
        assert r.status_code == 200, r.text[:300]
        assert s.calls[-1]["input"] == body["input"]  # the pieces make the same JSON
        size = len(httpx.Request("POST", "/", json=body).content)
        assert size > 1.5 * 2**20 and where == {"parse": ["thread"], "check": ["thread"]}
        assert max(written) < 10_000 < size / 100  # the longest piece is one item
        where["parse"].clear()
        s.post()  # a chat body (the scripted upstream answers Responses only: a 502 here)
        assert where["parse"] == ["event loop"]  # parsed on the loop, as before


# 4. a request without documents: its prompt counted once (an 8 MiB transcript took 11 s per count, counted twice)


def test_a_prompt_without_documents_is_counted_once(tmp_path, monkeypatch):
    """The smallest reservation and the attempt count the same messages when there are no documents: one count."""
    import ragtrim.serve.upstream as upstream

    from ragtrim.serve.fake_responses import response_object

    real, counted = upstream.count_chat_tokens, []

    def counting(messages: Any, tokenizer: str) -> int:
        counted.append(sum(len(str(m.get("content", ""))) for m in messages))
        return real(messages, tokenizer)

    monkeypatch.setattr(upstream, "count_chat_tokens", counting)
    big = "a transcript line. " * 20_000

    def answer(body: dict[str, Any]) -> Any:
        return JSONResponse({**response_object(1, body, "Done.", None), "usage": {"input_tokens": 5, "output_tokens": 2}})

    with stack(tmp_path, answer) as s:
        r = httpx.post(f"{s.url}/v1/responses", headers=s.auth(), timeout=60,
                       json={"model": "gpt-4o", "input": [{"role": "user", "content": big}], "max_output_tokens": 20})
        [row] = final_rows(s.service)
    assert r.status_code == 200 and row["action"] == "ok", r.text
    assert len([n for n in counted if n >= len(big)]) == 1, f"the {len(big)}-character prompt was counted {len(counted)} times"

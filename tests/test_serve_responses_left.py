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

from serve_fixtures import final_rows, spent_and_reserved, stack

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

"""The fake upstream's ``POST /v1/messages`` (:mod:`ragtrim.serve.fake_upstream`): Anthropic's Messages API, streamed or
not, with its usage (``input_tokens``, ``cache_creation_input_tokens`` and its ``cache_creation`` split between the
5-minute and the ``cache_write_1h`` cache, ``cache_read_input_tokens``, ``output_tokens``).

It counts the prompt as the gateway does (``system``, messages, ``tools``, ``tool_choice``, ``thinking`` with the
fake's tokenizer), times ``claude_ratio`` (a Claude tokenizer counts more than cl100k_base: what the gateway's
``count_margin`` must cover), with ``tool_prompt`` tokens more when ``tools`` is non-empty (the tool-use system prompt
Anthropic adds and bills: what the model's ``tool_prompt_tokens`` must cover), and reports ``cache_read`` and ``cache_write`` of it (values, or functions of the
prompt's count, settable later on ``app.state.fake``) as read from and written to its prompt cache. A request with
``tools`` whose last message holds no ``tool_result`` is answered a ``tool_use`` of its first tool; else text. A last
message holding ``FAIL_UPSTREAM`` is an HTTP 500 in Anthropic's error shape.

``POST /v1/messages/count_tokens`` (:func:`count_tokens_route`) answers ``{"input_tokens": N}``, N the prompt the
Messages route would report for the same body (``input_tokens`` + cache reads and writes); told ``count_tokens_status``
(an HTTP status above 299), it answers that status in Anthropic's error shape instead.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from ragtrim.serve.messages_api import MESSAGES_BILLED, event, messages_view
from ragtrim.serve.upstream import compact_json, count_chat_tokens, count_request_fields


def _of(value: Any, prompt: int) -> int:
    return int(value(prompt) if callable(value) else value or 0)


def prompt_count(state: Any, body: dict[str, Any]) -> int:
    """The prompt of a Messages ``body`` as the fake bills it: ``system``, the messages and the billed fields counted with
    its tokenizer, plus ``tool_prompt`` with tools, times ``claude_ratio``."""
    items = ([{"role": "system", "content": body["system"]}] if body.get("system") else []) + list(body.get("messages") or [])
    counted = count_chat_tokens(messages_view(items), state.tokenizer) + count_request_fields(body, state.tokenizer, MESSAGES_BILLED)
    counted += state.tool_prompt if body.get("tools") else 0
    return math.ceil(counted * state.claude_ratio)


def messages_usage(state: Any, prompt: int, output: int) -> dict[str, Any]:
    """Anthropic's usage of a ``prompt`` the fake counted (:func:`prompt_count`), ``output`` tokens out (times ``claude_ratio``)."""
    reads, writes = _of(state.cache_read, prompt), _of(state.cache_write, prompt)
    long = min(writes, _of(state.cache_write_1h, prompt))
    return {"input_tokens": max(0, prompt - reads - writes), "cache_creation_input_tokens": writes,
            "cache_read_input_tokens": reads, "output_tokens": math.ceil(output * state.claude_ratio),
            "cache_creation": {"ephemeral_5m_input_tokens": writes - long, "ephemeral_1h_input_tokens": long}}


def _content(body: dict[str, Any], text: str) -> tuple[list[dict[str, Any]], str]:
    """The answer's content blocks and stop reason: a ``tool_use`` of the first tool when the last message holds no
    tool result, else ``text``."""
    last = (body.get("messages") or [{}])[-1].get("content")
    answered_tool = isinstance(last, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in last)
    tools = body.get("tools") or []
    if tools and not answered_tool:
        return [{"type": "tool_use", "id": "toolu_fake_1", "name": tools[0].get("name", "tool"), "input": {"city": "Paris"}}], "tool_use"
    return [{"type": "text", "text": text}], "end_turn"


def messages_route(state: Any, rng: Any, token_delay_ms: float, answer_text: Any) -> Any:
    """The route's handler over the fake's ``state``; ``answer_text(n)`` is its answer of ``n`` tokens."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse

    from optimizer.tokenizer import get_tokenizer

    async def messages(request: Request) -> Any:
        body = await state.received(request, rng)
        state.anthropic_headers.append({k: v for k, v in request.headers.items() if k.startswith("anthropic-")})
        items = ([{"role": "system", "content": body["system"]}] if body.get("system") else []) + list(body.get("messages") or [])
        view = messages_view(items)
        if "FAIL_UPSTREAM" in view[-1]["content"]:
            return JSONResponse({"type": "error", "error": {"type": "api_error", "message": "fake upstream failure"}}, status_code=500)
        content, stop = _content(body, answer_text(min(state.answer_tokens, int(body.get("max_tokens") or state.answer_tokens))))
        tok = get_tokenizer(state.tokenizer)
        output = sum(tok.count(b["text"]) if b["type"] == "text" else tok.count(b["name"] + compact_json(b["input"])) for b in content)
        data = {"id": f"msg_fake_{state.calls}", "type": "message", "role": "assistant", "model": body.get("model", "fake"),
                "content": content, "stop_reason": stop, "stop_sequence": None,
                "usage": messages_usage(state, prompt_count(state, body), output) if state.report_usage else None}
        if body.get("stream"):
            return StreamingResponse(stream_events(data, token_delay_ms), media_type="text/event-stream")
        return JSONResponse(data if state.report_usage else {k: v for k, v in data.items() if k != "usage"})

    return messages


def count_tokens_route(state: Any, rng: Any) -> Any:
    """``POST /v1/messages/count_tokens`` over the fake's ``state``: ``{"input_tokens": N}`` (:func:`prompt_count`), or
    ``state.count_tokens_status`` in Anthropic's error shape when it is set."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def count_tokens(request: Request) -> Any:
        body = await state.received(request, rng)
        state.anthropic_headers.append({k: v for k, v in request.headers.items() if k.startswith("anthropic-")})
        if state.count_tokens_status:
            return JSONResponse({"type": "error", "error": {"type": "overloaded_error", "message": "fake count failure"}},
                                status_code=state.count_tokens_status)
        return JSONResponse({"input_tokens": prompt_count(state, body)})

    return count_tokens


async def stream_events(data: dict[str, Any], token_delay_ms: float) -> Any:
    """The stream of ``data``: message_start (the input usage), a ping, each block (a text word by word), message_delta
    (the cumulative output tokens), message_stop."""
    usage = data.get("usage") or {}
    start = {**data, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1} if usage else None}
    yield event("message_start", {"message": start})
    yield event("ping", {})
    for i, block in enumerate(data["content"]):
        if block["type"] == "text":
            yield event("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
            for n, word in enumerate(block["text"].split(" ")):
                yield event("content_block_delta", {"index": i, "delta": {"type": "text_delta", "text": word if n == 0 else " " + word}})
                await asyncio.sleep(token_delay_ms / 1000)
        else:
            yield event("content_block_start", {"index": i, "content_block": {**block, "input": {}}})
            yield event("content_block_delta", {"index": i, "delta": {"type": "input_json_delta", "partial_json": compact_json(block["input"])}})
        yield event("content_block_stop", {"index": i})
    delta_usage = {"output_tokens": usage["output_tokens"]} if usage else {}
    yield event("message_delta", {"delta": {"stop_reason": data["stop_reason"], "stop_sequence": None}, "usage": delta_usage})
    yield event("message_stop", {})

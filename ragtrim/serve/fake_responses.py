"""The fake upstream's ``POST /v1/responses`` (:mod:`ragtrim.serve.fake_upstream`): OpenAI's Responses API, streamed
or not, with its usage (``input_tokens``, ``output_tokens`` with ``reasoning_tokens``, ``cached_tokens``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ragtrim.serve.responses_api import event, input_view
from ragtrim.serve.upstream import count_chat_tokens, count_request_fields, message_text


def responses_route(state: Any, rng: Any, token_delay_ms: float, answer_text: Any) -> Any:
    """The route's handler over the fake's ``state`` (what it saw, how it answers); ``answer_text(n)`` is its answer of
    ``n`` tokens."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse

    from optimizer.tokenizer import get_tokenizer
    from ragtrim.serve.responses_api import RESPONSES_BILLED

    async def responses(request: Request) -> Any:
        body = await state.received(request, rng)
        items = body.get("input") if isinstance(body.get("input"), list) else [{"role": "user", "content": body.get("input") or ""}]
        view = input_view(items)
        if view and "FAIL_UPSTREAM" in message_text(view[-1]):
            return JSONResponse({"error": {"type": "server_error", "message": "fake upstream failure"}}, status_code=500)
        prompt = count_chat_tokens(view, state.tokenizer) + count_request_fields(body, state.tokenizer, RESPONSES_BILLED)
        if body.get("previous_response_id") or body.get("conversation"):
            prompt += state.stored_tokens
        text = answer_text(min(state.answer_tokens, int(body.get("max_output_tokens") or state.answer_tokens)))
        output = get_tokenizer(state.tokenizer).count(text) + state.reasoning_tokens
        data = response_object(state.calls, body, text, usage(state, prompt, output) if state.report_usage else None)
        if body.get("stream"):
            return StreamingResponse(stream_events(data, text, token_delay_ms), media_type="text/event-stream")
        return JSONResponse(data)

    return responses


def usage(state: Any, prompt: int, output: int) -> dict[str, Any]:
    """A Responses usage object: the input (of it, ``cached_tokens`` as the fake is told) and the output (reasoning in it)."""
    cached = state.cached_tokens(prompt) if callable(state.cached_tokens) else state.cached_tokens or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached}, "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": state.reasoning_tokens}, "total_tokens": prompt + output}


def response_object(n: int, body: dict[str, Any], text: str, used: dict[str, Any] | None) -> dict[str, Any]:
    """The whole response: one assistant message with ``text``; as OpenAI's, it repeats the request's ``instructions``
    and ``tools`` (so a stream's last events are as long as a long request and answer make them)."""
    message = {"id": f"msg_fake_{n}", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}
    return {"id": f"resp_fake_{n}", "object": "response", "created_at": int(time.time()), "status": "completed",
            "model": body.get("model", "fake"), "output": [message], "parallel_tool_calls": True, "tool_choice": "auto",
            "instructions": body.get("instructions"), "tools": body.get("tools") or [], "usage": used, "error": None, "incomplete_details": None}


async def stream_events(data: dict[str, Any], text: str, token_delay_ms: float) -> Any:
    """The stream of ``data``: created, the message and its text part added, the text word by word, all done, completed."""
    message = data["output"][0]
    empty = {**message, "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**data, "status": "in_progress", "output": [], "usage": None}},
        {"type": "response.output_item.added", "output_index": 0, "item": empty},
        {"type": "response.content_part.added", **at, "part": part}]
    for n, event_obj in enumerate(events):
        yield event({**event_obj, "sequence_number": n})
    seq = len(events)
    for i, word in enumerate(text.split(" ")):
        yield event({"type": "response.output_text.delta", **at, "delta": word if i == 0 else " " + word,
                     "logprobs": [], "sequence_number": seq})
        seq += 1
        await asyncio.sleep(token_delay_ms / 1000)
    for n, event_obj in enumerate([
            {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
            {"type": "response.content_part.done", **at, "part": message["content"][0]},
            {"type": "response.output_item.done", "output_index": 0, "item": message},
            {"type": "response.completed", "response": data}]):
        yield event({**event_obj, "sequence_number": seq + n})

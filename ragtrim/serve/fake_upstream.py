"""A fake OpenAI-compatible chat (and Responses, and embeddings) server for tests and load tests (loopback only).

It counts prompt tokens the way OpenAI documents it (:func:`ragtrim.serve.upstream.count_chat_tokens`),
answers with ``answer_tokens`` words (never more than the request's ``max_completion_tokens`` or ``max_tokens``), waits
``latency_ms`` (+ up to ``jitter_ms``) like a real model, streams when asked (with a final
usage chunk when ``stream_options.include_usage``), and fails with HTTP 500 when the last user
message contains ``FAIL_UPSTREAM``. Told ``cached_tokens`` (a value, or a function of the prompt's
token count giving one; settable later on ``app.state.fake``), it reports that many of the prompt
tokens as read from its prompt cache, as OpenAI does (``usage.prompt_tokens_details.cached_tokens``;
any value, for tests of bogus ones). It records the bodies it received (for assertions) and
the Authorization headers' presence, never their values.

It serves Anthropic's Messages API too (``POST /v1/messages`` and ``POST /v1/messages/count_tokens``:
:mod:`ragtrim.serve.fake_messages`), and OpenAI's Responses API (``POST /v1/responses``, streamed or not: :mod:`ragtrim.serve.fake_responses`),
whose usage adds ``reasoning_tokens`` to the output and, for a request with ``previous_response_id`` or
``conversation``, ``stored_tokens`` of stored context to the input (what the gateway cannot see).

>>> app = create_fake_upstream(latency_ms=0)
>>> app.state.fake.calls
0
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from ragtrim.serve.upstream import count_chat_tokens, message_text, sse

WORDS = ("the answer is in the documents above and it is short enough for a test of the gateway "
         "which counts every token it sends and receives").split()


@dataclass
class FakeState:
    """What the fake saw (mutable on purpose: it is a test double)."""

    latency_ms: float
    jitter_ms: float
    answer_tokens: int
    report_usage: bool
    tokenizer: str
    calls: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    keep_bodies: int = 50
    saw_authorization: list[str] = field(default_factory=list)
    cached_tokens: Any = None  # None: no prompt_tokens_details; a callable: of the prompt's token count
    reasoning_tokens: int = 0  # Responses API: hidden reasoning billed in output_tokens
    stored_tokens: int = 500  # Responses API: the stored context a previous_response_id or conversation adds
    reported_prompt: Any = None  # embeddings: None reports the counted input tokens; a callable of that count, what to report
    claude_ratio: float = 1.0  # Messages API: its counts are the fake's tokenizer's times this (a Claude tokenizer counts more)
    cache_read: Any = 0  # Messages API: of the prompt, read from its cache (a value, or a callable of the prompt's count)
    cache_write: Any = 0  # Messages API: of the prompt, written to its cache
    cache_write_1h: Any = 0  # Messages API: of those writes, to its 1-hour cache (usage.cache_creation's split)
    # Messages API: the tool-use system prompt Anthropic adds (and bills as input) to a request with tools: 346 tokens on
    # Claude 4.x with tool_choice auto or none, per its tool-use docs; added to the prompt before claude_ratio
    tool_prompt: int = 346
    anthropic_headers: list[dict[str, str]] = field(default_factory=list)  # Messages API: each request's anthropic-* headers
    count_tokens_status: int = 0  # Messages API: count_tokens answers this HTTP error status when set (0: it counts)

    async def received(self, request: Any, rng: random.Random) -> Any:
        """A request's JSON body, after noting the call (its body kept, whether it carried a key) and waiting
        ``latency_ms`` plus up to ``jitter_ms``: what every route does first."""
        body = await request.json()
        self.calls += 1
        if len(self.bodies) < self.keep_bodies:
            self.bodies.append(body)
        self.saw_authorization.append("yes" if request.headers.get("authorization") or request.headers.get("x-api-key") else "no")
        await asyncio.sleep((self.latency_ms + rng.random() * self.jitter_ms) / 1000)
        return body

    def usage(self, prompt: int, completion: int) -> dict[str, Any]:
        """The usage object it reports."""
        out: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if self.cached_tokens is not None:
            cached = self.cached_tokens(prompt) if callable(self.cached_tokens) else self.cached_tokens
            out["prompt_tokens_details"] = {"cached_tokens": cached}
        return out


def answer_text(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(max(0, n)))


def create_fake_upstream(*, latency_ms: float = 20.0, jitter_ms: float = 0.0, answer_tokens: int = 20,
                         report_usage: bool = True, tokenizer: str = "cl100k_base", seed: int = 0,
                         token_delay_ms: float = 0.0, cached_tokens: Any = None) -> Any:
    """A Starlette app serving ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/messages``,
    ``POST /v1/embeddings`` and ``GET /v1/models``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    state = FakeState(latency_ms, jitter_ms, answer_tokens, report_usage, tokenizer, cached_tokens=cached_tokens)
    rng = random.Random(seed)

    async def chat(request: Request) -> Any:
        body = await state.received(request, rng)
        messages = body.get("messages") or []
        if messages and "FAIL_UPSTREAM" in message_text(messages[-1]):
            return JSONResponse({"error": {"type": "server_error", "message": "fake upstream failure"}}, status_code=500)
        prompt = count_chat_tokens(messages, tokenizer)
        cap = body.get("max_completion_tokens") or body.get("max_tokens")  # OpenAI's current name first
        words = min(answer_tokens, int(cap or answer_tokens))
        text = answer_text(words)
        from optimizer.tokenizer import get_tokenizer

        completion = get_tokenizer(tokenizer).count(text)
        usage = state.usage(prompt, completion)
        base = {"id": f"chatcmpl-fake-{state.calls}", "created": int(time.time()), "model": body.get("model", "fake")}
        if body.get("stream"):
            include = bool((body.get("stream_options") or {}).get("include_usage")) and report_usage
            return StreamingResponse(_stream(base, text, usage if include else None, token_delay_ms), media_type="text/event-stream")
        out = {**base, "object": "chat.completion",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        if report_usage:
            out["usage"] = usage
        return JSONResponse(out)

    async def models(_: Request) -> Any:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    from ragtrim.serve.fake_messages import count_tokens_route, messages_route
    from ragtrim.serve.fake_responses import responses_route

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models),
                            Route("/v1/responses", responses_route(state, rng, token_delay_ms, answer_text), methods=["POST"]),
                            Route("/v1/messages", messages_route(state, rng, token_delay_ms, answer_text), methods=["POST"]),
                            Route("/v1/messages/count_tokens", count_tokens_route(state, rng), methods=["POST"]),
                            Route("/v1/embeddings", _embeddings(state, rng), methods=["POST"])])
    app.state.fake = state
    return app


EMBEDDING_DIMENSIONS = 8  # the fake's vectors, unless the request asks for ``dimensions``


def fake_vector(item: Any, dimensions: int) -> list[float]:
    """A deterministic unit vector for one input (a text or token ids): the same input always gets the same vector.

    >>> v = fake_vector("hi", 4); len(v), v == fake_vector("hi", 4), round(sum(x * x for x in v), 6)
    (4, True, 1.0)
    """
    seed = hashlib.sha256(json.dumps(item).encode("utf-8")).digest()
    raw = [(seed[i % len(seed)] + 1) * (1 if (seed[(i + 7) % len(seed)] & 1) else -1) * (i + 1) for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


def _embeddings(state: FakeState, rng: random.Random) -> Any:
    """``POST /v1/embeddings``: one :func:`fake_vector` per input (``encoding_format`` float, or base64 of little-endian
    float32 as OpenAI sends), ``usage.prompt_tokens`` the inputs' tokens (token ids by their number) unless told otherwise
    (``reported_prompt``); HTTP 500 when a text input holds ``FAIL_UPSTREAM``."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from optimizer.tokenizer import get_tokenizer

    async def embeddings(request: Request) -> Any:
        body = await state.received(request, rng)
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw or [])
        if any(isinstance(i, str) and "FAIL_UPSTREAM" in i for i in inputs):
            return JSONResponse({"error": {"type": "server_error", "message": "fake upstream failure"}}, status_code=500)
        tok = get_tokenizer(state.tokenizer)
        counted = sum(tok.count(i) if isinstance(i, str) else len(i) for i in inputs)
        dims = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        vectors = [fake_vector(i, dims) for i in inputs]
        if body.get("encoding_format") == "base64":
            vectors = [base64.b64encode(struct.pack(f"<{dims}f", *v)).decode("ascii") for v in vectors]  # type: ignore[misc]
        out: dict[str, Any] = {"object": "list", "model": body.get("model", "fake"),
                               "data": [{"object": "embedding", "index": n, "embedding": v} for n, v in enumerate(vectors)]}
        if state.report_usage:
            prompt = state.reported_prompt(counted) if callable(state.reported_prompt) else counted
            out["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
        return JSONResponse(out)

    return embeddings


async def _stream(base: dict[str, Any], text: str, usage: dict[str, Any] | None, token_delay_ms: float = 0.0) -> Any:
    chunk = {**base, "object": "chat.completion.chunk"}
    yield sse({**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
    for i, word in enumerate(text.split(" ")):
        piece = word if i == 0 else " " + word
        yield sse({**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        await asyncio.sleep(token_delay_ms / 1000)
    yield sse({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage is not None:
        yield sse({**chunk, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def main() -> None:
    """``python -m ragtrim.serve.fake_upstream PORT [LATENCY_MS] [JITTER_MS]``: run it on 127.0.0.1."""
    import sys

    import uvicorn

    port = int(sys.argv[1])
    latency = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    jitter = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    uvicorn.run(create_fake_upstream(latency_ms=latency, jitter_ms=jitter), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

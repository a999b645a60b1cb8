"""Upstream model clients: any OpenAI-compatible URL (httpx), or the packaged Gemma in-process.

Both give a :class:`UpstreamReply` for a non-streaming call and an async byte stream of
server-sent events for a streaming one. The upstream API key is read from the environment
variable the config names, at call time; it is never stored on the client, logged, written
to the ledger or echoed (error texts are scrubbed of it).

>>> count_chat_tokens([{"role": "user", "content": "hello world"}], "cl100k_base")
9
>>> message_text({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
'a\\nb'
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optimizer.lazy import lazy_import
from optimizer.tokenizer import get_tokenizer
from evals.readers.openai_usage import MAX_USAGE_TOKENS, billed_completion, usage_count  # noqa: F401 (re-exported)
from ragtrim.serve.client_left import (COUNT_WAITED_FOR_LOCAL_MODEL, WAITED_FOR_CONNECTION, WAITED_FOR_LOCAL_MODEL, LeftBeforeSent,
                                      when_client_leaves)
from ragtrim.serve.config import UpstreamConfig
from ragtrim.serve.json_pieces import json_body, json_size


@dataclass(frozen=True)
class Refusal:
    """An upstream's refusal of the request itself (a bad parameter, a rate limit), told to the client as it came.

    ``status`` is the upstream's (a 4xx), ``type``, ``message``, ``param`` and ``code`` its error's
    (OpenAI's codes are strings such as ``"rate_limit_exceeded"``; vLLM's the HTTP status), and
    ``headers`` the ones that tell a client when to try again (:data:`RELAYED_HEADERS`).
    """

    status: int
    type: str
    message: str
    param: str | None = None
    code: str | int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpstreamReply:
    """What a non-streaming upstream call returned (``body`` is the parsed JSON, or None).

    On failure ``error`` says what happened (for the ledger), and ``refusal`` is set when the
    upstream refused the request itself (:func:`refusal_of`); without one the failure is a 502.
    ``started`` is True when the upstream may have done (and billed) the work all the same: it
    had the whole request and then did not answer, or answered 2xx with a body that cannot be
    read (:meth:`OpenAIUpstream.complete`). The error never quotes such a body: it may be the
    model's answer.
    """

    status: int
    body: Mapping[str, Any] | None
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    upstream_ms: float
    error: str | None = None
    refusal: Refusal | None = None
    started: bool = False
    cached_tokens: int = 0  # of prompt_tokens, those read from the upstream's prompt cache (:func:`cached_count`)
    cache_write_tokens: int = 0  # of prompt_tokens, those written to its prompt cache (:attr:`Wire.writes`)
    cache_write_1h_tokens: int | None = None  # of those, written to its 1-hour cache (None: no split reported)
    raw: bytes = b""  # the answer's body as it came (decoded), relayed unchanged where the gateway adds nothing to it


# An upstream's 4xx is about the request (a bad parameter, too long a prompt, a rate limit): the
# client gets that status and the upstream's error, and does not send the same request again as it
# would after a 502 (OpenAI's SDKs retry 502s). These 4xx are not about the request: they concern
# the gateway's own upstream key (401, 403, 407), its URL or model mapping (404) or its connection
# (408), which the client cannot change: a 502, like an upstream's 5xx.
GATEWAY_FAULTS = frozenset({401, 403, 404, 407, 408})
# Headers of a refusal passed on to the client: when to try again (OpenAI sends both on a 429).
RELAYED_HEADERS = ("retry-after", "retry-after-ms")
_HEADER_VALUE = re.compile(r"[0-9A-Za-z ,:.+-]{1,64}")  # seconds, milliseconds or an HTTP date
MAX_REFUSAL_MESSAGE = 2000


def refusal_of(status: int, data: Any, text: str, headers: Mapping[str, str], scrub: Callable[[str], str],
               server_errors: frozenset[int] = frozenset()) -> Refusal | None:
    """The client's answer to an upstream's HTTP ``status``, when it refused the request itself; None for an upstream fault.
    A status in ``server_errors`` (an upstream's own 5xx its clients retry on: :attr:`OpenAIUpstream.relayed_server_errors`)
    is passed on too, with its status, error and Retry-After.

    ``data`` is the parsed JSON body (``text`` the raw one): OpenAI's ``{"error": {...}}``, or an
    error object at the top level (vLLM), or ``{"error": "text"}``. Texts pass through ``scrub``.

    >>> r = refusal_of(400, {"error": {"message": "bad temperature", "type": "invalid_request_error", "param": "temperature",
    ...                               "code": "decimal_above_max_value"}}, "", {}, str)
    >>> (r.status, r.type, r.message, r.param, r.code)
    (400, 'invalid_request_error', 'bad temperature', 'temperature', 'decimal_above_max_value')
    >>> refusal_of(429, {}, "slow down", {"retry-after": "7"}, str)
    Refusal(status=429, type='rate_limit_error', message='upstream answered HTTP 429: slow down', param=None, code=None, headers={'retry-after': '7'})
    >>> refusal_of(401, {}, "", {}, str) is None, refusal_of(503, {}, "", {}, str) is None
    (True, True)
    >>> refusal_of(429, {"error": {"type": "insufficient_quota", "message": "You exceeded your quota"}}, "", {}, str) is None
    True
    >>> refusal_of(529, {}, "Overloaded", {"retry-after": "3"}, str, frozenset({529})).type
    'overloaded_error'
    """
    if status not in server_errors and (not 400 <= status < 500 or status in GATEWAY_FAULTS):
        return None
    error = data.get("error", data) if isinstance(data, Mapping) else None
    error = error if isinstance(error, Mapping) else {"message": error}
    if error.get("type") == "insufficient_quota" or error.get("code") == "insufficient_quota":
        return None  # the operator's upstream account is out of credit, not the tenant's budget: a 502
    message = error.get("message")
    if not isinstance(message, str) or not message.strip():
        message = f"upstream answered HTTP {status}: {scrub(text).strip()[:300]}"
    kind = error.get("type")
    if not isinstance(kind, str) or not kind.strip():
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error" if status >= 500 else "invalid_request_error")
    param = error.get("param")
    relayed = {name: headers[name] for name in RELAYED_HEADERS
               if name in headers and _HEADER_VALUE.fullmatch(headers[name])}
    return Refusal(status=status, type=scrub(kind)[:100], message=scrub(message)[:MAX_REFUSAL_MESSAGE],
                   param=scrub(param)[:200] if isinstance(param, str) else None, code=error_code(error.get("code"), scrub),
                   headers=relayed)


# The shortest start of the key masked on its own (what an upstream that cuts its quote of the key leaves):
# a shorter one is too short to tell the rest of a key from.
MIN_KEY_PIECE = 6


def scrub_key(text: str, key: str | None) -> str:
    """``text`` with every copy of ``key``, and every start of it of at least :data:`MIN_KEY_PIECE` characters, as ``***``.

    A start of the key is what an upstream that quotes the request's Authorization header leaves when it
    cuts its own message; quoted in JSON it is no longer at the text's end. Scrub a text before cutting it:
    a key cut in two is no longer whole, and its start would reach the client.

    >>> scrub_key("bad from Bearer sk-abc123xyz; and sk-abc123xyz", "sk-abc123xyz")
    'bad from Bearer ***; and ***'
    >>> scrub_key('{"message": "bad from Bearer sk-abc1"}', "sk-abc123xyz"), scrub_key("ends in sk-ab", "sk-abc123xyz")
    ('{"message": "bad from Bearer ***"}', 'ends in sk-ab')
    """
    if not key:
        return text
    text = text.replace(key, "***")
    head, out, at = key[:MIN_KEY_PIECE], [], 0
    while (start := text.find(head, at)) >= 0:
        end = start + len(head)
        while end - start < len(key) and end < len(text) and text[end] == key[end - start]:
            end += 1
        out.extend((text[at:start], "***"))
        at = end
    return "".join(out) + text[at:]


def error_code(code: Any, scrub: Callable[[str], str]) -> str | int | None:
    """An upstream error's ``code`` as the client gets it: a string (through ``scrub``, cut to 200 characters) or a
    whole number as it came; anything else (null, an object, a boolean) is None.

    >>> error_code("rate_limit_exceeded", str), error_code(400, str), error_code(True, str), error_code({"a": 1}, str)
    ('rate_limit_exceeded', 400, None, None)
    """
    if isinstance(code, str):
        return scrub(code)[:200]
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return None


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message (a string, or the text parts of a content list; an assistant message's
    ``refusal`` parts, as OpenAI returns a refusal and a client sends it back in the history, are text too).

    >>> message_text({"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]})
    "I can't."
    """
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_part_text(part, message.get("role")) for part in content)
    raise ValueError(f"message content must be a string or a list of text parts, got {type(content).__name__}")


def _part_text(part: Any, role: Any) -> str:
    """The text of one content part: a ``text`` part's, or an assistant's ``refusal`` part's; else a ValueError."""
    if isinstance(part, Mapping):
        kind = part.get("type")
        key = "text" if kind == "text" else "refusal" if kind == "refusal" and role == "assistant" else None
        if key is not None and isinstance(part.get(key), str):
            return part[key]
    raise ValueError(f"only text content parts are supported (and an assistant's refusal parts), got {part!r:.80}")


_MESSAGE_TEXT_KEYS = ("role", "content", "name")

# Request fields an upstream bills as prompt (input) tokens, besides the messages. OpenAI renders
# tools and functions into the prompt in a format of its own (a TypeScript-like namespace) and a
# json_schema response format the same way; the gateway does not know that rendering, so it counts
# the compact JSON of each field with the model's tokenizer, which is more tokens than OpenAI's
# rendering (JSON repeats every key and quote), plus a fixed allowance for the wrapper text.
# ``prediction`` (predicted outputs) is not input: its rejected tokens are billed as completion tokens
# (:func:`prediction_tokens`, reserved on the completion side), so it is left out of the prompt count.
BILLED_FIELDS = ("tools", "functions", "tool_choice", "function_call", "response_format")
FIELD_ALLOWANCE = 16  # tokens per billed field: the text around a rendered field
TOOL_ALLOWANCE = 8  # tokens per tool or function: the text around each one


def compact_json(value: Any) -> str:
    """``value`` as compact JSON (no spaces), the text its tokens are counted on."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def count_chat_tokens(messages: Sequence[Mapping[str, Any]], tokenizer: str) -> int:
    """Prompt tokens of a chat, counted the way OpenAI documents it (3 per message + 3 to prime the reply).

    Everything else a message carries (an assistant's ``tool_calls`` or ``function_call``, a tool
    message's ``tool_call_id``, ...) is forwarded and billed too: it is counted as compact JSON.

    >>> count_chat_tokens([{"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
    ...     "function": {"name": "f", "arguments": "{}"}}]}], "cl100k_base") > count_chat_tokens([{"role": "assistant"}], "cl100k_base")
    True
    """
    tok = get_tokenizer(tokenizer)
    total = 3
    for m in messages:
        total += 3 + tok.count(str(m.get("role", ""))) + tok.count(message_text(m))
        if m.get("name"):
            total += 1 + tok.count(str(m["name"]))
        rest = {k: v for k, v in m.items() if k not in _MESSAGE_TEXT_KEYS and v is not None}
        if rest:
            total += tok.count(compact_json(rest))
    return total


def billed_fields(body: Mapping[str, Any], names: Sequence[str] = BILLED_FIELDS) -> dict[str, Any]:
    """The fields of a request body, other than its messages, that an upstream bills as input (``names``: a chat's
    :data:`BILLED_FIELDS`, or another API's)."""
    return {k: body[k] for k in names if body.get(k) is not None}


def count_request_fields(body: Mapping[str, Any], tokenizer: str, names: Sequence[str] = BILLED_FIELDS) -> int:
    """Input tokens of the :data:`BILLED_FIELDS` in ``body`` (tools, response format, ...), counted conservatively.

    >>> count_request_fields({"temperature": 0.2}, "cl100k_base")
    0
    >>> count_request_fields({"tools": [{"type": "function", "function": {"name": "f", "description": "x " * 100}}]}, "cl100k_base") > 100
    True
    """
    fields = billed_fields(body, names)
    if not fields:
        return 0
    tok = get_tokenizer(tokenizer)
    total = 0
    for name, value in fields.items():
        total += FIELD_ALLOWANCE + tok.count(compact_json(value))
        if name in ("tools", "functions") and isinstance(value, list):
            total += TOOL_ALLOWANCE * len(value)
    return total


def prediction_tokens(body: Mapping[str, Any], tokenizer: str) -> int:
    """Completion tokens a ``prediction`` (predicted outputs) can add: OpenAI bills its rejected tokens as completion
    tokens, above the completion cap, so the hold reserves its text's count (plus :data:`FIELD_ALLOWANCE`) there.

    >>> prediction_tokens({"prediction": {"type": "content", "content": "x = 1"}}, "cl100k_base"), prediction_tokens({}, "cl100k_base")
    (20, 0)
    """
    value = body.get("prediction")
    if value is None:
        return 0
    content = value.get("content") if isinstance(value, Mapping) else value
    text = content if isinstance(content, str) else compact_json(content)
    return FIELD_ALLOWANCE + get_tokenizer(tokenizer).count(text)


def prompt_bytes(messages: Sequence[Mapping[str, Any]], body: Mapping[str, Any], names: Sequence[str] = BILLED_FIELDS) -> int:
    """The UTF-8 bytes of what an upstream bills as input: the messages and the :data:`BILLED_FIELDS`, as compact JSON
    (a tokenizer-independent size, for judging whether a reported prompt count can be one of this prompt), measured a
    message at a time (:func:`ragtrim.serve.json_pieces.json_size`)."""
    return json_size([list(messages), billed_fields(body, names)], compact_json)


def usage_of(body: Any) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` from an OpenAI response or stream chunk, the completion with any
    reasoning tokens reported outside it (:func:`billed_completion`).

    A count that is missing, negative, absurd or not an integer is None: the gateway then
    charges its own count instead of trusting it.

    >>> usage_of({"usage": {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 949, "completion_tokens_details": {"reasoning_tokens": 900}}})
    (9, 940)
    """
    usage = body.get("usage") if isinstance(body, Mapping) else None
    if not isinstance(usage, Mapping):
        return None, None
    prompt, completion = usage_count(usage.get("prompt_tokens")), usage_count(usage.get("completion_tokens"))
    return prompt, billed_completion(usage, prompt, completion)


def cached_count(body: Any) -> int:
    """Of the prompt tokens an OpenAI response or stream chunk reports, those read from the upstream's prompt cache
    (``usage.prompt_tokens_details.cached_tokens``, billed at a lower price); 0 when missing or not a count
    (:func:`usage_count`): a cache that cannot be read lowers no charge. The caller bounds it by the prompt charged.

    >>> cached_count({"usage": {"prompt_tokens": 2006, "prompt_tokens_details": {"cached_tokens": 1920}}})
    1920
    >>> cached_count({"usage": {"prompt_tokens_details": {"cached_tokens": -1}}}), cached_count({"usage": {"prompt_tokens": 9}})
    (0, 0)
    """
    usage = body.get("usage") if isinstance(body, Mapping) else None
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) else None
    count = usage_count(details.get("cached_tokens")) if isinstance(details, Mapping) else None
    return count if count is not None else 0


# The text fields of a reply message (or a stream delta) an upstream bills as output. The reasoning fields
# are also what marks a model that reasons (:func:`shows_reasoning`).
REASONING_KEYS = ("reasoning_content", "reasoning")
OUTPUT_TEXT_KEYS = ("content", "refusal", *REASONING_KEYS)


def shows_reasoning(message: Any) -> bool:
    """True when a reply message (or a stream delta) carries a reasoning field (:data:`REASONING_KEYS`), even empty.

    >>> shows_reasoning({"reasoning_content": ""}), shows_reasoning({"content": "hi"}), shows_reasoning(None)
    (True, False, False)
    """
    return isinstance(message, Mapping) and any(isinstance(message.get(k), str) for k in REASONING_KEYS)


def output_texts(message: Any) -> list[str]:
    """The texts a reply message (or a stream chunk's ``delta``) bills as output tokens.

    That is its ``content`` and ``refusal``, the reasoning a server shows (``reasoning_content``: vLLM,
    DeepSeek, SGLang; ``reasoning``: newer vLLM, OpenRouter), an audio answer's ``transcript``, and the
    ``name`` and ``arguments`` of each of its ``tool_calls`` and of a legacy ``function_call``: a model
    that answers with a tool call is billed for the call. Anything not shaped like OpenAI's is skipped.

    >>> output_texts({"content": None, "tool_calls": [{"id": "c1", "function": {"name": "search", "arguments": '{"q":1}'}}]})
    ['search', '{"q":1}']
    >>> output_texts({"content": "hi", "refusal": None, "function_call": {"arguments": "{}"}})
    ['hi', '{}']
    >>> output_texts({"content": "Paris.", "reasoning_content": "Let me think.", "audio": {"transcript": "Paris."}})
    ['Paris.', 'Let me think.', 'Paris.']
    """
    if not isinstance(message, Mapping):
        return []
    out = [message[k] for k in OUTPUT_TEXT_KEYS if isinstance(message.get(k), str)]
    audio = message.get("audio")
    if isinstance(audio, Mapping) and isinstance(audio.get("transcript"), str):
        out.append(audio["transcript"])
    calls = message.get("tool_calls")
    functions = [c.get("function") for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []
    for function in (*functions, message.get("function_call")):
        if isinstance(function, Mapping):
            out.extend(function[k] for k in ("name", "arguments") if isinstance(function.get(k), str))
    return out


def reply_text(body: Mapping[str, Any] | None) -> str:
    """The output text of a whole reply (:func:`output_texts` of its first choice's message), counted when it reports no usage."""
    try:
        message = body["choices"][0]["message"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return ""
    return "\n".join(output_texts(message))


# The keep-alive race: a server closes an idle connection just as a request is sent on it, and
# the close arrives within about a network round trip of the request. A failure that late on a
# reused connection is that race; one later than this may be an upstream that started working.
KEEPALIVE_RACE_SECONDS = 0.25
# The default of an upstream's ``connect_timeout``, the most of its ``timeout`` spent connecting (the
# OpenAI SDK's 5 s): a host that does not answer fails fast, and the request (which never reached it) is sent again.
CONNECT_TIMEOUT = 5.0


class _SendTrace:
    """httpcore's trace of one send: was a connection opened for it, did its writing begin, and when was the request
    fully written.

    ``on_written`` (if given) is called once the request is fully written: from then on the
    upstream may be working on it (see :class:`ragtrim.serve.hold.Hold`'s ``mark_sent``).
    """

    def __init__(self, on_written: Callable[[], None] | None = None) -> None:
        self.new_connection = False
        self.writing = False  # a byte of the request was handed to a connection: no longer given up (_sent)
        self.written_at: float | None = None
        self.on_written = on_written

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event.startswith("connection.connect_tcp."):
            self.new_connection = True
        elif event.endswith(".send_request_headers.started"):
            self.writing = True
        elif event.endswith(".send_request_body.complete"):
            self.written_at = time.monotonic()
            if self.on_written is not None:
                self.on_written()

    def resendable(self, exc: BaseException, httpx: Any) -> bool:
        """True when the upstream cannot have started on the request that failed with ``exc``."""
        if isinstance(exc, httpx.ConnectError) or self.written_at is None:
            return True  # no connection, or the request never fully reached it
        quick = time.monotonic() - self.written_at <= KEEPALIVE_RACE_SECONDS
        return quick and not self.new_connection


class OpenAIUpstream:
    """``POST {base_url}/chat/completions`` (or another API's path: a :class:`Wire`, e.g. ``/responses``, ``/embeddings``)
    over a pooled ``httpx.AsyncClient``."""

    kind = "openai"
    counts_with_model_tokenizer = True  # prompts are counted with the model's tiktoken tokenizer
    forwards_request_fields = True  # tools, response_format, ... reach the model and are billed (BILLED_FIELDS)
    # the upstream's 5xx passed on to the client with their status (:func:`refusal_of`): none; an OpenAI upstream's 5xx
    # is the gateway's 502 (the OpenAI SDKs retry both alike)
    relayed_server_errors: frozenset[int] = frozenset()

    def __init__(self, config: UpstreamConfig, *, env: Mapping[str, str] | None = None,
                 on_retry: Callable[[], None] | None = None):
        self.config = config
        self._env = env
        self._client: Any = None
        self.retries = 0  # requests sent again after their connection failed before any answer
        self._on_retry = on_retry

    def _key(self) -> str | None:
        env = os.environ if self._env is None else self._env
        return env.get(self.config.api_key_env) if self.config.api_key_env else None

    def scrub(self, text: str) -> str:
        """``text`` without the upstream key (:func:`scrub_key`): scrub a text whole, before any cut."""
        return scrub_key(text, self._key())

    async def start(self) -> None:
        httpx = lazy_import("httpx", extra="serve", purpose="ragtrim serve's upstream client")
        limits = httpx.Limits(max_connections=self.config.max_connections, max_keepalive_connections=self.config.max_connections,
                              keepalive_expiry=self.config.keepalive_expiry)
        timeout = httpx.Timeout(self.config.timeout, connect=min(self.config.timeout, self.config.connect_timeout))
        self._client = httpx.AsyncClient(base_url=str(self.config.base_url).rstrip("/"), timeout=timeout, limits=limits)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self) -> dict[str, str]:
        key = self._key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def max_completion_tokens(self, asked: int) -> int:
        return asked

    async def count_prompt_tokens(self, messages: Sequence[Mapping[str, Any]], tokenizer: str, question: str, context: str, *,
                                  client_left: Callable[[], Any] | None = None) -> int:
        """The messages' tokens, counted on a thread of the event loop's pool (about 0.15 s per MB of messages: on the
        loop itself, every other request would wait for it). ``client_left`` is not asked: the count queues behind no
        one's (see :meth:`LocalUpstream.count_prompt_tokens`)."""
        anyio = lazy_import("anyio", extra="serve", purpose="ragtrim serve")
        return int(await anyio.to_thread.run_sync(count_chat_tokens, messages, tokenizer))

    async def _send(self, body: Mapping[str, Any], on_sent: Callable[[], None] | None = None,
                    client_left: Callable[[], Any] | None = None, path: str = "/chat/completions",
                    headers: Sequence[tuple[str, str]] = ()) -> Any:
        """POST ``body`` to ``path``; the response once its status and headers are in (its body not read yet).

        A request is sent again (at most ``connection_retries`` times; ``self.retries`` counts
        them) only when the upstream cannot have started on it (:meth:`_SendTrace.resendable`):
        the connection could not be made, the request was not fully written, or a reused
        keep-alive connection failed within :data:`KEEPALIVE_RACE_SECONDS` of the request being
        written (the server closed it as the request arrived). An upstream that had the whole
        request longer, or on a connection of its own, may be working on it: never sent twice.
        A failure is an :class:`UpstreamError` whose ``started`` says which of the two it was.
        ``on_sent`` is called each time the request has been fully written. A client that leaves
        (``client_left``) before any of the request is written (it waits for a connection of a full
        pool, ``max_connections``) has its call given up: :class:`LeftBeforeSent` (:meth:`_sent`); never
        on an attempt after one whose request was written whole (the upstream may have that one).
        """
        httpx = lazy_import("httpx", extra="serve", purpose="ragtrim serve's upstream client")
        # not ConnectTimeout: each attempt could wait the whole connect timeout (connect_timeout)
        dropped = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
        written = False  # an earlier attempt's request was written whole: the upstream may have it, never given up
        content = await json_body(body)  # a piece at a time: an 8 MiB transcript does not stall the loop
        for attempt in range(self.config.connection_retries + 1):
            trace = _SendTrace(on_sent)
            request = self._client.build_request("POST", path, content=content, extensions={"trace": trace},
                                                 headers={**dict(headers), **self._headers(),
                                                          "Content-Type": "application/json"})
            try:
                return await self._sent(request, trace, None if written else client_left)
            except httpx.HTTPError as exc:
                written = written or trace.written_at is not None
                resendable = trace.resendable(exc, httpx)
                if attempt == self.config.connection_retries or not (resendable and isinstance(exc, dropped)):
                    raise self._send_error(exc, started=not resendable, httpx=httpx) from None
                self.retries += 1
                if self._on_retry is not None:
                    self._on_retry()
                await asyncio.sleep(0.05 * attempt)  # at once after a stale connection, then a short pause
        raise AssertionError("unreachable")  # pragma: no cover

    async def _sent(self, request: Any, trace: _SendTrace, client_left: Callable[[], Any] | None) -> Any:
        """``request`` sent (its response's status and headers in), beside a watcher of ``client_left``
        (:func:`ragtrim.serve.client_left.when_client_leaves`): a client that leaves before a byte of the
        request is written (``trace``) has the call cancelled, safely, since the upstream has nothing of it,
        and :class:`LeftBeforeSent` is raised. Once the writing began the call goes on (and is charged)."""
        if client_left is None:
            return await self._client.send(request, stream=True)
        anyio = lazy_import("anyio", extra="serve", purpose="ragtrim serve")
        outcome: dict[str, Any] = {}

        async def left_or_writing() -> bool:  # once the writing began there is nothing to give up: the watcher ends
            return trace.writing or bool(await client_left())

        with anyio.CancelScope() as call:

            def give_up() -> None:
                if not trace.writing:
                    call.cancel()

            async with anyio.create_task_group() as watch:
                watch.start_soon(when_client_leaves, left_or_writing, give_up)
                try:
                    outcome["response"] = await self._client.send(request, stream=True)
                except Exception as exc:  # raised below, past the task group (which would wrap it in an ExceptionGroup)
                    outcome["failed"] = exc
                finally:
                    watch.cancel_scope.cancel()  # the call is over: its watcher ends with it
        if "failed" in outcome:
            raise outcome["failed"]
        if "response" not in outcome:  # given up (give_up): nothing of it was written
            raise LeftBeforeSent(WAITED_FOR_CONNECTION)
        return outcome["response"]

    def _send_error(self, exc: Exception, *, started: bool, httpx: Any,
                    lead: str = "upstream failed after the request was sent") -> UpstreamError:
        """The :class:`UpstreamError` for a call that failed with ``exc``: "unreachable" only when the upstream never had the request."""
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not started:
            return UpstreamError(502, self.scrub(f"upstream unreachable: {what}"))
        return UpstreamError(502, self.scrub(f"{lead}: {what}{self._timeout_hint(exc, httpx)}"), started=True)

    def _timeout_hint(self, exc: Exception, httpx: Any) -> str:
        """For a read timeout, what the operator can do about it (else "")."""
        if not isinstance(exc, httpx.TimeoutException):
            return ""
        return (f" (no answer within the upstream's timeout of {self.config.timeout:g} s; raise timeout under "
                f"[upstreams.{self.config.name}] for longer completions)")

    async def complete(self, body: Mapping[str, Any], question: str, context: str, *,
                       on_sent: Callable[[], None] | None = None, client_left: Callable[[], Any] | None = None,
                       wire: Wire | None = None) -> UpstreamReply:
        """The upstream's answer read whole (or why there is none) at ``wire``'s path (chat completions by default);
        :class:`LeftBeforeSent` when the client left before the request was written (:meth:`_send`)."""
        wire = wire or CHAT_WIRE
        start = time.perf_counter()
        try:
            resp = await self._send(body, on_sent, client_left, wire.path, wire.headers)
        except UpstreamError as exc:
            return UpstreamReply(502, None, "", None, None, (time.perf_counter() - start) * 1000, str(exc), started=exc.started)
        broken = await self._read_whole(resp)
        ms = (time.perf_counter() - start) * 1000
        if broken is not None:
            return UpstreamReply(502, None, "", None, None, ms, str(broken), started=broken.started)
        if wire.peek is not None and 200 <= resp.status_code < 300 and self._undecodable(resp) is None:
            peeked = wire.peek(resp.content)
            if peeked is not None:
                text, p, c, cached = wire.read(peeked)
                return UpstreamReply(resp.status_code, None, text, p, c, ms, cached_tokens=cached, raw=resp.content)
            anyio = lazy_import("anyio", extra="serve", purpose="ragtrim serve")
            return await anyio.to_thread.run_sync(self._reply, resp, ms, wire)
        return self._reply(resp, ms, wire)

    async def _read_whole(self, resp: Any) -> UpstreamError | None:
        """Read ``resp``'s body whole and close it; the error when it broke off (after a 2xx: the upstream did the work)."""
        httpx = lazy_import("httpx", extra="serve", purpose="ragtrim serve's upstream client")
        try:
            try:
                await resp.aread()
            finally:
                await resp.aclose()
        except httpx.HTTPError as exc:
            return self._send_error(exc, started=200 <= resp.status_code < 300, httpx=httpx,
                                    lead=f"upstream's answer (HTTP {resp.status_code}) broke off")
        return None

    def _reply(self, resp: Any, ms: float, wire: Wire) -> UpstreamReply:
        """The :class:`UpstreamReply` for a response read whole: its answer (a chat completion, or what ``wire`` reads),
        or why it is none."""
        answered = 200 <= resp.status_code < 300
        undecodable = self._undecodable(resp)
        if undecodable is not None:
            return UpstreamReply(502, None, "", None, None, ms, undecodable, started=answered)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if answered and not isinstance(data, Mapping):  # never quote it: it may hold the model's answer
            return UpstreamReply(502, None, "", None, None, ms, unreadable_answer(resp.status_code, len(resp.content), data),
                                 started=True)
        if not answered:
            detail = data.get("error") if isinstance(data, Mapping) else self.scrub(resp.text)[:300]
            return UpstreamReply(resp.status_code, None, "", None, None, ms,
                                 f"upstream answered HTTP {resp.status_code}: {self.scrub(json.dumps(detail))[:500]}",
                                 refusal=refusal_of(resp.status_code, data, resp.text, resp.headers, self.scrub,
                                                    self.relayed_server_errors))
        text, p, c, cached = wire.read(data)
        written, written_1h = wire.writes(data) if wire.writes is not None else (0, 0)
        return UpstreamReply(resp.status_code, None if wire.peek is not None else data, text, p, c, ms, cached_tokens=cached,
                             cache_write_tokens=written, cache_write_1h_tokens=written_1h, raw=resp.content)

    async def stream(self, body: Mapping[str, Any], question: str, context: str, *,
                     on_sent: Callable[[], None] | None = None, client_left: Callable[[], Any] | None = None,
                     wire: Wire | None = None) -> AsyncIterator[bytes]:
        """The upstream's SSE bytes as they arrive (from ``wire``'s path: chat completions by default); raises :class:`UpstreamError` before the first byte on failure
        (:class:`LeftBeforeSent` when the client left before the request was written: :meth:`_send`).

        An upstream that answers the stream request with a whole chat completion (JSON, ignoring
        ``stream``) is read whole and given as the events that would have carried it
        (:func:`completion_events`, or ``wire``'s events), its usage included, so the client still reads a stream.
        """
        wire = wire or CHAT_WIRE
        if wire.events is None:
            raise ValueError(f"answers of {wire.path} are never streamed")
        resp = await self._send(body, on_sent, client_left, wire.path, wire.headers)
        undecodable = self._undecodable(resp)
        if undecodable is not None:
            await resp.aclose()
            raise UpstreamError(502, undecodable, started=200 <= resp.status_code < 300)
        if resp.status_code >= 400:
            raise await self._stream_error(resp)
        if _media_type(resp) in ("application/json", "text/json"):
            return await self._json_as_stream(resp, wire)
        return _ResponseStream(resp)

    async def _json_as_stream(self, resp: Any, wire: Wire) -> AsyncIterator[bytes]:
        """A JSON answer to a stream request as stream events (``wire.events``: :func:`completion_events` for a chat),
        read whole first."""
        broken = await self._read_whole(resp)
        if broken is not None:
            raise broken
        reply = self._reply(resp, 0.0, wire)
        if reply.error is not None or reply.body is None:
            raise UpstreamError(502, f"{reply.error} (to a stream request)", started=True)
        return _replayed(wire.events(reply.body))  # type: ignore[misc]  # never None: stream() refuses such a wire

    async def _stream_error(self, resp: Any) -> UpstreamError:
        """The :class:`UpstreamError` for a stream request the upstream answered with an HTTP error (its body read, closed)."""
        try:
            content = await resp.aread()
        finally:
            await resp.aclose()
        text = self.scrub(content.decode("utf-8", "replace"))[:4000]
        try:
            data = json.loads(content)
        except ValueError:
            data = None
        return UpstreamError(resp.status_code, f"upstream answered HTTP {resp.status_code}: {text[:500]}",
                             refusal=refusal_of(resp.status_code, data, text, resp.headers, self.scrub,
                                                self.relayed_server_errors))

    def _undecodable(self, resp: Any) -> str | None:
        """Why ``resp``'s body cannot be read, when it is compressed in an encoding the client does not decode; else None.

        httpx decodes the encodings it asks for (its ``Accept-Encoding``); a body in any other
        one would be read, relayed and counted as the compressed bytes it is.
        """
        decoded = {"identity", *(e.strip().lower() for e in self._client.headers.get("accept-encoding", "").split(","))}
        used = [e.strip().lower() for e in resp.headers.get("content-encoding", "").split(",") if e.strip()]
        unknown = [e for e in used if e not in decoded]
        if not unknown:
            return None
        return self.scrub(f"upstream answered HTTP {resp.status_code} with Content-Encoding {', '.join(unknown)[:100]}, "
                          f"which the gateway cannot decode (it asks for {self._client.headers.get('accept-encoding') or 'identity'})")


class _ResponseStream:
    """The bytes of a streamed response as they arrive, decoded (gzip, deflate, ...: the client gets
    them plain, without the upstream's ``Content-Encoding``); closing it (even before the first read)
    closes the response."""

    def __init__(self, resp: Any) -> None:
        self._resp = resp
        self._pieces = resp.aiter_bytes()

    def __aiter__(self) -> _ResponseStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._pieces.__anext__()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        await self._resp.aclose()


class UpstreamError(Exception):
    """A failed upstream call: ``status`` is the upstream's (502 when it gave none); ``refusal`` is
    set when it refused the request itself (:func:`refusal_of`), else the client gets a 502.
    ``started``: the upstream may have done the work all the same (see :class:`UpstreamReply`)."""

    def __init__(self, status: int, message: str, *, refusal: Refusal | None = None, started: bool = False):
        super().__init__(message)
        self.status = status
        self.refusal = refusal
        self.started = started


class LocalUpstream:
    """The packaged Gemma-3-270M in-process (:class:`evals.readers.local.LocalReader`).

    The base model has no chat template: the prompt is the reader's own template with the
    optimized documents and the last user message (system messages are not used). Answers
    stop at a newline. The model runs through the reader's public ``complete(prompt,
    max_tokens=...)`` where it has one (in a crash-isolated worker process), else through
    ``_generate(prompt)`` with the reader's own ``max_tokens`` (which then caps what the
    gateway reserves).

    The model's worker runs one call at a time, so its calls (counts and answers) queue on a limiter
    of their own (:attr:`limiter`), and the one whose turn it is runs on a thread of its own, not of
    the event loop's pool: forty queued calls would otherwise hold forty of its threads while they
    wait, and key checks, ledger writes and ``/healthz`` would wait behind them. A call whose client
    left while it queued (``client_left``, asked once it has its turn) is not run: :class:`LeftBeforeSent`.
    """

    counts_with_model_tokenizer = False  # prompts are counted with the model's own (Gemma) tokenizer
    forwards_request_fields = False  # only the question and the documents reach the model

    kind = "local"

    def __init__(self, config: UpstreamConfig, *, reader: Any = None):
        self.config = config
        self._reader = reader
        self._limiter: Any = None
        self._thread: Any = None

    @property
    def limiter(self) -> Any:
        """The queue of this client's model calls: one at a time (``statistics()`` tells how many wait)."""
        if self._limiter is None:
            anyio = lazy_import("anyio", extra="serve", purpose="ragtrim serve")
            self._limiter = anyio.CapacityLimiter(1)
        return self._limiter

    @property
    def thread(self) -> Any:
        """The thread of the call whose turn it is (never waited for: :attr:`limiter` admits one call at a time)."""
        if self._thread is None:
            anyio = lazy_import("anyio", extra="serve", purpose="ragtrim serve")
            self._thread = anyio.CapacityLimiter(1)
        return self._thread

    async def _in_turn(self, func: Callable[..., Any], *args: Any, client_left: Callable[[], Any] | None, when: str) -> Any:
        """``func(*args)`` on the model's thread once it is this call's turn (:attr:`limiter`); not run when its client
        left while it waited (``client_left``, asked as its turn comes): :class:`LeftBeforeSent` saying ``when``."""
        anyio = lazy_import("anyio", extra="serve", purpose="ragtrim serve")
        async with self.limiter:
            if client_left is not None and await client_left():
                raise LeftBeforeSent(when)
            return await anyio.to_thread.run_sync(func, *args, limiter=self.thread)

    in_turn = _in_turn  # the local embedding model's batches take their turns too (ragtrim.serve.local_embeddings)

    def _get_reader(self) -> Any:
        if self._reader is None:
            from evals.readers.local import LocalReader

            self._reader = LocalReader(n_ctx=4096, max_tokens=64)
        return self._reader

    async def start(self) -> None:
        anyio = lazy_import("anyio", extra="serve", purpose="ragtrim serve")
        self._limiter, self._thread = anyio.CapacityLimiter(1), anyio.CapacityLimiter(1)  # bound to this event loop

    async def aclose(self) -> None:
        return None

    def max_completion_tokens(self, asked: int) -> int:
        reader = self._get_reader()
        if callable(getattr(reader, "complete", None)):  # takes max_tokens per call
            return asked
        return min(asked, int(getattr(reader, "max_tokens", asked)))

    async def count_prompt_tokens(self, messages: Sequence[Mapping[str, Any]], tokenizer: str, question: str, context: str, *,
                                  client_left: Callable[[], Any] | None = None) -> int:
        """The prompt's tokens, counted by the model's own tokenizer in its worker (in turn with its answers: not
        counted for a client that left while the count waited, :class:`LeftBeforeSent`)."""
        reader = self._get_reader()
        try:
            return int(await self._in_turn(reader.count_tokens, reader.prompt(question, context), client_left=client_left,
                                           when=COUNT_WAITED_FOR_LOCAL_MODEL))
        except LeftBeforeSent:
            raise
        except Exception as exc:  # the model's worker died or failed
            raise UpstreamError(502, f"local model failed to count the prompt: {type(exc).__name__}: {exc}"[:500]) from None

    def _call(self, prompt: str, max_tokens: int) -> Any:
        reader = self._get_reader()
        complete = getattr(reader, "complete", None)
        if callable(complete):
            return complete(prompt, max_tokens=max_tokens)
        return reader._generate(prompt)

    async def complete(self, body: Mapping[str, Any], question: str, context: str, *,
                       on_sent: Callable[[], None] | None = None, client_left: Callable[[], Any] | None = None,
                       wire: Wire | None = None) -> UpstreamReply:
        """The model's answer, as a chat completion (``wire`` aside: only the chat route sends to this model); ``on_sent`` is not called: an in-process model bills no one, and a worker that
        dies takes its run with it. Not run for a client that left while the call waited for its turn
        (``client_left``): :class:`LeftBeforeSent`."""
        reader = self._get_reader()
        prompt = reader.prompt(question, context)
        start = time.perf_counter()
        out = await self._in_turn(self._call, prompt, int(body.get("max_tokens") or 64), client_left=client_left,
                                  when=WAITED_FOR_LOCAL_MODEL)
        ms = (time.perf_counter() - start) * 1000
        if not out.ok:
            return UpstreamReply(502, None, "", out.prompt_tokens, out.completion_tokens, ms, f"local model failed: {out.error}")
        data = {
            "id": f"chatcmpl-local-{int(time.time() * 1000)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", reader.model)),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                      "total_tokens": (out.prompt_tokens or 0) + (out.completion_tokens or 0)},
        }
        return UpstreamReply(200, data, out.text or "", out.prompt_tokens, out.completion_tokens, ms)

    async def stream(self, body: Mapping[str, Any], question: str, context: str, *,
                     on_sent: Callable[[], None] | None = None, client_left: Callable[[], Any] | None = None,
                     wire: Wire | None = None) -> AsyncIterator[bytes]:
        reply = await self.complete(body, question, context, client_left=client_left)
        if reply.error is not None or reply.body is None:
            raise UpstreamError(reply.status, reply.error or "local model gave no answer")
        return _replayed(completion_events(reply.body))


def unreadable_answer(status: int, size: int, data: Any) -> str:
    """Why a 2xx answer is no chat completion, without quoting it (it may hold the model's answer).

    >>> unreadable_answer(200, 412, None)
    'upstream answered HTTP 200 with a body that is not a chat completion (412 bytes, not JSON: cut short or malformed)'
    """
    what = "not JSON: cut short or malformed" if data is None else f"JSON {type(data).__name__}, not an object"
    return f"upstream answered HTTP {status} with a body that is not a chat completion ({size} bytes, {what})"


def _media_type(resp: Any) -> str:
    """``resp``'s Content-Type without its parameters, lower case ("" when it has none)."""
    return str(resp.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def _delta(message: Any) -> dict[str, Any]:
    """A reply message as the ``delta`` of a single chunk: role, content, refusal, tool calls (each with its ``index``)."""
    message = message if isinstance(message, Mapping) else {}
    delta: dict[str, Any] = {"role": message.get("role") or "assistant"}
    delta.update({k: message[k] for k in ("content", "refusal", *REASONING_KEYS, "function_call") if message.get(k) is not None})
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        delta["tool_calls"] = [{"index": i, **call} if isinstance(call, Mapping) else call for i, call in enumerate(calls)]
    return delta


def completion_events(data: Mapping[str, Any]) -> list[bytes]:
    """A whole chat completion as the stream that would have carried it: per choice one ``chat.completion.chunk``
    with its message as the delta and one with its ``finish_reason``, then a usage chunk (when it has usage; the
    relay drops it unless the client asked for ``stream_options.include_usage``), then ``data: [DONE]``.

    >>> events = completion_events({"id": "c1", "created": 1, "model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    ...     "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]})
    >>> chunks = [json.loads(e[6:]) for e in events[:-1]]
    >>> [c["choices"][0]["finish_reason"] if c["choices"] else c["usage"] for c in chunks], events[-1]
    ([None, 'stop', {'prompt_tokens': 3, 'completion_tokens': 1}], b'data: [DONE]\\n\\n')
    >>> chunks[0]["object"], chunks[0]["choices"][0]["delta"]
    ('chat.completion.chunk', {'role': 'assistant', 'content': 'hi'})
    """
    base = {k: data[k] for k in ("id", "created", "model", "system_fingerprint", "service_tier") if k in data}
    base["object"] = "chat.completion.chunk"
    choices = data.get("choices") if isinstance(data.get("choices"), list) else []
    out = []
    for i, choice in enumerate(c if isinstance(c, Mapping) else {} for c in choices):
        index = choice.get("index", i)
        out.append(sse({**base, "choices": [{"index": index, "delta": _delta(choice.get("message")), "logprobs": choice.get("logprobs"),
                                            "finish_reason": None}]}))
        out.append(sse({**base, "choices": [{"index": index, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}]}))
    if isinstance(data.get("usage"), Mapping):
        out.append(sse({**base, "choices": [], "usage": data["usage"]}))
    out.append(b"data: [DONE]\n\n")
    return out


def chat_reading(data: Mapping[str, Any]) -> tuple[str, int | None, int | None, int]:
    """``(output text, prompt tokens, completion tokens, cached prompt tokens)`` of a whole chat completion."""
    p, c = usage_of(data)
    return reply_text(data), p, c, cached_count(data)


@dataclass(frozen=True)
class Wire:
    """One OpenAI API an upstream serves: the ``path`` posted to, how a whole answer is ``read`` (its output text and
    usage: :func:`chat_reading`) and the stream ``events`` that would have carried it (:func:`completion_events`;
    None for an API that never streams: ``/embeddings``). An answer with a ``peek`` goes to the client as it came
    (:attr:`UpstreamReply.raw`; no parsed copy is kept, ``body`` None) and is not parsed whole (a batch of vectors can be
    tens of MB of JSON, whose parse holds the GIL: every request on the worker would stall): ``peek`` gives what
    ``read`` needs from the raw body (:func:`ragtrim.serve.embeddings.usage_at_end`), else (None) it is parsed whole
    on a thread. ``writes`` gives the prompt tokens a whole answer wrote to the upstream's prompt cache (Anthropic's,
    billed at the cache-write price; None: the API reports none) and of them those to its 1-hour cache (None: not split); ``headers`` are sent with the request besides the
    upstream's own (a client's ``anthropic-beta``)."""

    path: str
    read: Callable[[Mapping[str, Any]], tuple[str, int | None, int | None, int]]
    events: Callable[[Mapping[str, Any]], list[bytes]] | None = None
    peek: Callable[[bytes], Mapping[str, Any] | None] | None = None
    writes: Callable[[Mapping[str, Any]], tuple[int, int | None]] | None = None
    headers: tuple[tuple[str, str], ...] = ()


CHAT_WIRE = Wire("/chat/completions", chat_reading, completion_events)


async def _replayed(events: Sequence[bytes]) -> AsyncIterator[bytes]:
    """``events`` as an async byte stream (what :meth:`OpenAIUpstream.stream` returns)."""
    for event in events:
        yield event


def sse(obj: Any) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n\n"


# Where a server-sent event ends: a line end (CRLF, LF or CR, as the SSE spec allows; a CRLF is one
# line end, never a CR and then an LF) and a second one right after it, the blank line.
_SSE_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")


def sse_event_end(buf: bytes | bytearray, at: int = 0) -> int:
    """Where the first server-sent event in ``buf`` ends (just after its blank line), searching from ``at``; -1 when none has ended.

    Events may end in "\\n\\n" (OpenAI), "\\r\\n\\r\\n" (sse-starlette), "\\r\\r" or a mix.

    >>> [sse_event_end(b) for b in (b"data: 1\\n\\n", b"data: 1\\r\\n\\r\\ndata: 2", b"data: 1\\r\\r", b"data: 1\\r\\n\\n")]
    [9, 11, 9, 10]
    >>> [sse_event_end(b) for b in (b"data: 1\\r\\n", b"data: 1\\r\\ndata: 2\\r", b"data: 1\\r")]
    [-1, -1, -1]
    """
    found = _SSE_EVENT_END.search(buf, at)
    return found.end() if found is not None else -1

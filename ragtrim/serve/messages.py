"""``POST /v1/messages``: Anthropic's Messages API, with the documents optimized into the system prompt and budgets that hold.

The same flow as the chat route (:func:`ragtrim.serve.chat.serve_request`), with the Messages names (:data:`MESSAGES`):
``model``, ``max_tokens`` (required, as Anthropic requires it), ``messages`` (role user or assistant; content a
string or blocks: text, image, document, tool_use, tool_result, thinking, redacted_thinking), ``system`` (a string or
text blocks), ``stop_sequences``, ``stream``, ``temperature``, ``tools``, ``tool_choice``, ``thinking``,
``metadata``, plus ragtrim's own fields as chat takes them (the anthropic SDK sends them with ``extra_body``). It serves
only models on an ``anthropic`` upstream (:mod:`ragtrim.serve.anthropic_upstream`), which the OpenAI routes refuse.

The documents are optimized for ``query``, else the last user message's text, and appended to ``system`` as a text
block after the client's. The worst case reserved is ``system``, the messages, ``tools``, ``tool_choice`` and
``thinking`` counted with the model's tiktoken tokenizer (no Claude tokenizer is available offline), plus
``max_tokens`` (which holds the thinking tokens too), each with the model's ``count_margin`` (by default 0.4 on an
anthropic upstream: :data:`ragtrim.serve.config.ANTHROPIC_COUNT_MARGIN`); a request with ``tools`` adds the model's
``tool_prompt_tokens`` to the prompt (Anthropic's own tool-use system prompt, billed as input: by default 500 on an
anthropic upstream, :data:`ragtrim.serve.config.ANTHROPIC_TOOL_PROMPT_TOKENS`). It is settled from Anthropic's usage:
the prompt is ``input_tokens`` + ``cache_creation_input_tokens`` (at ``cache_write_per_million``; those of them
``cache_creation.ephemeral_1h_input_tokens`` reports at ``cache_write_1h_per_million``, and all of them when the request
asks for a 1-hour cache and the usage has no split) + ``cache_read_input_tokens`` (at ``cached_input_per_million``), the
completion ``output_tokens``. A request with a ``cache_control`` whose ``ttl`` is "1h" anywhere reserves its prompt at
the 1-hour write price (:func:`ragtrim.serve.messages_api.asks_1h_cache`). A stream is relayed
event by event (its ``event:`` lines as they came) and settled from its usage merged field by field (``message_start``'s,
then each ``message_delta``'s: a field absent keeps its last value), the output tokens the last ``message_delta``'s; an
``error`` event the upstream sends mid-stream is relayed, noted on the row, and charged as a stream cut short is.

Refused with a 400 naming the fix: no ``max_tokens``; a field or ``anthropic-beta`` value billed above the model's
standard price (``speed`` "fast", ``inference_geo`` but "global", ``service_tier`` but "auto" or "standard_only",
``context-1m-*``, ``fast-mode-*``: :func:`check_priced`), budget or not; while the request holds room in a budget, an
image or PDF block, ``mcp_servers``, ``container`` or an ``anthropic-beta`` value not in :data:`BETAS_COUNTED` (billed
by tokens or charges the gateway cannot count; served, and charged the usage reported, without one); a tool that is
not the client's own (``web_search_*``, ``bash_*``, ...: run or rendered by the upstream, billed per call or by tokens
the gateway cannot count). Errors come in Anthropic's shape (:func:`ragtrim.serve.errors.anthropic_body`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from ragtrim.serve.bodies import OUR_KEYS, ChatRequest, check_messages, check_priced_value, check_surrogates, checked_request
from ragtrim.serve.chat import SseTally, event_json, serve_request
from ragtrim.serve.dialect import Dialect
from ragtrim.serve.errors import ApiError, bad_request, too_large
from ragtrim.serve.messages_api import (MESSAGES_BILLED, MESSAGES_WIRE, asks_1h_cache, event, media_block, messages_view, split_system,
                                        usage_counts, writes_1h)

CAP = "max_tokens"
# Fields the route reads and the upstream body gets from elsewhere (the system, messages and cap per attempt), or never
_NOT_PASSED = OUR_KEYS + ("model", "messages", "system", "stream", CAP)
# The request header a client sends the upstream through the gateway (its values checked: :func:`check_priced`,
# :func:`uncounted_of`)
BETA = "anthropic-beta"
# Fields Anthropic bills above the model's standard price (all this gateway charges) at any value but these: refused,
# with or without a budget, as chat's are (:func:`ragtrim.serve.bodies.check_priced_fields`); (allowed, how billed)
PRICED_VALUES = {"speed": (("standard",), " (fast mode is billed at a premium)"),
                 "inference_geo": (("global",), " (inference in one region is billed at a multiple of it)"),
                 "service_tier": (("auto", "standard_only"), "")}
# Fields that make the upstream bill input or charges the gateway cannot count: refused while the request holds room
# in a budget (:func:`ragtrim.serve.chat.check_stored_context`), served (charged the usage reported) without one
UNCOUNTED_FIELDS = {"mcp_servers": "the MCP servers' tool definitions and results, which the upstream adds to the prompt",
                    "container": "a code execution container: its skills' instructions and files as input, its hours billed"}
# anthropic-beta values (by prefix: a beta's name, then its date) that change neither the price nor what is counted
# (prompt caching is priced by cache_write_per_million, cache_write_1h_per_million, cached_input_per_million): passed on,
# budget or not
BETAS_COUNTED = ("prompt-caching-", "extended-cache-ttl-", "token-efficient-tools-", "interleaved-thinking-",
                 "fine-grained-tool-streaming-", "output-128k-")
# anthropic-beta values billed above the model's standard price: refused, budget or not
BETAS_PRICED = {"context-1m-": "a prompt above 200k tokens is billed 2x the input price and 1.5x the output price",
                "fast-mode-": "fast mode is billed at a premium"}


def _anthropic_only(upstream: Any) -> str:
    """Why the route cannot send to ``upstream`` ("": it can): only an anthropic upstream speaks the Messages API."""
    if getattr(upstream, "kind", "") != "anthropic":
        return ("is not on an anthropic upstream; it is served on POST /v1/chat/completions and POST /v1/responses: send "
                "this request there (with the openai SDK), or name a model on an upstream with kind = \"anthropic\"")
    return ""


def _check_max_tokens(body: Mapping[str, Any]) -> None:
    if body.get(CAP) is None:
        raise bad_request("max_tokens is required (as Anthropic requires it): the most tokens the answer may have, thinking "
                          "included, e.g. \"max_tokens\": 1024", CAP)


def check_tools(tools: Any) -> None:
    """A 400 naming the tool that is not the client's own: a server tool or a versioned one (``bash_20250124``, ...),
    run or rendered by the upstream, billed per call or by tokens the gateway cannot count."""
    if tools is not None and not isinstance(tools, list):
        raise bad_request(f"tools must be a list of tools, got {tools!r:.80}", "tools")
    for i, tool in enumerate(tools or []):
        kind = tool.get("type") if isinstance(tool, Mapping) else "not an object"
        if kind not in (None, "custom"):
            raise bad_request(f"tools[{i}] has type {kind!r:.40}: only the client's own tools (name, description, "
                              "input_schema) are served, counted as input; a server or built-in tool is run or rendered by "
                              "the upstream and billed by tokens or per call this gateway cannot count; define it as your "
                              "own tool, or pass its results as documents", "tools")


def check_priced(body: Mapping[str, Any], betas: list[str]) -> None:
    """A 400 naming a field (:data:`PRICED_VALUES`) or ``anthropic-beta`` value (:data:`BETAS_PRICED`) the upstream bills
    above the model's standard price, which is all this gateway charges: refused rather than charged too little."""
    for name, (allowed, why) in PRICED_VALUES.items():
        check_priced_value(body, name, allowed, why)
    for beta in betas:
        why = next((w for prefix, w in BETAS_PRICED.items() if beta.startswith(prefix)), "")
        if why:
            raise bad_request(f"{BETA} {beta!r:.60} is billed above the model's standard price ({why}), which is what this "
                              f"gateway charges; send the request without it", BETA)


def uncounted_of(body: Mapping[str, Any], betas: list[str]) -> str:
    """The field (:data:`UNCOUNTED_FIELDS`) or ``anthropic-beta`` value not in :data:`BETAS_COUNTED` that makes the upstream
    bill what the gateway cannot count ("" when none): refused under a budget (as an image block is)."""
    field = next((k for k in UNCOUNTED_FIELDS if body.get(k) is not None), "")
    if field:
        return f"{field} ({UNCOUNTED_FIELDS[field]})"
    beta = next((b for b in betas if not b.startswith(BETAS_COUNTED)), "")
    return (f"{BETA} {beta!r:.60} (a beta that may add input or charges; passed under a budget: "
            f"{', '.join(p + '*' for p in BETAS_COUNTED)})") if beta else ""


def betas_of(headers: Mapping[str, str]) -> list[str]:
    """The ``anthropic-beta`` values a client sent (comma-separated, in one header or several)."""
    values = headers.getlist(BETA) if hasattr(headers, "getlist") else [headers.get(BETA) or ""]
    return [b.strip() for v in values for b in str(v).split(",") if b.strip()]


def prompt_items(body: Mapping[str, Any], limits: Any) -> list[Any]:
    """The request's prompt items: its ``system`` as a leading system item (when given), then its messages."""
    messages, system = body.get("messages"), body.get("system")
    if not isinstance(messages, list) or not messages:
        raise bad_request(f"messages must be a non-empty list of {{role, content}} objects, got {messages!r:.80}", "messages")
    if len(messages) > limits.max_messages:
        raise too_large(f"messages has {len(messages)} entries; the limit is {limits.max_messages} (limits.max_messages)", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or m.get("role") not in ("user", "assistant"):
            raise bad_request(f"messages[{i}] must be an object with role user or assistant and content, got {m!r:.80}", "messages")
    if system is not None and not isinstance(system, (str, list)):
        raise bad_request(f"system must be a string or a list of text blocks, got {system!r:.80}", "system")
    return ([{"role": "system", "content": system}] if system else []) + messages


def parse_messages(body: Mapping[str, Any], headers: Mapping[str, str], config: Any) -> ChatRequest:
    """A Messages body checked, as the chat route checks its own (:func:`ragtrim.serve.bodies.checked_request`)."""
    limits = config.limits
    check_surrogates(body)
    betas = betas_of(headers)
    check_priced(body, betas)
    _check_max_tokens(body)
    check_tools(body.get("tools"))
    items = prompt_items(body, limits)
    try:
        view = messages_view(items)
    except ValueError as exc:
        raise bad_request(str(exc), "system" if str(exc).startswith("system") else "messages") from None
    check_messages(view, limits, "messages")
    asked = next((m["content"] for m in reversed(view) if m["role"] == "user" and m["content"].strip()), "")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request(f"stream must be true or false, got {stream!r:.80}", "stream")
    forwarded = ((BETA, ",".join(betas)),) if betas else ()
    return checked_request(body, headers, limits, asked=asked, items=items, view=view, stream=bool(stream),
                           not_passed=_NOT_PASSED, default_preset=config.preset, default_budget=config.budget,
                           dialect=MESSAGES, include_usage=True, upstream_headers=forwarded, cache_1h=asks_1h_cache(body),
                           uncounted=media_block(body.get("messages") or []) or uncounted_of(body, betas))


# What each content block delta bills as output: (its text key, answered: the client sees an answer, reasoned)
DELTAS = {"text_delta": ("text", True, False), "input_json_delta": ("partial_json", True, False),
          "thinking_delta": ("thinking", False, True)}


def stream_error_event(message: str) -> bytes:
    """The ``error`` event that tells a Messages client its stream broke (Anthropic's shape, as its API sends one)."""
    return event("error", {"error": {"type": "api_error", "message": message}})


def stream_error_note(error: Any) -> str:
    """What a ledger row says of an ``error`` event the upstream sent mid-stream (relayed to the client as it came): its
    type and message; the stream is charged as one cut short is.

    >>> stream_error_note({"type": "overloaded_error", "message": "Overloaded"})
    'upstream error event mid-stream: overloaded_error: Overloaded'
    """
    error = error if isinstance(error, Mapping) else {}
    kind, message = str(error.get("type") or "error"), str(error.get("message") or "")  # cut once scrubbed (chat's settle)
    return f"upstream error event mid-stream: {kind}" + (f": {message}" if message else "")


def _merge(into: dict[str, Any], usage: Mapping[str, Any]) -> None:
    """``usage`` merged into ``into`` field by field: a field absent or null keeps its value; a nested object
    (``cache_creation``) merged the same way.

    >>> u = {"input_tokens": 5, "cache_creation": {"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 2}}
    >>> _merge(u, {"input_tokens": None, "cache_creation": {"ephemeral_5m_input_tokens": 3}}); u
    {'input_tokens': 5, 'cache_creation': {'ephemeral_5m_input_tokens': 3, 'ephemeral_1h_input_tokens': 2}}
    """
    for k, v in usage.items():
        old = into.get(k)
        if isinstance(v, Mapping) and isinstance(old, Mapping):
            _merge(old, v)
        elif v is not None:
            into[k] = dict(v) if isinstance(v, Mapping) else v


class MessagesTally(SseTally):
    """:class:`ragtrim.serve.chat.SseTally` for a Messages stream: the text of its deltas, its usage merged field by field
    (the prompt, cache reads and writes), the output tokens of its last ``message_delta`` (a cumulative count), and an
    ``error`` event's type and message (:attr:`upstream_error`). Its events are short (none repeats the request or the answer), so ``max_event_bytes`` never
    cuts the usage off. Every event is relayed as it came, its ``event:`` line kept."""

    def __init__(self, max_event_bytes: int, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(max_event_bytes, body)
        self.usage: dict[str, Any] = {}  # the stream's usage so far, merged field by field (:meth:`_usage`)

    def _inspect(self, raw: bytes) -> bool:
        obj = event_json(raw)
        kind = obj.get("type") if isinstance(obj, Mapping) else None
        if kind == "message_start" and isinstance(obj.get("message"), Mapping):
            self._usage(obj["message"].get("usage"), output=False)
        elif kind == "message_delta":
            self._usage(obj.get("usage"), output=True)
            reason = obj.get("delta", {}).get("stop_reason") if isinstance(obj.get("delta"), Mapping) else None
            self.finished = self.finished or reason is not None
            self.cut_at_cap = self.cut_at_cap or reason == "max_tokens"
        elif kind == "content_block_start" and isinstance(obj.get("content_block"), Mapping):
            block = obj["content_block"]
            self.text.extend(str(block[k]) for k in ("text", "name", "thinking") if isinstance(block.get(k), str) and block[k])
            self.answered = self.answered or block.get("type") == "tool_use" or bool(block.get("text"))
            self.reasoned = self.reasoned or block.get("type") in ("thinking", "redacted_thinking")
        elif kind == "content_block_delta" and isinstance(obj.get("delta"), Mapping):
            self._delta(obj["delta"])
        elif kind == "message_stop":
            self.finished = True
        elif kind == "error":
            self.upstream_error = stream_error_note(obj.get("error"))
        return False  # every event is relayed: the usage is in message_start and message_delta

    def _delta(self, delta: Mapping[str, Any]) -> None:
        key, answered, reasoned = DELTAS.get(str(delta.get("type")), (None, False, False))
        if key is not None and isinstance(delta.get(key), str):
            self.text.append(delta[key])
            self.answered, self.reasoned = self.answered or answered, self.reasoned or reasoned

    def error_event(self, message: str) -> bytes:
        return stream_error_event(message)

    def _usage(self, usage: Any, *, output: bool) -> None:
        """Merge a ``usage`` into the stream's, field by field (a field absent or null keeps its last value: a
        ``message_delta`` that repeats ``input_tokens`` without the cache fields keeps ``message_start``'s, as the
        anthropic SDK does); the prompt (and its cache reads and writes) read from the merged fields once they have
        ``input_tokens``, the output tokens from a ``message_delta`` (``output``; message_start's are a count so far)."""
        if not isinstance(usage, Mapping):
            return
        _merge(self.usage, usage)
        p, _, reads, writes = usage_counts(self.usage)
        c = usage_counts(usage)[1]
        if p is not None:
            self.prompt_tokens, self.cached_tokens, self.cache_write_tokens = p, reads, writes
            self.cache_write_1h_tokens = writes_1h(self.usage, writes)
        if output and c is not None:
            self.completion_tokens = c


MESSAGES = Dialect("messages", MESSAGES_WIRE, "messages", (CAP,), CAP, MESSAGES_BILLED, messages_view, asks_usage=False,
                   tally=MessagesTally, refuses=_anthropic_only, route="/v1/messages", body=split_system)


async def messages_endpoint(request: Request) -> Any:
    """``POST /v1/messages`` (a spent budget's 429 carries ``x-should-retry: false``, as on every route:
    :func:`ragtrim.serve.endings.refuse`)."""
    return await serve_request(request, MESSAGES, parse_messages)


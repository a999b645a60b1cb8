"""``POST /v1/responses``: OpenAI's Responses API, with the documents optimized into the input and budgets that hold.

The same flow as the chat route (:func:`ragtrim.serve.chat.serve_request`), with the Responses names
(:data:`RESPONSES`): ``input`` (a string, or a list of items: messages with ``input_text`` /
``output_text`` / ``refusal`` parts, ``function_call``, ``function_call_output``, ``reasoning``, ...),
``instructions``, ``max_output_tokens``, ``tools``, ``reasoning``, ``text``, ``metadata``, ``store``,
``user`` / ``safety_identifier``, plus ragtrim's own fields as chat takes them. The documents are
inserted as a system message item after the leading system and developer items. The worst case
reserved is the input items, ``instructions``, ``tools``, ``tool_choice`` and ``text`` counted with the
model's tokenizer, plus ``max_output_tokens`` (else the model's completion default, then sent as
``max_output_tokens`` when the request holds room in a budget); it is settled with the response's
``usage`` (``input_tokens``; ``output_tokens``, reasoning included; ``input_tokens_details.cached_tokens``
at the cached price). A stream is relayed event by event and settled from its ``response.completed``
(or ``.incomplete`` / ``.failed``) usage.

Refused with a 400 naming the fix: a request that makes the upstream add context the gateway cannot
see (``previous_response_id``, ``conversation``, a stored ``prompt``, an ``item_reference`` input item, a
``reasoning`` item sent by its id only)
while it holds room in a budget (:func:`ragtrim.serve.chat.check_stored_context`; served and charged
the usage reported when no budget applies); image, file and audio parts; built-in tools
(web search, file search, ...: billed per call) and ``background`` responses (settled later, out of
the gateway's sight); and a model that runs in-process (the packaged Gemma): it answers chat
completions only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from ragtrim.serve.bodies import (OUR_KEYS, RESPONSES_BODY, ChatRequest, check_messages, check_n_and_stream, check_priced_fields,
                                  check_surrogates, checked_request)
from ragtrim.serve.chat import SseTally, event_json, serve_request
from ragtrim.serve.dialect import Dialect, on_anthropic
from ragtrim.serve.errors import bad_request
from ragtrim.serve.responses_api import RESPONSES_BILLED, RESPONSES_WIRE, event, input_view, responses_reading

CAP = "max_output_tokens"
# Fields the route reads and the upstream body gets from elsewhere (the input and cap per attempt), or never
_NOT_PASSED = OUR_KEYS + ("model", "input", "stream", CAP)
# Fields that make the upstream add context the gateway never sees: earlier turns it stored, a stored prompt
STORED_CONTEXT_FIELDS = ("previous_response_id", "conversation", "prompt")
# Tools the model calls through the client (their definitions are counted as input): any other is run by the
# upstream and billed per call or by tokens the gateway never sees
CLIENT_TOOLS = ("function", "custom")


def _in_process(upstream: Any) -> str:
    """Why the route cannot send to ``upstream`` ("": it can): the in-process model answers chat completions only, an
    anthropic upstream the Messages API (:func:`ragtrim.serve.dialect.on_anthropic`)."""
    if getattr(upstream, "kind", "") == "local":
        return ("runs in-process (the packaged model), which this gateway serves on POST /v1/chat/completions only: send "
                "this request there (as messages), or name a model on an OpenAI-compatible upstream")
    return on_anthropic(upstream)


def input_items(value: Any, stored: str) -> list[Any]:
    """``input`` as a list of items: a string is one user message; left out, none (only with stored context). How many
    and how long is bounded by ``[limits] responses_body_bytes`` alone (an agent's transcript: hundreds of tool calls, a
    tool's output a whole file), not by the chat's ``max_messages`` and 4 x ``max_query_chars`` per message."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if value is None and stored:
        return []
    if not isinstance(value, list) or not value:
        raise bad_request(f"input must be a string or a non-empty list of items (messages with role and content, "
                          f"function_call_output, ...), got {value!r:.80}", "input")
    return value


def check_tools_and_background(body: Mapping[str, Any]) -> None:
    """A 400 naming the field for a built-in tool (run and billed by the upstream, per call or by tokens the gateway
    never sees) and for ``background`` (answered later: its usage never reaches the gateway)."""
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise bad_request(f"tools must be a list of tools, got {tools!r:.80}", "tools")
    for i, tool in enumerate(tools or []):
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind not in CLIENT_TOOLS:
            raise bad_request(f"tools[{i}] has type {kind!r:.40}: only function and custom tools are served (their "
                              "definitions are counted as input); a built-in tool (web_search, file_search, mcp, ...) is "
                              "run and billed by the upstream per call or by tokens this gateway cannot count; run it "
                              "yourself and pass its results as documents or as a function tool's output", "tools")
    if body.get("background"):
        raise bad_request("background: a background response is answered later, so its usage never reaches this gateway "
                          "and no budget could be settled; send background: false (or leave it out) and stream: true "
                          "for a long answer", "background")


def stored_item(item: Any, where: str) -> str:
    """Which stored context an input item makes the upstream add ("" when none): an ``item_reference``, or a
    ``reasoning`` item sent by its id only (with neither its ``encrypted_content`` nor its ``content``), which the
    upstream may fill in from what it stored and bill as input."""
    if not isinstance(item, Mapping):
        return ""
    if item.get("type") == "item_reference":
        return "input (an item_reference item)"
    if item.get("type") == "reasoning" and item.get("id") and not item.get("encrypted_content") and not item.get("content"):
        return f"{where} (a reasoning item sent by its id only)"
    return ""


def stored_context_of(body: Mapping[str, Any], items: list[Any]) -> str:
    """The field that makes the upstream add context the gateway never sees ("" when none)."""
    field = next((k for k in STORED_CONTEXT_FIELDS if body.get(k) is not None), "")
    return field or next((s for s in (stored_item(it, f"input[{i}]") for i, it in enumerate(items)) if s), "")


def parse_responses(body: Mapping[str, Any], headers: Mapping[str, str], config: Any) -> ChatRequest:
    """A Responses body checked, as the chat route checks its own (:func:`ragtrim.serve.bodies.checked_request`)."""
    limits = config.limits
    check_surrogates(body)
    check_priced_fields(body)
    check_tools_and_background(body)
    if body.get("instructions") is not None and not isinstance(body.get("instructions"), str):
        raise bad_request(f"instructions must be a string, got {body.get('instructions')!r:.80}", "instructions")
    stored = stored_context_of(body, body.get("input") if isinstance(body.get("input"), list) else [])
    items = input_items(body.get("input"), stored)
    try:
        view = input_view(items)
    except ValueError as exc:
        raise bad_request(str(exc), "input") from None
    asked = check_messages(view, limits, "input", per_message=False) if view else ""
    return checked_request(body, headers, limits, asked=asked, items=items, view=view, stream=check_n_and_stream(body),
                           not_passed=_NOT_PASSED, default_preset=config.preset, default_budget=config.budget,
                           dialect=RESPONSES, include_usage=True, stored_context=stored)


# Stream events whose ``delta`` is output the upstream bills: (answered: the client sees an answer, reasoned)
TEXT_DELTAS = {"response.output_text.delta": (True, False), "response.refusal.delta": (True, False),
               "response.function_call_arguments.delta": (True, False), "response.custom_tool_call_input.delta": (True, False),
               "response.reasoning_summary_text.delta": (False, True), "response.reasoning_text.delta": (False, True)}
ENDING_EVENTS = ("response.completed", "response.incomplete", "response.failed")
# The most output, in units of max_event_bytes, a Responses event may repeat (8 MiB at the default: about two
# million tokens, past any model's output cap); the bound of what one event holds in memory
REPEATED_OUTPUT_EVENTS = 8


class ResponsesTally(SseTally):
    """:class:`ragtrim.serve.chat.SseTally` for a Responses stream: the text of its deltas, and the usage of the
    response its last event (``response.completed``, ``.incomplete``, ``.failed``) carries.

    That last event repeats the whole response: the request's fields but its input (``instructions``, ``tools``...)
    and all of its output, which ``response.output_item.done`` repeats too. So an event here may be
    ``max_event_bytes`` plus what it can repeat: the request's fields but ``input``, as JSON, and the output the
    deltas carried so far (as JSON strings), that at most :data:`REPEATED_OUTPUT_EVENTS` times ``max_event_bytes``; a
    long request and a long answer never cut off the usage, and no event is held past a bound (padding or other
    events do not raise it).

    >>> tally = ResponsesTally(1024, {"input": "x" * 9000, "instructions": "y" * 3000})
    >>> tally.event_cap()
    4044
    >>> delta = b'data: {"type": "response.output_text.delta", "delta": "' + b"z" * 2000 + b'"}\\n\\n'
    >>> _ = tally.feed(b"data: " + b"z" * 2000 + b"\\n\\n" + delta); tally.event_cap(), tally.error
    (6046, '')
    """

    def __init__(self, max_event_bytes: int, body: Mapping[str, Any] | None = None) -> None:
        super().__init__(max_event_bytes, body)
        echoed = {k: v for k, v in (body or {}).items() if k != "input"}
        self.echo_bytes = len(json.dumps(echoed))  # ASCII escapes and spaced separators: at their longest
        self.output_bytes = 0  # the deltas' output so far, as JSON strings (what the last events repeat)
        self.sequence = -1  # the last event's sequence_number
        self.snapshot: Mapping[str, Any] | None = None  # the response as its response.created (or .in_progress) had it

    def event_cap(self) -> int:
        return self.max_event_bytes + self.echo_bytes + min(self.output_bytes, REPEATED_OUTPUT_EVENTS * self.max_event_bytes)

    def _cap_name(self) -> str:
        return "max_event_bytes plus the request's fields and the output so far, which a Responses event may repeat"

    def error_event(self, message: str) -> bytes:
        """The events that end a stream the upstream broke: the Responses ``error`` event, its ``code``, ``message`` and
        ``param`` both on it (as OpenAI's reference documents) and in an ``error`` object (as the live API sends, which
        the openai SDK raises as an ``APIError``); then, for a response that had begun and not ended,
        ``response.failed`` with its ``error`` (what a client waiting for the response's last event reads)."""
        n = self.sequence + 1
        error = {"type": "upstream_error", "code": "upstream_error", "message": message, "param": None}
        out = event({"type": "error", "sequence_number": n, **{k: error[k] for k in ("code", "message", "param")}, "error": error})
        if self.snapshot is not None and not self.finished:
            failed = {**self.snapshot, "status": "failed", "error": {"code": "server_error", "message": message}}
            out += event({"type": "response.failed", "sequence_number": n + 1, "response": failed})
        return out

    def _inspect(self, raw: bytes) -> bool:
        obj = event_json(raw)
        kind = obj.get("type") if isinstance(obj, Mapping) else None
        if kind is not None and isinstance(obj.get("sequence_number"), int):
            self.sequence = obj["sequence_number"]
        if kind in ("response.created", "response.in_progress") and isinstance(obj.get("response"), Mapping):
            self.snapshot = obj["response"]
        if kind in TEXT_DELTAS and isinstance(obj.get("delta"), str):
            answered, reasoned = TEXT_DELTAS[kind]
            self.text.append(obj["delta"])
            self.output_bytes += len(json.dumps(obj["delta"]))
            self.answered, self.reasoned = self.answered or answered, self.reasoned or reasoned
        elif kind == "response.output_item.added" and isinstance(obj.get("item"), Mapping):
            name = obj["item"].get("name")
            self.text.extend([name] if isinstance(name, str) else [])
            self.reasoned = self.reasoned or obj["item"].get("type") == "reasoning"
        elif kind in ENDING_EVENTS:
            self._ended(kind, obj.get("response"))
        return False  # every event is relayed: the usage is in the last one

    def _ended(self, kind: str, response: Any) -> None:
        """Read the usage of the response a stream's last event carries."""
        response = response if isinstance(response, Mapping) else {}
        _, p, c, cached = responses_reading(response)
        if isinstance(response.get("usage"), Mapping):
            self.prompt_tokens, self.completion_tokens, self.cached_tokens = p, c, cached
        details = response.get("incomplete_details")
        self.finished = True
        self.cut_at_cap = self.cut_at_cap or (isinstance(details, Mapping) and details.get("reason") == "max_output_tokens")


RESPONSES = Dialect("responses", RESPONSES_WIRE, "input", (CAP,), CAP, RESPONSES_BILLED, input_view, asks_usage=False,
                    tally=ResponsesTally, refuses=_in_process, route="/v1/responses", body_limit=RESPONSES_BODY)


async def responses_endpoint(request: Request) -> Any:
    """``POST /v1/responses``."""
    return await serve_request(request, RESPONSES, parse_responses)

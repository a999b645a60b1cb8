"""OpenAI's Responses API on the wire: its input items as chat messages (to count them), its usage and output text
(to settle), and a whole response as the stream events that carry it.

Only what the gateway must read is read; every item and field is forwarded as it came.

>>> input_view([{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
...             {"type": "function_call_output", "call_id": "c1", "output": "42"}])
[{'role': 'user', 'content': 'Hi'}, {'role': 'function_call_output', 'call_id': 'c1', 'output': '42'}]
>>> responses_reading({"output": [{"type": "message", "content": [{"type": "output_text", "text": "Paris."}]}],
...                    "usage": {"input_tokens": 30, "output_tokens": 120, "input_tokens_details": {"cached_tokens": 16},
...                              "output_tokens_details": {"reasoning_tokens": 100}}})
('Paris.', 30, 120, 16)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ragtrim.serve.upstream import Wire, cached_count, usage_of

# The text of a content part, by its type: what a part bills as input (or, in an output item, as output)
PART_TEXT = {"input_text": "text", "output_text": "text", "text": "text", "refusal": "refusal", "summary_text": "text",
             "reasoning_text": "text"}
# Fields of an input item that are not billed (ids and states the API gives back), left out of its count
UNBILLED_KEYS = ("type", "id", "status")
# The fields of an item other than a message that may hold a list of content parts, by the item's type: read as a
# message's content is (text parts as text; an image, a file or audio refused). A list of parts anywhere else is
# refused: counting it as JSON would count an image by the length of its URL
PART_FIELDS = {"function_call_output": ("output",), "custom_tool_call_output": ("output",),
               "reasoning": ("content", "summary")}
# Parts billed by tokens the gateway cannot count
MEDIA_PARTS = ("input_image", "input_file", "input_audio", "computer_screenshot")
# Fields of a Responses body the upstream bills as input tokens besides ``input``: counted as compact JSON
# (:func:`ragtrim.serve.upstream.count_request_fields`), more than OpenAI's own rendering of them
RESPONSES_BILLED = ("instructions", "tools", "tool_choice", "text")


def _part_text(part: Any, where: str) -> str:
    """The text of one content part of an input message, or a ValueError naming it (an image, a file, audio)."""
    if isinstance(part, Mapping):
        key = PART_TEXT.get(str(part.get("type")))
        if key is not None and isinstance(part.get(key), str):
            return str(part[key])
        if part.get("type") in MEDIA_PARTS:
            raise ValueError(f"{where} is an {part['type']} part: only text parts are counted (an image, a file or audio is "
                             "billed by tokens the gateway cannot count, so no budget could hold); send its text as an "
                             "input_text part, or send the request to the upstream directly")
    raise ValueError(f"{where} must be a content part with its text (input_text, output_text, refusal), got {part!r:.80}")


def parts_text(parts: list[Any], where: str) -> str:
    """The text of a list of content parts (:func:`_part_text`), one line each."""
    return "\n".join(_part_text(part, f"{where}[{j}]") for j, part in enumerate(parts))


def _holds_parts(value: Any) -> bool:
    """Whether ``value`` is content parts (a list holding an object with a ``type``) or an image, file or audio part."""
    if isinstance(value, Mapping):
        return value.get("type") in MEDIA_PARTS
    return isinstance(value, list) and any(isinstance(v, Mapping) and "type" in v for v in value)


def _field_view(kind: str, key: str, value: Any, where: str) -> Any:
    """One billed field of an item other than a message, as counted: a list of parts read as text where the item's
    type holds parts (:data:`PART_FIELDS`), else as it came (counted as JSON); parts anywhere else are a ValueError."""
    if isinstance(value, list) and key in PART_FIELDS.get(kind, ()):
        return parts_text(value, where)
    if _holds_parts(value):
        raise ValueError(f"{where} is a list of parts on a {kind!r:.40} item, whose parts this gateway does not read (one "
                         "may be an image or a file, billed by tokens it cannot count, so no budget could hold); send its "
                         "text as a string, or send the request to the upstream directly")
    return value


def item_view(item: Any, where: str) -> dict[str, Any]:
    """One input item as a chat message: a message (a ``role``) with its text; any other item (``function_call``,
    ``function_call_output``, ``reasoning``, ...) under its type as role, its billed fields counted as JSON, but
    its parts as text (:func:`_field_view`: a tool's output parts, a reasoning item's content and summary)."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{where} must be an object (a message with role and content, or an item with a type), got {item!r:.80}")
    if isinstance(item.get("role"), str):
        content = item.get("content")
        if isinstance(content, list):
            content = parts_text(content, f"{where}.content")
        elif content is not None and not isinstance(content, str):
            raise ValueError(f"{where}.content must be a string or a list of content parts, got {content!r:.80}")
        return {"role": item["role"], "content": content or ""}
    kind = item.get("type")
    if not isinstance(kind, str):
        raise ValueError(f"{where} must be a message (with a role) or an item with a type, got {item!r:.80}")
    return {"role": kind, **{k: _field_view(kind, k, v, f"{where}.{k}") for k, v in item.items()
                             if k not in UNBILLED_KEYS and v is not None}}


def input_view(items: Sequence[Any]) -> list[dict[str, Any]]:
    """The input items as chat messages (:func:`item_view`), which :func:`ragtrim.serve.upstream.count_chat_tokens`
    counts; a ValueError naming ``input[i]`` for an item it cannot count."""
    return [item_view(item, f"input[{i}]") for i, item in enumerate(items)]


def output_texts(output: Any) -> list[str]:
    """The texts a response's ``output`` items bill as output tokens: each message's text and refusals, each tool
    call's name and arguments (or input), each reasoning item's summary and text; anything else is skipped."""
    out: list[str] = []
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, Mapping):
            continue
        out.extend(str(item[k]) for k in ("name", "arguments", "input") if isinstance(item.get(k), str))
        for key in ("content", "summary"):
            parts = item.get(key)
            for part in parts if isinstance(parts, list) else []:
                text_key = PART_TEXT.get(str(part.get("type"))) if isinstance(part, Mapping) else None
                if text_key is not None and isinstance(part.get(text_key), str):
                    out.append(part[text_key])
    return out


def chat_usage(usage: Any) -> dict[str, Any]:
    """A Responses ``usage`` in a chat completion's names, so the chat's readers charge it the same way
    (:func:`ragtrim.serve.upstream.usage_of`: reasoning reported outside the output is added to it;
    :func:`ragtrim.serve.upstream.cached_count`)."""
    usage = usage if isinstance(usage, Mapping) else {}
    inputs = usage.get("input_tokens_details") if isinstance(usage.get("input_tokens_details"), Mapping) else {}
    outputs = usage.get("output_tokens_details") if isinstance(usage.get("output_tokens_details"), Mapping) else {}
    return {"prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
            "total_tokens": usage.get("total_tokens"), "prompt_tokens_details": {"cached_tokens": inputs.get("cached_tokens")},
            "completion_tokens_details": {"reasoning_tokens": outputs.get("reasoning_tokens")}}


def responses_reading(data: Any) -> tuple[str, int | None, int | None, int]:
    """``(output text, input tokens, output tokens, cached input tokens)`` of a whole response (None: not reported)."""
    if not isinstance(data, Mapping):
        return "", None, None, 0
    mapped = {"usage": chat_usage(data["usage"])} if isinstance(data.get("usage"), Mapping) else {}
    p, c = usage_of(mapped)
    return "\n".join(output_texts(data.get("output"))), p, c, cached_count(mapped)


def event(obj: Mapping[str, Any]) -> bytes:
    """One Responses stream event: its ``event:`` line (its type) and its JSON."""
    return f"event: {obj.get('type')}\ndata: ".encode() + json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n\n"


# The event that ends a stream, by the response's status
TERMINAL_EVENTS = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}


def response_events(data: Mapping[str, Any]) -> list[bytes]:
    """A whole response as the stream that would have carried it: ``response.created``, each output item added and
    done, and the event of its status (``response.completed`` with its usage, ``.incomplete``, ``.failed``).

    >>> [json.loads(e.split(b"data: ", 1)[1])["type"] for e in response_events({"id": "r1", "status": "completed",
    ...     "output": [{"type": "message", "role": "assistant", "content": []}], "usage": {"input_tokens": 3}})]
    ['response.created', 'response.output_item.added', 'response.output_item.done', 'response.completed']
    """
    output = data.get("output") if isinstance(data.get("output"), list) else []
    events = [{"type": "response.created", "response": {**data, "status": "in_progress", "output": [], "usage": None}}]
    for i, item in enumerate(output):
        events += [{"type": "response.output_item.added", "output_index": i, "item": item},
                   {"type": "response.output_item.done", "output_index": i, "item": item}]
    events.append({"type": TERMINAL_EVENTS.get(str(data.get("status")), "response.completed"), "response": dict(data)})
    return [event({**e, "sequence_number": n}) for n, e in enumerate(events)]


RESPONSES_WIRE = Wire("/responses", responses_reading, response_events)


"""Anthropic's Messages API on the wire: its messages (and ``system``) as chat messages (to count them), its usage and
output text (to settle), a whole message as the stream events that carry it, and the body an upstream is posted.

Only what the gateway must read is read; every block and field is forwarded as it came. The route's prompt items
are the client's ``system`` (when it sent one) as a leading ``{"role": "system"}`` item, then its messages: the
documents go in as one more system item after it (:func:`ragtrim.serve.chat.with_documents`), and :func:`split_system`
turns the leading system items back into ``system`` text blocks for the upstream.

>>> messages_view([{"role": "system", "content": "Be brief."},
...                {"role": "user", "content": [{"type": "text", "text": "Hi"},
...                                             {"type": "tool_result", "tool_use_id": "t1", "content": "42"}]}])
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi', 'blocks': [{'content': '42'}]}]
>>> messages_reading({"content": [{"type": "text", "text": "Paris."}], "usage": {"input_tokens": 30,
...     "cache_creation_input_tokens": 100, "cache_read_input_tokens": 2000, "output_tokens": 12}})
('Paris.', 2130, 12, 2000)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ragtrim.serve.upstream import Wire, compact_json, usage_count

# Blocks billed by tokens the gateway cannot count (an image, a PDF: a document but one with a text or content source,
# whose text is counted): a request holding one is refused while it holds room in a budget (:func:`media_block`), and
# forwarded uncounted without one
MEDIA_BLOCKS = ("image", "document")
# Blocks read as text (:func:`_text_of`): a text block; a search result (its source, title and text blocks); a document
# with a text source (its data) or a content source (its text blocks), with its title and context; an image or a PDF is
# "" (media, :func:`is_media`)
TEXT_BLOCKS = ("text", "search_result", *MEDIA_BLOCKS)
# What each other block bills as input, counted as compact JSON (a block type not listed is counted whole)
BLOCK_FIELDS = {"tool_use": ("name", "input"), "thinking": ("thinking", "signature"), "redacted_thinking": ("data",),
                "server_tool_use": ("name", "input")}
# Fields of a Messages body the upstream bills as input besides the messages and system: counted as compact JSON
# (:func:`ragtrim.serve.upstream.count_request_fields`), more than Anthropic's own rendering of them
MESSAGES_BILLED = ("tools", "tool_choice", "thinking")


def _blocks(content: Any, where: str) -> list[Any]:
    """``content`` as a list of blocks: a string is one text block; anything but a string or a list is a ValueError."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ValueError(f"{where} must be a string or a list of content blocks, got {content!r:.80}")
    return content


def _tool_result_text(content: Any, where: str) -> str:
    """The text of a ``tool_result`` block's content (a string, or text-bearing blocks; an image or PDF in it is media)."""
    if content is None:
        return ""
    return "\n".join(_text_of(b, f"{where}[{j}]") for j, b in enumerate(_blocks(content, where)))


def _labels(block: Mapping[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [str(block[k]) for k in keys if isinstance(block.get(k), str) and block[k]]


def _texts(blocks: Any, where: str) -> list[str] | None:
    """The texts of a list of text blocks (a string is one); None when one is not a text block."""
    if isinstance(blocks, str):
        return [blocks]
    if not isinstance(blocks, list):
        return None
    ok = all(isinstance(b, Mapping) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in blocks)
    return [str(b["text"]) for b in blocks] if ok else None


def document_text(block: Mapping[str, Any]) -> str | None:
    """The text a document block bills: its title, context and text source's ``data`` or content source's text
    blocks; None for a PDF (a base64, url or file source) or a content source holding an image (media).

    >>> document_text({"type": "document", "title": "T", "source": {"type": "text", "media_type": "text/plain", "data": "Hi"}})
    'T\\nHi'
    >>> document_text({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}})
    """
    source = block.get("source") if isinstance(block.get("source"), Mapping) else {}
    kind = source.get("type")
    texts = [source["data"]] if kind == "text" and isinstance(source.get("data"), str) else (
        _texts(source.get("content"), "source") if kind == "content" else None)
    return None if texts is None else "\n".join(_labels(block, ("title", "context")) + texts)


def is_media(block: Any) -> bool:
    """Whether ``block`` is billed by tokens the gateway cannot count: an image, or a document but a text one."""
    kind = block.get("type") if isinstance(block, Mapping) else None
    return kind == "image" or (kind == "document" and document_text(block) is None)


def _text_of(block: Any, where: str) -> str:
    """The text of a text-bearing block (:data:`TEXT_BLOCKS`), "" for a media block (counted nowhere: refused under a
    budget), else a ValueError."""
    kind = block.get("type") if isinstance(block, Mapping) else None
    if kind == "text" and isinstance(block.get("text"), str):
        return str(block["text"])
    if kind == "search_result" and (texts := _texts(block.get("content"), where)) is not None:
        return "\n".join(_labels(block, ("source", "title")) + texts)
    if kind == "document" and not is_media(block):
        return str(document_text(block))
    if kind in MEDIA_BLOCKS:
        return ""
    raise ValueError(f"{where} must be a content block with a type (text, image, search_result, document, ...; a "
                     f"search result's content text blocks), got {block!r:.80}")


def block_view(block: Any, where: str) -> tuple[str, Any]:
    """One content block as ``(text, billed fields)``: a text block's text; a tool result's content as text; a tool
    use, thinking or other block's billed fields (counted as JSON); a media block nothing (None)."""
    if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
        raise ValueError(f"{where} must be a content block with a type (text, image, tool_use, tool_result, ...), "
                         f"got {block!r:.80}")
    kind = block["type"]
    if kind in TEXT_BLOCKS:
        return _text_of(block, where), None
    if kind == "tool_result":
        return "", {"content": _tool_result_text(block.get("content"), f"{where}.content")}
    keys = BLOCK_FIELDS.get(kind)
    return "", {k: v for k, v in block.items() if (k in keys if keys else k != "type") and v is not None}


def item_view(item: Any, where: str) -> dict[str, Any]:
    """One message (or the system item) as a chat message: its text blocks' text, its other blocks' billed fields."""
    if not isinstance(item, Mapping) or item.get("role") not in ("user", "assistant", "system"):
        raise ValueError(f"{where} must be an object with role user or assistant and content, got {item!r:.80}")
    texts, blocks = [], []
    for j, block in enumerate(_blocks(item.get("content"), f"{where}.content")):
        text, billed = block_view(block, f"{where}.content[{j}]")
        texts.extend([text] if text else [])
        blocks.extend([billed] if billed else [])
    view: dict[str, Any] = {"role": item["role"], "content": "\n".join(texts)}
    return {**view, "blocks": blocks} if blocks else view


def messages_view(items: Sequence[Any]) -> list[dict[str, Any]]:
    """The prompt items as chat messages (:func:`item_view`), which :func:`ragtrim.serve.upstream.count_chat_tokens`
    counts; a ValueError naming ``messages[i]`` (``system`` for the system item) for one it cannot read."""
    offset = 1 if items and isinstance(items[0], Mapping) and items[0].get("role") == "system" else 0
    return [item_view(item, "system" if i < offset else f"messages[{i - offset}]") for i, item in enumerate(items)]


def media_block(items: Sequence[Any]) -> str:
    """Where the first media block (:func:`is_media`: an image, a PDF) is, tool results' content included ("" when none)."""
    for i, item in enumerate(items):
        content = item.get("content") if isinstance(item, Mapping) else None
        for j, block in enumerate(content if isinstance(content, list) else []):
            inner = block.get("content") if isinstance(block, Mapping) and block.get("type") == "tool_result" else None
            for b in [block, *(inner if isinstance(inner, list) else [])]:
                if is_media(b):
                    return f"messages[{i}].content[{j}] ({'an image' if b['type'] == 'image' else 'a PDF document'} block)"
    return ""


def split_system(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The upstream body's ``system`` and ``messages`` of the prompt items: the leading system items as ``system`` (the
    client's own string as it came when it is the only one; else text blocks, the client's first, then the documents').

    >>> split_system([{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Docs"},
    ...               {"role": "user", "content": "q"}])["system"]
    [{'type': 'text', 'text': 'Be brief.'}, {'type': 'text', 'text': 'Docs'}]
    """
    at = 0
    while at < len(items) and items[at].get("role") == "system":
        at += 1
    out: dict[str, Any] = {"messages": [dict(m) for m in items[at:]]}
    if at == 1 and isinstance(items[0].get("content"), str):
        out["system"] = items[0]["content"]
    elif at:
        out["system"] = [b for item in items[:at] for b in _blocks(item.get("content"), "system")]
    return out


def output_texts(content: Any) -> list[str]:
    """The texts a message's ``content`` bills as output: text, a tool use's name and input, thinking."""
    out: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, Mapping):
            continue
        out.extend(str(block[k]) for k in ("text", "name", "thinking") if isinstance(block.get(k), str))
        if block.get("input") is not None:
            out.append(compact_json(block["input"]))
    return out


def usage_counts(usage: Any) -> tuple[int | None, int | None, int, int]:
    """``(prompt, output, cache reads, cache writes)`` of an Anthropic ``usage``: the prompt is its ``input_tokens``
    (the uncached part) plus the cache writes (``cache_creation_input_tokens``) and reads (``cache_read_input_tokens``);
    None where the count is missing or not one (:func:`ragtrim.serve.upstream.usage_count`), a cache count 0."""
    usage = usage if isinstance(usage, Mapping) else {}
    plain, output = usage_count(usage.get("input_tokens")), usage_count(usage.get("output_tokens"))
    reads = usage_count(usage.get("cache_read_input_tokens")) or 0
    writes = usage_count(usage.get("cache_creation_input_tokens")) or 0
    return (None if plain is None else plain + reads + writes), output, reads, writes


def writes_1h(usage: Any, writes: int) -> int | None:
    """Of the ``writes`` an Anthropic ``usage`` reports, those to the 1-hour cache (``cache_creation``'s
    ``ephemeral_1h_input_tokens``; else the writes less its ``ephemeral_5m_input_tokens``), at most ``writes``; None when
    it reports no split (the request's own ``ttl`` then decides: :func:`ragtrim.serve.chat.split_writes`).

    >>> writes_1h({"cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 70}}, 100)
    70
    >>> writes_1h({"cache_creation": {"ephemeral_5m_input_tokens": 30}}, 100), writes_1h({}, 100)
    (70, None)
    """
    split = usage.get("cache_creation") if isinstance(usage, Mapping) else None
    if not isinstance(split, Mapping):
        return None
    long, short = usage_count(split.get("ephemeral_1h_input_tokens")), usage_count(split.get("ephemeral_5m_input_tokens"))
    if long is not None:
        return min(long, writes)
    return max(0, writes - short) if short is not None else None


def asks_1h_cache(body: Mapping[str, Any]) -> bool:
    """Whether a Messages ``body`` asks for a 1-hour prompt cache anywhere (``system``, a message's block, a tool, a tool
    result's block): a ``cache_control`` whose ``ttl`` is not the default "5m" (Anthropic bills its writes 2x the input
    price, the 5-minute cache's 1.25x). Walked without recursion (a body nests as deep as its JSON).

    >>> asks_1h_cache({"system": [{"type": "text", "text": "p", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]})
    True
    >>> asks_1h_cache({"messages": [{"role": "user", "content": [{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}]}]})
    False
    """
    todo: list[Any] = [body]
    while todo:
        node = todo.pop()
        if isinstance(node, Mapping):
            control = node.get("cache_control")
            if isinstance(control, Mapping) and control.get("ttl") not in (None, "5m"):
                return True
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return False


def messages_reading(data: Any) -> tuple[str, int | None, int | None, int]:
    """``(output text, prompt tokens, output tokens, cache reads)`` of a whole message (None: not reported)."""
    if not isinstance(data, Mapping):
        return "", None, None, 0
    p, c, reads, _ = usage_counts(data.get("usage"))
    return "\n".join(output_texts(data.get("content"))), p, c, reads if p is not None else 0


def cache_writes(data: Mapping[str, Any]) -> tuple[int, int | None]:
    """The prompt tokens a whole message wrote to the prompt cache, and of them those to the 1-hour cache (None: no split
    reported: :func:`writes_1h`); ``(0, 0)`` with no prompt count: the cache is not trusted."""
    usage = data.get("usage")
    p, _, _, writes = usage_counts(usage)
    return (writes, writes_1h(usage, writes)) if p is not None else (0, 0)


def event(kind: str, obj: Mapping[str, Any]) -> bytes:
    """One Messages stream event: its ``event:`` line and its JSON."""
    return f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **obj}, separators=(",", ":")).encode("utf-8") + b"\n\n"


def _block_events(i: int, block: Mapping[str, Any]) -> list[bytes]:
    """One content block as its start, one delta carrying it whole, and its stop."""
    kind = block.get("type")
    if kind == "text":
        start, delta = {**block, "text": ""}, {"type": "text_delta", "text": block.get("text", "")}
    elif kind in ("tool_use", "server_tool_use"):
        start, delta = {**block, "input": {}}, {"type": "input_json_delta", "partial_json": compact_json(block.get("input", {}))}
    elif kind == "thinking":
        start, delta = {**block, "thinking": "", "signature": ""}, {"type": "thinking_delta", "thinking": block.get("thinking", "")}
    else:
        return [event("content_block_start", {"index": i, "content_block": dict(block)}), event("content_block_stop", {"index": i})]
    out = [event("content_block_start", {"index": i, "content_block": start}), event("content_block_delta", {"index": i, "delta": delta})]
    if kind == "thinking" and block.get("signature"):
        out.append(event("content_block_delta", {"index": i, "delta": {"type": "signature_delta", "signature": block["signature"]}}))
    return out + [event("content_block_stop", {"index": i})]


def message_events(data: Mapping[str, Any]) -> list[bytes]:
    """A whole message as the stream that would have carried it: ``message_start`` (its input usage), each block,
    ``message_delta`` (its stop reason and output usage) and ``message_stop``.

    >>> [e.split(b"\\n", 1)[0] for e in message_events({"id": "m1", "content": [{"type": "text", "text": "hi"}],
    ...     "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 1}})][::2]
    [b'event: message_start', b'event: content_block_delta', b'event: message_delta']
    """
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    start = {**data, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 0}}
    out = [event("message_start", {"message": start})]
    for i, block in enumerate(b for b in data.get("content") or [] if isinstance(b, Mapping)):
        out += _block_events(i, block)
    delta = {"stop_reason": data.get("stop_reason"), "stop_sequence": data.get("stop_sequence")}
    out.append(event("message_delta", {"delta": delta, "usage": {"output_tokens": usage.get("output_tokens", 0)}}))
    return out + [event("message_stop", {})]


MESSAGES_WIRE = Wire("/v1/messages", messages_reading, message_events, writes=cache_writes)

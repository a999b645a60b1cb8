"""Parse and check request bodies: the same error texts as the command line, clear 4xx otherwise.

>>> from ragtrim.serve.config import Limits
>>> parse_chunks(["Paris is in France.", {"id": "b", "text": "Lyon."}], Limits())[0]
{'id': '0', 'text': 'Paris is in France.'}
>>> parse_budget_param("-3")
Traceback (most recent call last):
...
ragtrim.serve.errors.ApiError: budget must be a share of the full context in (0, 1] (e.g. 0.25) or a positive number of tokens (e.g. 300), got '-3'
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optimizer.budget import Budget, parse_budget
from optimizer.records import check_no_surrogate, lone_surrogate
from ragtrim.serve.config import Limits, check_budget_tokens
from ragtrim.serve.dialect import CAP_FIELDS, CHAT, Dialect
from ragtrim.serve.errors import CLIENT_LEFT, ApiError, bad_request, body_timeout, too_large
from ragtrim.serve.ledger import column_size
from ragtrim.serve.upstream import message_text

# ragtrim's own fields of a chat body: top level, or inside a ``ragtrim`` or ``extra_body`` object, which hold these
# alone (their content is never forwarded: any other key there is a 400, not a field silently dropped)
RAGTRIM_FIELDS = ("documents", "budget", "preset", "feature", "query", "score_direction")
OUR_KEYS = RAGTRIM_FIELDS + ("extra_body", "ragtrim")
_TAG_MAX = 200


@dataclass(frozen=True)
class Tags:
    """Who and what a request is for, as the ledger records it."""

    user: str = ""
    feature: str = ""


@dataclass(frozen=True)
class OptimizeRequest:
    query: str
    chunks: tuple[Mapping[str, Any], ...]
    budget: Budget | None
    preset: str
    tokenizer: str
    model: str | None
    tags: Tags
    score_direction: str = "auto"  # how to read the chunks' scores (optimizer.Pipeline's score_direction)


@dataclass(frozen=True)
class ChatRequest:
    model: str | None
    messages: tuple[Mapping[str, Any], ...]
    question: str
    documents: tuple[Mapping[str, Any], ...]
    budget: Budget | None
    preset: str
    max_tokens: int  # the client's largest cap, else limits.max_tokens_default (a model's own: chat.asked_completion)
    stream: bool
    tags: Tags
    passthrough: Mapping[str, Any] = field(default_factory=dict)
    include_usage: bool = False  # stream_options.include_usage: relay the final usage chunk to the client
    stream_options: Mapping[str, Any] = field(default_factory=dict)  # the client's, sent upstream with include_usage set
    caps: Mapping[str, int] = field(default_factory=dict)  # the client's own max_tokens / max_completion_tokens, as named
    query: str = ""  # the client's own question for the documents (``query``), else the last user message is
    score_direction: str = "auto"  # how to read the documents' scores (optimizer.Pipeline's score_direction)
    dialect: Dialect = CHAT  # the API it came in on (chat completions, or Responses: ragtrim.serve.responses)
    # a field that makes the upstream add context the gateway never sees (Responses' previous_response_id,
    # conversation, prompt): refused when the request holds room in a budget (chat.check_stored_context)
    stored_context: str = ""
    # a block the gateway cannot count (a Messages image or PDF): refused when the request holds room in a budget
    uncounted: str = ""
    # headers sent upstream besides the upstream's own (a Messages client's anthropic-beta)
    upstream_headers: tuple[tuple[str, str], ...] = ()
    # the request asks for a 1-hour prompt cache (a Messages cache_control with "ttl": "1h"): its worst case prices the
    # prompt at the model's 1-hour cache-write price (chat.price_of)
    cache_1h: bool = False

    @property
    def documents_question(self) -> str:
        """The question the documents are optimized for: ``query`` when the client gave one, else the last user message."""
        return self.query or self.question


@dataclass(frozen=True)
class BodyLimit:
    """The largest body a route reads: the ``[limits]`` key that sets it, and what its 413 advises besides raising it.

    >>> BodyLimit().size(Limits()), EMBEDDINGS_BODY.size(Limits()), RESPONSES_BODY.size(Limits())
    (1048576, 4194304, 8388608)
    """

    key: str = "max_body_bytes"
    advice: str = ""

    def size(self, limits: Limits) -> int:
        return int(getattr(limits, self.key))

    def refusal(self, limits: Limits, declared: int | None = None) -> ApiError:
        """The 413 for a body over this limit (of ``declared`` bytes, its Content-Length; None: a chunked body)."""
        fix = f": {self.advice}, or raise limits.{self.key}" if self.advice else ""
        size = f"is {declared} bytes; the limit is" if declared is not None else "is over the limit of"
        return too_large(f"request body {size} {self.size(limits)} bytes (limits.{self.key}){fix}")


CHAT_BODY = BodyLimit()
# /v1/embeddings: a batch is read up to its own limit, and its 413 says how the frameworks that batch send fewer inputs
EMBEDDINGS_BODY = BodyLimit("embeddings_body_bytes", "send fewer inputs per request (LangChain: "
                            "OpenAIEmbeddings(chunk_size=...); LlamaIndex: embed_batch_size=...)")
# /v1/responses: an agent's whole transcript, read up to its own limit; its 413 says how an agent sends less
RESPONSES_BODY = BodyLimit("responses_body_bytes", "send less input (an agent: drop or summarize older turns, or "
                           "truncate long tool outputs)")


async def read_json(request: Any, limits: Limits, body_limit: BodyLimit = CHAT_BODY) -> dict[str, Any]:
    """The request body as a JSON object, refusing more than ``body_limit`` (``limits.max_body_bytes`` by default)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > body_limit.size(limits):
        raise body_limit.refusal(limits, int(declared))
    data = await _read_body(request, limits, body_limit)
    if len(data) <= PARSE_ON_LOOP_BYTES:
        return _parsed(data)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_parsed, data, _each_object)


# The largest body parsed on the event loop (the chat routes' largest, about 5 ms); a larger one (an agent's transcript,
# an embeddings batch) is parsed on a thread, with a Python call per object so that the thread lets the loop run
# between two (one json.loads of 8 MiB holds the GIL about 40 ms: on a thread alone it would stall the loop as long)
PARSE_ON_LOOP_BYTES = 1_048_576


def _each_object(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _parsed(data: bytes, object_hook: Any = None) -> dict[str, Any]:
    """The body's bytes as a JSON object (:func:`read_json`), or a 400 saying why not."""
    try:
        body = json.loads(data or b"null", parse_constant=_not_json, parse_float=_finite, object_hook=object_hook)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # Python's decoder stops near 1,000 levels
        raise bad_request(f"request body is nested too deeply to read (over {MAX_JSON_DEPTH} levels of objects and "
                          f"lists; the limit is {MAX_JSON_DEPTH})") from None
    if not isinstance(body, dict):
        raise bad_request(f"request body must be a JSON object, got {type(body).__name__}")
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise bad_request(f"request body is nested {depth} levels deep (objects and lists); the limit is {MAX_JSON_DEPTH}: "
                          "no chat field needs more (flatten the schema or field that nests this deep)")
    return body


MIN_BODY_BYTES_PER_SECOND = 1024
"""The slowest upload read to its end: past ``body_seconds`` in all, a body must come at least this fast on average
(a client sending a byte every 29 s would otherwise hold its request open for as long as it likes)."""


def body_deadline(limits: Limits, declared: str | None, body_limit: BodyLimit = CHAT_BODY) -> float:
    """The longest a whole body may take: ``body_seconds``, or its length (``declared``, its Content-Length; else the
    route's largest, ``body_limit``) at :data:`MIN_BODY_BYTES_PER_SECOND`, whichever is longer.

    >>> limits = Limits()
    >>> body_deadline(limits, "2000"), body_deadline(limits, str(2**20)), body_deadline(limits, None)
    (30.0, 1024.0, 1024.0)
    >>> body_deadline(limits, str(2 * 2**20), EMBEDDINGS_BODY), body_deadline(limits, None, EMBEDDINGS_BODY)
    (2048.0, 4096.0)
    """
    most = body_limit.size(limits)
    size = int(declared) if declared is not None and declared.isdigit() else most
    return max(float(limits.body_seconds), min(size, most) / MIN_BODY_BYTES_PER_SECOND)


async def _read_body(request: Any, limits: Limits, body_limit: BodyLimit) -> bytes:
    """The request's body bytes, up to ``body_limit`` (a ``[limits]`` key), each piece within ``limits.body_seconds`` of the one
    before and all of it within :func:`body_deadline` (else a 408: :func:`ragtrim.serve.errors.body_timeout`, so a
    client that stalls or trickles mid-body holds nothing for long, while a slow but steady upload is read to its
    end); a 499 when the client hangs up while sending it.

    Starlette raises ``ClientDisconnect`` then: the client left (as a cancelled request does), which is
    neither the gateway's fault (a 500, an ``internal_error`` log) nor anyone's to answer.
    """
    import anyio
    from starlette.requests import ClientDisconnect

    data, most = bytearray(), body_limit.size(limits)
    pieces = request.stream().__aiter__()
    last = time.monotonic()  # when the last piece came
    try:
        with anyio.fail_after(body_deadline(limits, request.headers.get("content-length"), body_limit)):  # a trickle ends too
            while True:
                with anyio.fail_after(limits.body_seconds):  # the wait for the next piece: a stall, not a slow link
                    try:
                        piece = await pieces.__anext__()
                    except StopAsyncIteration:
                        break
                data.extend(piece)
                last = time.monotonic()
                if len(data) > most:
                    raise body_limit.refusal(limits)
    except TimeoutError:
        stalled = time.monotonic() - last >= limits.body_seconds
        raise body_timeout(limits.body_seconds, len(data), request.headers.get("content-length"), stalled=stalled) from None
    except ClientDisconnect:
        raise ApiError(CLIENT_LEFT, "client_closed_request", f"the client left while sending its request body "
                       f"({len(data)} bytes of {request.headers.get('content-length') or 'a chunked body'} read)") from None
    return bytes(data)


def _finite(text: str) -> float:
    """A JSON number as a float, refused when it overflows to infinity (``1e999``: valid JSON, but no float, and httpx
    cannot send it on)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large for a 64-bit float; send a smaller number")
    return value




def _not_json(name: str) -> Any:
    """Refuse ``NaN``, ``Infinity`` and ``-Infinity``, which Python's decoder takes but JSON has not: the body could not
    be sent on (httpx refuses to encode them), after the request had reserved room."""
    raise ValueError(f"{name} is not JSON (NaN, Infinity and -Infinity are not JSON numbers); send a number, or null")


# The deepest nesting of objects and lists a request body may have. A body Python's decoder reads (up to
# about 1,000 levels) could still overflow the stack where it is walked or encoded again (tokens counted
# on its JSON, the body sent upstream); 64 is far above any tool schema or response format in use.
MAX_JSON_DEPTH = 64


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests objects and lists (a scalar is 0), found without recursion.

    >>> json_depth({"a": [1, {"b": {}}]}), json_depth("x")
    (4, 0)
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (Mapping, list)))
    return deepest


def parse_budget_param(value: Any, param: str = "budget") -> Budget | None:
    """A request's context budget, or a 400 (a token budget above :data:`ragtrim.serve.config.MAX_BUDGET_TOKENS` too).

    >>> parse_budget_param(10**17)
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: budget of 100000000000000000 tokens is above the largest the gateway takes (1000000000000000); no context is that large: send 1.0 (the whole context) instead
    """
    try:
        budget = parse_budget(value)
        check_budget_tokens(budget, param)
    except (ValueError, TypeError) as exc:
        raise bad_request(str(exc), param) from None
    return budget


def parse_chunks(raw: Any, limits: Limits, param: str = "chunks") -> list[dict[str, Any]]:
    """Chunks as objects with ``id`` and ``text`` (a bare string gets its index as id), each field of the right type
    (:func:`_check_chunk_fields`) and no two with one id; else a 400 naming ``param[i]`` (and the field).

    >>> from ragtrim.serve.config import Limits
    >>> parse_chunks([{"id": "a", "text": "x", "title": 1889}], Limits(), "documents")
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: documents[0].title must be a string or null, got 1889
    """
    if not isinstance(raw, list):
        raise bad_request(f"{param} must be a list of chunks (objects with id and text, or strings), got {type(raw).__name__}", param)
    if len(raw) > limits.max_chunks:
        raise too_large(f"{param} has {len(raw)} chunks; the limit is {limits.max_chunks} (limits.max_chunks)", param)
    out = []
    for i, item in enumerate(raw):
        chunk = {"id": str(i), "text": item} if isinstance(item, str) else item
        if not isinstance(chunk, Mapping) or not isinstance(chunk.get("text"), str) or "id" not in chunk:
            raise bad_request(f"{param}[{i}] must be a string or an object with 'id' and 'text' (a string), got {item!r:.100}", param)
        if len(chunk["text"]) > limits.max_chunk_chars:
            raise too_large(f"{param}[{i}] text is {len(chunk['text'])} characters; the limit is {limits.max_chunk_chars} (limits.max_chunk_chars)", param)
        _check_chunk_fields(chunk, f"{param}[{i}]", param)
        out.append(dict(chunk, id=str(chunk["id"])))
    _check_unique_ids(out, raw, param)
    return out


def _check_chunk_fields(chunk: Mapping[str, Any], where: str, param: str) -> None:
    """A 400 naming ``where.field`` for an ``id`` that is neither a non-empty string nor an integer (null, ``1.5``,
    ``true`` read back as ``"None"``, ``"1.5"``, ``"True"``), a ``title`` that is not a string, a ``score`` that is not a finite number (or a
    string holding one, which the optimizer reads as that number), or ``metadata`` that is not an object; null is none.

    The optimizer refuses them too, but as a TypeError of its own: the gateway's fault, a 500 the OpenAI
    SDKs send again twice (each a failed ledger row).
    """
    title, score, metadata, cid = chunk.get("title"), chunk.get("score"), chunk.get("metadata"), chunk.get("id")
    if isinstance(cid, bool) or not isinstance(cid, (str, int)) or cid == "":
        raise bad_request(f"{where}.id must be a non-empty string or an integer (the id citations and the trace give back), "
                          f"got {cid!r:.80}", param)
    if title is not None and not isinstance(title, str):
        raise bad_request(f"{where}.title must be a string or null, got {title!r:.80}", param)
    if score is not None and not _finite_number(score):
        raise bad_request(f"{where}.score must be a finite number (the retriever's score) or null, got {score!r:.80}", param)
    if metadata is not None and not isinstance(metadata, Mapping):
        raise bad_request(f'{where}.metadata must be an object of key: value (e.g. {{"source": "wiki"}}) or null, got '
                          f"{metadata!r:.80}", param)


def _finite_number(value: Any) -> bool:
    """Whether ``value`` is a finite number (not a bool), or a string holding one.

    >>> [_finite_number(v) for v in (0.5, 3, "0.83", True, "high", "inf", [1])]
    [True, True, True, False, False, False, False]
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        return math.isfinite(float(value))
    except (ValueError, OverflowError):
        return False


def _check_unique_ids(chunks: list[dict[str, Any]], raw: list[Any], param: str) -> None:
    """A 400 naming the first two of ``chunks`` with one id (as strings: ``1`` and ``"1"`` are one id)."""
    seen: dict[str, int] = {}
    for i, chunk in enumerate(chunks):
        first = seen.setdefault(chunk["id"], i)
        if first == i:
            continue
        note = "; a document given as a string has its index as id" if isinstance(raw[first], str) or isinstance(raw[i], str) else ""
        raise bad_request(f"{param}[{first}] and {param}[{i}] have the same id {chunk['id']!r:.80}; ids must be unique within "
                          f"one request (e.g. append the position or the document offset to the id){note}", param)


def _name(value: Any, param: str, column: str, *, required: bool) -> str:
    """A model or preset name, at most as long as its ledger ``column`` holds (else a 400: no such name)."""
    text = _label(_text(value, param, 10**6, required=required), param)
    size = column_size(column)
    if size is not None and len(text) > size:
        raise bad_request(f"{param} is {len(text)} characters, {text[:40]!r}...; a {param} name has at most {size}", param)
    return text


def _text(value: Any, param: str, limit: int, *, required: bool, setting: str = "") -> str:
    """A string field; a 400 when it is missing or not a string, a 413 above ``limit`` (naming the ``setting`` that sets it)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise bad_request(f"{param} must be a non-empty string, got {value!r:.80}", param)
    if len(value) > limit:
        raise too_large(f"{param} is {len(value)} characters; the limit is {limit}{f' ({setting})' if setting else ''}", param)
    return value


# A character a tag or a name cannot hold: a control character (NUL, which PostgreSQL refuses in text,
# a newline, ESC, ...; C0, DEL and C1) or a lone UTF-16 surrogate (no UTF-8 form: no database, log or
# upstream can take it). Refused with a 400 before any database call, so the request's failed row
# (written without the value) is never lost.
_BAD_LABEL_CHAR = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")


def _label(text: str, param: str, what: str = "a user, feature, model or preset") -> str:
    r"""``text`` (a tag or a name), or a 400 naming ``param`` when it holds a :data:`_BAD_LABEL_CHAR` (``what`` it is).

    >>> _label("alice", "user")
    'alice'
    >>> _label("al\x00ice", "user")
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: user holds the control character '\x00' at character 2; a user, feature, model or preset is printable text: send it without control characters (NUL, newlines, ...)
    """
    bad = _BAD_LABEL_CHAR.search(text)
    if bad is None:
        return text
    if lone_surrogate(text) is not None:
        try:
            check_no_surrogate(text, param)
        except ValueError as exc:
            raise bad_request(str(exc), param) from None
    raise bad_request(f"{param} holds the control character {bad.group()!r} at character {bad.start()}; {what} is "
                      "printable text: send it without control characters (NUL, newlines, ...)", param)


def body_text(value: str, name: str, what: str = "a tenant, label or user/feature name") -> str:
    """A string field ``name`` of an admin route's body, or a 400 naming it when it holds a control character, as
    :func:`url_param` does for the URL: checked before any database call (PostgreSQL refuses NUL in text: a 500), and a
    newline in a key's label would fake lines in ``ragtrim keys list``."""
    return _label(value, name, what)


def url_param(request: Any, name: str, *, path: bool = False) -> str | None:
    """The query (or ``path``) parameter ``name`` of ``request`` (None when not given), or a 400 naming it when it holds
    a control character: checked before any database call (PostgreSQL refuses NUL in text: a 500)."""
    value = (request.path_params if path else request.query_params).get(name)
    return None if value is None else _label(value, name, "a tenant, id, day or grouping in a URL")


def _given(*sources: tuple[str, Any]) -> tuple[str, Any]:
    """The first ``(name, value)`` of ``sources`` whose value is not None (a null field is one not given, as OpenAI
    takes it), else the first source's name and None."""
    return next((s for s in sources if s[1] is not None), (sources[0][0], None))


def tags_of(body: Mapping[str, Any], extras: Mapping[str, Any], headers: Mapping[str, str]) -> Tags:
    """``user`` and ``feature`` from the body (or ``metadata``), else the X-Ragtrim-User/-Feature headers; a null
    one (openai-python sends ``"user": null`` for ``user=None``) is not given, so the next source applies. The user
    is ``user``, else ``safety_identifier`` (OpenAI's replacement of the deprecated ``user``; both are forwarded), else
    ``metadata.user``, else ``metadata.user_id`` (the field Anthropic's Messages API names its end user with).

    >>> tags_of({"user": None, "metadata": {"user": "alice"}}, {}, {"x-ragtrim-feature": "bot"})
    Tags(user='alice', feature='bot')
    >>> tags_of({"safety_identifier": "u-7f3a"}, {}, {}).user
    'u-7f3a'
    >>> tags_of({"metadata": {"user_id": "u-9"}}, {}, {}).user
    'u-9'
    """
    meta = body.get("metadata") if isinstance(body.get("metadata"), Mapping) else {}
    user = _given(("user", body.get("user")), ("safety_identifier", body.get("safety_identifier")), ("user", meta.get("user")),
                  ("metadata.user_id", meta.get("user_id")), ("user", headers.get("x-ragtrim-user")))
    feature = _given(("feature", extras.get("feature")), ("feature", meta.get("feature")),
                     ("feature", headers.get("x-ragtrim-feature")))
    return Tags(user=_label(_text(user[1], user[0], _TAG_MAX, required=False), user[0]),
                feature=_label(_text(feature[1], feature[0], _TAG_MAX, required=False), feature[0]))


def parse_optimize(body: Mapping[str, Any], headers: Mapping[str, str], limits: Limits, *, default_preset: str,
                   default_tokenizer: str, default_budget: Budget | None) -> OptimizeRequest:
    unknown = set(body) - {"query", "chunks", "budget", "preset", "tokenizer", "score_direction", "user", "feature", "model", "metadata"}
    if unknown:
        raise bad_request(f"unknown fields {sorted(unknown)}; allowed: query, chunks, budget, preset, tokenizer, score_direction, "
                          "user, feature, model")
    budget = parse_budget_param(body.get("budget")) if body.get("budget") is not None else default_budget
    return OptimizeRequest(
        query=_text(body.get("query"), "query", limits.max_query_chars, required=True, setting="limits.max_query_chars"),
        chunks=tuple(parse_chunks(body.get("chunks"), limits)),
        budget=budget,
        preset=_name(body.get("preset", default_preset), "preset", "preset", required=True),
        tokenizer=_text(body.get("tokenizer", default_tokenizer), "tokenizer", 300, required=True),
        model=_name(body.get("model"), "model", "model_asked", required=False) or None,
        tags=tags_of(body, body, headers),
        score_direction=parse_score_direction(body.get("score_direction")),
    )


def parse_score_direction(value: Any) -> str:
    """How to read the chunks' ``score`` (null or left out: ``"auto"``), else a 400 naming the value and the choices.

    >>> parse_score_direction(None), parse_score_direction("similarity")
    ('auto', 'similarity')
    >>> parse_score_direction("cosine")
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: score_direction must be one of 'auto', 'similarity', 'distance', got 'cosine'; 'similarity' when a higher score is better (cosine, dot product), 'distance' when lower is (L2), 'auto' to read scores rising along the given order as distances
    """
    from optimizer.score_reading import check_score_direction

    try:
        return check_score_direction("auto" if value is None else value)
    except ValueError as exc:
        raise bad_request(str(exc)[:600], "score_direction") from None


def _extras(body: Mapping[str, Any]) -> dict[str, Any]:
    """ragtrim's own fields (:data:`RAGTRIM_FIELDS`): top level, or inside ``extra_body`` / ``ragtrim`` objects.

    Those objects hold ragtrim's fields alone (never forwarded), so any other key in one (``chunks``,
    ``docs``: a misspelt ``documents``) is a 400 listing the fields, not the documents silently dropped.

    >>> _extras({"ragtrim": {"docs": []}})
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: ragtrim has unknown field 'docs'; it holds ragtrim's own fields: documents, budget, preset, feature, query, score_direction (any other field goes at the top level of the body)
    """
    out: dict[str, Any] = {}
    for name in ("extra_body", "ragtrim"):
        holder = body.get(name)
        if holder is not None and not isinstance(holder, Mapping):
            raise bad_request(f"{name} must be an object (of {', '.join(RAGTRIM_FIELDS)}), got {holder!r:.80}", name)
        unknown = [k for k in holder or {} if k not in RAGTRIM_FIELDS]
        if unknown:
            raise bad_request(f"{name} has unknown field {unknown[0]!r:.80}; it holds ragtrim's own fields: "
                              f"{', '.join(RAGTRIM_FIELDS)} (any other field goes at the top level of the body)", name)
        out.update(holder or {})
    out.update({k: body[k] for k in RAGTRIM_FIELDS if k in body})
    return out


# A character a question cannot hold: a control character but tab, line feed and carriage return (NUL, which
# PostgreSQL refuses, ESC, ...; C0, DEL and C1). A question may run over several lines.
_BAD_QUESTION_CHAR = re.compile("[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]")


def parse_query(value: Any, limits: Limits) -> str:
    r"""The client's ``query`` (the question to optimize the documents for; null or left out: ""), or a 400 naming it.

    >>> from ragtrim.serve.config import Limits
    >>> parse_query("Who was Einstein's wife?\n", Limits()), parse_query(None, Limits())
    ("Who was Einstein's wife?\n", '')
    >>> parse_query("who\x1bis", Limits())
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: query holds the control character '\x1b' at character 3; a question is text: send it without control characters (NUL, ESC, ...; tabs and line breaks are fine)
    """
    if value is None:
        return ""
    text = _text(value, "query", limits.max_query_chars, required=True, setting="limits.max_query_chars")
    bad = _BAD_QUESTION_CHAR.search(text)
    if bad is not None:
        raise bad_request(f"query holds the control character {bad.group()!r} at character {bad.start()}; a question is text: "
                          "send it without control characters (NUL, ESC, ...; tabs and line breaks are fine)", "query")
    return text


FORWARDED_STREAM_OPTIONS = ("include_obfuscation",)
"""The client's ``stream_options`` sent upstream beside ``include_usage`` (which the gateway always asks for): no
other, since one such as vLLM's ``continuous_usage_stats`` makes a cut stream report a partial count, which a
reasoning model's stream would then be charged instead of its reservation."""


def parse_stream_options(value: Any) -> bool:
    """``include_usage`` from a ``stream_options`` value (an object, or null / left out).

    >>> parse_stream_options({"include_usage": True}), parse_stream_options(None)
    (True, False)
    >>> parse_stream_options(True)
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: stream_options must be an object such as {"include_usage": true} (or left out), got True
    """
    if value is None:
        return False
    if not isinstance(value, Mapping):
        raise bad_request(f'stream_options must be an object such as {{"include_usage": true}} (or left out), got {value!r:.80}',
                          "stream_options")
    include = value.get("include_usage")
    if include is not None and not isinstance(include, bool):
        raise bad_request(f"stream_options.include_usage must be true or false, got {include!r:.80}", "stream_options")
    return bool(include)


def parse_caps(body: Mapping[str, Any], limits: Limits, names: tuple[str, ...] = CAP_FIELDS) -> dict[str, int]:
    """The completion caps the client gave (``names``: a chat's :data:`CAP_FIELDS`; null is not given), each an integer from 1 to
    ``limits.max_tokens_limit``, else a 400 naming the field.

    >>> from ragtrim.serve.config import Limits
    >>> parse_caps({"max_tokens": None, "max_completion_tokens": 7}, Limits())
    {'max_completion_tokens': 7}
    >>> parse_caps({"max_completion_tokens": "7"}, Limits())
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: max_completion_tokens must be an integer from 1 to 4096 (limits.max_tokens_limit), got '7'
    """
    caps = {}
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limits.max_tokens_limit:
            raise bad_request(f"{name} must be an integer from 1 to {limits.max_tokens_limit} (limits.max_tokens_limit), "
                              f"got {value!r:.80}", name)
        caps[name] = value
    return caps


def upstream_caps(req: ChatRequest, bound: int, *, forwarded: bool, held: bool) -> dict[str, int]:
    """The completion-cap fields of the body sent upstream; ``bound`` is the completion the hold reserved.

    * ``forwarded`` False (the in-process model, which reads the body itself and knows only
      ``max_tokens``): ``max_tokens`` = ``bound``.
    * The client gave caps: each under its own name, as given (at most ``bound``, which is their
      largest unless the upstream allows less).
    * It gave none: nothing, unless the request ``held`` room in a budget. A hold reserves the
      prompt and ``bound`` completion tokens; an uncapped upstream could write more, charged
      above what was held and past the budget's limit. Then the route's ``added_cap`` (:data:`ragtrim.serve.dialect.ADDED_CAP`) = ``bound``:
      ``max_completion_tokens`` bounds the completion tokens OpenAI bills, reasoning included
      (its reasoning models refuse ``max_tokens``). A server that knows only ``max_tokens``
      ignores it: a client of one sends ``max_tokens`` itself. (A Responses request: its
      ``max_output_tokens``, the route's ``added_cap``.)

    >>> from ragtrim.serve.config import Limits
    >>> req = parse_chat({"messages": [{"role": "user", "content": "q"}]}, {}, Limits(), default_preset="p", default_budget=None)
    >>> upstream_caps(req, 256, forwarded=True, held=False), upstream_caps(req, 256, forwarded=True, held=True)
    ({}, {'max_completion_tokens': 256})
    """
    if not forwarded:
        return {"max_tokens": bound}
    if req.caps:
        return {name: min(value, bound) for name, value in req.caps.items()}
    return {req.dialect.added_cap: bound} if held else {}


def check_messages(messages: Any, limits: Limits, param: str = "messages", *, per_message: bool = True) -> str:
    """Check the chat's messages (``param``: the field they came in, as chat messages); returns the last user
    message's text (the question; "" when there is none, which :func:`_question` refuses for a chat with documents).
    ``per_message``: at most ``max_messages``, each at most 4 x ``max_query_chars`` (False: the route's body limit
    alone bounds them, as an agent's transcript on ``/v1/responses``)."""
    if not isinstance(messages, list) or not messages:
        raise bad_request(f"{param} must be a non-empty list of {{role, content}} objects", param)
    if per_message and len(messages) > limits.max_messages:
        raise too_large(f"{param} has {len(messages)} entries; the limit is {limits.max_messages} (limits.max_messages)", param)
    question = ""
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise bad_request(f"{param}[{i}] must be an object with a role and content, got {m!r:.80}", param)
        try:
            text = message_text(m)
        except ValueError as exc:
            raise bad_request(f"{param}[{i}]: {exc}", param) from None
        if per_message and len(text) > limits.max_query_chars * 4:
            raise too_large(f"{param}[{i}] is {len(text)} characters; the limit is {limits.max_query_chars * 4} "
                            f"(4 x limits.max_query_chars: raise max_query_chars under [limits] for longer messages)", param)
        if m["role"] == "user":
            question = text
    return question


def _question(asked: str, messages: list[Mapping[str, Any]], documents: list[Any], query: str, param: str = "messages") -> str:
    """The chat's question: the last user message's text (``asked``). Documents need one, or a ``query``, to be
    optimized for (else a 400); a chat without documents needs none (a system prompt alone, "Write a haiku about
    Paris.", is a chat): its question is then its last message with text, which only the in-process model reads.
    """
    if asked.strip():
        return asked
    if query:
        return query
    if documents and not query:
        raise bad_request(f"{param} needs a user message with text when documents are given (the question they are "
                          "optimized for), or send query with that question", param)
    return next((text for text in map(message_text, reversed(messages)) if text.strip()), "")


def check_n_and_stream(body: Mapping[str, Any]) -> bool:
    """``n`` must be 1 and ``stream`` true or false (null: not given); returns ``stream``."""
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise bad_request(f"n must be 1 (one completion per request), got {n!r:.80}", "n")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise bad_request(f"stream must be true or false, got {stream!r:.80}", "stream")
    return bool(stream)


# Fields parse_chat reads and the upstream body gets from elsewhere: the messages, model, caps and
# stream settings (set per attempt), and ragtrim's own fields (never forwarded).
_NOT_PASSED = OUR_KEYS + ("model", "messages", "stream", "stream_options") + CAP_FIELDS


def check_surrogates(body: Mapping[str, Any], *, aside: tuple[str, ...] = ("documents",)) -> None:
    r"""A 400 naming the field (``messages[0].content``, ``tools[0].function.description``, ...) of the first lone UTF-16
    surrogate in ``body``, the fields ``aside`` left out (chat's documents: the optimizer names the chunk): such text has
    no UTF-8 form, so it can be neither counted nor sent upstream. Walked without recursion.

    >>> check_surrogates({"messages": [{"role": "user", "content": "hi \ud800"}]})
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: messages[0].content has a lone UTF-16 surrogate '\ud800' at character 3 (half of a pair, e.g. an emoji split by a UTF-16 chunker), which no tokenizer can read; repair it first, e.g. text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace') (rejoins split pairs, turns a lone half into U+FFFD)
    """
    stack: list[tuple[str, str, Any]] = [(k, k, v) for k, v in reversed(list(body.items())) if k not in aside]
    while stack:
        top, path, value = stack.pop()
        if isinstance(value, str):
            texts = [value]
        elif isinstance(value, Mapping):
            texts = [k for k in value if isinstance(k, str)]
            stack.extend((top, f"{path}.{k}", v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):  # only what may hold text: a batch of token ids is not walked id by id
            texts = []
            held = [(i, v) for i, v in enumerate(value) if isinstance(v, (str, Mapping, list))]
            stack.extend((top, f"{path}[{i}]", v) for i, v in reversed(held))
        else:
            continue
        for text in texts:
            try:
                check_no_surrogate(text, path if text is value else f"a key of {path}")
            except ValueError as exc:
                raise bad_request(str(exc), top) from None


# Fields whose use the upstream bills above the model's text price, which is all the gateway knows and
# charges: refused, with the way out, rather than charged too little. ``service_tier`` "flex" bills less
# than the standard price (charged the standard one: a conservative overcharge), "auto" the project's
# own tier (standard unless its owner chose otherwise).
SERVICE_TIERS = ("auto", "default", "flex")


def check_priced_value(body: Mapping[str, Any], name: str, allowed: tuple[str, ...], why: str = "") -> None:
    """A 400 naming the field ``name`` when ``body`` gives it a value but ``allowed`` (the upstream bills it above the
    model's standard price: ``why`` says how), and the values to send instead.

    >>> check_priced_value({"speed": "fast"}, "speed", ("standard",), " (fast mode's premium price)")
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: speed 'fast' is billed above the model's standard price (fast mode's premium price), which is what this gateway charges; send speed "standard" (or leave it out)
    """
    value = body.get(name)
    if value is not None and value not in allowed:
        options = ", ".join(f'"{a}"' for a in allowed[:-1]) + (" or " if len(allowed) > 1 else "") + f'"{allowed[-1]}"'
        raise bad_request(f"{name} {value!r:.40} is billed above the model's standard price{why}, which is what this gateway "
                          f"charges; send {name} {options} (or leave it out)", name)


def check_priced_fields(body: Mapping[str, Any]) -> None:
    """A 400 naming the field and the fix for a field that makes the upstream bill above the text price the gateway charges.

    >>> check_priced_fields({"service_tier": "flex", "modalities": ["text"]})
    >>> check_priced_fields({"service_tier": "priority"})
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: service_tier 'priority' is billed above the model's standard price, which is what this gateway charges; send service_tier "auto", "default" or "flex" (or leave it out)
    """
    check_priced_value(body, "service_tier", SERVICE_TIERS)
    modalities = body.get("modalities")
    if modalities is not None and (not isinstance(modalities, list) or any(m != "text" for m in modalities)):
        raise bad_request(f"modalities {modalities!r:.80}: audio (or any output but text) is billed at audio prices this "
                          'gateway does not charge; send modalities ["text"] (or leave it out) and no audio', "modalities")
    for name, what in (("audio", "audio output is billed at audio prices this gateway does not charge; leave audio out "
                                 '(and modalities at ["text"])'),
                       ("web_search_options", "web search is billed per call, above the model's token price this gateway "
                                              "charges; leave web_search_options out, or use a model without search")):
        if body.get(name) is not None:
            raise bad_request(f"{name}: {what}", name)
    messages = body.get("messages")
    for i, m in enumerate(messages if isinstance(messages, list) else []):
        if isinstance(m, Mapping) and m.get("audio") is not None:
            raise bad_request(f"messages[{i}].audio: an earlier audio answer is billed as audio input, at prices this gateway "
                              "does not charge; send that turn's text (its transcript) as the content instead", "messages")


def parse_chat(body: Mapping[str, Any], headers: Mapping[str, str], limits: Limits, *, default_preset: str,
               default_budget: Budget | None) -> ChatRequest:
    """A chat body checked. A field OpenAI takes as null (``max_tokens``, ``max_completion_tokens``, ``n``,
    ``stream``, ``stream_options``) is null as if not given; every other field the gateway does not read
    (``metadata``, ``store``, ``temperature``, ...) is forwarded as it came (``passthrough``), but for a
    lone surrogate anywhere (:func:`check_surrogates`) and the fields billed above the text price
    (:func:`check_priced_fields`), refused with a 400."""
    check_surrogates(body)
    check_priced_fields(body)
    asked = check_messages(body.get("messages"), limits)
    stream = check_n_and_stream(body)
    include_usage = parse_stream_options(body.get("stream_options"))
    stream_options = {k: v for k, v in (body.get("stream_options") or {}).items() if k in FORWARDED_STREAM_OPTIONS}
    return checked_request(body, headers, limits, asked=asked, items=body["messages"], view=body["messages"], stream=stream,
                           not_passed=_NOT_PASSED, default_preset=default_preset, default_budget=default_budget,
                           include_usage=include_usage, stream_options=stream_options)


def checked_request(body: Mapping[str, Any], headers: Mapping[str, str], limits: Limits, *, asked: str,
                    items: Any, view: Any, stream: bool, not_passed: tuple[str, ...], default_preset: str,
                    default_budget: Budget | None, dialect: Dialect = CHAT, **more: Any) -> ChatRequest:
    """The request of a checked body, for either route: ragtrim's own fields (:func:`_extras`: documents, budget,
    query, preset, score direction), the caps (``dialect.caps``), the model and the tags read and checked; the
    prompt's ``items`` as they came (``view``: them as chat messages, whose last text is the question when no user
    message has one: :func:`_question`); every field but ``not_passed`` forwarded. ``more`` are
    :class:`ChatRequest`'s other fields."""
    extras = _extras(body)
    caps = parse_caps(body, limits, dialect.caps)
    documents = parse_chunks(extras["documents"], limits, "documents") if extras.get("documents") is not None else []
    budget = parse_budget_param(extras.get("budget")) if extras.get("budget") is not None else default_budget
    query = parse_query(extras.get("query"), limits)
    question = _question(asked, view, documents, query, dialect.items_key)
    score_direction = parse_score_direction(extras.get("score_direction"))
    passthrough = {k: v for k, v in body.items() if k not in not_passed and not (k == "n" and v is None)}
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request(f"model must be a string, got {model!r:.80}", "model")
    if model is not None:
        _name(model, "model", "model_asked", required=False)
    return ChatRequest(
        model=model, messages=tuple(items), question=question[: limits.max_query_chars], documents=tuple(documents),
        budget=budget, preset=_name(extras.get("preset", default_preset), "preset", "preset", required=True),
        max_tokens=max(caps.values(), default=limits.max_tokens_default), stream=stream, tags=tags_of(body, extras, headers),
        passthrough=passthrough, caps=caps, query=query, score_direction=score_direction, dialect=dialect, **more,
    )


def check_preset(name: str) -> None:
    """A 400 with the library's own message (the CLI prints the same) for an unknown preset."""
    from optimizer.presets import preset_config

    try:
        preset_config(name)
    except ValueError as exc:
        raise bad_request(str(exc), "preset") from None

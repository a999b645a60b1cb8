"""``POST /v1/embeddings``: OpenAI-compatible, every input token accounted to the tenant, within its budgets.

A RAG app's embedding spend (its retriever's query embeddings, its indexing jobs) goes through the gateway like its
chat spend: the body is checked (:mod:`ragtrim.serve.embedding_inputs`), its input tokens counted exactly with the
model's tokenizer (token ids by their number), that count (with the model's ``count_margin``) reserved in every budget
the tenant, user and feature count against (:func:`ragtrim.serve.plan.plan_and_reserve`), the upstream's
``/embeddings`` called (:data:`EMBEDDINGS_WIRE`, on the upstream's pool as chat is), and the hold settled with its ``usage.prompt_tokens`` (trusted as chat trusts a count, at most the reservation:
:func:`charged_prompt`), one ledger row ``endpoint="embeddings"`` per request.

A request no budget can hold is refused with chat's 429s (:func:`ragtrim.serve.endings.refuse`): an embedding cannot
be degraded (there are no documents to trim), and a cheaper model is no fallback (its vectors live in another space and
would not match an index built with this one). A failed upstream call ends as a chat call does (released, or charged
its reservation when the upstream may have done the work: :func:`ragtrim.serve.endings.failed`); a client that leaves
before the call is sent is not sent (a 499, released).

The model must say it embeds (``kind = "embedding"`` under ``[models.NAME]``); a chat model here is a 400 naming the
embedding models. One on the ``local`` upstream (the packaged all-MiniLM-L6-v2) is embedded in-process, the same way
accounted: :mod:`ragtrim.serve.local_embeddings`. The answer is the upstream's body as it came (``encoding_format`` ``float`` or ``base64``), with the
headers ``X-Ragtrim-Request-Id``, ``X-Ragtrim-Action``, ``X-Ragtrim-Model``, ``X-Ragtrim-Cost-Micro`` and
``X-Ragtrim-Upstream-Ms``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ragtrim.serve.auth import require
from ragtrim.serve.bodies import EMBEDDINGS_BODY, read_json
from ragtrim.serve.chat import BYTES_PER_TOKEN, trusted_count
from ragtrim.serve.client_left import LeftBeforeSent, LeftMidway
from ragtrim.serve.config import ModelConfig
from ragtrim.serve.embedding_inputs import EmbeddingRequest, count_inputs, input_bytes, parse_embeddings
from ragtrim.serve.endings import abandon, failed, finish_rejected, left_unsent, refuse, unit_name
from ragtrim.serve.errors import CLIENT_LEFT, ApiError, bad_request, client_gone
from ragtrim.serve.hold import Hold
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.local_embeddings import check_local_request, embed_locally, embeds_locally, local_tokenizer
from ragtrim.serve.local_embeddings import input_limit as local_input_limit
from ragtrim.serve.plan import Attempt, Planned, Refused, plan_and_reserve
from ragtrim.serve.quota import Shortfall
from ragtrim.serve.upstream import Wire, usage_of

ENDPOINT = "embeddings"


def embedding_reading(data: Mapping[str, Any]) -> tuple[str, int | None, int | None, int]:
    """``(text, prompt tokens, completion tokens, cached tokens)`` of an embeddings answer: its ``usage.prompt_tokens``
    alone (no text, no completion, no cache).

    >>> embedding_reading({"data": [], "usage": {"prompt_tokens": 7, "total_tokens": 7}})
    ('', 7, None, 0)
    """
    return "", usage_of(data)[0], None, 0


_KEY = b'"usage"'
_TAIL = 4096  # bytes searched for the usage member at the body's end
_BEFORE_KEY = re.compile(rb"[{,]\s*\Z")  # what comes before a member's key
_COLON = re.compile(r"\s*:\s*")


def usage_at_end(raw: bytes) -> dict[str, Any] | None:
    r"""``{"usage": ...}`` of a JSON object whose last member is ``usage`` (as OpenAI and its look-alikes write an
    embeddings answer), read from the body's last bytes alone; None when it does not end so (it is then parsed whole).
    A ``"usage"`` key found this way, after ``{`` or ``,`` and with nothing but the closing ``}`` after its value, is the
    top-level one (inside a string its quote would be escaped; inside a nested object more would follow).

    >>> usage_at_end(b'{"data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": 3, "total_tokens": 3}}\n')
    {'usage': {'prompt_tokens': 3, 'total_tokens': 3}}
    >>> usage_at_end(b'{"data": [{"usage": {"prompt_tokens": 9}}]}'), usage_at_end(b'{"usage": {"prompt_tokens": 3}, "data": []}')
    (None, None)
    """
    if not re.match(rb"\s*\{", raw[:64]):
        return None
    at = raw.rfind(_KEY, max(0, len(raw) - _TAIL))
    if at < 0 or not _BEFORE_KEY.search(raw[max(0, at - 64):at]):
        return None
    try:
        tail = raw[at + len(_KEY):].decode("utf-8")
        colon = _COLON.match(tail)
        if colon is None:
            return None
        value, end = json.JSONDecoder().raw_decode(tail, colon.end())
    except ValueError:  # UnicodeDecodeError too
        return None
    return {"usage": value} if tail[end:].strip() == "}" else None


# ``POST /embeddings`` on an OpenAI-compatible upstream (:meth:`ragtrim.serve.upstream.OpenAIUpstream.complete`):
# never streamed, read whole, relayed as it came (its usage read from its end, not the whole body parsed)
EMBEDDINGS_WIRE = Wire("/embeddings", embedding_reading, peek=usage_at_end)


async def embeddings_endpoint(request: Request) -> Response:
    """Check, count, reserve, call, settle: see the module docstring."""
    service = request.app.state.service
    start = time.perf_counter()
    principal = await require(request, tenant=True)
    base = LedgerEntry(id=uuid.uuid4().hex, ts=service.clock(), tenant_id=str(principal.tenant_id), endpoint=ENDPOINT,
                       action="failed", key_id=principal.key_id)
    try:
        req = parse_embeddings(await read_json(request, service.config.limits, EMBEDDINGS_BODY), request.headers)
        base = replace(base, user=req.tags.user, feature=req.tags.feature, model_asked=req.model)
        attempt = await _attempt(service, req)
        budgets = await run_in_threadpool(service.quota.budgets_for, base.tenant_id, user=req.tags.user, feature=req.tags.feature)
        outcome = await plan_and_reserve(
            quota=service.quota, run=run_in_threadpool, budgets=budgets, request_id=base.id, chain=[attempt.model],
            asked_budget=None, floor=service.config.degrade.floor, build=lambda m, b: _ready(attempt),
            pending=lambda a, action, steps: row(base, a, "pending"))
    except ApiError as exc:
        await finish_rejected(service, base, exc, start)
        raise
    except BaseException as exc:  # a bug or a cancellation: the request still gets its row
        await abandon(request, Hold(service, base, start), exc, when="before it was answered")
        raise
    if isinstance(outcome, Refused):
        raise await refuse(service, row(base, attempt, "refused"), outcome.shortfall, start,
                           lambda s, retry: spent_message(s, retry, attempt.prompt_tokens))
    assert isinstance(outcome, Planned)
    hold = Hold(service, row(base, attempt, "ok"), start)
    try:
        if await request.is_disconnected():  # gone while it was counted and reserved: not sent upstream, its hold released
            gone = client_gone("before it was sent upstream (it was not sent)", base.id)
            await hold.release(gone.status, gone.message)
            raise gone
        return await _answer(service, req, attempt, hold, request.is_disconnected)
    except BaseException as exc:  # whatever ends the request, the hold ends in a settle or a release
        await abandon(request, hold, exc)
        raise


async def _attempt(service: Any, req: EmbeddingRequest) -> Attempt:
    """The request's model (an embedding model, else a 400 naming those served) and its inputs' tokens, as the attempt
    the plan reserves: that prompt and no completion."""
    try:
        model: ModelConfig = service.model(req.model, kind="embedding")
    except ValueError as exc:
        raise bad_request(str(exc), "model") from None
    tokenizer, limit = model.tokenizer, model.input_limit
    if embeds_locally(service, model):  # the packaged MiniLM: counted with its own tokenizer, up to what it reads
        check_local_request(req, model)
        tokenizer, limit = await run_in_threadpool(local_tokenizer), local_input_limit(model)
    counts = await run_in_threadpool(count_inputs, req.inputs, tokenizer, limit=limit, model=model.name)
    return Attempt(model=model, price=service.prices[model.name], budget_tokens=None, result=None, messages=(),
                   prompt_tokens=sum(counts), max_tokens=0)


async def _ready(attempt: Attempt) -> Attempt:
    """The plan's ``build``: an embedding request has one attempt, whatever the budget (nothing to trim)."""
    return attempt


def row(base: LedgerEntry, attempt: Attempt, action: str) -> LedgerEntry:
    """The request's ledger row as planned: its model, counted input tokens, price and reservation."""
    need = attempt.need()
    return replace(base, action=action, model_used=attempt.model.name, prompt_tokens=attempt.prompt_tokens,
                   price_ref=attempt.price.ref, reserved_tokens=need.tokens, reserved_micro=need.micro)


def charged_prompt(reported: int | None, attempt: Attempt, req: EmbeddingRequest) -> tuple[int, str]:
    """The input tokens to charge and the row's note: the upstream's ``reported`` count as chat trusts one
    (:func:`ragtrim.serve.chat.trusted_count`), at most the reservation. An embedding has no output: the upstream read
    the inputs the gateway counted (token ids exactly, texts with the model's tokenizer, within its ``count_margin``), so
    the reservation is the worst case, and a count above it is an upstream's error, not the tenant's spend."""
    bound = attempt.need().tokens
    if reported is not None and reported > bound:
        return bound, (f"upstream reported prompt_tokens {reported}, above the {bound} reserved for the "
                       f"{attempt.prompt_tokens} input tokens counted (an embedding reads its inputs alone): charged {bound}")
    size = input_bytes(req.inputs, BYTES_PER_TOKEN) if reported is not None and reported < attempt.prompt_tokens else 0
    return trusted_count("prompt_tokens", reported, attempt.prompt_tokens, size, bound)


def spent_message(s: Shortfall, retry: int, tokens: int) -> str:
    """Why a spent budget refuses an embeddings request of ``tokens`` input tokens.

    >>> from ragtrim.serve.budgets import Budget
    >>> b = Budget(id="b1", tenant_id="acme", scope="tenant", scope_value="", unit="tokens", period="day", limit=100)
    >>> print(spent_message(Shortfall(budget=b, needed=120, reset_at=0.0, spent=90), 3600, 120))
    quota exceeded: budget acme tokens/day (limit 100 tokens) cannot pay for this request (120 tokens for its 120 input tokens; an embedding request is never trimmed or sent to another model, whose vectors would not match this one's); it resets in 3600 s
    """
    unit = unit_name(s)
    return (f"quota exceeded: budget {s.budget.label()} (limit {s.budget.limit} {unit}) cannot pay for this request "
            f"({s.needed} {unit} for its {tokens} input tokens; an embedding request is never trimmed or sent to another "
            f"model, whose vectors would not match this one's); it resets in {retry} s")


async def _answer(service: Any, req: EmbeddingRequest, attempt: Attempt, hold: Hold,
                  left: Callable[[], Awaitable[bool]]) -> Response:
    """Call the upstream's ``/embeddings`` for a reserved request; settle with its usage and relay its body unchanged."""
    model = attempt.model
    body = {**req.forwarded, "model": model.upstream_model or model.name}
    try:
        if embeds_locally(service, model):
            reply = await embed_locally(service.upstream(model), model, req, attempt.prompt_tokens, left)
        else:
            reply = await service.upstream(model).complete(body, "", "", on_sent=hold.mark_sent, client_left=left,
                                                           wire=EMBEDDINGS_WIRE)
    except LeftBeforeSent as exc:
        raise await left_unsent(hold, exc) from None
    except LeftMidway as exc:
        raise await _left_midway(req, attempt, hold, exc) from None
    if reply.error is not None:
        raise await failed(hold, reply.error, reply.refusal, reply.started, reply.upstream_ms)
    reported = reply.prompt_tokens
    p, note = charged_prompt(reported, attempt, req)
    cost = attempt.price.cost_micro(prompt_tokens=p, completion_tokens=0)
    final = replace(hold.entry, prompt_tokens=p, completion_tokens=0, usage_source="upstream" if p == reported else "counted",
                    cost_micro=cost, status=200, latency_ms=(time.perf_counter() - hold.start) * 1000,
                    upstream_ms=reply.upstream_ms, error=note)
    await hold.settle(final, p, 0, cost)
    headers = {"X-Ragtrim-Request-Id": final.id, "X-Ragtrim-Action": "ok", "X-Ragtrim-Model": model.name,
               "X-Ragtrim-Cost-Micro": str(cost), "X-Ragtrim-Upstream-Ms": f"{reply.upstream_ms:.3f}"}
    return Response(reply.raw, media_type="application/json", headers=headers)


async def _left_midway(req: EmbeddingRequest, attempt: Attempt, hold: Hold, exc: LeftMidway) -> ApiError:
    """Settle a locally embedded request whose client left part-way (``exc``): charged the tokens of the inputs embedded
    before it left (counted as the plan counted them), its row a 499 saying so; the 499 (no client reads it)."""
    model = attempt.model
    done = req.inputs[:exc.done]
    p = sum(await run_in_threadpool(count_inputs, done, await run_in_threadpool(local_tokenizer),
                                    limit=local_input_limit(model), model=model.name))
    cost = attempt.price.cost_micro(prompt_tokens=p, completion_tokens=0)
    message = f"the client disconnected {exc.when}: charged the {p} input tokens embedded"
    final = replace(hold.entry, prompt_tokens=p, completion_tokens=0, usage_source="counted", cost_micro=cost,
                    status=CLIENT_LEFT, latency_ms=(time.perf_counter() - hold.start) * 1000, error=message)
    await hold.settle(final, p, 0, cost)
    return ApiError(CLIENT_LEFT, "client_closed_request", f"{message} (request id {hold.entry.id})")

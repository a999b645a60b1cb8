"""``POST /v1/messages/count_tokens``: Anthropic's token count of a Messages request, as the gateway would send it.

Claude Code and the anthropic SDK (``client.messages.count_tokens``) ask it before a call. The body is a Messages body
without ``max_tokens`` (checked as :func:`ragtrim.serve.messages.parse_messages` checks one), ragtrim's own fields
(``documents``, ``budget``, ...) included: the documents are optimized as ``POST /v1/messages`` would optimize them at
the asked budget and appended to ``system``, so the count is of what that call would send (and be billed for). The
model is resolved as there (the default when none is named; an unknown or embedding model is a 400).

On a model of an ``anthropic`` upstream the count is the upstream's own (``POST {base_url}/v1/messages/count_tokens``,
its answer relayed); the upstream's refusal of the request (a 4xx but 429) is passed on in Anthropic's shape. When
the upstream fails (unreachable, a 429, a 5xx, an answer without ``input_tokens``) or the model is not on an anthropic
upstream, the answer is the gateway's own estimate: the count the budget check reserves for the prompt (tiktoken,
the tool prompt with tools, with the model's ``count_margin``: :meth:`ragtrim.serve.plan.Attempt.need`). Header
``X-Ragtrim-Token-Count`` says which (``upstream``, or ``estimated: <why>``); ``X-Ragtrim-Estimate-Tokens`` is the
estimate in both cases.

Anthropic does not bill a count, and neither does the gateway: nothing is reserved or charged, and no budget refuses
it. It is authenticated like ``/v1/messages`` (a tenant key, as ``x-api-key`` or a Bearer token) and recorded like
``/v1/optimize``: a ledger row per request (``endpoint`` ``count_tokens``, no tokens or cost; the count and its
source in ``detail``), and documents take one of the tenant's optimizer slots while they are optimized (``[limits]
tenant_optimizer_runs``: a 429 beyond them). A count the gateway's shutdown cuts off gets a failed row and a JSON 503
that says to send it again.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from optimizer.budget import budget_label
from ragtrim.serve.auth import require
from ragtrim.serve.bodies import CHAT_BODY, ChatRequest, check_preset, read_json
from ragtrim.serve.chat import _build
from ragtrim.serve.client_left import LeftBeforeSent
from ragtrim.serve.cutoff import SHUTDOWN_CUT, leave_answer, shutdown_error
from ragtrim.serve.endings import finish_rejected, upstream_failure
from ragtrim.serve.errors import ApiError, bad_request, client_gone
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.logs import log_request
from ragtrim.serve.messages import CAP, MESSAGES, parse_messages
from ragtrim.serve.plan import Attempt, with_margin
from ragtrim.serve.upstream import UpstreamError, Wire, usage_count

ENDPOINT = "count_tokens"
SOURCE_HEADER = "X-Ragtrim-Token-Count"


def count_reading(data: Mapping[str, Any]) -> tuple[str, int | None, int | None, int]:
    """``(text, input tokens, output tokens, cached)`` of a count's answer: its ``input_tokens`` alone (None: not one)."""
    return "", usage_count(data.get("input_tokens")), None, 0


COUNT_WIRE = Wire("/v1/messages/count_tokens", count_reading)
"""Anthropic's ``POST /v1/messages/count_tokens`` (with the client's ``anthropic-beta`` header, as ``/v1/messages``)."""


def parse_count(body: Mapping[str, Any], headers: Mapping[str, str], config: Any) -> ChatRequest:
    """A count body checked as a Messages body is (:func:`ragtrim.serve.messages.parse_messages`); it has no
    ``max_tokens`` (nothing is generated), so none is asked or passed on."""
    if not isinstance(body, Mapping):
        raise bad_request(f"the body must be a JSON object, got {type(body).__name__}")
    return parse_messages({**body, CAP: 1}, headers, config)


def counted_model(service: Any, req: ChatRequest) -> Any:
    """The model a count is for, as ``POST /v1/messages`` resolves it; a 400 naming the served ones otherwise."""
    try:
        return service.model(req.model, route=MESSAGES.route)
    except ValueError as exc:
        raise bad_request(str(exc), "model") from None


def header_text(text: str) -> str:
    """``text`` fit for a header value: printable ASCII on one line, at most 200 characters."""
    return re.sub(r"[^\x20-\x7e]+", " ", text).strip()[:200]


async def upstream_count(service: Any, req: ChatRequest, attempt: Attempt, rid: str,
                         left: Callable[[], Awaitable[bool]]) -> tuple[Mapping[str, Any] | None, str]:
    """The upstream's answer to the count (None when there is none) and why there is none: the model is not on an
    anthropic upstream, or the call failed. The upstream's refusal of the request itself (a 4xx but 429) is raised."""
    upstream = service.upstream(attempt.model)
    if getattr(upstream, "kind", "") != "anthropic":
        return None, f"model {attempt.model.name!r} is not on an anthropic upstream"
    body = {**req.passthrough, "model": attempt.model.upstream_model or attempt.model.name,
            **req.dialect.items_body(attempt.messages)}
    wire = replace(COUNT_WIRE, headers=req.upstream_headers)
    reply = await upstream.complete(body, req.question, attempt.context, client_left=left, wire=wire)
    refusal = reply.refusal
    if refusal is not None and refusal.status < 500 and refusal.status != 429:
        raise upstream_failure(str(reply.error), refusal, rid)
    if reply.error is not None:
        return None, reply.error
    if reply.prompt_tokens is None or reply.body is None:
        return None, "the upstream's answer has no input_tokens"
    return reply.body, ""


async def count_tokens_endpoint(request: Request) -> JSONResponse:
    """``POST /v1/messages/count_tokens`` (see the module docstring)."""
    service = request.app.state.service
    start = time.perf_counter()
    principal = await require(request, tenant=True)
    rid = uuid.uuid4().hex
    entry = LedgerEntry(id=rid, ts=service.clock(), tenant_id=str(principal.tenant_id), endpoint=ENDPOINT, action="failed",
                        key_id=principal.key_id)
    try:
        body = await read_json(request, service.config.limits, MESSAGES.body_limit or CHAT_BODY)
        req = await run_in_threadpool(parse_count, body, request.headers, service.config)
        entry = replace(entry, user=req.tags.user, feature=req.tags.feature, model_asked=req.model or service.config.default_model,
                        preset=req.preset, budget_asked=budget_label(req.budget))
        model = counted_model(service, req)
        check_preset(req.preset)
        attempt = await _attempt(service, req, model, rid, entry.tenant_id, request.is_disconnected)
        t_up = time.perf_counter()
        answer, why = await upstream_count(service, req, attempt, rid, request.is_disconnected)
        up_ms = (time.perf_counter() - t_up) * 1000
    except ApiError as exc:
        await finish_rejected(service, entry, exc, start)
        raise
    except LeftBeforeSent as exc:
        gone = client_gone(f"{exc.when}, and its count was not asked", rid)
        await finish_rejected(service, entry, gone, start)
        raise gone from None
    except anyio.get_cancelled_exc_class():  # the gateway's shutdown cut it off (uvicorn cancels for nothing else)
        await _cut_off(request, service, entry, start)
        raise
    except Exception as exc:  # a bug: still one ledger row, then the generic 500
        await finish_rejected(service, entry, ApiError(500, "server_error", f"internal error: {type(exc).__name__}: {exc}"[:500]),
                              start)
        raise
    estimate = with_margin(attempt.prompt_tokens, model.count_margin)
    out = dict(answer) if answer is not None else {"input_tokens": estimate}
    source = "upstream" if answer is not None else f"estimated: {why}"
    ms = (time.perf_counter() - start) * 1000
    final = replace(entry, action="ok", status=200, model_used=model.name, latency_ms=ms, upstream_ms=up_ms,
                    budget_used=attempt.budget_tokens, detail=_detail(out["input_tokens"], source, estimate, attempt))
    await run_in_threadpool(service.quota.record, final)
    log_request(service.log, final)
    service.metrics.observe_request(endpoint=ENDPOINT, action="ok", tenant=entry.tenant_id, status=200, latency_s=ms / 1000,
                                    overhead_s=max(0.0, ms - up_ms) / 1000)
    return JSONResponse(out, headers=_headers(rid, attempt, source, estimate))


async def _cut_off(request: Request, service: Any, entry: LedgerEntry, start: float) -> None:
    """A count the gateway's shutdown cut off (its ``--graceful-timeout`` ran out): its row (failed, 503, written
    shielded from the cancellation) and the JSON 503 :class:`ragtrim.serve.cutoff.CutOffAnswer` sends in Anthropic's
    shape instead of uvicorn's plain-text 500 (a count is never charged: ``x-should-retry: true``)."""
    error = shutdown_error(entry.id, "nothing was charged: send it again", retry=True)
    leave_answer(request.scope, error)  # first: the row's write may be cut
    with anyio.CancelScope(shield=True):
        await finish_rejected(service, replace(entry, detail=SHUTDOWN_CUT), error, start)


async def _attempt(service: Any, req: ChatRequest, model: Any, rid: str, tenant: str,
                   left: Callable[[], Awaitable[bool]]) -> Attempt:
    """What ``POST /v1/messages`` would send ``model`` at the asked budget (its documents optimized in one of the
    tenant's optimizer slots), and its prompt counted as the budget check counts it."""
    try:
        with service.tenant_runs.slot(tenant, rid) if req.documents else nullcontext():
            return await _build(service, req, model, req.budget, {}, rid, tenant, left)
    except ValueError as exc:  # the request's own content (e.g. a part the gateway cannot count)
        raise bad_request(str(exc)) from None
    except UpstreamError as exc:
        raise ApiError(502, "upstream_error", str(exc)) from None


def _detail(tokens: Any, source: str, estimate: int, attempt: Attempt) -> str:
    """The row's ``detail``: the count answered and its source, the estimate, and the documents' tokens sent of full."""
    docs = f"; documents {attempt.tokens_sent} of {attempt.tokens_full} tokens" if attempt.result is not None else ""
    return f"input_tokens {tokens} ({source}); estimate {estimate}{docs}"


def _headers(rid: str, attempt: Attempt, source: str, estimate: int) -> dict[str, str]:
    headers = {"X-Ragtrim-Request-Id": rid, "X-Ragtrim-Model": attempt.model.name, SOURCE_HEADER: header_text(source),
               "X-Ragtrim-Estimate-Tokens": str(estimate)}
    if attempt.result is not None:
        headers.update({"X-Ragtrim-Tokens-Full": str(attempt.tokens_full), "X-Ragtrim-Tokens-Sent": str(attempt.tokens_sent),
                        "X-Ragtrim-Budget-Used": str(attempt.budget_tokens)})
    return headers

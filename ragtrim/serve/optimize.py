"""``POST /v1/optimize``: what ``ragtrim optimize --format json`` prints, plus tokens and $ saved.

Body: ``query``, ``chunks`` (objects with ``id`` and ``text``, or strings), optional
``budget``, ``preset``, ``tokenizer``, ``score_direction`` (how to read the chunks' ``score``:
``auto``, ``similarity`` or ``distance``, as ``Pipeline``'s), ``model`` (whose input price values
the savings; a gateway with embedding models only and no ``model`` asked answers unpriced: ``saved_micro`` 0 and
``price`` null), ``user``, ``feature``. No model is called, so no quota is reserved; the request is still
written to the ledger (cost 0, savings at the model's dated price), also when it fails. A run
past ``[limits] optimize_seconds`` is stopped and answered with a 503 ``optimizer_timeout``
(:func:`ragtrim.serve.errors.optimizer_timeout`), its row ``failed`` with the limit in ``detail``. A request the
gateway's shutdown cuts off is answered a JSON 503 ``gateway_shutdown`` with ``x-should-retry: true`` (nothing was
charged), its row ``failed``, status 503 (:func:`_cut_off`).

``tokenizer`` is one the gateway knows, never a path or a download: the shipped tiktoken
encodings, a configured model's tokenizer, or a configured model's name (its tokenizer).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from optimizer.budget import budget_label
from optimizer.deadline import OptimizerTimeout
from optimizer.tokenizer import TIKTOKEN_ENCODINGS
from ragtrim.serve.auth import require
from ragtrim.serve.cutoff import SHUTDOWN_CUT, leave_answer, shutdown_error
from ragtrim.serve.errors import ApiError, bad_request, client_gone, optimizer_timeout, pipeline_error
from ragtrim.serve.ledger import LedgerEntry, record_rejected
from ragtrim.serve.logs import log_request
from ragtrim.serve.pricing import format_usd
from ragtrim.serve.client_left import ClientLeft
from ragtrim.serve.bodies import check_preset, parse_optimize, read_json


def allowed_tokenizers(config: Any) -> dict[str, str]:
    """What a request may name as ``tokenizer``, each with the tokenizer it stands for.

    >>> from ragtrim.serve.config import ServeConfig
    >>> sorted(allowed_tokenizers(ServeConfig()).items())
    [('cl100k_base', 'cl100k_base'), ('gemma-3-270m', 'cl100k_base'), ('o200k_base', 'o200k_base')]
    """
    names = {name: name for name in (*TIKTOKEN_ENCODINGS, config.tokenizer)}
    names.update({m.tokenizer: m.tokenizer for m in config.models.values()})
    names.update({m.name: m.tokenizer for m in config.models.values()})
    return names


def resolve_tokenizer(config: Any, asked: str) -> str:
    """The tokenizer ``asked`` stands for, or a 400 listing the allowed values."""
    allowed = allowed_tokenizers(config)
    if asked not in allowed:
        raise bad_request(f"tokenizer {asked[:100]!r} is not one this gateway serves; use one of: {', '.join(sorted(allowed))} "
                          "(a model name means that model's tokenizer)", "tokenizer")
    return allowed[asked]


async def optimize_endpoint(request: Request) -> JSONResponse:
    service = request.app.state.service
    start = time.perf_counter()
    principal = await require(request, tenant=True)
    entry = LedgerEntry(id=uuid.uuid4().hex, ts=service.clock(), tenant_id=str(principal.tenant_id), endpoint="optimize",
                        action="failed", key_id=principal.key_id)
    try:
        body = await read_json(request, service.config.limits)  # at most max_body_bytes, within body_seconds
        # one of the tenant's optimizer slots ([limits] tenant_optimizer_runs), taken once the body is in (a client that
        # stalls mid-body holds none) and before its fields are parsed (a refusal costs no parse); a client gone before
        # the run has its thread gets no run, one gone during it has its run stopped (Service.optimize): a 499 row
        with service.tenant_runs.slot(entry.tenant_id, entry.id):
            req = parse_optimize(body, request.headers, service.config.limits, default_preset=service.config.preset,
                                 default_tokenizer=service.config.tokenizer, default_budget=service.config.budget)
            entry = replace(entry, user=req.tags.user, feature=req.tags.feature, preset=req.preset,
                            budget_asked=budget_label(req.budget), model_asked=req.model or "")
            check_preset(req.preset)
            price = _price(service, req.model)
            tokenizer = resolve_tokenizer(service.config, req.tokenizer)
            result = await _run(service, request, req, tokenizer, entry.id, entry.tenant_id)
        if await request.is_disconnected():
            raise client_gone("while its chunks were optimized", entry.id)
    except ApiError as exc:
        await _record_failed(service, entry, exc.status, exc.message, start, detail=exc.detail)
        raise
    except anyio.get_cancelled_exc_class():  # the gateway's shutdown cut it off (uvicorn cancels for nothing else)
        await _cut_off(request, service, entry, start)
        raise
    except Exception as exc:  # a bug: still one ledger row, then the generic 500
        await _record_failed(service, entry, 500, f"internal error: {type(exc).__name__}: {exc}"[:500], start)
        raise
    saved_tokens = max(0, result.tokens_full - result.tokens)
    saved = price.saved_micro(tokens_not_sent=saved_tokens) if price is not None else 0
    ms = (time.perf_counter() - start) * 1000
    final = replace(entry, action="ok", status=200, model_used=price.model if price else "", tokens_full=result.tokens_full,
                    tokens_sent=result.tokens, saved_micro=saved, price_ref=price.ref if price else "", budget_used=result.budget,
                    latency_ms=ms)
    await run_in_threadpool(service.quota.record, final)
    log_request(service.log, final)
    service.metrics.observe_usage(tenant=entry.tenant_id, model="", tokens_sent=result.tokens, tokens_saved=saved_tokens,
                                  prompt=0, completion=0, cost_micro=0, saved_micro=saved, upstream_s=None)
    service.metrics.observe_request(endpoint="optimize", action="ok", tenant=entry.tenant_id, status=200, latency_s=ms / 1000,
                                    overhead_s=ms / 1000)
    out = result.to_dict()
    out.update(tokens_saved=saved_tokens, saved_micro=saved, saved_usd=format_usd(saved)[1:], price=price.ref if price else None,
               request_id=entry.id)
    return JSONResponse(out, headers={"X-Ragtrim-Request-Id": entry.id, "X-Ragtrim-Tokens-Full": str(result.tokens_full),
                                      "X-Ragtrim-Tokens-Sent": str(result.tokens)})


def _price(service: Any, asked: str | None) -> Any:
    """The price that values the savings: the model ``asked`` (a chat model, else a 400 naming those /v1/optimize
    serves), or the default model's; None when none was asked and the gateway has no chat model (embedding models
    only): the run is then answered unpriced (``saved_micro`` 0, ``price`` null; the row's model and price empty)."""
    if asked is None and not any(m.kind == "chat" for m in service.config.models.values()):
        return None
    try:
        return service.prices[service.model(asked, route="/v1/optimize").name]
    except ValueError as exc:
        raise bad_request(str(exc), "model") from None


async def _run(service: Any, request: Request, req: Any, tokenizer: str, request_id: str, tenant: str) -> Any:
    """The optimizer's result for ``req`` (run in ``tenant``'s turn for a thread), or the ApiError that answers its failure."""
    try:
        return await service.optimize(req.preset, tokenizer, req.query, req.chunks, tenant=tenant, budget=req.budget,
                                      score_direction=req.score_direction, client_left=request.is_disconnected)
    except ClientLeft as exc:  # gone before its run had a thread (not run), or during it (stopped at its next check)
        raise client_gone(exc.when, request_id) from None
    except OptimizerTimeout as exc:  # past [limits] optimize_seconds: a 503 naming the limit and the ways out
        raise optimizer_timeout(exc, request_id, req.preset) from None
    except Exception as exc:  # the input's fault (400) or the optimizer's (500), with the stage that failed
        raise pipeline_error(exc, request_id) from None


async def _cut_off(request: Request, service: Any, entry: LedgerEntry, start: float) -> None:
    """A request the gateway's shutdown cut off (its ``--graceful-timeout`` ran out) before it was answered: its row
    (failed, 503, written shielded from the cancellation) and the JSON 503 :class:`ragtrim.serve.cutoff.CutOffAnswer`
    sends its client instead of uvicorn's plain-text 500 (nothing is charged for an optimize: ``x-should-retry: true``)."""
    error = shutdown_error(entry.id, "nothing was charged: send it again", retry=True)
    leave_answer(request.scope, error)  # first: a run stopped late finds the shutdown further on, and its row write may be cut
    with anyio.CancelScope(shield=True):
        await _record_failed(service, entry, error.status, f"{SHUTDOWN_CUT} (before it was answered)", start)


async def _record_failed(service: Any, entry: LedgerEntry, status: int, error: str, start: float, detail: str = "") -> None:
    ms = (time.perf_counter() - start) * 1000
    failed = replace(entry, status=status, error=error, latency_ms=ms, detail=detail or entry.detail)
    await record_rejected(service, failed)
    log_request(service.log, failed)
    service.metrics.observe_request(endpoint="optimize", action="failed", tenant=entry.tenant_id, status=status,
                                    latency_s=ms / 1000, overhead_s=ms / 1000)

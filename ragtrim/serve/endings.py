"""How a request that calls an upstream ends when it ends without its answer: each way, its ledger row and the client's error.

Shared by the routes that reserve a worst case and call an upstream (``/v1/chat/completions``, ``/v1/responses``,
``/v1/embeddings``):

* rejected before anything was held (a 400, a 413, ...): a ``failed`` row (:func:`finish_rejected`);
* refused by a budget: a ``refused`` row and a 429 (:func:`refuse`), ``insufficient_quota`` with ``Retry-After`` at the
  period's end when the budget is spent, ``rate_limit_exceeded`` to retry in :data:`IN_FLIGHT_RETRY_SECONDS` when
  only requests in flight hold its room;
* its upstream call failed: released, or charged its reservation when the upstream may have done the work (:func:`failed`);
* its client left while the call waited: released, a 499 (:func:`left_unsent`);
* anything else (a bug, the gateway's shutdown): :func:`abandon`.

Metrics and log lines carry the row's ``endpoint``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ragtrim.serve.client_left import LeftBeforeSent
from ragtrim.serve.cutoff import SHUTDOWN_CUT, leave_answer, shutdown_error
from ragtrim.serve.errors import ApiError, client_gone
from ragtrim.serve.hold import Hold, estimate_note, with_note
from ragtrim.serve.ledger import UNCHARGED, LedgerEntry, record_rejected
from ragtrim.serve.logs import log_request
from ragtrim.serve.quota import Shortfall


async def abandon(request: Request, hold: Hold, exc: BaseException, **when: str) -> None:
    """End ``hold`` for ``exc`` (:meth:`ragtrim.serve.hold.Hold.abandon`).

    A cancellation here is the server's shutdown cutting the request off before its response
    started: uvicorn cancels a request for nothing else (a stream's client leaving cancels it
    later, in :func:`ragtrim.serve.chat._relay`). Its row gets the 503 its client is answered, and that answer
    (:func:`shutdown_failure`) is left for :class:`ragtrim.serve.cutoff.CutOffAnswer` to send.
    """
    if not isinstance(exc, anyio.get_cancelled_exc_class()):
        await hold.abandon(exc, **when)
        return
    ended_before = hold.done  # the cancellation came as its settle or release was being written
    await hold.abandon(exc, status=503, what=SHUTDOWN_CUT, **when)
    leave_answer(request.scope, shutdown_failure(hold, estimated=hold.charged and not ended_before))


def shutdown_failure(hold: Hold, *, estimated: bool) -> ApiError:
    """The client's 503 for a request the gateway's shutdown cut off: what it was charged (its reservation as an
    estimate when ``estimated``), and :data:`NO_RETRY` when anything was (each resend would be charged again, as for
    a 502 charged its reservation: :func:`failed`), else ``x-should-retry: true`` (nothing was charged)."""
    if not hold.charged:
        return shutdown_error(hold.entry.id, "nothing was charged: send it again", retry=True)
    if estimated:
        return shutdown_error(hold.entry.id, estimate_note(hold.entry), retry=False)
    return shutdown_error(hold.entry.id, "it was answered and charged (its ledger row has the usage), but the answer was "
                          "never sent", retry=False)


async def left_unsent(hold: Hold, exc: LeftBeforeSent) -> ApiError:
    """Release ``hold`` of a request whose client left while its upstream call waited (it was never sent); its 499.
    A hold an earlier attempt marked sent is no such request: never released unpaid (:meth:`Hold.fail`, started)."""
    if hold.sent:
        gone = client_gone(f"{exc.when}, after an earlier attempt had been sent upstream", hold.entry.id)
        await hold.fail(gone.status, gone.message, started=True)
        return gone
    gone = client_gone(f"{exc.when}, before it was sent upstream (it was not sent)", hold.entry.id)
    await hold.release(gone.status, gone.message)
    return gone


async def finish_rejected(service: Any, base: LedgerEntry, exc: ApiError, start: float) -> None:
    """Write the ``failed`` row of a request answered ``exc`` before anything was held, and count it."""
    ms = (time.perf_counter() - start) * 1000
    entry = replace(base, action="failed", status=exc.status, error=exc.message, latency_ms=ms, detail=exc.detail or base.detail)
    await record_rejected(service, entry)
    log_request(service.log, entry)
    service.metrics.observe_request(endpoint=base.endpoint, action="failed", tenant=base.tenant_id, status=exc.status,
                                    latency_s=ms / 1000, overhead_s=ms / 1000)


# Retry-After of a refusal only requests in flight cause (the budget's spend leaves room): they end in
# seconds, as their upstream calls do, not at the end of the period.
IN_FLIGHT_RETRY_SECONDS = 2


async def refuse(service: Any, entry: LedgerEntry, s: Shortfall, start: float,
                 spent_message: Callable[[Shortfall, int], str]) -> ApiError:
    """The 429 for a request no budget can take (``s``: the budget that blocks it), its ``refused`` row (``entry``,
    uncharged) written.

    A budget whose spend leaves room, held by requests in flight (:attr:`Shortfall.held_only`), is a
    ``rate_limit_exceeded`` to retry in :data:`IN_FLIGHT_RETRY_SECONDS` (:func:`busy_message`); a spent one is OpenAI's
    ``insufficient_quota``, with ``Retry-After`` at the end of its period, saying ``spent_message(s, seconds to reset)``,
    and ``x-should-retry: false``: the OpenAI and Anthropic SDKs otherwise retry a 429 (twice, after at most 60 s
    whatever ``Retry-After`` says), each retry one more refused row; the in-flight 429 is left for them to retry.
    """
    if s.held_only:
        retry = IN_FLIGHT_RETRY_SECONDS
        message = busy_message(s, await run_in_threadpool(service.quota.holds, s.budget), retry)
    else:
        retry = max(1, math.ceil(s.reset_at - service.clock()))
        message = spent_message(s, retry)
    ms = (time.perf_counter() - start) * 1000
    entry = replace(entry, action="refused", status=429, error=message, latency_ms=ms, reserved_micro=0, reserved_tokens=0,
                    **UNCHARGED)
    await record_rejected(service, entry)
    log_request(service.log, entry)
    service.metrics.observe_request(endpoint=entry.endpoint, action="refused", tenant=entry.tenant_id, status=429,
                                    latency_s=ms / 1000, overhead_s=ms / 1000)
    headers = {"Retry-After": str(retry), "X-Ragtrim-Request-Id": entry.id, "X-Ragtrim-Action": "refused"}
    if s.held_only:
        return ApiError(429, "rate_limit_error", message, code="rate_limit_exceeded", headers=headers)
    return ApiError(429, "insufficient_quota", message, code="insufficient_quota", headers={**headers, NO_RETRY[0]: NO_RETRY[1]})


def unit_name(s: Shortfall) -> str:
    """The unit of the budget that blocks a request, as its messages say it."""
    return "tokens" if s.budget.unit == "tokens" else "micro-dollars"


def busy_message(s: Shortfall, holds: int, retry: int) -> str:
    """Why a budget whose spend leaves room refuses the request: requests in flight hold that room."""
    unit = unit_name(s)
    return (f"budget {s.budget.label()} (limit {s.budget.limit} {unit}) has {s.budget.limit - s.spent} {unit} left after "
            f"what it spent ({s.spent}), enough for this request ({s.needed} {unit}), but {holds} request(s) in flight "
            f"hold that room until they finish; retry in {retry} s")


async def failed(hold: Hold, error: str, refusal: Any, started: bool, upstream_ms: float) -> ApiError:
    """End ``hold`` for a failed upstream call; the client's error (:func:`upstream_failure`).

    When the upstream may have done the work (``started``, and no refusal of the request) the hold is
    charged its reservation, the error says so (:func:`ragtrim.serve.hold.estimate_note`) and carries
    :data:`NO_RETRY`; else released.
    """
    started = started and refusal is None
    failure = upstream_failure(with_note(error, estimate_note(hold.entry)) if started else error, refusal, hold.entry.id)
    if started:  # each call sent again would be charged again: the OpenAI SDKs read this header before retrying a 502
        failure.headers[NO_RETRY[0]] = NO_RETRY[1]
    await hold.fail(failure.status, error, started=started, upstream_ms=upstream_ms)
    return failure


NO_RETRY = ("x-should-retry", "false")
"""The header on a 502 charged its reservation: the OpenAI SDKs do not resend a request that has it (each resend
would be charged its reservation again); a client that wants to try again does so on purpose."""


def upstream_failure(error: str, refusal: Any, request_id: str) -> ApiError:
    """The client's error for a failed upstream call: the upstream's refusal of the request as it came (its 4xx,
    error and Retry-After; :func:`ragtrim.serve.upstream.refusal_of`), else a 502 saying ``error``."""
    headers = {"X-Ragtrim-Request-Id": request_id}
    if refusal is None:
        return ApiError(502, "upstream_error", error, headers=headers)
    return ApiError(refusal.status, refusal.type, refusal.message, param=refusal.param, code=refusal.code,
                    headers={**refusal.headers, **headers})

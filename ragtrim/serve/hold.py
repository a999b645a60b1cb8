"""A chat request's reservation, from the moment it is held to its one settle or release.

Once :func:`ragtrim.serve.plan.plan_and_reserve` has reserved a request's worst case, every way
the request can end must free that room: a settle (charge the real usage, ledger row ``ok`` or
``degraded``) or a release (charge nothing, ledger row ``failed``). Otherwise the row stays
``pending`` and the live worker's lease keeper renews its hold for as long as the worker runs.
:class:`Hold` does exactly one of the two, whichever is called first; :meth:`Hold.abandon` is the
catch-all for an exception or a cancellation that ends the request before either.

A request that fails once the upstream has it in full (:meth:`Hold.mark_sent`) with its usage
unknown (no answer, an unreadable one, the request cancelled or a bug meanwhile) is not released:
the upstream may have done and billed the work, so it is settled at its reservation, the most it
can have cost when the completion cap was sent (:meth:`Hold.charge_reserved`). Its row is a settled
one (``ok`` or ``degraded``, as planned: the rows that count as charged) with the failure's
``status`` (the client's 502, 503, 499 or 500) and ``usage_source`` ``estimated``, its ``error`` saying
so. A request that never reached the upstream is released.

A settle or release that fails on a database error is not lost: it is deferred
(:meth:`ragtrim.serve.quota.QuotaStore.defer`) with the real usage, and the lease keeper runs it
again. A failed settle is never turned into a release (the upstream was paid for), and it does
not raise: the client gets the answer it paid for, so it has no reason to send (and pay for) the
call again. A failed release does not raise either, so a 502 stays a 502.

Ledger rule (the usage totals, the budget counters and ``/metrics`` agree on it): tokens and
money count only what was charged. A ``failed`` row keeps what it had reserved
(``reserved_tokens``, ``reserved_micro``) and its error, with every token and money column 0.
So ``/metrics`` counts a settle's usage once it is recorded (a deferred one when the lease keeper
records it; one given up never: its expiry charges, and counts, the estimate), and a settle or
release that replaced an estimate an expiry had charged and counted only by the difference
(:meth:`ragtrim.serve.metrics.Metrics.observe_settled`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from ragtrim.serve.ledger import UNCHARGED, LedgerEntry, estimated_tokens
from ragtrim.serve.logs import log_event, log_request
from ragtrim.serve.quota import Ended, Need, charged_usage
from ragtrim.serve.schema import USAGE_ESTIMATED


def with_note(error: str, note: str) -> str:
    """``note`` appended to a row's ``error`` text (either may be empty).

    >>> with_note("stream cut", "charged the count"), with_note("", "charged the count"), with_note("stream cut", "")
    ('stream cut; charged the count', 'charged the count', 'stream cut')
    """
    return f"{error}; {note}" if error and note else error or note


def above_reservation_note(final: LedgerEntry, p: int, c: int, cost: int) -> str:
    """What the ledger row says when the charged usage exceeds the worst case that was reserved."""
    return (f"usage above the reservation: charged {p + c} tokens / {cost} micro-dollars as reported, "
            f"{final.reserved_tokens} tokens / {final.reserved_micro} micro-dollars were reserved")


def estimate_note(entry: LedgerEntry) -> str:
    """What a row charged an estimate says (and the client's error with it): what was charged, and why.

    >>> estimate_note(LedgerEntry(id="r", ts=0.0, tenant_id="t", endpoint="chat", action="pending", prompt_tokens=90,
    ...                           reserved_tokens=290, reserved_micro=1225))
    'the upstream had the request and may have done (and billed) the work, its usage unknown: charged its reservation as an estimate, 90 prompt + 200 completion tokens, 1225 micro-dollars'
    """
    p, c, cost = estimated_usage(entry)
    return (f"the upstream had the request and may have done (and billed) the work, its usage unknown: charged its "
            f"reservation as an estimate, {p} prompt + {c} completion tokens, {cost} micro-dollars")


def estimated_usage(entry: LedgerEntry) -> tuple[int, int, int]:
    """``(prompt, completion, micro-dollars)`` of a request charged its reservation (:func:`ragtrim.serve.ledger.estimated_tokens`)."""
    p, c = estimated_tokens(entry.endpoint, entry.prompt_tokens, entry.reserved_tokens)
    return p, c, entry.reserved_micro


def settled_usage(final: LedgerEntry, p: int, c: int, cost: int) -> dict[str, Any]:
    """The usage a settle charges (``p`` + ``c`` tokens, ``cost`` micro-dollars, on ``final``'s row), as
    :meth:`ragtrim.serve.metrics.Metrics.observe_usage` takes it."""
    return {**charged_usage(final), "prompt": p, "completion": c, "cost_micro": cost}


class Hold:
    """One reserved request: :meth:`settle` or :meth:`release` it once (:meth:`fail` picks the right end of a failed
    upstream call); :meth:`abandon` if it ends otherwise."""

    def __init__(self, service: Any, entry: LedgerEntry, start: float) -> None:
        self.service = service
        self.entry = entry  # the pending row's values; the final row is built from them
        self.start = start
        self.done = False
        self.charged = False  # ended in a settle (deferred or not), not a release
        self.sent = False  # the upstream has the whole request (mark_sent)

    def mark_sent(self) -> None:
        """The upstream has the whole request (called as it is written): from now on a failure with its usage unknown
        charges the reservation, and so does the expiry of the hold should this worker die (the quota store marks the
        pending row in the background; :meth:`ragtrim.serve.quota.QuotaStore.mark_sent`). Never raises."""
        if self.sent or self.done:
            return
        self.sent = True
        try:
            self.service.quota.mark_sent(self.entry.id)
        except Exception as err:  # the mark only matters if the worker dies; the request goes on
            log_event(self.service.log, "mark_sent_failed", level=logging.WARNING, request_id=self.entry.id,
                      error=f"{type(err).__name__}: {err}"[:300])

    def _ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    async def settle(self, final: LedgerEntry, p: int, c: int, cost: int) -> None:
        """Charge ``p`` + ``c`` tokens and ``cost`` micro-dollars and finalize the row as ``final`` (once).

        On a database error the settle is deferred with this usage (not raised: the upstream answered,
        and the client gets that answer).
        """
        if self.done:
            return
        if p + c > final.reserved_tokens or cost > final.reserved_micro:
            # the upstream counted more than the worst case (a tokenizer unlike the model's `tokenizer`
            # setting, or input the gateway does not count): charged as reported, and said loudly
            log_event(self.service.log, "usage_above_reservation", level=logging.WARNING, request_id=final.id,
                      model=final.model_used, tokens=p + c, reserved_tokens=final.reserved_tokens, cost_micro=cost,
                      reserved_micro=final.reserved_micro)
            final = replace(final, error=with_note(final.error, above_reservation_note(final, p, c, cost)))
        need = Need(tokens=p + c, micro=cost)
        ended = await self._finish("settle", final, need)
        metrics = self.service.metrics
        log_request(self.service.log, final)
        if ended is not None:  # recorded (a deferred settle is counted by the lease keeper once it is)
            metrics.observe_settled(settled_usage(final, p, c, cost), replaced=ended.replaced)
        metrics.observe_upstream(final.model_used, final.upstream_ms / 1000)
        metrics.observe_request(endpoint=final.endpoint, action=final.action, tenant=final.tenant_id, status=final.status,
                                latency_s=final.latency_ms / 1000, overhead_s=(final.latency_ms - final.upstream_ms) / 1000)

    async def release(self, status: int, error: str, *, upstream_ms: float = 0.0) -> None:
        """Free the hold without charging; the row becomes ``failed`` with ``status`` and ``error`` (once).

        On a database error the release is deferred (not raised).
        """
        if self.done:
            return
        ms = self._ms()
        final = replace(self.entry, action="failed", status=status, error=error, latency_ms=ms, upstream_ms=upstream_ms,
                        **UNCHARGED)
        ended = await self._finish("release", final, None)
        log_request(self.service.log, final)
        if ended is not None and ended.replaced is not None:  # a late release gave an expiry's estimate back
            self.service.metrics.observe_given_back(ended.replaced)
        self.service.metrics.observe_request(endpoint=final.endpoint, action="failed", tenant=final.tenant_id, status=status,
                                             latency_s=ms / 1000, overhead_s=(ms - upstream_ms) / 1000)

    async def charge_reserved(self, status: int, error: str, *, upstream_ms: float = 0.0) -> None:
        """Settle a request the upstream had, its usage unknown, at its reservation (:func:`estimated_usage`), once: the row
        keeps its action (``ok`` or ``degraded``), with ``status``, ``usage_source`` ``estimated`` and ``error`` plus
        :func:`estimate_note`."""
        p, c, cost = estimated_usage(self.entry)
        final = replace(self.entry, status=status, error=with_note(error, estimate_note(self.entry)),
                        latency_ms=self._ms(), upstream_ms=upstream_ms, usage_source=USAGE_ESTIMATED, prompt_tokens=p,
                        completion_tokens=c,
                        cost_micro=cost)
        await self.settle(final, p, c, cost)

    async def fail(self, status: int, error: str, *, started: bool, upstream_ms: float = 0.0) -> None:
        """End a failed upstream call: :meth:`charge_reserved` when the upstream may have done the work (``started``),
        else :meth:`release`."""
        if started:
            await self.charge_reserved(status, error, upstream_ms=upstream_ms)
        else:
            await self.release(status, error, upstream_ms=upstream_ms)

    async def _finish(self, kind: str, final: LedgerEntry, need: Need | None) -> Ended | None:
        """Run the quota's settle or release (shielded: its outcome is always known) and mark the hold done; what
        it found (:class:`ragtrim.serve.quota.Ended`).

        On a database error the call is deferred for the lease keeper to run again; returns None.
        """
        quota = self.service.quota
        self.charged = kind == "settle"
        try:
            with anyio.CancelScope(shield=True):
                if kind == "settle":
                    ended = await run_in_threadpool(quota.settle, final.id, need, final)
                else:
                    ended = await run_in_threadpool(quota.release, final.id, final)
        except Exception as err:
            text = f"{type(err).__name__}: {err}"[:300]
            quota.defer(kind, final.id, need, final, error=text)
            log_event(self.service.log, f"{kind}_deferred", level=logging.ERROR, request_id=final.id, error=text,
                      tokens=need.tokens if need is not None else 0, cost_micro=need.micro if need is not None else 0)
            self.done = True
            return None
        self.done = True
        return ended

    async def abandon(self, exc: BaseException, *, when: str = "after its reservation, before it was settled",
                      status: int | None = None, what: str = "") -> None:
        """End a hold that ``exc`` left open (``status``; by default 499 when cancelled, else 500) and write its row:
        released (``failed``), or charged its reservation when the upstream had the request (:meth:`fail`). Its
        ``error`` says ``what`` ended it (by default: cancelled, or the exception) and ``when``.

        Shielded from cancellation. Also right when nothing was reserved yet: the release then only writes the row.
        """
        if self.done:
            return
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        what = what or ("request cancelled" if cancelled else f"internal error: {type(exc).__name__}: {exc}")
        status = status if status is not None else 499 if cancelled else 500
        with anyio.CancelScope(shield=True):
            try:
                await self.fail(status, f"{what} ({when})"[:500], started=self.sent)
            except Exception as err:  # not even deferred (a bug): say so; the row stays pending until its lease lapses
                log_event(self.service.log, "release_failed", level=logging.ERROR, request_id=self.entry.id,
                          error=f"{type(err).__name__}: {err}"[:300])

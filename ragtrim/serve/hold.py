"""A chat request's reservation, from the moment it is held to its one settle or release.

Once :func:`ragtrim.serve.plan.plan_and_reserve` has reserved a request's worst case, every way
the request can end must free that room: a settle (charge the real usage, ledger row ``ok`` or
``degraded``) or a release (charge nothing, ledger row ``failed``). Otherwise the row stays
``pending`` and the live worker's lease keeper renews its hold for as long as the worker runs.
:class:`Hold` does exactly one of the two, whichever is called first; :meth:`Hold.abandon` is the
catch-all for an exception or a cancellation that ends the request before either.

Ledger rule (the usage totals, the budget counters and ``/metrics`` agree on it): tokens and
money count only what was charged. A ``failed`` row keeps what it had reserved
(``reserved_tokens``, ``reserved_micro``) and its error, with every token and money column 0.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from ragtrim.serve.ledger import UNCHARGED, LedgerEntry
from ragtrim.serve.logs import log_event, log_request
from ragtrim.serve.quota import Need


def with_note(error: str, note: str) -> str:
    """``note`` appended to a row's ``error`` text."""
    return f"{error}; {note}" if error else note


def above_reservation_note(final: LedgerEntry, p: int, c: int, cost: int) -> str:
    """What the ledger row says when the charged usage exceeds the worst case that was reserved."""
    return (f"usage above the reservation: charged {p + c} tokens / {cost} micro-dollars as reported, "
            f"{final.reserved_tokens} tokens / {final.reserved_micro} micro-dollars were reserved")


class Hold:
    """One reserved request: :meth:`settle` or :meth:`release` it once; :meth:`abandon` if it ends otherwise."""

    def __init__(self, service: Any, entry: LedgerEntry, start: float) -> None:
        self.service = service
        self.entry = entry  # the pending row's values; the final row is built from them
        self.start = start
        self.done = False

    def _ms(self) -> float:
        return (time.perf_counter() - self.start) * 1000

    async def settle(self, final: LedgerEntry, p: int, c: int, cost: int) -> None:
        """Charge ``p`` + ``c`` tokens and ``cost`` micro-dollars and finalize the row as ``final`` (once)."""
        if self.done:
            return
        if p + c > final.reserved_tokens or cost > final.reserved_micro:
            # the upstream counted more than the worst case (a tokenizer unlike the model's `tokenizer`
            # setting, or input the gateway does not count): charged as reported, and said loudly
            log_event(self.service.log, "usage_above_reservation", level=logging.WARNING, request_id=final.id,
                      model=final.model_used, tokens=p + c, reserved_tokens=final.reserved_tokens, cost_micro=cost,
                      reserved_micro=final.reserved_micro)
            final = replace(final, error=with_note(final.error, above_reservation_note(final, p, c, cost)))
        await run_in_threadpool(self.service.quota.settle, final.id, Need(tokens=p + c, micro=cost), final)
        self.done = True
        metrics = self.service.metrics
        log_request(self.service.log, final)
        metrics.observe_usage(tenant=final.tenant_id, model=final.model_used, tokens_sent=final.tokens_sent,
                              tokens_saved=final.tokens_full - final.tokens_sent, prompt=p, completion=c, cost_micro=cost,
                              saved_micro=final.saved_micro, upstream_s=final.upstream_ms / 1000)
        metrics.observe_request(endpoint="chat", action=final.action, tenant=final.tenant_id, status=final.status,
                                latency_s=final.latency_ms / 1000, overhead_s=(final.latency_ms - final.upstream_ms) / 1000)

    async def release(self, status: int, error: str, *, upstream_ms: float = 0.0) -> None:
        """Free the hold without charging; the row becomes ``failed`` with ``status`` and ``error`` (once)."""
        if self.done:
            return
        ms = self._ms()
        final = replace(self.entry, action="failed", status=status, error=error, latency_ms=ms, upstream_ms=upstream_ms,
                        **UNCHARGED)
        await run_in_threadpool(self.service.quota.release, final.id, final)
        self.done = True
        log_request(self.service.log, final)
        self.service.metrics.observe_request(endpoint="chat", action="failed", tenant=final.tenant_id, status=status,
                                             latency_s=ms / 1000, overhead_s=(ms - upstream_ms) / 1000)

    async def abandon(self, exc: BaseException, *, when: str = "after its reservation, before it was settled") -> None:
        """Release a hold that ``exc`` left open (499 when cancelled, else 500) and write the ``failed`` row.

        Shielded from cancellation. Also right when nothing was reserved yet: the release then only writes the row.
        """
        if self.done:
            return
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        what = "request cancelled" if cancelled else f"internal error: {type(exc).__name__}: {exc}"
        with anyio.CancelScope(shield=True):
            try:
                await self.release(499 if cancelled else 500, f"{what} ({when})"[:500])
            except Exception as err:  # the database is gone too: say so; the row stays pending
                log_event(self.service.log, "release_failed", level=logging.ERROR, request_id=self.entry.id,
                          error=f"{type(err).__name__}: {err}"[:300])

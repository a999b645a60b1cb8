"""A per-tenant cap on optimizer runs in flight, so one tenant cannot park unbounded bodies and runs on a worker.

A worker's optimizer runs wait for its ``optimizer_threads`` in a queue that is fair across tenants
(:mod:`ragtrim.serve.fair_queue`), which is what keeps one tenant's many large contexts from delaying
the others; this cap bounds how many one tenant may have waiting at all. Each tenant may have at most
``[limits] tenant_optimizer_runs`` requests waiting for or holding an optimizer thread on this worker (a
chat request with documents from its first run to its reservation, a ``/v1/optimize`` request from once
its body is read, at most ``[limits] max_body_bytes`` within ``body_seconds``, to the end of its run); one more is
refused at once with a 429 ``rate_limit_exceeded`` and a short ``Retry-After``, before anything is
reserved, so it is not charged. The count is per worker process (each worker has its own queue).

>>> runs = TenantRuns(1)
>>> with runs.slot("acme", "r1"):
...     runs.held("acme")
1
>>> runs.held("acme")
0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ragtrim.serve.errors import ApiError

# Retry-After of a refusal for too many runs in flight: they end within seconds (or at [limits] optimize_seconds)
TENANT_RUNS_RETRY_SECONDS = 2


class TenantRuns:
    """How many optimizer runs each tenant has in flight on this worker, at most ``cap`` each.

    Used from the event loop only (no await between the check and the count), so it needs no lock.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._held: dict[str, int] = {}

    def held(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    @contextmanager
    def slot(self, tenant: str, request_id: str) -> Iterator[None]:
        """Hold one of ``tenant``'s slots for the block; a 429 (:func:`tenant_busy`) when all ``cap`` are held.
        The slot is given back however the block ends."""
        if self.held(tenant) >= self.cap:
            raise tenant_busy(self.cap, request_id)
        self._held[tenant] = self.held(tenant) + 1
        try:
            yield
        finally:
            left = self._held[tenant] - 1
            if left:
                self._held[tenant] = left
            else:
                del self._held[tenant]


def tenant_busy(cap: int, request_id: str) -> ApiError:
    """The 429 for a tenant with ``cap`` optimizer runs already in flight on this worker.

    >>> e = tenant_busy(2, "r1"); e.status, e.code, e.headers["Retry-After"]
    (429, 'rate_limit_exceeded', '2')
    """
    message = (f"this tenant already has {cap} optimizer run(s) in flight on this gateway worker, the most "
               f"[limits] tenant_optimizer_runs allows ({cap}); nothing was charged (request id {request_id}). "
               f"Retry in {TENANT_RUNS_RETRY_SECONDS} s, send fewer requests with documents at once, or ask the "
               "operator to raise [limits] tenant_optimizer_runs")
    return ApiError(429, "rate_limit_error", message, code="rate_limit_exceeded",
                    detail=f"tenant_optimizer_runs: {cap} in flight",
                    headers={"Retry-After": str(TENANT_RUNS_RETRY_SECONDS), "X-Ragtrim-Request-Id": request_id})

"""The lease keeper: a worker's own thread that renews its reservations and expires dead workers'.

Each tick first runs again the settles and releases that failed on a database error
(:meth:`ragtrim.serve.quota.QuotaStore.retry_deferred`), then renews this worker's open holds,
then expires lapsed ones (a dead worker's request the upstream had is charged its reservation as
an estimate; with ``metrics`` those charges are counted on ``/metrics`` too, as are the deferred
settles once recorded, and the estimates a deferred settle or release replaced). :meth:`LeaseKeeper.stop`
runs the deferred ones once more, so a worker shutting down does not leave them behind. When the
thread starts it compares the host's clock with the database's and warns when they differ by more
than :data:`SKEW_WARN_SECONDS`, then ticks at once: a worker started after a crash frees the dead
worker's lapsed holds right away, not a period later.

It runs on a dedicated thread, not on the event loop's thread pool, so a busy worker (every pool
thread waiting on the database or the optimizer) still renews on time: a lease that lapses while
its request is in flight would let another request take the room that request is then charged for.

>>> from ragtrim.serve.db import make_engine
>>> from ragtrim.serve.quota import QuotaStore
>>> keeper = LeaseKeeper(QuotaStore(make_engine("sqlite://"), worker_id="w1", lease_seconds=3), period=0.05)
>>> keeper.tick()  # what the thread does every period
>>> keeper.renewals, keeper.errors, keeper.deferred_done
(1, 0, 0)
>>> keeper.start(); keeper.stop()
>>> keeper.running
False
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import anyio

from ragtrim.serve.logs import log_event
from ragtrim.serve.quota import charged_usage

SKEW_WARN_SECONDS = 3.0
# How long a worker shutting down waits for the requests uvicorn cancelled to settle or release.
SHUTDOWN_SETTLE_SECONDS = 10.0


async def settle_cancelled(quota: Any, timeout: float = SHUTDOWN_SETTLE_SECONDS) -> None:
    """Wait (up to ``timeout`` seconds) until this worker's requests are settled or released (or deferred).

    When ``--graceful-timeout`` runs out, uvicorn cancels the requests still running but does not wait
    for them before the lifespan's shutdown, then ends the process: without this wait their shielded
    settles (a stream charged the text it carried) never ran, leaving ``pending`` rows and held room
    until another worker expired the lease (charging the whole reservation), or forever.
    """
    deadline = time.monotonic() + timeout
    while quota.open_requests() - set(quota.deferred()) and time.monotonic() < deadline:
        await anyio.sleep(0.05)


class LeaseKeeper:
    """Every ``period`` seconds (default a third of the lease): retry deferred settles and releases,
    ``quota.renew()``, then ``quota.expire()``."""

    def __init__(self, quota: Any, *, period: float | None = None, log: logging.Logger | None = None, metrics: Any = None):
        self.quota = quota
        self.metrics = metrics
        self.period = float(period) if period is not None else max(0.2, quota.lease_seconds / 3)
        if self.period <= 0:
            raise ValueError(f"period must be > 0 seconds, got {period!r}")
        self.log = log if log is not None else logging.getLogger("ragtrim.serve")
        self.renewals = 0
        self.expired = 0
        self.errors = 0
        self.deferred_done = 0
        self.deferred_given_up = 0
        self.last_renewal: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            raise RuntimeError("the lease keeper is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"ragtrim-lease-{self.quota.worker_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop and join (a tick in progress finishes first), then run the deferred settles and releases once more."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
        left = getattr(self.quota, "deferred", dict)()
        for request_id, item in left.items():  # their holds lapse; another worker's expire fails the rows
            self._log_deferred("deferred_lost", request_id, item)

    def flush(self) -> None:
        """Run the deferred settles and releases again; log what was done and what was given up (never raises)."""
        retry = getattr(self.quota, "retry_deferred", None)  # a store without deferrals (a test double) has none
        if retry is None:
            return
        try:
            done, given_up = retry()
        except Exception as exc:
            self.errors += 1
            log_event(self.log, "lease_keeper_error", level=logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])
            return
        self.deferred_done += len(done)
        self.deferred_given_up += len(given_up)
        for request_id, item in done.items():
            log_event(self.log, "deferred_done", request_id=request_id)
            self._count_deferred(item)
        for request_id, item in given_up.items():
            self._log_deferred("deferred_given_up", request_id, item)

    def _count_deferred(self, item: Any) -> None:
        """Count on ``metrics`` what a deferred settle charged (less any estimate it replaced: :meth:`ragtrim.serve.metrics.Metrics.observe_settled`)
        or the estimate a deferred release gave back; the request was counted when it ended, its usage not until now."""
        if self.metrics is None or item.entry is None:
            return
        replaced = item.ended.replaced if item.ended is not None else None
        if item.kind == "settle":  # its entry is the final row, with the usage it charges
            self.metrics.observe_settled(charged_usage(item.entry), replaced=replaced)
        elif replaced is not None:
            self.metrics.observe_given_back(replaced)

    def _log_deferred(self, event: str, request_id: str, item: Any) -> None:
        """An error line for a deferred settle or release that will not be recorded (with its usage, to reconcile by hand)."""
        log_event(self.log, event, level=logging.ERROR, request_id=request_id, kind=item.kind, attempts=item.attempts,
                  error=item.error, tokens=item.need.tokens if item.need is not None else 0,
                  cost_micro=item.need.micro if item.need is not None else 0)

    def tick(self) -> None:
        """Deferred settles and releases, then one renewal and one expiry pass; a database error is logged and counted, never raised."""
        self.flush()
        try:
            self.quota.renew()
            self.renewals += 1
            self.last_renewal = time.monotonic()
            self.expired += self.quota.expire()
        except Exception as exc:  # a database hiccup must not stop the keeper
            self.errors += 1
            log_event(self.log, "lease_keeper_error", level=logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])
        self._count_estimates()

    def _count_estimates(self) -> None:
        """Log (and count on ``metrics``) each request an expiry charged its reservation as an estimate."""
        drain = getattr(self.quota, "drain_estimates", None)  # a test double may have none
        for request_id, usage in drain() if drain is not None else ():
            log_event(self.log, "estimate_charged", level=logging.WARNING, request_id=request_id, tenant=usage["tenant"],
                      tokens=usage["prompt"] + usage["completion"], cost_micro=usage["cost_micro"])
            if self.metrics is not None:
                self.metrics.observe_usage(**usage, upstream_s=None)

    def check_clock(self) -> float | None:
        """The database's clock minus this host's (None on SQLite); warns when they differ by more than
        :data:`SKEW_WARN_SECONDS` (leases use the database's clock, but budget periods and ledger times the host's)."""
        try:
            skew = self.quota.clock_skew()
        except Exception as exc:
            log_event(self.log, "lease_keeper_error", level=logging.WARNING, error=f"clock check: {type(exc).__name__}: {exc}"[:300])
            return None
        if skew is not None and abs(skew) > SKEW_WARN_SECONDS:
            log_event(self.log, "clock_skew", level=logging.WARNING, worker=self.quota.worker_id, skew_seconds=round(skew, 3),
                      message="this host's clock and the database's differ; fix NTP (budget periods and ledger days use the host's)")
        return skew

    def _loop(self) -> None:
        if hasattr(self.quota, "clock_skew"):
            self.check_clock()
        self.tick()  # at once: a dead worker's lapsed holds must not refuse requests for a period after a restart
        while not self._stop.wait(self.period):
            self.tick()

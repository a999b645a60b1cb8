"""The lease keeper: a worker's own thread that renews its reservations and expires dead workers'.

It runs on a dedicated thread, not on the event loop's thread pool, so a busy worker (every pool
thread waiting on the database or the optimizer) still renews on time: a lease that lapses while
its request is in flight would let another request take the room that request is then charged for.

>>> from ragtrim.serve.db import make_engine
>>> from ragtrim.serve.quota import QuotaStore
>>> keeper = LeaseKeeper(QuotaStore(make_engine("sqlite://"), worker_id="w1", lease_seconds=3), period=0.05)
>>> keeper.tick()  # what the thread does every period
>>> keeper.renewals, keeper.errors
(1, 0)
>>> keeper.start(); keeper.stop()
>>> keeper.running
False
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ragtrim.serve.logs import log_event


class LeaseKeeper:
    """Every ``period`` seconds (default a third of the lease): ``quota.renew()`` then ``quota.expire()``."""

    def __init__(self, quota: Any, *, period: float | None = None, log: logging.Logger | None = None):
        self.quota = quota
        self.period = float(period) if period is not None else max(0.2, quota.lease_seconds / 3)
        if self.period <= 0:
            raise ValueError(f"period must be > 0 seconds, got {period!r}")
        self.log = log if log is not None else logging.getLogger("ragtrim.serve")
        self.renewals = 0
        self.expired = 0
        self.errors = 0
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
        """Stop and join (a tick in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def tick(self) -> None:
        """One renewal and one expiry pass; a database error is logged and counted, never raised."""
        try:
            self.quota.renew()
            self.renewals += 1
            self.last_renewal = time.monotonic()
            self.expired += self.quota.expire()
        except Exception as exc:  # a database hiccup must not stop the keeper
            self.errors += 1
            log_event(self.log, "lease_keeper_error", level=logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.tick()

"""A fair queue for a worker's optimizer threads: waiting runs are served in turn across tenants.

A first-come queue lets one tenant that sends many large contexts at once put every other tenant's
request behind all of them. Here each tenant's waiting runs keep their own order, and a freed thread
goes to the waiting tenant served least recently (one never served first, then by arrival): once a
tenant waits, every other tenant starts at most one more run before it. A run already on a thread is
never stopped, so a request still waits for the first run to end when every thread is busy.

Used from the event loop only (no await between a check and its change), so it needs no lock.
One per :class:`ragtrim.serve.service.Service` (made in its ``start``); the waits are anyio events
of that loop.

>>> import anyio
>>> async def main():
...     queue = FairQueue(1)
...     async with queue.turn("acme"):
...         return queue.statistics()
>>> anyio.run(main)
FairStatistics(slots=1, running=1, holding={'acme': 1}, waiting={})
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.lowlevel


@dataclass(frozen=True)
class FairStatistics:
    """Slots in all, slots held, and per tenant the slots held and the runs waiting (tenants with none left out)."""

    slots: int
    running: int
    holding: dict[str, int]
    waiting: dict[str, int]

    @property
    def tasks_waiting(self) -> int:
        """Runs waiting for a slot, all tenants together (as ``anyio.CapacityLimiter.statistics()`` names it)."""
        return sum(self.waiting.values())


class _Waiter:
    """One run waiting for a slot: ``event`` is set once the slot is handed to it (``granted``)."""

    __slots__ = ("event", "granted")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.granted = False


class FairQueue:
    """At most ``slots`` holders at once; waiting holders are admitted in turn across tenants.

    A released slot passes straight to the next waiter (it is never free while someone waits), so a
    run that arrives later cannot take it first.
    """

    def __init__(self, slots: int) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"a fair queue needs at least 1 slot, got {slots!r}")
        self.slots = slots
        self._running = 0
        self._holding: dict[str, int] = {}
        self._waiting: dict[str, deque[_Waiter]] = {}  # tenants with waiters, in the order they began to wait
        self._served: dict[str, int] = {}  # the turn each tenant last got a slot (kept while someone waits or it holds one)
        self._turns = 0

    @asynccontextmanager
    async def turn(self, tenant: str) -> AsyncIterator[None]:
        """Hold one slot for the block, after waiting for it in ``tenant``'s turn; given back however the block ends."""
        await self._acquire(tenant)
        try:
            yield
        finally:
            self._release(tenant)

    def statistics(self) -> FairStatistics:
        return FairStatistics(slots=self.slots, running=self._running, holding=dict(self._holding),
                              waiting={t: len(q) for t, q in self._waiting.items()})

    async def _acquire(self, tenant: str) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller stops here, holding nothing
        if self._running < self.slots:  # a free slot means no one waits (a released one is handed on)
            self._running += 1
            self._grant(tenant)
            return
        waiter = _Waiter()
        self._waiting.setdefault(tenant, deque()).append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:  # cancelled: leave the queue, or pass on a slot handed over before it could resume
            if waiter.granted:
                self._release(tenant)
            else:
                self._leave(tenant, waiter)
            raise

    def _grant(self, tenant: str) -> None:
        self._holding[tenant] = self._holding.get(tenant, 0) + 1
        self._served[tenant] = self._turns
        self._turns += 1

    def _release(self, tenant: str) -> None:
        """Give back ``tenant``'s slot: to the next tenant in turn with a waiter, else free."""
        left = self._holding[tenant] - 1
        if left:
            self._holding[tenant] = left
        else:
            del self._holding[tenant]
        if self._waiting:
            self._hand_on()
        else:
            self._running -= 1
        self._forget_idle()

    def _hand_on(self) -> None:
        """The slot passes, still counted as running, to the first waiter of the tenant served least recently."""
        tenant = min(self._waiting, key=lambda t: self._served.get(t, -1))  # ties: the one waiting longest
        queue = self._waiting[tenant]
        waiter = queue.popleft()
        if not queue:
            del self._waiting[tenant]
        waiter.granted = True
        self._grant(tenant)
        waiter.event.set()

    def _leave(self, tenant: str, waiter: _Waiter) -> None:
        queue = self._waiting[tenant]
        queue.remove(waiter)
        if not queue:
            del self._waiting[tenant]
        self._forget_idle()

    def _forget_idle(self) -> None:
        """With no one waiting, the turns of tenants holding no slot no longer order anyone: drop them."""
        if not self._waiting and len(self._served) > len(self._holding):
            self._served = {t: n for t, n in self._served.items() if t in self._holding}

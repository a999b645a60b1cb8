"""The fair queue of optimizer runs: a freed thread goes to the waiting tenant served least recently, each
tenant's runs in arrival order, and a run cancelled while it waits (or just as it was handed a thread)
leaks no thread and loses no wake-up.

Orders and counts only: each holder keeps its slot until the test lets it go.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest

from ragtrim.serve.fair_queue import FairQueue, FairStatistics
from optimizer_gates import StandIn
from serve_fixtures import DOCS, auth, chat_body, tenant_with_key

# a hang guard, not a timing assert: every wait below ends at once when the queue behaves
GUARD = 20


class Holders:
    """Tasks that take a turn of ``queue`` and hold it until released; ``admitted`` is the order they got it."""

    def __init__(self, queue: FairQueue, tg: Any):
        self.queue, self.tg = queue, tg
        self.admitted: list[str] = []
        self.left: list[str] = []  # admitted holders whose block ended
        self.gates: dict[str, anyio.Event] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}

    async def add(self, tenant: str, name: str) -> None:
        """Start ``name``'s turn for ``tenant`` and return once it holds the slot or waits for it."""
        self.gates[name] = anyio.Event()
        self.scopes[name] = anyio.CancelScope()
        before = self._count(tenant)
        self.tg.start_soon(self._hold, tenant, name)
        while self._count(tenant) == before:
            await anyio.sleep(0)

    async def _hold(self, tenant: str, name: str) -> None:
        with self.scopes[name]:
            async with self.queue.turn(tenant):
                self.admitted.append(name)
                try:
                    await self.gates[name].wait()
                finally:
                    self.left.append(name)

    def _count(self, tenant: str) -> int:
        stats = self.queue.statistics()
        return stats.holding.get(tenant, 0) + stats.waiting.get(tenant, 0)

    async def release(self, name: str) -> None:
        """Let ``name`` go and wait until it has left and the holder its slot passed to (if any) is in its block."""
        self.gates[name].set()
        while name not in self.left:
            await anyio.sleep(0)
        await self.settled()

    async def settled(self) -> None:
        """Wait until every slot held belongs to a holder inside its block (none handed on and not yet resumed)."""
        while len(self.admitted) - len(self.left) != self.queue.statistics().running:
            await anyio.sleep(0)


async def admission_order(slots: int, arrivals: list[tuple[str, str]]) -> list[str]:
    """The order ``arrivals`` (tenant, name) get a slot when each holder, in the order admitted, lets go in turn."""
    queue = FairQueue(slots)
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            holders = Holders(queue, tg)
            for tenant, name in arrivals:
                await holders.add(tenant, name)
            released = 0
            while released < len(arrivals):
                await holders.release(holders.admitted[released])
                released += 1
    assert queue.statistics() == FairStatistics(slots=slots, running=0, holding={}, waiting={})
    return holders.admitted


def test_a_tenant_with_one_waiting_run_is_admitted_before_the_rest_of_a_busy_tenants_queue():
    arrivals = [("a", f"a{i}") for i in range(1, 6)] + [("b", "b1")]
    assert anyio.run(admission_order, 1, arrivals) == ["a1", "b1", "a2", "a3", "a4", "a5"]


def test_waiting_tenants_are_served_in_turn_each_in_its_own_order():
    arrivals = [("x", "x1")] + [("a", f"a{i}") for i in range(1, 4)] + [("b", f"b{i}") for i in range(1, 4)] + [("c", "c1")]
    assert anyio.run(admission_order, 1, arrivals) == ["x1", "a1", "b1", "c1", "a2", "b2", "a3", "b3"]


def test_a_tenant_holding_every_slot_waits_behind_one_that_holds_none():
    # a's three runs took both slots and its third waits; b's run, arriving later, gets the next slot
    arrivals = [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("a", "a4")]
    assert anyio.run(admission_order, 2, arrivals) == ["a1", "a2", "b1", "a3", "a4"]


def test_one_tenant_alone_is_served_first_come():
    arrivals = [("a", f"a{i}") for i in range(1, 5)]
    assert anyio.run(admission_order, 2, arrivals) == ["a1", "a2", "a3", "a4"]


def test_a_run_cancelled_while_it_waits_leaves_the_queue_and_the_others_keep_their_order():
    async def main() -> tuple[list[str], FairStatistics, FairStatistics]:
        queue = FairQueue(1)
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                holders = Holders(queue, tg)
                for tenant, name in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("a", "a4")]:
                    await holders.add(tenant, name)
                holders.scopes["a3"].cancel()
                holders.scopes["b1"].cancel()
                while queue.statistics().tasks_waiting != 2:
                    await anyio.sleep(0)
                waiting = queue.statistics()
                for name in ("a1", "a2", "a4"):
                    await holders.release(name)
            return holders.admitted, waiting, queue.statistics()

    admitted, waiting, after = anyio.run(main)
    assert waiting == FairStatistics(slots=1, running=1, holding={"a": 1}, waiting={"a": 2})
    assert admitted == ["a1", "a2", "a4"]  # the cancelled runs never got the slot
    assert after == FairStatistics(slots=1, running=0, holding={}, waiting={})


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancelled-then-handed", "handed-then-cancelled"])
def test_a_run_cancelled_as_it_is_handed_the_slot_passes_it_on(cancel_first):
    """b1 is cancelled and handed the slot in one step of the event loop, before it can resume.

    Cancelled first, its wait ends in the cancellation although the slot was handed to it: it must pass the slot
    on (else the slot leaks and c1 is never woken). Handed first, anyio lets it resume into its block, where the
    cancellation ends it at its next await: it gives the slot back from there.
    """

    async def main() -> tuple[list[str], FairStatistics, bool]:
        queue = FairQueue(1)
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                holders = Holders(queue, tg)
                turn = queue.turn("a")
                await turn.__aenter__()
                await holders.add("b", "b1")
                await holders.add("c", "c1")
                if cancel_first:
                    holders.scopes["b1"].cancel()
                await turn.__aexit__(None, None, None)  # hands the slot to b1 (leaving it does not await first)
                if not cancel_first:
                    holders.scopes["b1"].cancel()
                while "c1" not in holders.admitted:
                    await anyio.sleep(0)
                during = queue.statistics()
                await holders.release("c1")
            async with queue.turn("d"):  # the slot is free again: a new turn is admitted at once
                held = queue.statistics().running == 1
        return holders.admitted, during, held and queue.statistics().running == 0

    admitted, during, free = anyio.run(main)
    assert admitted == (["c1"] if cancel_first else ["b1", "c1"])  # cancelled first: b1 never ran its block
    assert during == FairStatistics(slots=1, running=1, holding={"c": 1}, waiting={})
    assert free


def test_a_holder_cancelled_inside_its_block_gives_the_slot_to_the_next_waiter():
    async def main() -> tuple[list[str], FairStatistics]:
        queue = FairQueue(1)
        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                holders = Holders(queue, tg)
                await holders.add("a", "a1")
                await holders.add("b", "b1")
                holders.scopes["a1"].cancel()
                while "b1" not in holders.admitted:
                    await anyio.sleep(0)
                await holders.release("b1")
        return holders.admitted, queue.statistics()

    admitted, after = anyio.run(main)
    assert admitted == ["a1", "b1"]
    assert after == FairStatistics(slots=1, running=0, holding={}, waiting={})


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_a_fair_queue_needs_a_positive_whole_number_of_slots(bad):
    with pytest.raises(ValueError, match="a fair queue needs at least 1 slot"):
        FairQueue(bad)


# through the gateway: /v1/optimize from a busy tenant, chat with documents from another


class StepGate(StandIn):
    """Stands in for the service's pipelines: records each run's query as it starts, and lets runs finish one ``step`` at a time."""

    def __init__(self, service: Any):
        super().__init__(service)
        self.steps = threading.Semaphore(0)
        self.started: list[str] = []

    def run(self, query: str, chunks: Any, budget: Any = None, **kw: Any) -> Any:
        with self.lock:
            self.started.append(query)
        assert self.steps.acquire(timeout=60), "the test never let this run finish"
        return self.inner.run(query, chunks, budget=budget, **kw)


def in_queue(queue: FairQueue, tenant: str) -> int:
    """``tenant``'s runs holding a slot or waiting for one."""
    stats = queue.statistics()
    return stats.holding.get(tenant, 0) + stats.waiting.get(tenant, 0)


def wait_for(check: Any, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


@pytest.fixture
def one_thread_deep_queues(monkeypatch):
    """A stack's gateway runs one optimizer thread and lets a tenant have 8 runs in flight, so runs queue."""
    import serve_fixtures

    real = serve_fixtures.gateway_config

    def config(*args: Any, **kw: Any) -> Any:
        return real(*args, optimizer_threads=1, limits={"tenant_optimizer_runs": 8}, **kw)

    monkeypatch.setattr(serve_fixtures, "gateway_config", config)


def test_through_the_gateway_another_tenants_chat_runs_next_not_after_the_busy_tenants_queue(tmp_path, one_thread_deep_queues):
    import httpx

    from serve_fixtures import stack
    from test_serve_neighbours import answer_ok

    question = "What is the capital of France?"
    with stack(tmp_path, answer_ok) as s:
        gate = StepGate(s.service)
        s.service.pipeline = gate.pipeline
        busy = tenant_with_key(s.service, "busy")
        fair = s.service.fair
        with ThreadPoolExecutor(6) as pool:
            try:
                mine = []
                for i in range(4):  # the busy tenant's first run takes the thread, the next three wait
                    mine.append(pool.submit(httpx.post, f"{s.url}/v1/optimize", json={"query": f"busy {i}", "chunks": DOCS,
                                                                                      "budget": 40}, headers=auth(busy), timeout=60))
                    wait_for(lambda: in_queue(fair, "busy") == i + 1)
                theirs = pool.submit(httpx.post, f"{s.url}/v1/chat/completions", json=chat_body(question), headers=auth(s.key),
                                     timeout=60)
                wait_for(lambda: fair.statistics().waiting == {"busy": 3, "acme": 1})
                gate.steps.release()  # the busy tenant's first run ends: its thread goes to the other tenant
                wait_for(lambda: len(gate.started) == 2)
                assert gate.started == ["busy 0", question] and not theirs.done()
            finally:
                for _ in range(5):
                    gate.steps.release()
            assert [f.result().status_code for f in mine] == [200] * 4
            assert theirs.result().status_code == 200, theirs.result().text
        assert gate.started == ["busy 0", question, "busy 1", "busy 2", "busy 3"]
        assert fair.statistics() == FairStatistics(slots=1, running=0, holding={}, waiting={})

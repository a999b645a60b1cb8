"""Races between replicas on PostgreSQL: a settle against another replica's expire, the lease
keeper against settles in progress, a deadlock victim, clocks that disagree.

Each test sets up the interleaving itself (a transaction held open on another connection, a
step that waits on an event, a check that a backend is waiting for a lock) instead of hoping
for it. Runs wherever initdb/pg_ctl exist (Debian: apt-get install postgresql); when CI=true a
missing PostgreSQL is a failure, not a skip.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.lease import LeaseKeeper
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.quota import LATE_NOTE, Need, QuotaStore, Reservation
from ragtrim.serve.schema import budget_usage, ledger, reservations
from quota_fixtures import pg_engine, pg_url, require_postgres  # noqa: F401 (fixtures)

pytestmark = pytest.mark.postgres

require_postgres()


@pytest.fixture
def engine(pg_engine):
    return pg_engine


def counters(engine) -> dict[str, tuple[int, int]]:
    with engine.connect() as c:
        return {r.budget_id: (int(r.spent), int(r.reserved)) for r in c.execute(budget_usage.select()).all()}


def states(engine) -> dict[tuple[str, str], str]:
    with engine.connect() as c:
        return {(r.request_id, r.budget_id): r.state for r in c.execute(reservations.select()).all()}


def pending_row(rid: str, ts: float) -> LedgerEntry:
    return LedgerEntry(id=rid, ts=ts, tenant_id="acme", endpoint="chat", action="pending", reserved_tokens=800)


def wait_for_lock_wait(engine, timeout: float = 10.0) -> None:
    """Block until some backend of the test database waits for a row lock (the interleaving is set)."""
    deadline = time.monotonic() + timeout
    with engine.connect() as c:
        while time.monotonic() < deadline:
            n = c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND datname = current_database()")).scalar()
            if n:
                return
            c.rollback()
            time.sleep(0.02)
    raise AssertionError("no backend ever waited for a lock")


class Call:
    """``fn()`` on a thread; ``result()`` joins it and returns its value or raises its error."""

    def __init__(self, fn: Callable[[], Any]):
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def result(self, timeout: float = 15.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the call is still blocked"
        if self.error is not None:
            raise self.error
        return self.value


def test_a_settle_racing_another_replicas_expire_is_charged_late(engine):
    """The settle reads the hold after the expire commits, so it charges it (late) instead of nothing."""
    b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    t0 = time.time()
    live = QuotaStore(engine, worker_id="A", lease_seconds=30, clock=lambda: t0, db_clock=False)
    other = QuotaStore(engine, worker_id="B", lease_seconds=30, clock=lambda: t0 + 31, db_clock=False)  # 31 s later
    budgets = live.budgets_for("acme", user="", feature="")
    assert isinstance(live.reserve("r1", budgets, Need(800, 0), pending_row("r1", t0)), Reservation)

    freed, go_on = threading.Event(), threading.Event()
    real_free = other._free

    def free_then_wait(conn, r, state, **charge):  # B's expire keeps its transaction open after freeing the hold
        n = real_free(conn, r, state, **charge)
        freed.set()
        assert go_on.wait(15)
        return n

    other._free = free_then_wait
    expiring = Call(other.expire)
    assert freed.wait(10)
    final = LedgerEntry(id="r1", ts=t0, tenant_id="acme", endpoint="chat", action="ok", prompt_tokens=500,
                        completion_tokens=100, status=200, reserved_tokens=800)
    settling = Call(lambda: live.settle("r1", Need(600, 0), final))
    wait_for_lock_wait(engine)  # the settle waits for the expire's row lock
    go_on.set()
    assert expiring.result() == 1
    assert settling.result().late is True  # charged late
    assert counters(engine) == {b.id: (600, 0)}
    with engine.connect() as c:
        row = c.execute(ledger.select().where(ledger.c.id == "r1")).first()
    assert row.action == "ok" and LATE_NOTE in row.error
    # the room really is gone: 600 were used, so 1000 no longer fits
    assert not isinstance(live.reserve("r2", budgets, Need(1000, 0)), Reservation)


def test_renew_and_expire_skip_rows_a_settle_is_holding(engine):
    """The lease keeper never waits for (or deadlocks with) a transaction holding reservation rows."""
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=10_000)
    set_budget(engine, tenant_id="acme", unit="usd", period="day", limit=10_000)
    now = time.time()
    alive = QuotaStore(engine, worker_id="alive", lease_seconds=30, clock=lambda: now, db_clock=False)
    dead = QuotaStore(engine, worker_id="dead", lease_seconds=30, clock=lambda: now - 100, db_clock=False)
    budgets = alive.budgets_for("acme", user="", feature="")
    for rid in ("a1", "a2"):
        assert isinstance(alive.reserve(rid, budgets, Need(10, 10)), Reservation)
    for rid in ("d1", "d2"):
        assert isinstance(dead.reserve(rid, budgets, Need(10, 10)), Reservation)
    with engine.connect() as other:  # a settle of a1 and one of d1 in progress: their rows are locked
        other.execute(text("SELECT 1 FROM rt_reservations WHERE request_id IN ('a1', 'd1') FOR UPDATE"))
        keeper = Call(lambda: (alive.renew(), alive.expire()))
        renewed, expired = keeper.result(timeout=5)
        other.rollback()
    assert (renewed, expired) == (2, 2)  # a2's two holds renewed, d2's two expired; a1 and d1 left to their settles
    got = states(engine)
    assert {s for (rid, _), s in got.items() if rid in ("a1", "a2", "d1")} == {"held"}
    assert {s for (rid, _), s in got.items() if rid == "d2"} == {"expired"}


def test_a_deadlock_victim_is_run_again(engine):
    """A settle PostgreSQL aborts as a deadlock victim is retried, and charged once."""
    b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    store = QuotaStore(engine, worker_id="w", lease_seconds=30)
    budgets = store.budgets_for("acme", user="", feature="")
    assert isinstance(store.reserve("r1", budgets, Need(500, 0), pending_row("r1", time.time())), Reservation)
    with engine.connect() as rogue:  # a transaction that takes the locks in the opposite order
        rogue.execute(text("SET deadlock_timeout = '30s'"))  # so the settle's backend detects the cycle: it is the victim
        rogue.execute(text("UPDATE rt_budget_usage SET spent = spent WHERE budget_id = :b"), {"b": b.id})
        settling = Call(lambda: store.settle("r1", Need(300, 0)))
        wait_for_lock_wait(engine)  # the settle holds r1's rows and waits for the counter
        rogue.execute(text("SELECT 1 FROM rt_reservations WHERE request_id = 'r1' FOR UPDATE"))  # cycle -> settle aborted
        rogue.commit()
    assert settling.result().late is False
    assert counters(engine) == {b.id: (300, 0)}


def _traffic(store: QuotaStore, budgets, n: int, errors: list) -> None:
    for _ in range(n):
        rid = uuid.uuid4().hex
        try:
            if isinstance(store.reserve(rid, budgets, Need(7, 3), pending_row(rid, time.time())), Reservation):
                final = LedgerEntry(id=rid, ts=time.time(), tenant_id="acme", endpoint="chat", action="ok",
                                    prompt_tokens=3, completion_tokens=2, cost_micro=2, status=200)
                store.settle(rid, Need(5, 2), final)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)


def _keeper(store: QuotaStore, stop: threading.Event, errors: list) -> None:
    while not stop.is_set():
        try:
            store.renew()
            store.expire()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        stop.wait(0.005)


def test_two_replicas_settle_renew_and_expire_without_errors(engine):
    """Replicas whose leases lapse all the time (lease 0.05 s): settles, renewals and expiries
    interleave on four shared budgets; nothing fails and the ledger equals the counters."""
    for unit, scope, value in (("tokens", "tenant", ""), ("usd", "tenant", ""), ("tokens", "user", "u"), ("usd", "feature", "f")):
        set_budget(engine, tenant_id="acme", unit=unit, period="day", limit=10**9, scope=scope, scope_value=value)
    stores = [QuotaStore(engine, worker_id=f"replica{i}", lease_seconds=0.05) for i in range(2)]
    budgets = stores[0].budgets_for("acme", user="u", feature="f")
    assert len(budgets) == 4
    errors: list = []
    stop = threading.Event()
    keepers = [threading.Thread(target=_keeper, args=(s, stop, errors)) for s in stores]
    workers = [threading.Thread(target=_traffic, args=(s, budgets, 40, errors)) for s in stores for _ in range(3)]
    for t in keepers + workers:
        t.start()
    for t in workers:
        t.join(60)
    stop.set()
    for t in keepers:
        t.join(10)
    assert errors == []
    with engine.connect() as c:
        charged = dict(c.execute(text("SELECT budget_id, coalesce(sum(charged), 0) FROM rt_reservations GROUP BY 1")).all())
        tokens = c.execute(text("SELECT sum(prompt_tokens + completion_tokens) FROM rt_ledger WHERE action = 'ok'")).scalar()
    got = counters(engine)
    units = {b.id: b.unit for b in budgets}
    assert all(reserved == 0 for _, reserved in got.values())
    assert {bid: spent for bid, (spent, _) in got.items()} == {bid: int(charged[bid]) for bid in got}
    assert all(spent == (tokens if units[bid] == "tokens" else 2 * tokens // 5) for bid, (spent, _) in got.items())


def test_a_host_clock_ahead_of_the_others_does_not_expire_their_live_holds(engine, caplog):
    """Leases are measured on the database's clock: a replica 40 s ahead does not expire a live 30 s hold."""
    b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    ahead = lambda: time.time() + 40  # noqa: E731
    right = QuotaStore(engine, worker_id="right", lease_seconds=30)
    fast = QuotaStore(engine, worker_id="fast", lease_seconds=30, clock=ahead)
    budgets = right.budgets_for("acme", user="", feature="")
    assert isinstance(right.reserve("r1", budgets, Need(800, 0)), Reservation)
    assert fast.expire() == 0
    assert counters(engine) == {b.id: (0, 800)}
    # the fast replica's own leases are on the database's clock too
    assert isinstance(fast.reserve("f1", budgets, Need(100, 0)), Reservation)
    with engine.connect() as c:
        expires = c.execute(reservations.select().where(reservations.c.request_id == "f1")).first().expires
    assert abs(expires - (time.time() + 30)) < 5
    # a lease that really lapsed (on the database's clock) is expired by either replica
    brief = QuotaStore(engine, worker_id="brief", lease_seconds=0.2)
    assert isinstance(brief.reserve("x1", budgets, Need(50, 0)), Reservation)
    time.sleep(0.3)
    assert fast.expire() == 1
    # and the fast replica warns at start-up
    keeper = LeaseKeeper(fast, log=logging.getLogger("ragtrim.serve.test_skew"))
    with caplog.at_level(logging.WARNING, logger="ragtrim.serve.test_skew"):
        skew = keeper.check_clock()
    assert skew is not None and -45 < skew < -35
    assert any(r.getMessage() == "clock_skew" for r in caplog.records)
    assert abs(right.clock_skew()) < 3

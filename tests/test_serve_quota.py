"""The quota store without HTTP: atomic reserve, settle once, release, expire, and no overspend
under concurrency (threads in one process, and several processes on one SQLite file)."""

from __future__ import annotations

import multiprocessing as mp
import threading
import uuid
from dataclasses import replace

import pytest

from ragtrim.serve.budgets import period_start, set_budget
from ragtrim.serve.db import make_engine
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.quota import Need, QuotaStore, Reservation, Shortfall
from ragtrim.serve.schema import budget_usage, ledger, reservations
from quota_fixtures import Clock, engine  # noqa: F401 (engine is a fixture)


def counters(engine, budget_id):
    with engine.connect() as c:
        row = c.execute(budget_usage.select().where(budget_usage.c.budget_id == budget_id)).first()
    return (int(row.spent), int(row.reserved)) if row else (0, 0)


def two_workers(engine, clock, first: str, second: str):
    """Two workers' stores on one clock, the tenant's budgets, and a pending row for ``r-<first>``."""
    a, b = (QuotaStore(engine, worker_id=w, lease_seconds=10, clock=clock) for w in (first, second))
    pending = LedgerEntry(id=f"r-{first}", ts=clock.t, tenant_id="acme", endpoint="chat", action="pending")
    return a, b, a.budgets_for("acme", user="", feature=""), pending


def test_reserve_refuses_what_does_not_fit_and_holds_nothing(engine):
    b1 = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    b2 = set_budget(engine, tenant_id="acme", unit="usd", period="month", limit=50)
    store = QuotaStore(engine, worker_id="w")
    budgets = store.budgets_for("acme", user="", feature="")
    assert isinstance(store.reserve("a", budgets, Need(tokens=900, micro=10)), Reservation)
    # fits the token budget? no (900 + 200 > 1000): nothing may be held on the dollar budget either
    out = store.reserve("b", budgets, Need(tokens=200, micro=10))
    assert isinstance(out, Shortfall) and out.budget.id == b1.id and out.needed == 200
    assert counters(engine, b2.id) == (0, 10)
    # the dollar budget is the one short here
    out = store.reserve("c", budgets, Need(tokens=10, micro=41))
    assert isinstance(out, Shortfall) and out.budget.id == b2.id
    assert counters(engine, b1.id) == (0, 900)


def test_settle_charges_once_and_release_frees(engine):
    b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    store = QuotaStore(engine, worker_id="w")
    budgets = store.budgets_for("acme", user="", feature="")
    store.reserve("a", budgets, Need(tokens=600, micro=0))
    store.settle("a", Need(tokens=250, micro=0))
    store.settle("a", Need(tokens=250, micro=0))  # a repeated settle charges nothing
    assert counters(engine, b.id) == (250, 0)
    store.reserve("b", budgets, Need(tokens=700, micro=0))
    store.release("b")
    store.settle("b", Need(tokens=700, micro=0))  # settle after release: no charge
    assert counters(engine, b.id) == (250, 0)


def test_user_and_feature_budgets_only_bind_their_requests(engine):
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=10_000)
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=100, scope="user", scope_value="bob")
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=50, scope="feature", scope_value="search")
    store = QuotaStore(engine, worker_id="w")
    assert len(store.budgets_for("acme", user="bob", feature="search")) == 3
    assert isinstance(store.reserve("1", store.budgets_for("acme", user="ann", feature="chat"), Need(500, 0)), Reservation)
    assert isinstance(store.reserve("2", store.budgets_for("acme", user="bob", feature="chat"), Need(500, 0)), Shortfall)
    assert isinstance(store.reserve("3", store.budgets_for("acme", user="ann", feature="search"), Need(60, 0)), Shortfall)


def test_dead_worker_reservation_expires_and_its_pending_row_fails(engine):
    b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    clock = Clock()
    dead, alive, budgets, pending = two_workers(engine, clock, "dead", "alive")
    assert isinstance(dead.reserve("r-dead", budgets, Need(900, 0), pending), Reservation)
    assert isinstance(alive.reserve("r-alive", budgets, Need(100, 0)), Reservation)
    clock.t += 8
    alive.renew()  # the live worker keeps its lease; the dead one does not
    clock.t += 5
    assert alive.expire() == 1
    assert counters(engine, b.id) == (0, 100)
    with engine.connect() as c:
        row = c.execute(ledger.select().where(ledger.c.id == "r-dead")).first()
        states = dict(c.execute(reservations.select().with_only_columns(reservations.c.request_id, reservations.c.state)).all())
    assert row.action == "failed" and "expired" in row.error
    assert states == {"r-dead": "expired", "r-alive": "held"}
    # a late settle of the expired hold still charges what was used, exactly once
    assert dead.settle("r-dead", Need(300, 0)).late is True
    assert dead.settle("r-dead", Need(300, 0)).late is False
    assert counters(engine, b.id) == (300, 100)


def test_periods_reset_the_counters(engine):
    b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=100)
    clock = Clock()
    store = QuotaStore(engine, worker_id="w", clock=clock)
    budgets = store.budgets_for("acme", user="", feature="")
    store.reserve("1", budgets, Need(100, 0))
    store.settle("1", Need(100, 0))
    assert isinstance(store.reserve("2", budgets, Need(1, 0)), Shortfall)
    clock.t += 86_400
    assert isinstance(store.reserve("3", budgets, Need(100, 0)), Reservation)
    assert period_start("day", clock.t) != period_start("day", clock.t - 86_400)


def _hammer(engine, budgets, n: int, results: list, worker: str) -> None:
    store = QuotaStore(engine, worker_id=worker)
    for _ in range(n):
        rid = uuid.uuid4().hex
        if isinstance(store.reserve(rid, budgets, Need(tokens=7, micro=3)), Reservation):
            store.settle(rid, Need(tokens=5, micro=2))
            results.append(rid)


def test_no_overspend_with_many_threads(engine):
    bt = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=503)
    bu = set_budget(engine, tenant_id="acme", unit="usd", period="day", limit=10_000)
    budgets = QuotaStore(engine, worker_id="x").budgets_for("acme", user="", feature="")
    results: list = []
    threads = [threading.Thread(target=_hammer, args=(engine, budgets, 40, results, f"t{i}")) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent, reserved = counters(engine, bt.id)
    assert reserved == 0 and spent == 5 * len(results) <= 503
    assert len(results) == (503 - 7) // 5 + 1  # every request that could fit did: the last one needs 7, spends 5
    assert counters(engine, bu.id) == (2 * len(results), 0)


def _process(url: str, n: int, queue) -> None:
    engine = make_engine(url, create=False)
    store = QuotaStore(engine, worker_id=f"p{mp.current_process().pid}")
    budgets = store.budgets_for("acme", user="", feature="")
    ok = 0
    for _ in range(n):
        rid = uuid.uuid4().hex
        if isinstance(store.reserve(rid, budgets, Need(tokens=10, micro=0)), Reservation):
            store.settle(rid, Need(tokens=10, micro=0))
            ok += 1
    queue.put(ok)


def test_no_overspend_across_processes(engine, tmp_path):
    b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1234)
    url = f"sqlite:///{tmp_path / 'q.sqlite'}"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process, args=(url, 60, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    answered = sum(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
    assert answered == 123 and counters(engine, b.id) == (1230, 0)


def test_a_worker_never_expires_its_own_holds(engine):
    # its holds are in flight: expiring one would free room the request is about to be charged for
    b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    clock = Clock()
    slow, other, budgets, pending = two_workers(engine, clock, "slow", "other")
    assert isinstance(slow.reserve("r-slow", budgets, Need(900, 0), pending), Reservation)
    clock.t += 60  # its renewals were late
    assert slow.expire() == 0
    assert counters(engine, b.id) == (0, 900)
    assert slow.settle("r-slow", Need(700, 0), replace(pending, action="ok", status=200)).late is False  # on time, not late
    assert counters(engine, b.id) == (700, 0)
    # another worker's lapsed hold is expired, and its pending row failed
    assert isinstance(other.reserve("r-other", budgets, Need(200, 0),
                                    LedgerEntry(id="r-other", ts=clock.t, tenant_id="acme", endpoint="chat", action="pending")), Reservation)
    clock.t += 60
    assert other.expire() == 0 and slow.expire() == 1
    with engine.connect() as c:
        assert c.execute(ledger.select().where(ledger.c.id == "r-other")).first().action == "failed"
        assert c.execute(ledger.select().where(ledger.c.id == "r-slow")).first().action == "ok"


def test_a_lease_starts_when_the_write_lock_is_taken(engine):
    # time spent waiting for the database's write lock must not eat into the lease
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    clock = Clock()
    store = QuotaStore(engine, worker_id="w", lease_seconds=10, clock=clock)
    budgets = store.budgets_for("acme", user="", feature="")
    out: list = []
    with engine.info_write_lock:  # another writer holds the lock
        t = threading.Thread(target=lambda: out.append(store.reserve("r1", budgets, Need(10, 0))))
        t.start()
        t.join(0.3)
        assert t.is_alive()  # waiting for the lock
        clock.t += 100
    t.join(10)
    assert isinstance(out[0], Reservation)
    with engine.connect() as c:
        assert c.execute(reservations.select().where(reservations.c.request_id == "r1")).first().expires == clock.t + 10
    clock.t += 5
    with engine.info_write_lock:
        t = threading.Thread(target=store.renew)
        t.start()
        t.join(0.3)
        clock.t += 100
    t.join(10)
    with engine.connect() as c:
        assert c.execute(reservations.select().where(reservations.c.request_id == "r1")).first().expires == clock.t + 10

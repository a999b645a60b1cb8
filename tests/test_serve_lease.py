"""The lease keeper thread: renews this worker's holds, expires a dead worker's, survives errors."""

from __future__ import annotations

import time

import pytest

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.db import make_engine
from ragtrim.serve.keys import create_tenant
from ragtrim.serve.lease import LeaseKeeper
from ragtrim.serve.quota import Need, QuotaStore, Reservation
from ragtrim.serve.schema import reservations
from quota_fixtures import first_tick


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")
    create_tenant(e, "acme")
    set_budget(e, tenant_id="acme", unit="tokens", period="day", limit=1000)
    yield e
    e.dispose()


def states(engine) -> dict[str, tuple[str, float]]:
    with engine.connect() as c:
        return {r.request_id: (r.state, r.expires) for r in c.execute(reservations.select()).all()}


def test_keeper_renews_its_holds_and_expires_a_dead_workers(engine):
    alive = QuotaStore(engine, worker_id="alive", lease_seconds=1)
    dead = QuotaStore(engine, worker_id="dead", lease_seconds=1)
    budgets = alive.budgets_for("acme", user="", feature="")
    assert isinstance(alive.reserve("r-alive", budgets, Need(100, 0)), Reservation)
    assert isinstance(dead.reserve("r-dead", budgets, Need(100, 0)), Reservation)
    keeper = LeaseKeeper(alive, period=0.1)
    keeper.start()
    try:
        deadline = time.time() + 30
        while states(engine)["r-dead"][0] == "held" and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        now = time.time()
        got = states(engine)
    finally:
        keeper.stop()
    assert not keeper.running
    assert got["r-dead"][0] == "expired"
    assert got["r-alive"][0] == "held" and got["r-alive"][1] > now  # renewed past the first lease
    assert keeper.renewals >= 2 and keeper.expired == 1 and keeper.errors == 0


def test_keeper_logs_a_database_error_and_keeps_going():
    class Flaky:
        worker_id, lease_seconds, calls = "w", 3.0, 0

        def renew(self):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("database is locked")
            return 0

        def expire(self):
            return 0

    keeper = LeaseKeeper(Flaky())
    keeper.tick()
    keeper.tick()
    assert (keeper.errors, keeper.renewals) == (1, 1)
    assert keeper.period == 1.0


def test_keeper_rejects_a_bad_period_and_a_second_start(engine):
    store = QuotaStore(engine, worker_id="w", lease_seconds=3)
    with pytest.raises(ValueError, match="period"):
        LeaseKeeper(store, period=0)
    keeper = LeaseKeeper(store, period=5)
    keeper.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            keeper.start()
    finally:
        keeper.stop()


def test_keeper_expires_a_dead_workers_lapsed_holds_as_it_starts(engine):
    """After a crash and a restart the dead worker's lapsed holds are freed at once, not a period later."""
    dead = QuotaStore(engine, worker_id="dead", lease_seconds=1, clock=lambda: time.time() - 60)
    assert isinstance(dead.reserve("r-dead", dead.budgets_for("acme", user="", feature=""), Need(900, 0)), Reservation)
    keeper = LeaseKeeper(QuotaStore(engine, worker_id="restarted", lease_seconds=1), period=3600)  # its next pass: in an hour
    first_tick(keeper)
    assert keeper.expired == 1 and states(engine)["r-dead"][0] == "expired"

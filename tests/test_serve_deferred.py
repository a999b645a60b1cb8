"""When the database fails a request's settle or release, and other quota edges on SQLite.

A settle or release that hits a database error is deferred with what it had to record and the
lease keeper runs it again; a hold nobody owns any more stops being renewed and expires. Also:
the ledger row's day is the budget period's day at midnight, a deadlock victim is run again, and
the opportunistic expire inside planning never fails a request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import time
from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace

import anyio
import psycopg.errors
import pytest
from sqlalchemy.exc import OperationalError

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.config import ModelConfig
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.hold import Hold
from ragtrim.serve.lease import LeaseKeeper
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.metrics import Metrics
from ragtrim.serve.plan import Attempt, Refused, plan_and_reserve
from ragtrim.serve.pricing import ModelPrice
from ragtrim.serve.quota import GAVE_UP_NOTE, Need, QuotaStore, Reservation
from ragtrim.serve.schema import budget_usage, ledger, reservations
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import budget, chat_body, gateway, tenant_with_key
from quota_fixtures import Clock, engine  # noqa: F401 (engine is a fixture)

LOG = logging.getLogger("ragtrim.serve.test_deferred")


def db_error() -> OperationalError:
    return OperationalError("UPDATE rt_reservations ...", {}, Exception("server closed the connection unexpectedly"))


def breaks(store: QuotaStore, name: str, times: int | None) -> None:
    """``store.<name>`` raises a database error the first ``times`` calls (None: every call), then works."""
    real, left = getattr(store, name), [times]

    def broken(*args, **kwargs):
        if left[0] is None or left[0] > 0:
            left[0] = None if left[0] is None else left[0] - 1
            raise db_error()
        return real(*args, **kwargs)

    setattr(store, name, broken)


def counters(engine) -> tuple[int, int]:
    with engine.connect() as c:
        row = c.execute(budget_usage.select()).first()
    return int(row.spent), int(row.reserved)


def row_of(engine, rid: str):
    with engine.connect() as c:
        return c.execute(ledger.select().where(ledger.c.id == rid)).first()


def states(engine) -> dict[str, str]:
    with engine.connect() as c:
        return {r.request_id: r.state for r in c.execute(reservations.select()).all()}


def store_with_budget(engine, clock: Clock) -> QuotaStore:
    """Worker ``w``'s store (lease 10 s on ``clock``) and a 1000-token daily budget."""
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    return QuotaStore(engine, worker_id="w", lease_seconds=10, clock=clock)


def hold_for(store: QuotaStore, rid: str = "r1", tokens: int = 800) -> Hold:
    """``rid`` reserved (with its pending row) and its :class:`Hold`."""
    pending = LedgerEntry(id=rid, ts=store.clock(), tenant_id="acme", endpoint="chat", action="pending", reserved_tokens=tokens)
    assert isinstance(store.reserve(rid, store.budgets_for("acme", user="", feature=""), Need(tokens, 0), pending), Reservation)
    return Hold(SimpleNamespace(quota=store, log=LOG, metrics=Metrics()), pending, time.perf_counter())


def test_a_release_that_fails_is_deferred_and_the_keeper_finishes_it(engine):
    store = store_with_budget(engine, Clock())
    hold = hold_for(store)
    breaks(store, "release", times=1)
    anyio.run(lambda: hold.release(502, "upstream failed"))  # not raised: the client's 502 stays a 502
    assert hold.done and set(store.deferred()) == {"r1"}
    assert counters(engine) == (0, 800)
    keeper = LeaseKeeper(store, log=LOG)
    keeper.tick()
    assert counters(engine) == (0, 0) and states(engine) == {"r1": "released"}
    row = row_of(engine, "r1")
    assert (row.action, row.status, row.error) == ("failed", 502, "upstream failed")
    assert store.deferred() == {} and store.open_requests() == set() and keeper.deferred_done == 1


def test_a_settle_that_fails_is_deferred_with_its_usage_never_released(engine):
    store = store_with_budget(engine, Clock())
    hold = hold_for(store)
    breaks(store, "settle", times=1)
    final = replace(hold.entry, action="ok", status=200, prompt_tokens=500, completion_tokens=100)

    async def answer() -> str:  # what chat.py does: settle, and abandon the hold on any error
        try:
            await hold.settle(final, 500, 100, 0)
        except OperationalError as exc:
            await hold.abandon(exc)
            return "raised"
        return "settled"

    assert anyio.run(answer) == "settled"  # the upstream answered: the client gets that answer, not an error
    assert counters(engine) == (0, 800)  # still held: the upstream was paid for, so never released uncharged
    LeaseKeeper(store, log=LOG).tick()
    assert counters(engine) == (600, 0) and states(engine) == {"r1": "settled"}
    row = row_of(engine, "r1")
    assert (row.action, row.status, row.prompt_tokens + row.completion_tokens) == ("ok", 200, 600)


def test_a_hold_given_up_stops_being_renewed_and_its_own_worker_expires_it(engine):
    clock = Clock()
    store = store_with_budget(engine, clock)
    hold = hold_for(store, "r1", 300)
    hold_for(store, "r2", 200)  # another request of this worker, in flight
    breaks(store, "release", times=None)  # the database keeps failing this request's release
    with contextlib.suppress(Exception):
        anyio.run(lambda: hold.release(502, "upstream failed"))
    keeper = LeaseKeeper(store, log=LOG)
    for _ in range(4):  # two leases
        clock.t += 5
        keeper.tick()
    assert states(engine) == {"r1": "expired", "r2": "held"}  # r1 no longer renewed once given up; r2 still is
    assert counters(engine) == (0, 200)
    row = row_of(engine, "r1")
    assert row.action == "failed" and row.error == GAVE_UP_NOTE
    assert keeper.deferred_given_up == 1 and store.open_requests() == {"r2"}


def test_stopping_the_keeper_runs_the_deferred_once_more(engine):
    store = store_with_budget(engine, Clock())
    hold = hold_for(store)
    breaks(store, "release", times=1)
    with contextlib.suppress(Exception):
        anyio.run(lambda: hold.release(502, "upstream failed"))
    LeaseKeeper(store, log=LOG).stop()  # the worker shuts down before the next tick
    assert counters(engine) == (0, 0) and states(engine) == {"r1": "released"}


def test_the_gateway_keeps_its_502_and_frees_the_room_after_a_failed_release():
    with serve_in_thread(create_fake_upstream(latency_ms=1, answer_tokens=10)) as up:
        with gateway(up, lease_seconds=1) as (client, service):  # the keeper ticks every 0.33 s
            key = tenant_with_key(service, "acme")
            budget(service, "acme", "tokens", 600)  # room for one request's worst case at a time
            headers = {"Authorization": f"Bearer {key}"}
            breaks(service.quota, "release", times=1)
            r = client.post("/v1/chat/completions", json=chat_body("FAIL_UPSTREAM please"), headers=headers)
            assert r.status_code == 502
            deadline = time.monotonic() + 10
            while service.quota.deferred() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert service.quota.deferred() == {}
            assert set(states(service.engine).values()) == {"released"}
            r = client.post("/v1/chat/completions", json=chat_body(), headers=headers)
            assert r.status_code == 200 and r.headers["x-ragtrim-action"] == "ok"


def test_the_gateway_charges_a_settle_that_failed_once_the_database_answers():
    with serve_in_thread(create_fake_upstream(latency_ms=1, answer_tokens=10)) as up:
        with gateway(up, lease_seconds=1) as (client, service):
            key = tenant_with_key(service, "acme")
            budget(service, "acme", "tokens", 10_000)
            breaks(service.quota, "settle", times=1)
            r = client.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200  # the answer that was paid for is delivered, so the client does not pay twice
            deadline = time.monotonic() + 10
            while service.quota.deferred() and time.monotonic() < deadline:
                time.sleep(0.05)
            with service.engine.connect() as c:
                row = c.execute(ledger.select()).first()
                spent, reserved = c.execute(budget_usage.select()).first()[2:]
            assert row.action == "ok" and row.prompt_tokens + row.completion_tokens == spent > 0 and reserved == 0


def test_the_pending_rows_day_is_the_budget_periods_day_at_midnight(engine):
    midnight = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    set_budget(engine, tenant_id="acme", unit="usd", period="month", limit=1000)
    store = QuotaStore(engine, worker_id="w", clock=Clock(midnight + 0.01))  # reserved just after midnight
    arrived = LedgerEntry(id="r1", ts=midnight - 0.02, tenant_id="acme", endpoint="chat", action="pending")  # just before
    assert isinstance(store.reserve("r1", store.budgets_for("acme", user="", feature=""), Need(10, 10), arrived), Reservation)
    store.settle("r1", Need(5, 5), replace(arrived, action="ok", status=200, prompt_tokens=5, cost_micro=5))
    with engine.connect() as c:
        periods = sorted(r.period_start for r in c.execute(budget_usage.select()).all())
    assert periods == ["2027-01", "2027-01-01"]
    assert row_of(engine, "r1").day == "2027-01-01"


def test_the_gateways_ledger_day_and_budget_period_agree_at_midnight(tmp_path):
    from starlette.testclient import TestClient

    from ragtrim.serve.app import create_app
    from ragtrim.serve.service import Service
    from serve_fixtures import PEPPER, gateway_config

    midnight = dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    ticks = itertools.count()
    clock = lambda: midnight - 0.05 + 0.02 * next(ticks)  # noqa: E731 - each read 20 ms later: the request spans midnight
    with serve_in_thread(create_fake_upstream(latency_ms=1, answer_tokens=10)) as up:
        service = Service(gateway_config(up), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER, clock=clock)
        with TestClient(create_app(service)) as client:
            key = tenant_with_key(service, "acme")
            budget(service, "acme", "usd", 1_000_000, period="month")
            r = client.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
            with service.engine.connect() as c:
                day = c.execute(ledger.select()).first().day
                period = c.execute(budget_usage.select()).first().period_start
    assert day[:7] == period


def _deadlock() -> OperationalError:
    return OperationalError("UPDATE rt_budget_usage ...", {}, psycopg.errors.DeadlockDetected("deadlock detected"))


def test_a_deadlock_victim_is_run_again_and_other_errors_are_not(engine):
    store = store_with_budget(engine, Clock())
    hold_for(store)
    real_units, calls = store._units, []

    def units_once_a_victim(conn, ids):  # the first attempt of the settle is aborted as a deadlock victim
        calls.append(1)
        if len(calls) == 1:
            raise _deadlock()
        return real_units(conn, ids)

    store._units = units_once_a_victim
    assert store.settle("r1", Need(300, 0)).late is False
    assert len(calls) == 2 and counters(engine) == (300, 0)
    breaks(store, "_units", times=1)  # a plain database error is not retried
    store.reserve("r2", store.budgets_for("acme", user="", feature=""), Need(100, 0))
    with pytest.raises(OperationalError):
        store.settle("r2", Need(50, 0))


def test_an_expire_error_while_planning_does_not_fail_the_request(engine):
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    other = QuotaStore(engine, worker_id="other")
    budgets = other.budgets_for("acme", user="", feature="")
    assert isinstance(other.reserve("held", budgets, Need(900, 0)), Reservation)  # only a hold is in the way
    store = QuotaStore(engine, worker_id="w")
    breaks(store, "expire", times=None)
    price = ModelPrice("m", Decimal(1), Decimal(1), "2025-01-01")

    async def build(model, _budget):
        return Attempt(model=model, price=price, budget_tokens=None, result=None, messages=(), prompt_tokens=100, max_tokens=50)

    async def plan():
        return await plan_and_reserve(
            quota=store, run=anyio.to_thread.run_sync, budgets=budgets, request_id="r1", chain=[ModelConfig("m")],
            asked_budget=None, floor=0.1, build=build,
            pending=lambda a, action, steps: LedgerEntry(id="r1", ts=0.0, tenant_id="acme", endpoint="chat", action="pending"))

    assert isinstance(anyio.run(plan), Refused)


def test_a_deferral_still_failing_at_shutdown_is_logged_with_its_usage(engine, caplog):
    store = store_with_budget(engine, Clock())
    store.defer("settle", "r9", Need(120, 7), None, error="OperationalError: gone")
    breaks(store, "settle", times=None)
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        LeaseKeeper(store, log=LOG).stop()
    lost = [r.fields for r in caplog.records if r.getMessage() == "deferred_lost"]
    assert [(f["request_id"], f["kind"], f["tokens"], f["cost_micro"]) for f in lost] == [("r9", "settle", 120, 7)]

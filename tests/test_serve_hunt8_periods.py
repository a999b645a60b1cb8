"""Gateway holes around budget periods found by the eighth hunt, each closed (the scripts were /tmp/hunt-periods/s*.py).

1. A budget deleted while a request is being planned (between ``budgets_for`` and the reservation; also "delete
   then set again", the way to restart a budget's counters) is skipped by the reservation: the request is served
   under the budgets that exist, not answered 500 on a foreign key.
2. A 429 names the budget that blocks: of several budgets without room, a spent one before one only requests in
   flight hold (``insufficient_quota``), and of the spent ones the one whose period resets last (its
   ``Retry-After``), whatever the order of the budgets' random ids.
3. Concurrent ``set_budget`` calls for one new scope on PostgreSQL make one budget, none fails on the unique index.
4. The all-tenants usage page draws no one tenant's monthly dollar budget line.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from contextlib import contextmanager
from typing import Any

import pytest

from ragtrim.serve.budgets import Budget, delete_budget, list_budgets, period_reset, period_start, set_budget
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.keys import create_tenant
from ragtrim.serve.page import render_page
from ragtrim.serve.plan import exhausted
from ragtrim.serve.quota import Need, QuotaStore, Reservation, Shortfall, Standing
from ragtrim.serve.schema import budget_usage, budgets, ledger
from ragtrim.serve.testing import postgres_available, serve_in_thread

from quota_fixtures import Clock, db_engine, engine, pg_engine, pg_url  # noqa: F401 (fixtures)
from serve_fixtures import auth, chat_body, final_rows, gateway, tenant_with_key

T = dt.datetime(2026, 2, 10, 12, 0, tzinfo=dt.timezone.utc).timestamp()  # a day's reset is 12 h away, the month's 18.5 days
DAY_RESET, MONTH_RESET = period_reset("day", T), period_reset("month", T)


def budget_with_id(engine: Any, budget_id: str, tenant: str, period: str, limit: int) -> Budget:
    """A token budget of ``tenant`` whose id is ``budget_id`` (ids are random: a test that depends on their order sets them)."""
    b = set_budget(engine, tenant_id=tenant, unit="tokens", period=period, limit=limit, now=T)
    with engine.begin() as c:  # a new budget has no counters yet, so its id can change
        c.execute(budgets.update().where(budgets.c.id == b.id).values(id=budget_id))
    return Budget(budget_id, b.tenant_id, b.scope, b.scope_value, b.unit, b.period, b.limit)


def spend(engine: Any, b: Budget, amount: int) -> None:
    """``b`` has spent ``amount`` in its period at :data:`T`."""
    with engine.begin() as c:
        c.execute(budget_usage.insert().values(budget_id=b.id, period_start=period_start(b.period, T), spent=amount, reserved=0))


def db_url_for(request: Any) -> str | None:
    """None (the gateway's own SQLite file) or the module's PostgreSQL (skipped where it is not installed, except in CI)."""
    if request.param == "sqlite":
        return None
    if not postgres_available() and os.environ.get("CI") != "true":
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql); CI runs these")
    request.getfixturevalue("pg_engine")  # emptied for this test
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    return db_url_for(request)


@contextmanager
def gateway_at(db_url: str | None, clock: Any = None):
    """The gateway (serve_fixtures.gateway) on a fake upstream, its budgets' periods taken at ``clock``."""
    with serve_in_thread(create_fake_upstream(latency_ms=0)) as up, gateway(up, db_url=db_url, clock=clock) as (client, service):
        yield client, service


# 1. a budget deleted while a request is planned


def test_a_budget_deleted_after_planning_is_skipped_by_the_reservation(db_engine):
    day = set_budget(db_engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    month = set_budget(db_engine, tenant_id="acme", unit="tokens", period="month", limit=5000)
    store = QuotaStore(db_engine, worker_id="w1")
    planned_with = store.budgets_for("acme", user="", feature="")
    assert delete_budget(db_engine, day.id)  # an admin's DELETE lands while the request is planned
    r = store.reserve("r1", planned_with, Need(tokens=10, micro=0))
    assert isinstance(r, Reservation) and r.budget_ids == (month.id,)
    assert [(s.spent, s.reserved) for s in store.standings([month])] == [(0, 10)]
    store.settle("r1", Need(tokens=7, micro=0))
    assert [(s.spent, s.reserved) for s in store.standings([month])] == [(7, 0)]


def test_a_budget_deleted_and_set_again_after_planning_does_not_fail_the_reservation(db_engine):
    old = set_budget(db_engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    store = QuotaStore(db_engine, worker_id="w1")
    planned_with = store.budgets_for("acme", user="", feature="")
    delete_budget(db_engine, old.id)  # the documented way to restart a budget's counters
    new = set_budget(db_engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    r = store.reserve("r1", planned_with, Need(tokens=10, micro=0))
    assert isinstance(r, Reservation) and r.budget_ids == ()  # planned before the new budget existed
    assert store.reserve("r2", store.budgets_for("acme", user="", feature=""), Need(tokens=10, micro=0)).budget_ids == (new.id,)


def test_a_request_whose_budget_is_deleted_while_it_is_planned_is_served(db_url):
    with gateway_at(db_url) as (client, service):
        key = tenant_with_key(service, "bigco")  # pg_engine made acme
        set_budget(service.engine, tenant_id="bigco", unit="tokens", period="day", limit=100_000)
        read = service.quota.budgets_for

        def racing(*args: Any, **kwargs: Any) -> Any:
            out = read(*args, **kwargs)
            for b in out:  # DELETE /v1/admin/budgets/{id} lands while this request is planned
                delete_budget(service.engine, b.id)
            return out

        service.quota.budgets_for = racing
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 200, r.text
        [row] = final_rows(service)
        assert (row["action"], row["status"]) == ("ok", 200)


# 2. the budget a 429 names


@pytest.mark.parametrize("ids", [("a", "b"), ("b", "a")], ids=["day-first", "month-first"])
def test_the_store_names_the_spent_budget_that_resets_last(engine, ids):
    day = budget_with_id(engine, ids[0], "acme", "day", 1000)
    month = budget_with_id(engine, ids[1], "acme", "month", 5000)
    spend(engine, day, 1000)
    spend(engine, month, 5000)
    out = QuotaStore(engine, worker_id="w1", clock=Clock(T)).reserve("r1", [day, month], Need(tokens=10, micro=0))
    assert isinstance(out, Shortfall)
    assert (out.budget.id, out.reset_at, out.held_only) == (month.id, MONTH_RESET, False)


@pytest.mark.parametrize("ids", [("a", "b"), ("b", "a")], ids=["day-first", "month-first"])
def test_the_store_names_a_spent_budget_before_one_requests_in_flight_hold(engine, ids):
    day = budget_with_id(engine, ids[0], "acme", "day", 1000)
    month = budget_with_id(engine, ids[1], "acme", "month", 5000)
    spend(engine, month, 5000)
    clock = Clock(T)
    assert isinstance(QuotaStore(engine, worker_id="other", clock=clock).reserve("held", [day], Need(tokens=995, micro=0)), Reservation)
    out = QuotaStore(engine, worker_id="w1", clock=clock).reserve("r1", [day, month], Need(tokens=10, micro=0))
    assert isinstance(out, Shortfall) and (out.budget.id, out.held_only, out.spent) == (month.id, False, 5000)


def test_the_store_answers_held_only_when_every_budget_without_room_is_held(engine):
    day = budget_with_id(engine, "a", "acme", "day", 1000)
    month = budget_with_id(engine, "b", "acme", "month", 1000)
    clock = Clock(T)
    assert isinstance(QuotaStore(engine, worker_id="other", clock=clock).reserve("held", [day, month], Need(tokens=995, micro=0)),
                      Reservation)
    out = QuotaStore(engine, worker_id="w1", clock=clock).reserve("r1", [day, month], Need(tokens=10, micro=0))
    assert isinstance(out, Shortfall) and out.held_only and out.spent == 0


@pytest.mark.parametrize("first", ["day", "month"])
def test_the_early_refusal_names_the_spent_budget_that_resets_last(first):
    def standing(period: str, spent: int, reserved: int) -> Standing:
        return Standing(Budget(period, "acme", "tenant", "", "tokens", period, 1000), period_start(period, T), spent, reserved)

    def reset(b: Budget) -> float:
        return period_reset(b.period, T)

    spent_both = [standing("day", 1000, 0), standing("month", 1000, 0)]
    held_day = [standing("day", 0, 995), standing("month", 1000, 0)]
    for standings in (spent_both, held_day):
        ordered = standings if first == "day" else standings[::-1]
        s = exhausted(ordered, [Need(tokens=10, micro=0)], reset)
        assert s is not None and (s.budget.period, s.reset_at, s.held_only) == ("month", MONTH_RESET, False)
    only_held = exhausted([standing("day", 0, 995), standing("month", 0, 995)], [Need(tokens=10, micro=0)], reset)
    assert only_held is not None and only_held.held_only


@pytest.mark.parametrize("ids", [("a", "b"), ("b", "a")], ids=["day-first", "month-first"])
def test_a_429_waits_for_the_last_spent_budget_to_reset(ids):
    with gateway_at(None, Clock(T)) as (client, service):
        key = tenant_with_key(service, "acme")
        budget_with_id(service.engine, ids[0], "acme", "day", 5)  # both far too small: nothing fits before both reset
        budget_with_id(service.engine, ids[1], "acme", "month", 5)
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert (r.status_code, r.json()["error"]["code"]) == (429, "insufficient_quota")
        assert r.headers["Retry-After"] == str(int(MONTH_RESET - T))
        assert "acme tokens/month" in r.json()["error"]["message"]


@pytest.mark.parametrize("ids", [("a", "b"), ("b", "a")], ids=["day-first", "month-first"])
def test_a_spent_budget_is_a_429_insufficient_quota_though_another_is_only_busy(ids):
    clock = Clock(T)
    with gateway_at(None, clock) as (client, service):
        key = tenant_with_key(service, "acme")
        day = budget_with_id(service.engine, ids[0], "acme", "day", 2000)
        month = budget_with_id(service.engine, ids[1], "acme", "month", 5000)
        spend(service.engine, month, 5000)  # an earlier day used the whole month
        QuotaStore(service.engine, worker_id="other-live-worker", clock=clock).reserve("in-flight", [day], Need(tokens=1990, micro=0))
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert (r.status_code, r.json()["error"]["code"]) == (429, "insufficient_quota")
        assert r.headers["Retry-After"] == str(int(MONTH_RESET - T))
        assert "acme tokens/month" in r.json()["error"]["message"]
        with service.engine.connect() as c:
            assert c.execute(ledger.select().where(ledger.c.action == "refused")).first() is not None


# 3. concurrent set_budget for one new scope on PostgreSQL


@pytest.mark.skipif(not postgres_available() and os.environ.get("CI") != "true",
                    reason="PostgreSQL is not installed (apt-get install -y postgresql); CI runs these")
def test_concurrent_set_budget_for_a_new_scope_makes_one_budget_on_postgresql(pg_engine):
    for trial in range(10):  # the race is between four threads' select and insert: try it a few times
        tenant = f"t{trial}"
        create_tenant(pg_engine, tenant)
        barrier, errors, made = threading.Barrier(4), [], []

        def put(limit: int) -> None:
            barrier.wait()
            try:
                made.append(set_budget(pg_engine, tenant_id=tenant, unit="tokens", period="day", limit=limit))  # noqa: B023
            except Exception as exc:  # noqa: BLE001 (the test reports it)
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

        threads = [threading.Thread(target=put, args=(1000 + i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        [b] = list_budgets(pg_engine, tenant)
        assert b.limit in {1000, 1001, 1002, 1003}
        assert {m.id for m in made} == {b.id}  # every call answers with the budget that exists (a loser's id was made up)


def test_set_budget_again_changes_the_limit_and_keeps_the_id_and_counters(db_engine):
    b = set_budget(db_engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
    store = QuotaStore(db_engine, worker_id="w1")
    store.reserve("r1", [b], Need(tokens=10, micro=0))
    again = set_budget(db_engine, tenant_id="acme", unit="tokens", period="day", limit=2000)
    assert (again.id, again.limit) == (b.id, 2000)
    assert [(s.budget.limit, s.reserved) for s in store.standings(list_budgets(db_engine, "acme"))] == [(2000, 10)]


# 4. the usage page's budget line


def test_the_all_tenants_page_draws_no_tenants_monthly_budget_line():
    daily = [{"day": "2026-12-01", "cost_micro": 9_000_000, "saved_micro": 0}]  # acme's $1 and bigco's $8
    quota = [{"id": "1", "tenant": "acme", "scope": "tenant", "scope_value": "", "unit": "usd", "period": "month",
              "period_start": "2026-12", "limit": 2_000_000, "spent": 1_000_000, "reserved": 0, "resets_at": 1798761600.0}]
    everyone = render_page(None, daily, {"cost_micro": 9_000_000}, quota, [], [])
    assert 'id="budget-line"' not in everyone and "monthly $ budget" not in everyone
    assert 'id="quota"' in everyone and "acme" in everyone  # the budget is still in the quota table
    one = render_page("acme", daily[:1], {"cost_micro": 1_000_000}, quota, [], [])
    assert 'id="budget-line"' in one and "monthly $ budget" in one

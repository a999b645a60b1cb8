"""The quota invariants and the gateway on PostgreSQL: a throwaway cluster started by the test,
two replicas (two gateways in separate processes would share it the same way; here two apps
with their own engines and worker ids share it, and processes hammer the store).

Runs wherever initdb/pg_ctl exist (Debian: apt-get install postgresql); when CI=true a
missing PostgreSQL is a failure, not a skip.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import uuid

import pytest

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.db import make_engine
from ragtrim.serve.quota import Need, QuotaStore, Reservation
from ragtrim.serve.schema import budget_usage, ledger
from ragtrim.serve.testing import serve_in_thread
from quota_fixtures import pg_engine, pg_url, require_postgres  # noqa: F401 (fixtures)

pytestmark = pytest.mark.postgres

require_postgres()


@pytest.fixture
def engine(pg_engine):
    return pg_engine


def _counters(engine, bid):
    with engine.connect() as c:
        row = c.execute(budget_usage.select().where(budget_usage.c.budget_id == bid)).first()
    return int(row.spent), int(row.reserved)


def _worker(url: str, n: int, queue) -> None:
    engine = make_engine(url, create=False)
    store = QuotaStore(engine, worker_id=f"p{os.getpid()}")
    budgets = store.budgets_for("acme", user="", feature="")
    ok = 0
    for _ in range(n):
        rid = uuid.uuid4().hex
        if isinstance(store.reserve(rid, budgets, Need(tokens=10, micro=4)), Reservation):
            store.settle(rid, Need(tokens=10, micro=3))
            ok += 1
    engine.dispose()
    queue.put(ok)


def test_no_overspend_across_processes_and_threads(engine, pg_url):
    bt = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=2_005)
    bu = set_budget(engine, tenant_id="acme", unit="usd", period="month", limit=1_000_000)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(pg_url, 80, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results: list[int] = []
    store = QuotaStore(engine, worker_id="threads")
    budgets = store.budgets_for("acme", user="", feature="")

    def hammer() -> None:
        for _ in range(30):
            rid = uuid.uuid4().hex
            if isinstance(store.reserve(rid, budgets, Need(tokens=10, micro=4)), Reservation):
                store.settle(rid, Need(tokens=10, micro=3))
                results.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = sum(queue.get(timeout=180) for _ in procs) + len(results)
    for p in procs:
        p.join(60)
    assert answered == 200 and _counters(engine, bt.id) == (2000, 0)
    assert _counters(engine, bu.id) == (600, 0)


def test_two_replicas_share_budgets_and_ledger(engine, pg_url):
    from ragtrim.serve.fake_upstream import create_fake_upstream

    from serve_fixtures import budget, chat_body, gateway, tenant_with_key

    with serve_in_thread(create_fake_upstream(latency_ms=1, answer_tokens=10)) as up:
        with gateway(up, db_url=pg_url) as (a, sa), gateway(up, db_url=pg_url) as (b, sb):
            assert sa.worker_id != sb.worker_id
            key = tenant_with_key(sa, "globex")
            budget(sa, "globex", "tokens", 3_000)
            codes = []
            for i in range(60):
                client = a if i % 2 else b
                r = client.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {key}"})
                codes.append(r.status_code)
            assert 200 in codes and 429 in codes
            with sa.engine.connect() as c:
                rows = c.execute(ledger.select().where(ledger.c.tenant_id == "globex")).all()
                spent = sum(r.prompt_tokens + r.completion_tokens for r in rows if r.action in ("ok", "degraded"))
            assert len(rows) == 60 and {r.worker_id for r in rows} == {sa.worker_id, sb.worker_id}
            st = a.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()["budgets"][0]
            assert st["spent"] == spent <= 3_000 and st["reserved"] == 0

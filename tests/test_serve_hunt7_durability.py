"""Durability: a graceful shutdown that runs out of time, leases on a clock that steps, a database
that cannot be reached."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from types import SimpleNamespace

import httpx

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.db import make_engine
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.hostclock import HostClock
from ragtrim.serve.keys import create_key, create_tenant
from ragtrim.serve.quota import Need, QuotaStore, Reservation, Shortfall
from ragtrim.serve.schema import ledger
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import PEPPER, auth, chat_body, gateway_config, spent_and_reserved, tenant_with_key
from test_serve_process import sigterm_while, start_gateway


def test_streams_cut_by_the_graceful_timeout_are_settled_before_the_worker_exits(tmp_path):
    """SIGTERM with ``--graceful-timeout 1`` while 10 s streams run: uvicorn cancels them; each is still
    settled (charged the text it carried), none left pending and no room held."""
    engine = make_engine(f"sqlite:///{tmp_path}/s.sqlite")
    create_tenant(engine, "acme")
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1_000_000)
    key = create_key(engine, b"p" * 32, tenant_id="acme")[1]
    with serve_in_thread(create_fake_upstream(latency_ms=0, answer_tokens=20, token_delay_ms=500)) as up:
        proc, base = start_gateway(
            tmp_path, f'preset = "bm25-pack"\n[upstreams.fake]\nbase_url = "{up}/v1"\n'
            '[models."gpt-4o"]\nupstream = "fake"\ntokenizer = "cl100k_base"\n', workers=1,
            args=["--graceful-timeout", "1"])
        started = threading.Barrier(3)

        def stream() -> None:
            try:
                with httpx.stream("POST", f"{base}/v1/chat/completions", json=chat_body(stream=True),
                                  headers={"Authorization": f"Bearer {key}"}, timeout=30) as r:
                    pieces = r.iter_bytes()
                    next(pieces)
                    started.wait(10)  # its first bytes are here: the request holds its reservation
                    for _ in pieces:
                        pass
            except (httpx.HTTPError, threading.BrokenBarrierError):
                pass

        sigterm_while(proc, [threading.Thread(target=stream) for _ in range(2)], lambda: started.wait(30))
    with engine.connect() as c:
        rows = [r._asdict() for r in c.execute(ledger.select()).all()]
    assert len(rows) == 2 and [r["action"] for r in rows] == ["ok", "ok"], rows
    assert all(0 < r["completion_tokens"] < 20 for r in rows), rows  # charged the text each carried
    spent, reserved = spent_and_reserved(SimpleNamespace(engine=engine))
    assert reserved == 0 and spent == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)


def test_a_database_that_cannot_be_opened_is_a_503_to_retry_logged_as_an_error(tmp_path, caplog):
    """The SQLite file's folder gone: the client gets a 503 naming the database with ``x-should-retry: true``
    (not a 500 "internal error"), and the server log has the error at ERROR."""
    from starlette.testclient import TestClient

    from ragtrim.serve.app import create_app
    from ragtrim.serve.service import Service

    (tmp_path / "db").mkdir()
    service = Service(gateway_config("http://127.0.0.1:9"), db_url=f"sqlite:///{tmp_path}/db/s.sqlite", pepper=PEPPER)
    key = tenant_with_key(service, "acme")
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        service.engine.dispose()
        (tmp_path / "db").rename(tmp_path / "gone")
        with caplog.at_level(logging.INFO, logger=service.log.name):
            r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        (tmp_path / "gone").rename(tmp_path / "db")
    assert r.status_code == 503 and r.headers["x-should-retry"] == "true", r.text
    assert r.json()["error"]["code"] == "database_unavailable" and "sqlite" in r.json()["error"]["message"]
    [logged] = [rec for rec in caplog.records if rec.getMessage() == "internal_error"]
    assert logged.levelno == logging.ERROR and "unable to open" in logged.fields["error"]


class Host:
    """One host's clocks, as a test steps them: the wall clock (``wall``) and the monotonic one (``mono``)."""

    def __init__(self, wall: float) -> None:
        self.wall, self.mono, self.boot = wall, 1000.0, "boot-1"

    def lease_clock(self) -> HostClock:
        return HostClock(boot_id=self.boot, monotonic=lambda: self.mono, wall=lambda: self.wall)

    def store(self, engine, worker: str) -> QuotaStore:
        return QuotaStore(engine, worker_id=worker, lease_seconds=30, clock=lambda: self.wall, host_clock=self.lease_clock())


def host_and_budgets(tmp_path, name: str):
    engine = make_engine(f"sqlite:///{tmp_path}/{name}.sqlite")
    create_tenant(engine, "acme")
    host = Host(time.time())
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000, now=host.wall)
    a = host.store(engine, "A")
    return engine, host, a, a.budgets_for("acme", user="", feature="")


def test_on_sqlite_a_wall_clock_stepped_back_does_not_keep_a_dead_workers_hold(tmp_path):
    engine, host, a, budgets = host_and_budgets(tmp_path, "back")
    assert isinstance(a.reserve("a1", budgets, Need(800, 0)), Reservation)  # then A dies
    host.wall -= 3600  # the wall clock is stepped back an hour; a minute passes
    host.mono += 60
    b = host.store(engine, "B")
    assert b.expire() == 1 and isinstance(b.reserve("b1", budgets, Need(500, 0)), Reservation)


def test_on_sqlite_a_wall_clock_stepped_forward_does_not_expire_a_live_workers_hold(tmp_path):
    engine, host, a, budgets = host_and_budgets(tmp_path, "forward")
    b = host.store(engine, "B")
    assert isinstance(a.reserve("a1", budgets, Need(800, 0)), Reservation)  # in flight on A
    host.wall += 120  # stepped forward two minutes; a second passes
    host.mono += 1
    assert b.expire() == 0 and isinstance(b.reserve("b1", budgets, Need(800, 0)), Shortfall)
    a.settle("a1", Need(700, 0))
    assert [(s.spent, s.reserved) for s in a.standings(budgets)] == [(700, 0)]


def test_on_sqlite_holds_from_before_a_reboot_lapse_on_time(tmp_path):
    """The monotonic clock starts again at a reboot: the new boot's anchor (its wall clock) still puts its
    lease times after the old boot's."""
    engine, host, a, budgets = host_and_budgets(tmp_path, "reboot")
    host.mono = 5_000_000.0  # the old boot had run for two months
    assert isinstance(a.reserve("a1", budgets, Need(800, 0)), Reservation)  # then the host reboots
    host.boot, host.mono, host.wall = "boot-2", 20.0, host.wall + 60
    b = host.store(engine, "B")
    assert b.expire() == 1 and isinstance(b.reserve("b1", budgets, Need(500, 0)), Reservation)

"""Shared set-up for the quota store's tests: a settable clock and a store's database.

``engine`` is a SQLite file per test; ``pg_url``/``pg_engine`` a throwaway PostgreSQL cluster
per module (started by :func:`ragtrim.serve.testing.temp_postgres`), emptied for each test.
Both databases hold one tenant, ``acme``.
"""

from __future__ import annotations

import os

import pytest

from ragtrim.serve.db import make_engine
from ragtrim.serve.keys import create_tenant
from ragtrim.serve.testing import postgres_available, temp_postgres

TABLES = ("rt_reservations", "rt_budget_usage", "rt_ledger", "rt_budgets", "rt_api_keys", "rt_tenants")


def require_postgres() -> None:
    """Skip the calling test module where PostgreSQL (initdb/pg_ctl) is not installed, except under
    ``CI=true``, where a missing PostgreSQL is a failure, not a skip."""
    if not postgres_available() and os.environ.get("CI") != "true":
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql); CI runs these", allow_module_level=True)


class Clock:
    """A clock a test sets: ``clock.t = ...``; the store reads it by calling it."""

    def __init__(self, t: float = 1_750_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")
    create_tenant(e, "acme")
    yield e
    e.dispose()


@pytest.fixture(scope="module")
def pg_url():
    with temp_postgres() as url:
        yield url


@pytest.fixture
def pg_engine(pg_url):
    e = make_engine(pg_url)
    with e.begin() as c:
        for t in TABLES:
            c.exec_driver_sql(f"DELETE FROM {t}")
    create_tenant(e, "acme")
    yield e
    e.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_engine(request):
    """The test twice: on a SQLite file (:func:`engine`) and on PostgreSQL (:func:`pg_engine`; skipped where it is not
    installed, except under ``CI=true``)."""
    if request.param == "postgresql" and not postgres_available() and os.environ.get("CI") != "true":
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql); CI runs these")
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


def first_tick(keeper) -> None:  # type: ignore[no-untyped-def]
    """Start a :class:`~ragtrim.serve.lease.LeaseKeeper`, wait (at most 10 s) for the pass it runs as it starts, stop it."""
    import time

    keeper.start()
    try:
        deadline = time.monotonic() + 10
        while keeper.renewals == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        keeper.stop()

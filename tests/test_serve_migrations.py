"""The gateway database's schema migrations (``ragtrim db status|upgrade``, :mod:`ragtrim.serve.migrate`).

``tests/data/serve-schema-0001.sqlite`` is a database the last ragtrim before migrations made
(commit 7a590f5, 2026-12-07): tenants ``acme`` and ``beta`` (disabled), a key each, a token budget,
an ``ok`` ledger row charged through the quota store and a ``refused`` one. Tests copy it first.

Checked: a new database is made whole and stamped; an old one is refused with the command that
fixes it (by the gateway, the admin commands and the read-only ones), upgraded in place with its
rows kept, and then matches a new one exactly (Alembic's own schema comparison); a database a newer
ragtrim upgraded is refused; two gateways starting on one new PostgreSQL database make it once.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from ragtrim.cli import build_app
from ragtrim.serve import migrate
from ragtrim.serve.app import create_app
from ragtrim.serve.db import make_engine, normalize_url
from ragtrim.serve.keys import create_key, create_tenant, key_id, list_tenants, set_tenant_disabled
from ragtrim.serve.schema import ledger, metadata, tenants
from ragtrim.serve.service import Service
from ragtrim.serve.testing import postgres_available, temp_postgres
from ragtrim.serve.usage import usage_summary

from serve_fixtures import PEPPER, admin_key, auth, chat_body, gateway_config

LEGACY = Path(__file__).parent / "data" / "serve-schema-0001.sqlite"


def legacy_copy(tmp_path: Path) -> str:
    """A copy of the fixture (opening the committed file, even read-only, would leave -shm/-wal files beside it)."""
    path = tmp_path / "old.sqlite"
    shutil.copyfile(LEGACY, path)
    return f"sqlite:///{path}"


def schema_diff(engine: Any) -> list[Any]:
    """What differs between the database's tables and :mod:`ragtrim.serve.schema` (Alembic's autogenerate comparison)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"version_table": migrate.VERSION_TABLE}), metadata)


def columns(engine: Any) -> dict[str, set[str]]:
    from sqlalchemy import inspect

    found = inspect(engine)
    return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()
            if t.startswith("rt_") and t != migrate.VERSION_TABLE}


def run(*args: str) -> Any:
    return CliRunner().invoke(build_app(), list(args))


def test_a_new_database_is_made_whole_and_stamped(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/new.sqlite")
    assert migrate.current(engine) == migrate.head() == "0003"
    assert schema_diff(engine) == []
    make_engine(f"sqlite:///{tmp_path}/new.sqlite")  # opened again: used as it is
    assert migrate.upgrade(engine) == []


def test_the_fixture_is_the_schema_before_migrations(tmp_path):
    """The committed database is what the old code made: no revision, and the columns 0002 and 0003 add are not there."""
    engine = create_engine(normalize_url(legacy_copy(tmp_path)))
    assert migrate.current(engine) == migrate.BASELINE
    cols = columns(engine)
    assert "key_id" not in cols["rt_ledger"] and "cached_tokens" not in cols["rt_ledger"] and "cache_write_tokens" not in cols["rt_ledger"]
    assert "disabled_reason" not in cols["rt_tenants"]
    assert schema_diff(engine) != []


def test_an_old_database_is_refused_everywhere_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    db = legacy_copy(tmp_path)
    with pytest.raises(migrate.SchemaError, match=r"revision '0001' and this ragtrim needs '0003'.*ragtrim db upgrade"):
        make_engine(db)
    for args in (["tenants", "create", "zed"], ["tenants", "list"], ["usage"], ["keys", "list"]):
        out = run(*args, "--db", db)
        assert out.exit_code == 2, (args, out.output)
        assert "ragtrim db upgrade" in out.output, args
    out = run("serve", "--db", db, "--port", "0")
    assert out.exit_code == 2 and "ragtrim db upgrade" in out.output
    assert migrate.current(create_engine(normalize_url(db))) == "0001"  # nothing was changed behind the operator's back


def test_upgrade_keeps_every_row_and_matches_a_new_database(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    db = legacy_copy(tmp_path)
    status = run("db", "status", "--db", db)
    assert status.exit_code == 0 and "revision 0001, this ragtrim's is 0003" in status.output
    assert all(f"to run: {r}" in status.output for r in ("0001", "0002", "0003"))  # no revision recorded: all of them run

    out = run("db", "upgrade", "--db", db)
    assert out.exit_code == 0 and "ran 0001, 0002, 0003" in out.output, out.output
    engine = make_engine(db)  # now accepted
    assert schema_diff(engine) == []
    assert columns(engine) == columns(make_engine(f"sqlite:///{tmp_path}/new.sqlite"))
    with engine.connect() as c:
        rows = {r.id: r for r in c.execute(select(ledger)).all()}
    assert set(rows) == {"r-ok", "r-refused"}
    assert (rows["r-ok"].prompt_tokens, rows["r-ok"].cost_micro, rows["r-ok"].key_id, rows["r-ok"].cached_tokens,
            rows["r-ok"].cache_write_tokens) == (200, 60, "", 0, 0)
    assert {t.id: (t.disabled, t.disabled_reason) for t in list_tenants(engine)} == {"acme": (False, ""), "beta": (True, "")}
    assert usage_summary(engine, tenant_id="acme", by=["key"])["rows"][0]["key"] == ""  # older rows: no key recorded

    again = run("db", "upgrade", "--db", db)
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert "up to date" in run("db", "status", "--db", db).output


def test_an_old_database_without_the_lease_table_gets_it_from_the_upgrade(tmp_path):
    """A database older still (before rt_lease_epochs, which 0001 makes): upgraded, it is whole, and a gateway works on it."""
    db = legacy_copy(tmp_path)
    with create_engine(normalize_url(db)).begin() as c:
        c.exec_driver_sql("DROP TABLE rt_lease_epochs")
    assert migrate.upgrade(make_engine(db, create=False)) == ["0001", "0002", "0003"]
    engine = make_engine(db)
    assert schema_diff(engine) == [] and "rt_lease_epochs" in columns(engine)


def test_another_alembic_apps_version_table_is_its_own(tmp_path):
    """An app sharing the database keeps its ``alembic_version``; ragtrim reads and writes only ``rt_alembic_version``."""
    for name, make in (("new", None), ("old", legacy_copy)):
        db = make(tmp_path) if make else f"sqlite:///{tmp_path}/{name}.sqlite"
        with create_engine(normalize_url(db)).begin() as c:
            c.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
            c.exec_driver_sql("INSERT INTO alembic_version VALUES ('3f2a9c1b7d44')")
        if make:
            assert migrate.upgrade(make_engine(db, create=False)) == ["0001", "0002", "0003"]
        engine = make_engine(db)
        assert migrate.current(engine) == migrate.head()
        with engine.connect() as c:
            assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one() == "3f2a9c1b7d44"


def test_a_database_a_newer_ragtrim_upgraded_is_refused(tmp_path):
    db = f"sqlite:///{tmp_path}/newer.sqlite"
    engine = make_engine(db)
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE rt_alembic_version SET version_num = '0099'")
    with pytest.raises(migrate.SchemaError, match="'0099', which this ragtrim does not know"):
        make_engine(db)
    out = run("db", "upgrade", "--db", db)
    assert out.exit_code == 2 and "does not know" in out.output


def test_downgrade_to_the_baseline_gives_the_old_schema(tmp_path):
    """0003's and 0002's downgrades undo exactly what their upgrades did: the columns of the database the old code made."""
    from alembic import command

    engine = make_engine(f"sqlite:///{tmp_path}/down.sqlite")
    with engine.begin() as conn:
        command.downgrade(migrate._config(conn), migrate.BASELINE)
    assert columns(engine) == columns(create_engine(normalize_url(legacy_copy(tmp_path))))


def test_a_0002_database_upgraded_keeps_its_rows_and_gets_the_cache_write_column(tmp_path, monkeypatch):
    """A database the previous ragtrim made (revision 0002, a row with cache reads) is refused until upgraded, then keeps
    its rows, their cache writes 0, and matches a new database."""
    from alembic import command

    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    db = f"sqlite:///{tmp_path}/at2.sqlite"
    engine = make_engine(db)
    with engine.begin() as conn:
        command.downgrade(migrate._config(conn), "0002")
    assert "cache_write_tokens" not in columns(engine)["rt_ledger"]
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO rt_tenants (id, name, created, disabled) VALUES ('acme', 'acme', 0, 0)")
        conn.exec_driver_sql("INSERT INTO rt_ledger (id, ts, day, tenant_id, user, feature, endpoint, model_asked, model_used, preset, "
                             "tokens_full, tokens_sent, prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_micro, "
                             "saved_micro, reserved_micro, reserved_tokens, price_ref, budget_asked, action, status, latency_ms, "
                             "upstream_ms, stream, detail, error, worker_id, key_id) VALUES ('r2', 0, '1970-01-01', 'acme', '', '', "
                             "'messages', '', '', '', 0, 0, 500, 6, 120, 'upstream', 9, 0, 0, 0, '', '', 'ok', 200, 0, 0, 0, '', '', "
                             "'w', 'k1')")
    with pytest.raises(migrate.SchemaError, match=r"revision '0002' and this ragtrim needs '0003'.*ragtrim db upgrade"):
        make_engine(db)
    out = run("db", "upgrade", "--db", db)
    assert out.exit_code == 0 and "ran 0003" in out.output and "0002," not in out.output, out.output
    engine = make_engine(db)
    assert schema_diff(engine) == []
    with engine.connect() as c:
        row = c.execute(select(ledger)).one()
    assert (row.id, row.prompt_tokens, row.cached_tokens, row.cache_write_tokens, row.cost_micro, row.key_id) == (
        "r2", 500, 120, 0, 9, "k1")
    assert usage_summary(engine, tenant_id="acme", by=[])["totals"]["cache_write_tokens"] == 0


def test_the_ledger_records_the_key_and_usage_groups_by_it(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/k.sqlite")
    create_tenant(engine, "acme")
    service = Service(gateway_config("http://127.0.0.1:9"), db_url=str(engine.url), engine=engine, pepper=PEPPER)
    first, second = create_key(engine, PEPPER, tenant_id="acme")[1], create_key(engine, PEPPER, tenant_id="acme")[1]
    with TestClient(create_app(service)) as client:
        for key, n in ((first, 2), (second, 1)):
            for _ in range(n):
                r = client.post("/v1/optimize", headers=auth(key), json={"query": "capital of France?",
                                                                         "chunks": [{"id": "a", "text": "Paris is the capital of France."}]})
                assert r.status_code == 200, r.text
    by_key = {row["key"]: row["requests"] for row in usage_summary(engine, tenant_id="acme", by=["key"])["rows"]}
    assert by_key == {key_id(first): 2, key_id(second): 1}


def test_a_suspension_reason_is_kept_for_operators_and_cleared_on_enable(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/r.sqlite")
    create_tenant(engine, "acme")
    service = Service(gateway_config("http://127.0.0.1:9"), db_url=str(engine.url), engine=engine, pepper=PEPPER)
    key = create_key(engine, PEPPER, tenant_id="acme")[1]
    with TestClient(create_app(service)) as client:
        admin = auth(admin_key(service))
        r = client.post("/v1/admin/tenants/acme/disable", headers=admin, json={"reason": "invoice 42 unpaid"})
        assert r.status_code == 200 and r.json()["disabled_reason"] == "invoice 42 unpaid"
        listed = client.get("/v1/admin/tenants", headers=admin).json()["data"]
        assert [(t["id"], t["disabled_reason"]) for t in listed] == [("acme", "invoice 42 unpaid")]
        refused = client.post("/v1/chat/completions", headers=auth(key), json=chat_body())
        assert refused.status_code == 401 and "invoice" not in refused.text  # never told to the tenant's callers
        bad = client.post("/v1/admin/tenants/acme/disable", headers=admin, json={"reason": 42})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "reason"
        assert client.post("/v1/admin/tenants/acme/disable", headers=admin).status_code == 200  # the body stays optional
        assert client.post("/v1/admin/tenants/acme/enable", headers=admin).json()["disabled_reason"] == ""
    with pytest.raises(ValueError, match="one line of printable text"):
        set_tenant_disabled(engine, "acme", True, "two\nlines")


# PostgreSQL

needs_pg = pytest.mark.skipif(not postgres_available() and __import__("os").environ.get("CI") != "true",
                              reason="PostgreSQL is not installed (apt-get install -y postgresql); CI runs these")


@pytest.fixture(scope="module")
def pg_cluster():
    with temp_postgres() as url:
        yield url


def fresh_database(cluster: str, name: str) -> str:
    admin = create_engine(normalize_url(cluster), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return cluster.rsplit("/", 1)[0] + "/" + name


@pytest.mark.postgres
@needs_pg
def test_postgres_old_database_upgraded_in_place(pg_cluster):
    from alembic import command

    url = fresh_database(pg_cluster, "old_schema")
    engine = make_engine(url)
    with engine.begin() as conn:  # what the code before migrations made: the baseline tables, no revision
        command.downgrade(migrate._config(conn), migrate.BASELINE)
        conn.exec_driver_sql("DROP TABLE rt_alembic_version")
        conn.exec_driver_sql("INSERT INTO rt_tenants (id, name, created, disabled) VALUES ('acme', 'acme', 0, false)")
        conn.exec_driver_sql("INSERT INTO rt_ledger (id, ts, day, tenant_id, \"user\", feature, endpoint, model_asked, model_used, preset, "
                             "tokens_full, tokens_sent, prompt_tokens, completion_tokens, usage_source, cost_micro, saved_micro, "
                             "reserved_micro, reserved_tokens, price_ref, budget_asked, action, status, latency_ms, upstream_ms, "
                             "stream, detail, error, worker_id) VALUES ('r1', 0, '1970-01-01', 'acme', '', '', 'chat', '', '', '', "
                             "0, 0, 5, 6, 'upstream', 7, 0, 0, 0, '', '', 'ok', 200, 0, 0, false, '', '', 'w')")
    with pytest.raises(migrate.SchemaError, match="ragtrim db upgrade"):
        make_engine(url)
    assert migrate.upgrade(engine) == ["0001", "0002", "0003"]
    assert schema_diff(engine) == []
    with engine.connect() as c:
        row = c.execute(select(ledger.c.cost_micro, ledger.c.key_id, ledger.c.cached_tokens, ledger.c.cache_write_tokens)).one()
        assert tuple(row) == (7, "", 0, 0)
        assert c.execute(select(tenants.c.disabled_reason)).scalar_one() == ""
    engine.dispose()


@pytest.mark.postgres
@needs_pg
def test_postgres_two_gateways_starting_on_a_new_database_make_it_once(pg_cluster):
    url = fresh_database(pg_cluster, "new_race")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        try:
            start.wait()
            make_engine(url).dispose()
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = make_engine(url)
    with engine.connect() as c:
        assert [r[0] for r in c.exec_driver_sql("SELECT version_num FROM rt_alembic_version").all()] == [migrate.head()]
    assert schema_diff(engine) == []
    engine.dispose()


def test_without_alembic_the_commands_name_the_extra(tmp_path, monkeypatch):
    """An environment upgraded with ``pip install -U ragtrim`` from before the serve extra needed Alembic."""
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    for name in [m for m in list(__import__("sys").modules) if m == "alembic" or m.startswith("alembic.")]:
        monkeypatch.delitem(__import__("sys").modules, name)
    monkeypatch.setitem(__import__("sys").modules, "alembic", None)
    for args in (["tenants", "create", "acme"], ["db", "status"], ["usage"]):
        out = run(*args, "--db", f"sqlite:///{tmp_path}/x.sqlite")
        assert out.exit_code == 2 and "pip install 'ragtrim[serve]'" in out.output, (args, out.output)

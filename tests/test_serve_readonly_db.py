"""Commands that only read (``usage``, ``budgets list``, ``tenants list``, ``keys list``) on a SQLite
database this user cannot write: they open it read-only (``mode=ro``; no tables made, no WAL switch)
and print what they print on a writable copy; a command that writes says one line, not a traceback.

Read-only access is real: the commands run in a child process that the file permissions bind (as
root, ``setpriv`` drops the capabilities that bypass them; another user needs nothing), on a folder
and a file made read-only with ``chmod``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.commands import register
from ragtrim.serve.db import make_engine, sqlite_readonly_uri, writing
from ragtrim.serve.keys import create_key, create_tenant
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.quota import Need, QuotaStore
from ragtrim.serve.schema import tenants
from ragtrim.serve.testing import postgres_available

READS = [["usage", "--by", "tenant,user,day", "--format", "json"], ["usage", "--by", "model"], ["budgets", "list"],
         ["tenants", "list"], ["keys", "list"]]

CHILD = r"""
import json, sys
import typer
from typer.testing import CliRunner
from ragtrim.serve.commands import register
app = typer.Typer()
register(app)
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args)
    crash = r.exception is not None and not isinstance(r.exception, SystemExit)
    out.append({"args": args, "code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr, "crash": repr(r.exception) if crash else None})
print(json.dumps(out))
"""


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def reader_prefix() -> list[str] | None:
    """How to start a process that file permissions bind: as is for a user, ``setpriv`` for root (None: no way)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] if setpriv else None


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """Run CLI commands in a child process that cannot write read-only files and folders; skip where that cannot be had."""
    prefix = reader_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: file permissions cannot be enforced")
    probe = tmp_path_factory.mktemp("probe")
    probe.chmod(0o555)
    try:
        tried = subprocess.run([*prefix, sys.executable, "-c", "import sys; open(sys.argv[1] + '/x', 'w')", str(probe)],
                               capture_output=True, timeout=60)
    finally:
        probe.chmod(0o755)
    if tried.returncode == 0:
        pytest.skip("this process can write a read-only folder (and cannot drop that): read-only access cannot be tested")

    def run(commands: list[list[str]], env: dict[str, str]) -> list[dict]:
        full = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1", **env}
        full.pop("RAGTRIM_SERVE_PEPPER", None)  # reading needs no pepper (and the cache folder is read-only)
        done = subprocess.run([*prefix, sys.executable, "-c", CHILD, json.dumps(commands)], capture_output=True, text=True,
                              env=full, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


def make_db(folder: Path) -> dict[str, str]:
    """A service database in ``folder`` (WAL mode, closed: no sidecars left) with tenants, a key, budgets, charges and ledger rows."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{folder / 'serve.sqlite'}")
    create_tenant(engine, "acme")
    create_tenant(engine, "beta")
    kid, _ = create_key(engine, b"p" * 32, tenant_id="acme", label="ci")
    usd = set_budget(engine, tenant_id="acme", unit="usd", period="month", limit=2_500_000)
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=100_000, scope="user", scope_value="ann")
    store = QuotaStore(engine, worker_id="w")
    now = time.time()
    for i, user in enumerate(["ann", "ann", "bob"]):
        budgets = store.budgets_for("acme", user=user, feature="")
        store.reserve(f"r{i}", budgets, Need(tokens=500, micro=900),
                      pending=LedgerEntry(id=f"r{i}", ts=now, tenant_id="acme", endpoint="chat", action="pending", user=user))
        store.settle(f"r{i}", Need(tokens=300 + i, micro=700 + i),
                     LedgerEntry(id=f"r{i}", ts=now, tenant_id="acme", endpoint="chat", action="ok", user=user, model_used="m1",
                                 tokens_full=900, tokens_sent=300 + i, cost_micro=700 + i, saved_micro=50, status=200))
    store.reserve("held", store.budgets_for("acme", user="ann", feature=""), Need(tokens=40, micro=60),
                  pending=LedgerEntry(id="held", ts=now, tenant_id="acme", endpoint="chat", action="pending", user="ann"))
    for i in range(4):
        store.record(LedgerEntry(id=f"old{i}", ts=1_750_000_000.0 + 3600 * i, tenant_id="beta", endpoint="optimize", action="ok",
                                 user="cy", model_used="m2", tokens_full=1000, tokens_sent=400, saved_micro=77, status=200))
    store.record(LedgerEntry(id="no", ts=1_750_000_000.0, tenant_id="acme", endpoint="chat", action="refused", user="bob", status=402))
    engine.dispose()
    assert sorted(p.name for p in folder.iterdir()) == ["serve.sqlite", "serve.sqlite-writelock"]
    return {"key": kid, "budget": usd.id}


def lock(folder: Path, *, folder_too: bool = True) -> None:
    """``chmod a-w`` the folder and its files; not ``folder_too``: the database file only."""
    for p in folder.iterdir() if folder_too else [folder / "serve.sqlite"]:
        p.chmod(0o444)
    if folder_too:
        folder.chmod(0o555)


def unlock(folder: Path) -> None:
    folder.chmod(0o755)
    for p in folder.iterdir():
        p.chmod(0o644)


def on(db: str, commands: list[list[str]]) -> list[list[str]]:
    return [[*c, "--db", db] for c in commands]


def writable_outputs(tmp_path: Path, source: Path, monkeypatch) -> list[str]:
    """The read commands' stdout on a writable copy of ``source`` (through the ordinary, writing engine)."""
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(source, copy / "serve.sqlite")
    monkeypatch.setenv("RAGTRIM_CACHE", str(copy))
    monkeypatch.setenv("RAGTRIM_SERVE_PEPPER", "p" * 32)
    outs = []
    for args in on(f"sqlite:///{copy / 'serve.sqlite'}", READS):
        r = CliRunner().invoke(cli(), args)
        assert r.exit_code == 0, r.output
        outs.append(r.stdout)
    return outs


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def ro_folder(tmp_path):
    folder = tmp_path / "ro"
    ids = make_db(folder)
    yield folder, ids
    unlock(folder)


def test_reads_in_a_read_only_folder_match_a_writable_copy(ro_folder, reader, tmp_path, monkeypatch):
    folder, _ = ro_folder
    db = folder / "serve.sqlite"
    expected = writable_outputs(tmp_path, db, monkeypatch)
    before, listing = digest(db), sorted(p.name for p in folder.iterdir())
    lock(folder)
    results = reader(on(f"sqlite:///{db}", READS), {"RAGTRIM_CACHE": str(folder)})
    for r, want in zip(results, expected):
        assert r["code"] == 0 and r["crash"] is None, r
        assert r["stdout"] == want, r["args"]
        assert "immutable=1" in r["stderr"] and str(db) in r["stderr"], r  # a snapshot, and it says so
    report = json.loads(results[0]["stdout"])
    assert report["totals"]["cost_micro"] == 2103 and report["totals"]["requests"] == 9
    assert {b["unit"]: (b["spent"], b["reserved"]) for b in report["budgets"]} == {"usd": (2103, 60), "tokens": (601, 40)}
    assert sorted(p.name for p in folder.iterdir()) == listing and digest(db) == before  # nothing written, no sidecars


def test_reads_of_a_read_only_file_in_a_writable_folder_match_a_writable_copy(ro_folder, reader, tmp_path, monkeypatch):
    folder, _ = ro_folder
    db = folder / "serve.sqlite"
    expected = writable_outputs(tmp_path, db, monkeypatch)
    lock(folder, folder_too=False)
    results = reader(on(f"sqlite:///{db}", READS), {"RAGTRIM_CACHE": str(tmp_path / "cache")})
    for r, want in zip(results, expected):
        assert r["code"] == 0 and r["crash"] is None and r["stdout"] == want, r
        assert r["stderr"] == "", r  # mode=ro with its -shm beside it: not a snapshot
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_server_writing_meanwhile_is_seen_in_a_read_only_folder(ro_folder, reader):
    folder, _ = ro_folder
    db = folder / "serve.sqlite"
    writer = sqlite3.connect(db, isolation_level=None)  # a server: the database open, its -wal and -shm in the folder
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")  # keep the new row in the log
        writer.execute("INSERT INTO rt_tenants (id, name, created, disabled) VALUES ('gamma', 'gamma', 0, 0)")
        assert (folder / "serve.sqlite-shm").exists() and (folder / "serve.sqlite-wal").stat().st_size > 0
        lock(folder)
        (r,) = reader(on(f"sqlite:///{db}", [["tenants", "list"]]), {"RAGTRIM_CACHE": str(folder)})
    finally:
        writer.close()
    assert r["code"] == 0 and r["stdout"].split() == ["acme", "beta", "gamma"], r
    assert r["stderr"] == "", r


def test_a_log_that_cannot_be_read_in_a_read_only_folder_is_one_line(ro_folder, reader, tmp_path):
    folder, _ = ro_folder
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    writer = sqlite3.connect(folder / "serve.sqlite", isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("INSERT INTO rt_tenants (id, name, created, disabled) VALUES ('gamma', 'gamma', 0, 0)")
        for name in ("serve.sqlite", "serve.sqlite-wal"):  # as a server that died leaves them, less the -shm
            shutil.copy(folder / name, crashed / name)
    finally:
        writer.close()
    lock(crashed)
    try:
        results = reader(on(f"sqlite:///{crashed / 'serve.sqlite'}", [["tenants", "list"], ["budgets", "list"]]),
                         {"RAGTRIM_CACHE": str(crashed)})
    finally:
        unlock(crashed)
    for r in results:
        lines = (r["stdout"] + r["stderr"]).strip().splitlines()
        assert r["code"] == 2 and r["crash"] is None and len(lines) == 1, r
        assert f"{crashed}/serve.sqlite-wal" in lines[0] and f"let this user write to {crashed}" in lines[0], r


def test_a_database_this_user_cannot_read_is_one_line(ro_folder, reader):
    folder, _ = ro_folder
    db = folder / "serve.sqlite"
    db.chmod(0o000)
    (r,) = reader(on(f"sqlite:///{db}", [["budgets", "list"]]), {"RAGTRIM_CACHE": str(folder)})
    lines = (r["stdout"] + r["stderr"]).strip().splitlines()
    assert r["code"] == 2 and r["crash"] is None and len(lines) == 1, r
    assert f"{db} must be a file this user can read" in lines[0], r


@pytest.mark.parametrize("folder_too", [True, False], ids=["read-only-folder", "read-only-file"])
def test_writing_commands_on_a_read_only_database_are_one_line(ro_folder, reader, folder_too):
    folder, ids = ro_folder
    db = folder / "serve.sqlite"
    lock(folder, folder_too=folder_too)
    writes = [["tenants", "create", "delta"], ["keys", "create", "--admin"], ["keys", "revoke", ids["key"]],
              ["budgets", "set", "--tenant", "beta", "--unit", "tokens", "--limit", "5"], ["budgets", "delete", ids["budget"]]]
    results = reader(on(f"sqlite:///{db}", writes), {"RAGTRIM_CACHE": str(folder), "RAGTRIM_SERVE_PEPPER": "p" * 32})
    for r in results:
        lines = (r["stdout"] + r["stderr"]).strip().splitlines()
        assert r["code"] == 2 and r["crash"] is None and len(lines) == 1, r
        assert "readonly database" in lines[0] and str(db) in lines[0] and "Traceback" not in lines[0], r
    unlock(folder)
    with sqlite3.connect(db) as c:  # nothing changed
        assert [t for (t,) in c.execute("SELECT id FROM rt_tenants ORDER BY id")] == ["acme", "beta"]
        assert c.execute("SELECT count(*) FROM rt_budgets").fetchone() == (2,)


def test_read_only_open_makes_no_tables_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE notes (x)")
    for args in (["usage"], ["tenants", "list"], ["keys", "list"], ["budgets", "list"]):
        out = CliRunner().invoke(cli(), [*args, "--db", f"sqlite:///{other}"])
        lines = out.output.strip().splitlines()
        assert out.exit_code == 2 and len(lines) == 1, out.output
        assert "has no rt_api_keys, rt_budget_usage" in lines[0] and "ragtrim serve" in lines[0], out.output
    with sqlite3.connect(other) as c:
        assert [n for (n,) in c.execute("SELECT name FROM sqlite_master")] == ["notes"]
        assert c.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # no switch to WAL
    assert not (tmp_path / "serve-pepper").exists()  # reading needs no pepper


def test_a_missing_database_is_still_an_error_for_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    for args in (["usage"], ["tenants", "list"], ["keys", "list"], ["budgets", "list"]):
        out = CliRunner().invoke(cli(), args)
        assert out.exit_code == 2 and f"no database at {tmp_path}/serve.sqlite" in out.output, out.output
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_engine_refuses_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    make_engine(url).dispose()
    engine = make_engine(url, readonly=True)
    with pytest.raises(DBAPIError, match="readonly database"):
        with writing(engine) as conn:
            conn.execute(tenants.insert().values(id="x", name="x", created=0.0, disabled=False))
    engine.dispose()


def test_the_read_only_uri(tmp_path):
    db = tmp_path / "a b#1%.sqlite"
    make_engine(f"sqlite:///{db}").dispose()
    uri, snapshot = sqlite_readonly_uri(str(db))
    assert uri == f"file://{tmp_path}/a%20b%231%25.sqlite?mode=ro" and snapshot is False  # the folder is writable
    with sqlite3.connect(uri, uri=True) as c:
        assert c.execute("SELECT count(*) FROM rt_tenants").fetchone() == (0,)


@pytest.mark.postgres
@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not installed (apt-get install -y postgresql)")
def test_postgres_reads_make_no_tables(monkeypatch, tmp_path):
    from sqlalchemy import inspect

    from ragtrim.serve.testing import temp_postgres

    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.setenv("RAGTRIM_SERVE_PEPPER", "p" * 32)
    with temp_postgres(max_connections=20) as url:
        out = CliRunner().invoke(cli(), ["tenants", "list", "--db", url])
        assert out.exit_code == 2 and "has no rt_api_keys" in out.output and len(out.output.strip().splitlines()) == 1, out.output
        engine = make_engine(url, create=False)
        assert inspect(engine).get_table_names() == []
        engine.dispose()
        assert CliRunner().invoke(cli(), ["tenants", "create", "acme", "--db", url]).exit_code == 0
        out = CliRunner().invoke(cli(), ["tenants", "list", "--db", url])
        assert out.exit_code == 0 and out.stdout.split() == ["acme"], out.output

"""The database engine: SQLite (embedded default) or PostgreSQL (several replicas).

SQLite runs in WAL mode; every write transaction starts with ``BEGIN IMMEDIATE`` so two
workers never both read then upgrade to a write (the quota check and the reservation are
one transaction), and writers queue on a :class:`~ragtrim.serve.writelock.WriteLock`. Read-only transactions (:func:`reading`) use a plain ``BEGIN``. On
PostgreSQL the quota's conditional ``UPDATE`` takes the row lock, so no extra locking is
needed; ``postgresql://`` URLs use the psycopg (3) driver. PostgreSQL may still abort a
transaction as a deadlock victim or a serialization failure (SQLSTATE ``40P01``, ``40001``):
:func:`write_retrying` runs a transaction again in that case.

A command that only reads asks for ``make_engine(url, readonly=True)``: no tables are made (on
either database), and a SQLite file is opened with SQLite's read-only URI (``mode=ro``, no
``journal_mode`` switch), so a database in a folder (or a file) this user cannot write still
reads; see :func:`sqlite_readonly_uri` for a WAL database in a read-only folder.

>>> normalize_url("postgresql://u@h/db")
'postgresql+psycopg://u@h/db'
>>> normalize_url("sqlite:////tmp/x.sqlite")
'sqlite:////tmp/x.sqlite'
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from optimizer.lazy import lazy_import
from ragtrim.serve.transactions import reading, writing  # noqa: F401 (the service's modules import them from here)
from ragtrim.serve.writelock import WriteLock


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` / ``postgres://`` and pick the psycopg 3 driver."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"--db must be a database URL such as sqlite:////path/serve.sqlite or postgresql://user@host/db, got {url!r}")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if not (url.startswith("sqlite") or url.startswith("postgresql+")):
        raise ValueError(f"--db supports sqlite:/// and postgresql:// URLs, got {url.split('://')[0]!r}://...")
    return url


def make_engine(url: str, *, create: bool = True, readonly: bool = False) -> Any:
    """An SQLAlchemy engine for ``url``; when ``create``, makes an empty database whole, or checks that its schema is
    this ragtrim's (:func:`ragtrim.serve.migrate.prepare`: a :class:`~ragtrim.serve.migrate.SchemaError` names the fix).

    ``readonly``: for a command that only reads. No tables are made (``create`` is ignored) and a
    SQLite file is opened read-only (:func:`sqlite_readonly_uri`; the file must exist); the engine's
    ``info_snapshot`` is True when that open is a snapshot (``immutable=1``) that does not see writers.
    PostgreSQL engines are the same either way, only without ``create_all``.
    """
    sa = lazy_import("sqlalchemy", extra="serve", purpose="ragtrim serve")
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if readonly and path and path != ":memory:":
            return _sqlite_readonly_engine(sa, path)
        engine = _sqlite_engine(sa, url)
    else:
        lazy_import("psycopg", extra="serve", purpose="ragtrim serve with PostgreSQL")
        engine = sa.create_engine(url, pool_size=8, max_overflow=24, pool_pre_ping=True, pool_recycle=1800)
    if create and not readonly:
        from ragtrim.serve.migrate import prepare

        prepare(engine)
    return engine


SQLITE_HEADER = b"SQLite format 3\x00"


def _in_wal_mode(path: str) -> bool:
    """True when the SQLite file at ``path`` is in WAL mode (header bytes 18-19 are 2); False if it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head.startswith(SQLITE_HEADER) and head[18] == 2


def sqlite_readonly_uri(path: str) -> tuple[str, bool]:
    """The URI that opens the SQLite file ``path`` for reading only, and whether it is a snapshot.

    ``mode=ro`` writes nothing and switches no journal mode. A database in WAL mode still needs its
    ``-shm`` file (and reads its ``-wal``): SQLite makes them when the folder is writable and uses them
    when they are there (a server has the database open), so that is all it takes. In a read-only
    folder with neither, no writer can be using the database and all of it is in the main file:
    it is opened ``immutable=1`` (a snapshot: a writer that starts meanwhile is not seen). A ``-wal``
    with content but no ``-shm`` in a read-only folder (a server that stopped uncleanly) is a
    ValueError naming the fix: an immutable open would miss the transactions in the log.
    """
    path = os.path.abspath(path)
    uri = f"{Path(path).as_uri()}?mode=ro"  # file:///..., with %, #, ? and spaces escaped
    folder = os.path.dirname(path)
    if os.access(folder, os.W_OK) or os.path.exists(f"{path}-shm") or not _in_wal_mode(path):
        return uri, False
    wal = Path(f"{path}-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise ValueError(f"cannot read {path}: its write-ahead log {wal} holds changes SQLite can read only by creating "
                         f"{path}-shm, and the folder {folder} is read-only for this user; let this user write to {folder}, "
                         "or run the command once as the user that runs the server (that merges the log)")
    return uri + "&immutable=1", True


def _on_connect(sa: Any, engine: Any, pragmas: tuple[str, ...]) -> None:
    """Each new SQLite connection of ``engine``: autocommit off our way (we issue BEGIN ourselves), then ``pragmas``."""

    @sa.event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        for pragma in pragmas:
            cur.execute(f"PRAGMA {pragma}")
        cur.close()


def _sqlite_readonly_engine(sa: Any, path: str) -> Any:
    import sqlite3

    uri, snapshot = sqlite_readonly_uri(path)

    def connect() -> Any:
        return sqlite3.connect(uri, uri=True, timeout=60, check_same_thread=False)

    engine = sa.create_engine(f"sqlite:///{path}", creator=connect, poolclass=sa.pool.QueuePool, pool_size=8, max_overflow=24)

    _on_connect(sa, engine, ("busy_timeout=60000", "query_only=ON"))

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")  # never BEGIN IMMEDIATE: that takes the write lock

    engine.info_snapshot = snapshot  # type: ignore[attr-defined]
    return engine


def _sqlite_engine(sa: Any, url: str) -> Any:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    args = {"timeout": 60, "check_same_thread": False}
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args=args, pool_size=8, max_overflow=24)
    else:  # one shared in-memory connection: single-threaded use only (doctests); use a file otherwise
        engine = sa.create_engine(url, connect_args=args, poolclass=sa.pool.StaticPool)

    _on_connect(sa, engine, ("journal_mode=WAL", "busy_timeout=60000", "synchronous=NORMAL", "foreign_keys=ON"))

    # one writer at a time, queued fairly instead of sleeping in SQLite's busy handler (see writelock)
    engine.info_write_lock = WriteLock(path.split("?", 1)[0] or None)  # type: ignore[attr-defined]

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get("ragtrim_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


T = TypeVar("T")
RETRY_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
WRITE_ATTEMPTS = 5


def is_retryable(exc: BaseException) -> bool:
    """True for a transaction PostgreSQL aborted as a deadlock victim or a serialization failure.

    >>> is_retryable(ValueError("x"))
    False
    """
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) in RETRY_SQLSTATES


# What sqlite3 says when the file cannot be opened, or another writer held it past the busy timeout.
SQLITE_UNREACHABLE = ("unable to open", "database is locked", "disk i/o error")


def is_unreachable(exc: BaseException) -> bool:
    """True for a database that cannot be reached just now: a connection PostgreSQL refused or lost
    (psycopg's ``OperationalError``), a SQLite file that cannot be opened or stayed locked past the
    busy timeout, or no pooled connection free in time. Not the gateway's bug: the client may retry.

    >>> is_unreachable(ValueError("x"))
    False
    """
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.TimeoutError):  # the pool had no connection free in time
        return True
    if not isinstance(exc, sa_exc.OperationalError):
        return False
    orig = exc.orig
    return type(orig).__module__.startswith("psycopg") or any(m in str(orig).lower() for m in SQLITE_UNREACHABLE)


def write_retrying(engine: Any, fn: Callable[[Any], T], *, attempts: int = WRITE_ATTEMPTS) -> T:
    """``fn(conn)`` in a :func:`writing` transaction, run again (up to ``attempts`` times in all)
    when the database aborts it as a deadlock victim or a serialization failure.

    The aborted attempt was rolled back whole, so ``fn`` must only touch the database (and read
    what it needs inside the transaction). Other errors propagate at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            with writing(engine) as conn:
                return fn(conn)
        except Exception as exc:
            if attempt >= attempts or not is_retryable(exc):
                raise
            time.sleep(random.uniform(0.0, 0.005 * 2**attempt))  # de-synchronize the transactions that collided
    raise AssertionError("unreachable")


def db_epoch(conn: Any) -> float | None:
    """The database server's clock (epoch seconds) on PostgreSQL; None on SQLite (same host as the caller)."""
    if conn.dialect.name != "postgresql":
        return None
    return float(conn.exec_driver_sql("SELECT extract(epoch from clock_timestamp())").scalar())


def is_postgres(engine: Any) -> bool:
    return engine.dialect.name == "postgresql"


def insert_ignore(engine: Any, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the engine's dialect."""
    if is_postgres(engine):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()

"""The gateway database's schema revision: made whole when new, checked when opened, upgraded on request.

A gateway or an admin command that opens a database calls :func:`prepare` (or, for a read-only
command, :func:`check`):

* an empty database gets every table of :mod:`ragtrim.serve.schema` and is stamped with the
  newest revision (:func:`head`), in one transaction;
* a database at the newest revision is used as it is;
* a database at an older revision (one an older ragtrim made: no revision at all reads as
  ``0001``) is refused with a :class:`SchemaError` naming ``ragtrim db upgrade``; it is never
  changed behind the operator's back, since every gateway on it must be able to use the result
  and a backup should come first;
* a database at a revision this ragtrim does not know (a newer ragtrim upgraded it) is refused.

:func:`upgrade` runs the migrations in ``ragtrim/serve/migrations/versions`` (Alembic) on one
connection. On PostgreSQL the whole of :func:`prepare` or :func:`upgrade` holds a transaction-level
advisory lock, so two gateways starting on a new database do not both make it; on SQLite the
write transaction (``BEGIN IMMEDIATE``) does the same.

>>> from ragtrim.serve.db import make_engine
>>> engine = make_engine("sqlite://")  # new: made whole and stamped
>>> current(engine) == head()
True
>>> upgrade(engine)  # nothing to do
[]
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optimizer.lazy import lazy_import
from ragtrim.serve.transactions import reading, writing

# What a database an older ragtrim made (before migrations) is: every table but no revision row.
BASELINE = "0001"
# ragtrim's own revision table: another Alembic app in the database (or on PostgreSQL's search_path) keeps its
# ``alembic_version`` to itself.
VERSION_TABLE = "rt_alembic_version"
# pg_advisory_xact_lock key for schema changes ("ragtrim" in ASCII, as a 64-bit integer).
LOCK_KEY = 0x72616774726D6D


class SchemaError(ValueError):
    """The database's schema is not the one this ragtrim uses; the message says what to run."""


def _alembic() -> Any:
    """Alembic, or a :class:`~optimizer.lazy.MissingDependency` naming ``pip install 'ragtrim[serve]'``."""
    return lazy_import("alembic", extra="serve", purpose="the gateway database's schema (ragtrim serve)")


def _context(conn: Any) -> Any:
    """Alembic's migration context on ``conn``, reading ragtrim's revision table (:data:`VERSION_TABLE`)."""
    _alembic()
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})


def _config(connection: Any = None) -> Any:
    _alembic()
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _scripts() -> Any:
    """The migration scripts shipped in the package (read once: they are part of the installed code)."""
    _alembic()
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest schema revision this ragtrim knows."""
    return str(_scripts().get_current_head())


def _state(conn: Any) -> str:
    """The connection's database revision; ``""`` for an empty database; :data:`BASELINE` for one without a revision."""
    from sqlalchemy import inspect

    # the tables first: a database made meanwhile (tables and revision in one transaction) is then seen with its revision
    if not any(t.startswith("rt_") and t != VERSION_TABLE for t in inspect(conn).get_table_names()):
        return ""
    revision = _context(conn).get_current_revision()
    return BASELINE if revision is None else str(revision)


def _lock(conn: Any) -> None:
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")


@contextmanager
def _schema_transaction(engine: Any) -> Iterator[Any]:
    """A write transaction that holds the schema lock (see the module's docstring)."""
    with writing(engine) as conn:
        _lock(conn)
        yield conn


def current(engine: Any) -> str:
    """The database's revision (:data:`BASELINE` for one an older ragtrim made; ``""`` when empty)."""
    with reading(engine) as conn:
        return _state(conn)


def _known(scripts: Any, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _refusal(engine: Any, revision: str) -> SchemaError | None:
    """The error for a database at ``revision``; None when it is the newest."""
    newest = head()
    if revision == newest:
        return None
    where = _where(engine)
    if not _known(_scripts(), revision):
        return SchemaError(f"the database {where} has schema revision {revision!r}, which this ragtrim does not know "
                           f"(its newest is {newest!r}): a newer ragtrim upgraded it; run that version, or restore a backup")
    return SchemaError(f"the database {where} has schema revision {revision!r} and this ragtrim needs {newest!r}: back it up, "
                       f"then run `ragtrim db upgrade` with the same --db or --config (`ragtrim db status` lists what it changes)")


def _where(engine: Any) -> str:
    return engine.url.render_as_string(hide_password=True)


def _make_whole(conn: Any) -> None:
    """Every table of :mod:`ragtrim.serve.schema` on an empty database, stamped :func:`head` (nothing to migrate)."""
    from ragtrim.serve.schema import metadata

    metadata.create_all(conn)
    _context(conn).stamp(_scripts(), "head")


def prepare(engine: Any) -> None:
    """Make an empty database whole (tables and revision); refuse one that is not at :func:`head` (:class:`SchemaError`)."""
    revision = current(engine)  # a read: a database in use is never write-locked to be checked
    if revision == "":
        with _schema_transaction(engine) as conn:
            revision = _state(conn)  # again, under the lock: another process may have made it meanwhile
            if revision == "":
                _make_whole(conn)
                return
    problem = _refusal(engine, revision)
    if problem is not None:
        raise problem


def check(engine: Any) -> None:
    """For a read-only open: the database must be at :func:`head` (:class:`SchemaError` otherwise); never writes."""
    problem = _refusal(engine, current(engine) or head())
    if problem is not None:
        raise problem


def _steps(engine: Any, revision: str, recorded: bool = True) -> list[tuple[str, str]]:
    """The migrations from ``revision`` to :func:`head`, oldest first: ``(revision, first line of its description)``.

    ``recorded`` False: the database carries no revision (an older ragtrim made it, read as :data:`BASELINE`), so
    every migration runs from the first, whose upgrade makes what such a database may lack."""
    if revision in ("", head()) and recorded:
        return []
    scripts = _scripts()
    if not _known(scripts, revision):
        raise _refusal(engine, revision) or SchemaError(revision)
    steps = reversed(list(scripts.iterate_revisions(head(), revision if recorded else "base")))
    return [(str(s.revision), (s.doc or "").strip().splitlines()[0] if s.doc else "") for s in steps]


def _recorded(conn: Any) -> bool:
    return _context(conn).get_current_revision() is not None


def pending(engine: Any) -> list[tuple[str, str]]:
    """The migrations :func:`upgrade` would run, oldest first, as ``(revision, first line of its description)``."""
    with reading(engine) as conn:
        revision = _state(conn)
        return _steps(engine, revision, revision == "" or _recorded(conn))


def upgrade(engine: Any) -> list[str]:
    """Run every migration the database lacks, in one transaction under the schema lock; the revisions run, oldest first.

    An empty database is made whole as :func:`prepare` makes it (nothing to run). A database an older
    ragtrim made (no revision) runs every migration from the first (:data:`BASELINE`'s makes what it may lack).
    """
    with _schema_transaction(engine) as conn:
        revision = _state(conn)
        if revision == "":
            _make_whole(conn)
            return []
        todo = [r for r, _ in _steps(engine, revision, _recorded(conn))]
        if todo:
            _alembic()
            from alembic import command

            command.upgrade(_config(conn), "head")
    return todo

"""The database's two kinds of transaction: :func:`writing` (queued on SQLite's write lock, ``BEGIN IMMEDIATE``) and
:func:`reading` (a plain ``BEGIN``, no lock). Their own module, below :mod:`ragtrim.serve.db` (which makes the engines
they run on) and :mod:`ragtrim.serve.migrate` (which db calls to make a new database whole), so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def writing(engine: Any) -> Iterator[Any]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
    lock = getattr(engine, "info_write_lock", None)
    if lock is None:
        with engine.begin() as conn:
            yield conn
        return
    with lock, engine.begin() as conn:
        yield conn


@contextmanager
def reading(engine: Any) -> Iterator[Any]:
    """A read-only transaction (no write lock on SQLite)."""
    with engine.connect() as conn:
        conn = conn.execution_options(ragtrim_readonly=True)
        with conn.begin():
            yield conn

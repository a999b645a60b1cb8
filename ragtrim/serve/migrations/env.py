"""Alembic's environment for the gateway database: runs on the connection ragtrim hands it.

:mod:`ragtrim.serve.migrate` puts an open connection (inside its transaction and lock) in
``config.attributes["connection"]``; nothing here reads an ``alembic.ini`` or a URL.
"""

from __future__ import annotations

from alembic import context

from ragtrim.serve.migrate import VERSION_TABLE
from ragtrim.serve.schema import metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the gateway's migrations with `ragtrim db upgrade` (ragtrim.serve.migrate), not the alembic CLI")
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


if getattr(context, "config", None) is not None:  # Alembic is running it; imported alone (a doctest run), it does nothing
    run()

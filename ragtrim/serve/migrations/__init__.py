"""The gateway database's schema migrations (Alembic), applied with ``ragtrim db upgrade``.

``versions/`` holds one file per schema change, in order; :mod:`ragtrim.serve.migrate` runs them
and checks, when a gateway or an admin command opens a database, that it is at the newest one.
A new database is made whole from :mod:`ragtrim.serve.schema` and stamped with the newest
revision, so a migration only ever runs on a database an older ragtrim made.

Adding a column: change :mod:`ragtrim.serve.schema`, then add ``versions/NNNN_what.py`` whose
``down_revision`` is the previous newest, with ``upgrade()`` written in ``alembic.op`` calls that
work on SQLite and PostgreSQL; ``tests/test_serve_migrations.py`` checks that a database the
old schema made, upgraded, has the same tables and columns as a new one.
"""

"""The schema every database had before migrations (ragtrim up to 2026-12-07).

A database made by an older ragtrim carries no revision; :mod:`ragtrim.serve.migrate` reads it as
this one. Such a database may predate ``rt_lease_epochs`` (added 2026-12-05, which the older code
made on start like any table); this revision makes it when it is missing.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "rt_lease_epochs" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table("rt_lease_epochs", sa.Column("boot_id", sa.String(64), primary_key=True),
                        sa.Column("anchor", sa.Float, nullable=False))


def downgrade() -> None:
    """The baseline is where the history starts: nothing to undo."""

"""The prompt tokens a request wrote to the upstream's prompt cache.

* ``rt_ledger.cache_write_tokens``: of ``prompt_tokens``, those the upstream reported as written to its prompt cache
  (Anthropic's ``usage.cache_creation_input_tokens``), charged the model's ``cache_write_per_million``; 0 on older rows
  (their cost already holds them, at that price: only the split was not kept).

Only adds a column with a default, so a gateway of the older version keeps writing rows meanwhile.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rt_ledger", sa.Column("cache_write_tokens", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("rt_ledger") as batch:
        batch.drop_column("cache_write_tokens")

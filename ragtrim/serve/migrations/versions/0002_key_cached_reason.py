"""Which key made each request, the cached prompt tokens it was billed, and why a tenant is suspended.

* ``rt_ledger.key_id``: the API key's id (``usage --by key``); ``""`` on older rows.
* ``rt_ledger.cached_tokens``: of ``prompt_tokens``, those the upstream reported as read from its
  prompt cache (``usage.prompt_tokens_details.cached_tokens``); 0 on older rows.
* ``rt_tenants.disabled_reason``: what ``tenants disable --reason`` said; ``""`` otherwise.

Only adds columns with defaults, so a gateway of the older version keeps writing rows meanwhile.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("rt_ledger", sa.Column("key_id", sa.String(32), nullable=False, server_default=""))
    op.add_column("rt_ledger", sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"))
    op.add_column("rt_tenants", sa.Column("disabled_reason", sa.String(500), nullable=False, server_default=""))
    op.create_index("rt_ledger_tenant_key", "rt_ledger", ["tenant_id", "key_id"])


def downgrade() -> None:
    op.drop_index("rt_ledger_tenant_key", table_name="rt_ledger")
    with op.batch_alter_table("rt_ledger") as batch:
        batch.drop_column("cached_tokens")
        batch.drop_column("key_id")
    with op.batch_alter_table("rt_tenants") as batch:
        batch.drop_column("disabled_reason")

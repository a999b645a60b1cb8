"""The service's tables (SQLAlchemy Core; the same schema on SQLite and PostgreSQL).

A column added after 2026-12-07 comes with a migration (:mod:`ragtrim.serve.migrations`).

Money columns are integer micro-dollars (``*_micro``), token columns integers. Times are
epoch seconds (``ts``) plus the UTC day (``day``, ``YYYY-MM-DD``) for grouping.

* ``tenants``, ``api_keys`` (only a keyed hash of each key is stored), ``budgets``;
* ``budget_usage``: per budget and period, ``spent`` and ``reserved`` (the quota counters);
* ``reservations``: one row per (request, budget) with its worker and lease expiry;
* ``lease_epochs``: on SQLite, the anchor of lease times per boot of the host;
* ``ledger``: one row per request, never deleted; written ``pending`` with the reservation
  and finalized once (``ok``, ``degraded``, ``refused``, ``failed``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

tenants = Table(
    "rt_tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created", Float, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("disabled_reason", String(500), nullable=False, default="", server_default=""),
)

api_keys = Table(
    "rt_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("rt_tenants.id"), nullable=True),
    Column("admin", Boolean, nullable=False, default=False),
    Column("hash", String(128), nullable=False),
    Column("label", String(200), nullable=False, default=""),
    Column("created", Float, nullable=False),
    Column("revoked", Float, nullable=True),
)

budgets = Table(
    "rt_budgets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant_id", String(64), ForeignKey("rt_tenants.id"), nullable=False),
    Column("scope", String(16), nullable=False),  # tenant | user | feature
    Column("scope_value", String(200), nullable=False, default=""),
    Column("unit", String(8), nullable=False),  # tokens | usd (micro-dollars)
    Column("period", String(8), nullable=False),  # day | month
    Column("limit_amount", BigInteger, nullable=False),
    Column("created", Float, nullable=False),
    UniqueConstraint("tenant_id", "scope", "scope_value", "unit", "period", name="rt_budgets_one_per_scope"),
)

budget_usage = Table(
    "rt_budget_usage",
    metadata,
    Column("budget_id", String(32), ForeignKey("rt_budgets.id"), primary_key=True),
    Column("period_start", String(10), primary_key=True),
    Column("spent", BigInteger, nullable=False, default=0),
    Column("reserved", BigInteger, nullable=False, default=0),
)

reservations = Table(
    "rt_reservations",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("budget_id", String(32), primary_key=True),
    Column("period_start", String(10), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("charged", BigInteger, nullable=True),
    Column("worker_id", String(120), nullable=False),
    Column("expires", Float, nullable=False),
    Column("state", String(10), nullable=False),  # held | settled | released | expired
    Column("created", Float, nullable=False),
    Index("rt_reservations_state_expires", "state", "expires"),
    Index("rt_reservations_worker_state", "worker_id", "state"),
)

# On SQLite, lease times are an anchor per boot of the host plus its monotonic clock (ragtrim.serve.hostclock).
lease_epochs = Table(
    "rt_lease_epochs",
    metadata,
    Column("boot_id", String(64), primary_key=True),
    Column("anchor", Float, nullable=False),
)

# ``usage_source`` of a pending row whose request the upstream has in full (its answer not in yet):
# should its worker die, the worker that expires the row charges its reservation as an estimate.
USAGE_SENT = "sent"
# ``usage_source`` of a row charged an estimate, its reservation: the upstream may have done (and billed)
# the work, but its usage is unknown (no answer, an unreadable one, or a worker that died). Such a row
# is settled (``ok`` or ``degraded``, as planned) with the failure's ``status``; ``completion_tokens``
# is the reservation less the counted prompt, and ``error`` says so.
USAGE_ESTIMATED = "estimated"
# The ledger actions whose rows were charged to their budgets (tokens and money count only these):
# budgets.spent_so_far and usage's totals read the same rows, so they agree.
CHARGED_ACTIONS = ("ok", "degraded")

ledger = Table(
    "rt_ledger",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("ts", Float, nullable=False),
    Column("day", String(10), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("user", String(200), nullable=False, default=""),
    Column("feature", String(200), nullable=False, default=""),
    Column("endpoint", String(40), nullable=False),
    Column("model_asked", String(120), nullable=False, default=""),
    Column("model_used", String(120), nullable=False, default=""),
    Column("preset", String(60), nullable=False, default=""),
    Column("tokens_full", Integer, nullable=False, default=0),
    Column("tokens_sent", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    # of prompt_tokens, those the upstream read from its prompt cache (billed at the model's cached price, if it has one)
    Column("cached_tokens", Integer, nullable=False, default=0, server_default="0"),
    # of prompt_tokens, those the upstream wrote to its prompt cache (Anthropic's cache_creation_input_tokens, billed at
    # the model's cache_write_per_million)
    Column("cache_write_tokens", Integer, nullable=False, default=0, server_default="0"),
    Column("usage_source", String(12), nullable=False, default=""),  # upstream | counted | estimated | none (| sent: pending)
    Column("cost_micro", BigInteger, nullable=False, default=0),
    Column("saved_micro", BigInteger, nullable=False, default=0),
    Column("reserved_micro", BigInteger, nullable=False, default=0),
    Column("reserved_tokens", BigInteger, nullable=False, default=0),
    Column("price_ref", String(200), nullable=False, default=""),
    Column("budget_asked", String(20), nullable=False, default=""),
    Column("budget_used", Integer, nullable=True),
    Column("action", String(10), nullable=False),  # pending | ok | degraded | refused | failed
    Column("status", Integer, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("upstream_ms", Float, nullable=False, default=0.0),
    Column("stream", Boolean, nullable=False, default=False),
    Column("detail", Text, nullable=False, default=""),
    Column("error", Text, nullable=False, default=""),
    Column("worker_id", String(120), nullable=False, default=""),
    Column("lease_expires", Float, nullable=True),  # a pending row of a dead worker is failed after this
    Column("key_id", String(32), nullable=False, default="", server_default=""),  # the API key that made the request
    Index("rt_ledger_tenant_ts", "tenant_id", "ts"),
    Index("rt_ledger_tenant_key", "tenant_id", "key_id"),
    Index("rt_ledger_action", "action"),
)

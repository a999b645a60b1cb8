"""The ledger: one row per request, whatever the outcome, never deleted.

A request that reaches the upstream is written ``pending`` in the same transaction as its
quota reservation, then finalized exactly once with what happened (``ok``, ``degraded``,
``failed``); a refused request is written final at once. A pending row whose worker died is
finalized ``failed`` by :meth:`ragtrim.serve.quota.QuotaStore.expire`.

>>> e = LedgerEntry(id="r1", ts=0.0, tenant_id="acme", endpoint="chat", action="ok")
>>> e.values()["day"], e.values()["cost_micro"]
('1970-01-01', 0)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

ACTIONS = ("pending", "ok", "degraded", "refused", "failed")
# A row that charged nothing (failed, refused) shows no tokens or money, so that the ledger's sums
# equal what the budgets were charged; what it had reserved stays in reserved_tokens/reserved_micro.
UNCHARGED = {"tokens_full": 0, "tokens_sent": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_micro": 0, "saved_micro": 0}


@dataclass(frozen=True)
class LedgerEntry:
    """One request's accounting. Money in micro-dollars, tokens as integers."""

    id: str
    ts: float
    tenant_id: str
    endpoint: str
    action: str
    user: str = ""
    feature: str = ""
    model_asked: str = ""
    model_used: str = ""
    preset: str = ""
    tokens_full: int = 0
    tokens_sent: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_source: str = "none"
    cost_micro: int = 0
    saved_micro: int = 0
    reserved_micro: int = 0
    reserved_tokens: int = 0
    price_ref: str = ""
    budget_asked: str = ""
    budget_used: int | None = None
    status: int = 0
    latency_ms: float = 0.0
    upstream_ms: float = 0.0
    stream: bool = False
    detail: str = ""
    error: str = ""
    worker_id: str = ""
    lease_expires: float | None = None

    def values(self) -> dict[str, Any]:
        """Column values for :data:`ragtrim.serve.schema.ledger`."""
        if self.action not in ACTIONS:
            raise ValueError(f"ledger action must be one of {ACTIONS}, got {self.action!r}")
        out = asdict(self)
        out["day"] = dt.datetime.fromtimestamp(self.ts, dt.timezone.utc).strftime("%Y-%m-%d")
        out["user"] = self.user[:200]
        out["feature"] = self.feature[:200]
        out["error"] = self.error[:2000]
        return out

    def final_values(self) -> dict[str, Any]:
        """Values that finalize a pending row (the id, time and tenant stay)."""
        out = self.values()
        for key in ("id", "ts", "day", "tenant_id"):
            out.pop(key)
        out["lease_expires"] = None
        return out

"""The ledger: one row per request, whatever the outcome, never deleted.

A request that reaches the upstream is written ``pending`` in the same transaction as its
quota reservation, then finalized exactly once with what happened (``ok``, ``degraded``,
``failed``); a refused request is written final at once. A pending row whose worker died is
finalized ``failed`` by :meth:`ragtrim.serve.quota.QuotaStore.expire`.

>>> e = LedgerEntry(id="r1", ts=0.0, tenant_id="acme", endpoint="chat", action="ok")
>>> e.values()["day"], e.values()["cost_micro"]
('1970-01-01', 0)

Every value fits its column on PostgreSQL too (which, unlike SQLite, enforces sizes): text is
cut to the column's length and ``budget_used`` to :data:`MAX_BUDGET_USED`.

>>> v = LedgerEntry(id="r2", ts=0.0, tenant_id="acme", endpoint="chat", action="ok", price_ref="m" * 300, budget_used=3 * 10**9).values()
>>> len(v["price_ref"]), v["budget_used"]
(200, 2147483647)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

ACTIONS = ("pending", "ok", "degraded", "refused", "failed")
# A row that charged nothing (failed, refused) shows no tokens or money, so that the ledger's sums
# equal what the budgets were charged; what it had reserved stays in reserved_tokens/reserved_micro.
# ``budget_used`` is an INTEGER column (32 bits on PostgreSQL). A context budget above this is
# larger than any model's context (it keeps everything), so it is recorded as this.
MAX_BUDGET_USED = 2**31 - 1
UNCHARGED = {"tokens_full": 0, "tokens_sent": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0,
             "cache_write_tokens": 0, "cost_micro": 0, "saved_micro": 0}
# Endpoints whose requests have no output (an embedding): their reservation is all input tokens.
INPUT_ONLY_ENDPOINTS = ("embeddings",)


def estimated_tokens(endpoint: str, prompt: int, reserved: int) -> tuple[int, int]:
    """``(prompt, completion)`` tokens of a request charged its ``reserved`` tokens as an estimate (its usage unknown): the
    counted ``prompt`` and the rest (the completion cap, each with the model's ``count_margin``) as completion; all
    input for an :data:`INPUT_ONLY_ENDPOINTS` request, whose margin is on its input alone.

    >>> estimated_tokens("chat", 90, 290), estimated_tokens("embeddings", 8, 10)
    ((90, 200), (10, 0))
    """
    if endpoint in INPUT_ONLY_ENDPOINTS:
        return reserved, 0
    return prompt, max(0, reserved - prompt)


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
    key_id: str = ""
    # of prompt_tokens, those the upstream read from its prompt cache and charged at the model's cached-input price
    # (0 when its usage did not say, or was not the upstream's: a counted or estimated row)
    cached_tokens: int = 0
    # of prompt_tokens, those the upstream wrote to its prompt cache and charged at the model's cache-write price
    # (Anthropic's cache_creation_input_tokens; 0 likewise)
    cache_write_tokens: int = 0

    def values(self) -> dict[str, Any]:
        """Column values for :data:`ragtrim.serve.schema.ledger`."""
        if self.action not in ACTIONS:
            raise ValueError(f"ledger action must be one of {ACTIONS}, got {self.action!r}")
        out = asdict(self)
        out["day"] = dt.datetime.fromtimestamp(self.ts, dt.timezone.utc).strftime("%Y-%m-%d")
        out["error"] = self.error[:2000]
        for name, value in out.items():
            size = column_size(name)
            if size is not None and isinstance(value, str):
                out[name] = value[:size]
        if self.budget_used is not None:
            out["budget_used"] = min(self.budget_used, MAX_BUDGET_USED)
        return out

    def final_values(self) -> dict[str, Any]:
        """Values that finalize a pending row (the id, time and tenant stay)."""
        out = self.values()
        for key in ("id", "ts", "day", "tenant_id"):
            out.pop(key)
        out["lease_expires"] = None
        return out


def column_size(name: str) -> int | None:
    """The most characters the ledger column ``name`` holds (None: unbounded, or not a text column).

    Request checks take their limits from here (:mod:`ragtrim.serve.bodies`), so that a value the
    ledger cannot hold is a clear 400, not a database error.

    >>> column_size("model_asked"), column_size("preset"), column_size("detail")
    (120, 60, None)
    """
    from ragtrim.serve.schema import ledger

    column = ledger.c.get(name)
    return getattr(column.type, "length", None) if column is not None else None


async def record_rejected(service: Any, entry: LedgerEntry) -> None:
    """Write the final row of a request that is answered with an error and held nothing.

    A database error here is logged (``ledger_write_failed``), not raised: the client still
    gets the answer its request earned (a 400, a 429, ...), not a 500 for the row.
    """
    from starlette.concurrency import run_in_threadpool

    from ragtrim.serve.logs import log_event

    try:
        await run_in_threadpool(service.quota.record, entry)
    except Exception as exc:
        log_event(service.log, "ledger_write_failed", request_id=entry.id, tenant=entry.tenant_id, status=entry.status,
                  error=f"{type(exc).__name__}: {exc}"[:500])

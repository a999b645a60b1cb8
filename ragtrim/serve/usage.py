"""Usage reports from the ledger: grouped by user, feature, model, day, endpoint, API key (and tenant for admins).

``key`` groups by the id of the API key that made each request (``""`` for rows written before
the ledger recorded it, schema revision 0002), so a leaked or runaway key's spend shows alone.

>>> from ragtrim.serve.db import make_engine
>>> engine = make_engine("sqlite://")
>>> usage_summary(engine, tenant_id="acme", by=["day"])["rows"]
[]
>>> usage_summary(engine, tenant_id="acme", by=["colour"])
Traceback (most recent call last):
...
ValueError: cannot group usage by 'colour'; use any of: user, feature, model, day, tenant, endpoint, key
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from sqlalchemy import and_, case, func, select

from ragtrim.serve.budgets import list_budgets, period_reset, period_start
from ragtrim.serve.db import reading
from ragtrim.serve.schema import CHARGED_ACTIONS, USAGE_ESTIMATED, budget_usage, ledger

GROUPS = MappingProxyType({"user": ledger.c.user, "feature": ledger.c.feature, "model": ledger.c.model_used,
                           "day": ledger.c.day, "tenant": ledger.c.tenant_id, "endpoint": ledger.c.endpoint,
                           "key": ledger.c.key_id})


def check_day(value: str | None, name: str) -> str | None:
    """A ``since``/``until`` day as ``YYYY-MM-DD`` (None stays None); anything else is a ValueError.

    The ledger groups by UTC day, so these compare as text: a day must be written in full.

    >>> check_day("2026-12-06", "since"), check_day("20261206", "until"), check_day(None, "since")
    ('2026-12-06', '2026-12-06', None)
    >>> check_day("last week", "since")
    Traceback (most recent call last):
    ...
    ValueError: since must be a day as YYYY-MM-DD (UTC), e.g. 2026-12-06, got 'last week'
    """
    if value is None or value == "":
        return None
    try:
        return dt.date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise ValueError(f"{name} must be a day as YYYY-MM-DD (UTC), e.g. 2026-12-06, got {value!r}") from None


def _check_by(by: Sequence[str]) -> list[str]:
    out = []
    for name in by:
        if name not in GROUPS:
            raise ValueError(f"cannot group usage by {name!r}; use any of: {', '.join(GROUPS)}")
        if name not in out:
            out.append(name)
    return out


# Tokens and money count only what was charged: rows answered ``ok`` or ``degraded`` (and an
# ``/v1/optimize`` run, ``ok``, which saves tokens and costs nothing). ``failed``, ``refused`` and
# ``pending`` rows are counted by action but add no tokens or money, so the totals equal what the
# budgets were charged and what ``/metrics`` counted. ``cached_tokens`` are part of ``prompt_tokens``: those the
# upstream read from its prompt cache (charged the model's cached-input price); ``cache_write_tokens`` too: those it
# wrote to its prompt cache (Anthropic's cache_creation_input_tokens, charged the model's cache-write price).
CHARGED_COLUMNS = ("tokens_full", "tokens_sent", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
                   "cost_micro", "saved_micro")


def _charged_sum(name: str) -> Any:
    column = ledger.c[name]
    return func.coalesce(func.sum(case((ledger.c.action.in_(CHARGED_ACTIONS), column), else_=0)), 0).label(name)


def _estimated_sums() -> list[Any]:
    """Of the charged rows, those charged their reservation as an estimate (the upstream had the request and its usage
    never came: a timeout, an unreadable answer, a dead worker): how many, and their tokens and cost, already in the totals."""
    estimated = and_(ledger.c.action.in_(CHARGED_ACTIONS), ledger.c.usage_source == USAGE_ESTIMATED)
    tokens = ledger.c.prompt_tokens + ledger.c.completion_tokens
    return [func.sum(case((estimated, 1), else_=0)).label("estimated"),
            func.coalesce(func.sum(case((estimated, tokens), else_=0)), 0).label("estimated_tokens"),
            func.coalesce(func.sum(case((estimated, ledger.c.cost_micro), else_=0)), 0).label("estimated_cost_micro")]


def usage_summary(engine: Any, *, tenant_id: str | None, by: Sequence[str] = ("day",), since: str | None = None,
                  until: str | None = None) -> dict[str, Any]:
    """Totals per group: requests by action, tokens, cost and savings (micro-dollars), and how much of it was charged as
    an estimate (``estimated``, ``estimated_tokens``, ``estimated_cost_micro``). ``tenant_id`` None = all (admin)."""
    groups = _check_by(by)
    since, until = check_day(since, "since"), check_day(until, "until")
    cols = [GROUPS[g].label(g) for g in groups]
    metrics = [
        func.count().label("requests"),
        func.sum(case((ledger.c.action == "ok", 1), else_=0)).label("ok"),
        func.sum(case((ledger.c.action == "degraded", 1), else_=0)).label("degraded"),
        func.sum(case((ledger.c.action == "refused", 1), else_=0)).label("refused"),
        func.sum(case((ledger.c.action == "failed", 1), else_=0)).label("failed"),
        func.sum(case((ledger.c.action == "pending", 1), else_=0)).label("pending"),
        *[_charged_sum(name) for name in CHARGED_COLUMNS],
        *_estimated_sums(),
    ]
    q = select(*cols, *metrics)
    if tenant_id is not None:
        q = q.where(ledger.c.tenant_id == tenant_id)
    if since:
        q = q.where(ledger.c.day >= since)
    if until:
        q = q.where(ledger.c.day <= until)
    if groups:
        q = q.group_by(*[GROUPS[g] for g in groups]).order_by(*[GROUPS[g] for g in groups])
    with reading(engine) as conn:
        rows = [{k: (v if k in groups else int(v or 0)) for k, v in r._mapping.items()}  # PostgreSQL sums are Decimals
                for r in conn.execute(q).all()]
    if not groups and rows and rows[0]["requests"] == 0:
        rows = []
    totals: dict[str, int] = {}
    for r in rows:
        for k, v in r.items():
            if k not in groups:
                totals[k] = totals.get(k, 0) + int(v or 0)
    return {"tenant": tenant_id, "by": groups, "since": since, "until": until, "rows": rows, "totals": totals}


def quota_status(engine: Any, tenant_id: str | None, now: float) -> list[dict[str, Any]]:
    """Each budget with its spent, reserved and limit in the current period and when it resets."""
    out = []
    with reading(engine) as conn:
        for b in list_budgets(engine, tenant_id):
            p = period_start(b.period, now)
            row = conn.execute(select(budget_usage.c.spent, budget_usage.c.reserved).where(
                budget_usage.c.budget_id == b.id, budget_usage.c.period_start == p)).first()
            out.append({"id": b.id, "tenant": b.tenant_id, "scope": b.scope, "scope_value": b.scope_value, "unit": b.unit,
                        "period": b.period, "period_start": p, "limit": b.limit, "spent": int(row.spent) if row else 0,
                        "reserved": int(row.reserved) if row else 0, "resets_at": period_reset(b.period, now)})
    return out

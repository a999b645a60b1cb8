"""Budgets: per tenant, optionally per user or per feature, in tokens or micro-dollars, per day or month.

Periods are UTC calendar days and months; a budget's counters start at zero each period. A budget
created partway through a period starts with what its scope was already charged in that period
(:func:`spent_so_far`, from the ledger), so its ``spent`` agrees with ``/v1/usage`` from the start.

>>> import datetime as dt
>>> t = dt.datetime(2025, 6, 30, 23, 0, tzinfo=dt.timezone.utc).timestamp()
>>> period_start("day", t), period_start("month", t)
('2025-06-30', '2025-06')
>>> int(period_reset("day", t) - t), dt.datetime.fromtimestamp(period_reset("month", t), dt.timezone.utc).isoformat()
(3600, '2025-07-01T00:00:00+00:00')
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from ragtrim.serve.db import insert_ignore, reading, writing
from ragtrim.serve.keys import tenant_exists
from ragtrim.serve.schema import CHARGED_ACTIONS, budget_usage, budgets, ledger

SCOPES = ("tenant", "user", "feature")
UNITS = ("tokens", "usd")
PERIODS = ("day", "month")
SCOPE_VALUE_MAX = 200  # rt_budgets.scope_value's size, and the longest user or feature tag a request may send


@dataclass(frozen=True)
class Budget:
    """A limit: ``limit`` is tokens (unit ``tokens``) or micro-dollars (unit ``usd``)."""

    id: str
    tenant_id: str
    scope: str
    scope_value: str
    unit: str
    period: str
    limit: int

    def label(self) -> str:
        who = self.tenant_id if self.scope == "tenant" else f"{self.tenant_id}/{self.scope}={self.scope_value}"
        return f"{who} {self.unit}/{self.period}"


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def period_start(period: str, now: float) -> str:
    """The key of the period containing ``now``: ``YYYY-MM-DD`` or ``YYYY-MM``."""
    d = _utc(now)
    if period == "day":
        return d.strftime("%Y-%m-%d")
    if period == "month":
        return d.strftime("%Y-%m")
    raise ValueError(f"period must be one of {PERIODS}, got {period!r}")


def period_bounds(period: str, now: float) -> tuple[float, float]:
    """Epoch seconds when the period containing ``now`` begins and ends (the end is the next one's beginning).

    >>> import datetime as dt
    >>> t = dt.datetime(2024, 2, 10, 15, tzinfo=dt.timezone.utc).timestamp()
    >>> [dt.datetime.fromtimestamp(b, dt.timezone.utc).isoformat() for b in period_bounds("month", t)]
    ['2024-02-01T00:00:00+00:00', '2024-03-01T00:00:00+00:00']
    """
    d = _utc(now)
    first = dt.datetime(d.year, d.month, d.day if period == "day" else 1, tzinfo=dt.timezone.utc)
    return first.timestamp(), period_reset(period, now)


def period_reset(period: str, now: float) -> float:
    """Epoch seconds when the period containing ``now`` ends."""
    d = _utc(now)
    if period == "day":
        nxt = dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
    elif period == "month":
        nxt = dt.datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    else:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    return nxt.timestamp()


def _row(r: Any) -> Budget:
    return Budget(id=r.id, tenant_id=r.tenant_id, scope=r.scope, scope_value=r.scope_value, unit=r.unit, period=r.period, limit=int(r.limit_amount))


# The largest limit: a billion dollars in micro-dollars, or 10^15 tokens. Counters then stay far
# inside the database's 64-bit integers, and exact as floats, whatever is added to them.
MAX_LIMIT = 10**15


def check_limit(unit: str, limit: Any) -> None:
    """Raise ValueError unless ``limit`` is a whole number from 0 to :data:`MAX_LIMIT` (tokens or micro-dollars).

    >>> check_limit("usd", 10**30)
    Traceback (most recent call last):
    ...
    ValueError: limit is too large: at most 1000000000000000 micro-dollars ($1,000,000,000), got 1000000000000000000000000000000
    """
    what = "tokens" if unit == "tokens" else "micro-dollars"
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer ({what}), got {limit!r}")
    if limit > MAX_LIMIT:
        most = f"{MAX_LIMIT} tokens" if unit == "tokens" else f"{MAX_LIMIT} micro-dollars (${MAX_LIMIT // 1_000_000:,})"
        raise ValueError(f"limit is too large: at most {most}, got {limit}")


def check_unit(unit: Any) -> None:
    """Raise ValueError unless ``unit`` is one of :data:`UNITS`.

    >>> check_unit("euro")
    Traceback (most recent call last):
    ...
    ValueError: unit must be one of tokens, usd, got 'euro'
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")


def set_budget(engine: Any, *, tenant_id: str, unit: str, period: str, limit: int, scope: str = "tenant", scope_value: str = "",
               now: float | None = None) -> Budget:
    """Create or change a budget.

    Changing an existing budget's limit keeps its counters. A new budget (also one deleted and set
    again) starts its current period, the one containing ``now`` (default: the host's clock), with
    what its scope was already charged in it (:func:`spent_so_far`), in the same transaction.
    Concurrent calls for one new scope make one budget (the insert does nothing on the scope's unique
    index, and that call changes the limit of the budget the other made): none fails.
    """
    _check_budget(tenant_id, unit, period, limit, scope, scope_value)
    if not tenant_exists(engine, tenant_id):
        raise ValueError(f"unknown tenant {tenant_id!r}; create it first with 'ragtrim tenants create {tenant_id}'")
    now = time.time() if now is None else now
    where = and_(budgets.c.tenant_id == tenant_id, budgets.c.scope == scope, budgets.c.scope_value == scope_value,
                 budgets.c.unit == unit, budgets.c.period == period)
    with writing(engine) as conn:
        row = conn.execute(budgets.select().where(where)).first()
        b = Budget(id=secrets.token_hex(8), tenant_id=tenant_id, scope=scope, scope_value=scope_value, unit=unit,
                   period=period, limit=limit)
        if row is None and conn.execute(insert_ignore(engine, budgets).values(
                id=b.id, tenant_id=tenant_id, scope=scope, scope_value=scope_value, unit=unit, period=period,
                limit_amount=limit, created=now).returning(budgets.c.id)).first() is None:
            # another call made it since (PostgreSQL waited for it); RETURNING, not rowcount, which is -1 there
            row = conn.execute(budgets.select().where(where)).one()
        if row is not None:
            conn.execute(budgets.update().where(budgets.c.id == row.id).values(limit_amount=limit))
            return replace(_row(row), limit=limit)
        spent = spent_so_far(conn, b, now)
        if spent:  # else the counters' row is made by the first reservation, as for any period
            conn.execute(budget_usage.insert().values(budget_id=b.id, period_start=period_start(period, now), spent=spent, reserved=0))
    return b


def _check_budget(tenant_id: Any, unit: Any, period: Any, limit: Any, scope: Any, scope_value: Any) -> None:
    """Raise ValueError naming the first field of a budget that is missing or not one of its allowed values."""
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError(f"a budget needs a tenant (the tenant's name), got {tenant_id!r}")
    check_scope(scope)
    check_scope_value(scope, scope_value)
    check_unit(unit)
    check_period(period)
    check_limit(unit, limit)


def check_scope(scope: Any) -> None:
    """Raise ValueError unless ``scope`` is one of :data:`SCOPES`.

    >>> check_scope("team")
    Traceback (most recent call last):
    ...
    ValueError: scope must be one of ('tenant', 'user', 'feature'), got 'team'
    """
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")


def check_scope_value(scope: Any, scope_value: Any) -> None:
    """Raise ValueError unless ``scope_value`` fits ``scope``: none for a tenant budget, the user's or feature's name else,
    at most :data:`SCOPE_VALUE_MAX` characters (the column's size, and a request's longest user or feature tag: a longer
    name could never match one)."""
    if (scope == "tenant") != (scope_value == ""):
        raise ValueError(f"a {scope} budget needs {'no' if scope == 'tenant' else 'a'} user/feature name, got {scope_value!r}")
    if len(scope_value) > SCOPE_VALUE_MAX:
        raise ValueError(f"a {scope} budget's name is at most {SCOPE_VALUE_MAX} characters (no request's {scope} tag is "
                         f"longer), got {len(scope_value)}: {scope_value[:40]!r}...; give the tag as requests send it")


def check_period(period: Any) -> None:
    """Raise ValueError unless ``period`` is one of :data:`PERIODS`.

    >>> check_period("week")
    Traceback (most recent call last):
    ...
    ValueError: period must be one of ('day', 'month'), got 'week'
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")


def spent_so_far(conn: Any, b: Budget, now: float) -> int:
    """What ``b``'s scope was charged in the period containing ``now``, from the ledger: tokens or micro-dollars.

    The same rows and columns a settle charges a budget with: rows answered ``ok`` or ``degraded``
    (:data:`CHARGED_ACTIONS`), their ``prompt_tokens + completion_tokens`` or ``cost_micro``, of the
    budget's tenant (and user or feature, as it is scoped), whose time is in the period (a row's
    time is the time its budgets' period was taken at). Requests still in flight are not counted.
    """
    amount = ledger.c.prompt_tokens + ledger.c.completion_tokens if b.unit == "tokens" else ledger.c.cost_micro
    begins, ends = period_bounds(b.period, now)
    q = select(func.coalesce(func.sum(case((ledger.c.action.in_(CHARGED_ACTIONS), amount), else_=0)), 0)).where(
        ledger.c.tenant_id == b.tenant_id, ledger.c.ts >= begins, ledger.c.ts < ends)  # the (tenant_id, ts) index
    if b.scope != "tenant":
        q = q.where(ledger.c[b.scope] == b.scope_value)
    return int(conn.execute(q).scalar_one())  # a Decimal on PostgreSQL


def delete_budget(engine: Any, budget_id: str, *, tenant_id: str | None = None) -> bool:
    """Remove a budget and its counters. Held reservations against it are left to settle or expire; a request
    planned with it and not yet reserved skips it (:meth:`ragtrim.serve.quota.QuotaStore.reserve`).

    The budget's row is locked first (``FOR UPDATE``), then its counters: the order a reservation takes them in.
    """
    with writing(engine) as conn:
        q = budgets.select().where(budgets.c.id == budget_id).with_for_update()
        if tenant_id is not None:
            q = q.where(budgets.c.tenant_id == tenant_id)
        if conn.execute(q).first() is None:
            return False
        conn.execute(budget_usage.delete().where(budget_usage.c.budget_id == budget_id))
        conn.execute(budgets.delete().where(budgets.c.id == budget_id))
        return True


def list_budgets(engine: Any, tenant_id: str | None = None) -> list[Budget]:
    with reading(engine) as conn:
        q = budgets.select().order_by(budgets.c.tenant_id, budgets.c.scope, budgets.c.scope_value, budgets.c.unit, budgets.c.period)
        if tenant_id is not None:
            q = q.where(budgets.c.tenant_id == tenant_id)
        return [_row(r) for r in conn.execute(q).all()]


def applicable_budgets(conn: Any, tenant_id: str, user: str, feature: str) -> list[Budget]:
    """The budgets one request counts against: the tenant's, its user's and its feature's."""
    cond = or_(
        budgets.c.scope == "tenant",
        and_(budgets.c.scope == "user", budgets.c.scope_value == user),
        and_(budgets.c.scope == "feature", budgets.c.scope_value == feature),
    )
    rows = conn.execute(budgets.select().where(budgets.c.tenant_id == tenant_id, cond).order_by(budgets.c.id)).all()
    return [_row(r) for r in rows]

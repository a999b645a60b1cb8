"""Quota enforcement without HTTP: reserve the worst case, settle the actual, release, expire.

``reserve`` checks and reserves in one write transaction: for every budget the request counts
against, one conditional ``UPDATE budget_usage SET reserved = reserved + :need WHERE spent +
reserved + :need <= limit``; if any budget has no room the transaction rolls back and nothing
is held. On PostgreSQL the UPDATE takes the row lock and re-checks its condition after a
concurrent writer commits; on SQLite the transaction is ``BEGIN IMMEDIATE``. Budgets are
locked in id order, so two requests never deadlock. Hence, per budget and period,
``spent + reserved <= limit`` at every commit, with any number of workers and replicas.

Each reservation carries its worker's id and a lease; a live worker renews its leases
(:meth:`QuotaStore.renew`, from a :class:`ragtrim.serve.lease.LeaseKeeper` thread), and
:meth:`QuotaStore.expire` releases the reservations of a worker that died and fails its
pending ledger rows; a worker never expires its own. Lease times are read once the write lock
is held. Settling moves a reservation from ``held`` to ``settled`` once (a repeated settle or
a settle after release charges nothing).

>>> from ragtrim.serve.db import make_engine
>>> from ragtrim.serve.keys import create_tenant
>>> from ragtrim.serve.budgets import set_budget
>>> engine = make_engine("sqlite://")
>>> _ = create_tenant(engine, "acme")
>>> b = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1000)
>>> store = QuotaStore(engine, worker_id="w1")
>>> budgets = store.budgets_for("acme", user="", feature="")
>>> r = store.reserve("req-1", budgets, Need(tokens=800, micro=0))
>>> isinstance(r, Reservation), isinstance(store.reserve("req-2", budgets, Need(tokens=300, micro=0)), Shortfall)
(True, True)
>>> store.settle("req-1", Need(tokens=500, micro=0))
False
>>> [(s.spent, s.reserved) for s in store.standings(budgets)]
[(500, 0)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ragtrim.serve.budgets import Budget, applicable_budgets, period_reset, period_start
from ragtrim.serve.db import insert_ignore, reading, writing
from ragtrim.serve.ledger import UNCHARGED, LedgerEntry
from ragtrim.serve.schema import budget_usage, budgets as budgets_table, ledger, reservations


@dataclass(frozen=True)
class Need:
    """An amount in both units: tokens and micro-dollars."""

    tokens: int
    micro: int

    def amount(self, unit: str) -> int:
        return self.tokens if unit == "tokens" else self.micro


@dataclass(frozen=True)
class Standing:
    """A budget's counters in its current period."""

    budget: Budget
    period_start: str
    spent: int
    reserved: int

    @property
    def available(self) -> int:
        return max(0, self.budget.limit - self.spent - self.reserved)


@dataclass(frozen=True)
class Reservation:
    """Held quota for one request."""

    request_id: str
    need: Need
    budget_ids: tuple[str, ...]


@dataclass(frozen=True)
class Shortfall:
    """Why a reservation failed: the first budget without room, and when its period resets."""

    budget: Budget
    needed: int
    reset_at: float


class _NoRoom(Exception):
    def __init__(self, budget: Budget, needed: int):
        self.budget, self.needed = budget, needed


class QuotaStore:
    """Reservations and counters in the service database (see the module docstring)."""

    def __init__(self, engine: Any, *, worker_id: str, lease_seconds: float = 30.0, clock: Callable[[], float] = time.time):
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self.engine = engine
        self.worker_id = worker_id
        self.lease_seconds = float(lease_seconds)
        self.clock = clock

    def budgets_for(self, tenant_id: str, *, user: str, feature: str) -> list[Budget]:
        """The budgets a request of this tenant, user and feature counts against."""
        with reading(self.engine) as conn:
            return applicable_budgets(conn, tenant_id, user, feature)

    def standings(self, budgets: Sequence[Budget]) -> list[Standing]:
        """Current spent and reserved of each budget (a snapshot, for planning and reports)."""
        now = self.clock()
        out = []
        with reading(self.engine) as conn:
            for b in budgets:
                p = period_start(b.period, now)
                row = conn.execute(select(budget_usage.c.spent, budget_usage.c.reserved).where(
                    budget_usage.c.budget_id == b.id, budget_usage.c.period_start == p)).first()
                out.append(Standing(b, p, int(row.spent) if row else 0, int(row.reserved) if row else 0))
        return out

    def reserve(self, request_id: str, budgets: Sequence[Budget], need: Need, pending: LedgerEntry | None = None) -> Reservation | Shortfall:
        """Hold ``need`` against every budget, atomically, and write the ``pending`` ledger row with it."""
        if need.tokens < 0 or need.micro < 0:
            raise ValueError(f"a reservation must be >= 0, got {need!r}")
        ordered = sorted(budgets, key=lambda b: b.id)
        try:
            with writing(self.engine) as conn:
                now = self.clock()  # read after the write lock: waiting for it must not eat into the lease
                expires = now + self.lease_seconds
                for b in ordered:
                    self._hold(conn, b, period_start(b.period, now), need.amount(b.unit), request_id, expires, now)
                if pending is not None:
                    row = pending.values()
                    row.update(worker_id=self.worker_id, lease_expires=expires)
                    conn.execute(ledger.insert().values(**row))
        except _NoRoom as exc:
            return Shortfall(budget=exc.budget, needed=exc.needed, reset_at=period_reset(exc.budget.period, now))
        return Reservation(request_id=request_id, need=need, budget_ids=tuple(b.id for b in ordered))

    def _hold(self, conn: Any, b: Budget, p: str, amount: int, request_id: str, expires: float, now: float) -> None:
        conn.execute(insert_ignore(self.engine, budget_usage).values(budget_id=b.id, period_start=p, spent=0, reserved=0))
        limit = select(budgets_table.c.limit_amount).where(budgets_table.c.id == b.id).scalar_subquery()
        result = conn.execute(
            budget_usage.update()
            .where(budget_usage.c.budget_id == b.id, budget_usage.c.period_start == p,
                   budget_usage.c.spent + budget_usage.c.reserved + amount <= limit)
            .values(reserved=budget_usage.c.reserved + amount)
        )
        if result.rowcount != 1:
            raise _NoRoom(b, amount)
        conn.execute(reservations.insert().values(
            request_id=request_id, budget_id=b.id, period_start=p, amount=amount, charged=None,
            worker_id=self.worker_id, expires=expires, state="held", created=now,
        ))

    def settle(self, request_id: str, actual: Need, entry: LedgerEntry | None = None) -> bool:
        """Charge ``actual`` and free the hold; finalize the ledger row. True if a hold had already expired (charged late)."""
        late = False
        with writing(self.engine) as conn:
            rows = conn.execute(reservations.select().where(reservations.c.request_id == request_id)
                                .order_by(reservations.c.budget_id)).all()
            unit_of = self._units(conn, [r.budget_id for r in rows])
            for r in rows:
                charge = actual.amount(unit_of.get(r.budget_id, "tokens"))
                if r.state not in ("held", "expired"):
                    continue  # already settled or released: never charge twice
                moved = conn.execute(reservations.update().where(
                    reservations.c.request_id == request_id, reservations.c.budget_id == r.budget_id,
                    reservations.c.state == r.state).values(state="settled", charged=charge)).rowcount
                if moved != 1:
                    continue
                held = r.amount if r.state == "held" else 0
                late = late or r.state == "expired"
                conn.execute(budget_usage.update().where(
                    budget_usage.c.budget_id == r.budget_id, budget_usage.c.period_start == r.period_start)
                    .values(reserved=budget_usage.c.reserved - held, spent=budget_usage.c.spent + charge))
            if entry is not None:
                self._finalize(conn, entry, late)
        return late

    def release(self, request_id: str, entry: LedgerEntry | None = None) -> None:
        """Free the hold without charging (the upstream call failed before any usage)."""
        with writing(self.engine) as conn:
            rows = conn.execute(reservations.select().where(
                reservations.c.request_id == request_id, reservations.c.state == "held").order_by(reservations.c.budget_id)).all()
            for r in rows:
                self._free(conn, r, "released")
            if entry is not None:
                self._finalize(conn, entry, False)

    def record(self, entry: LedgerEntry) -> None:
        """Write a final ledger row for a request that held nothing (refused, rejected, optimize-only)."""
        with writing(self.engine) as conn:
            conn.execute(ledger.insert().values(**{**entry.values(), "worker_id": self.worker_id, "lease_expires": None}))

    def renew(self) -> int:
        """Extend this worker's held reservations and pending rows; returns how many reservations."""
        with writing(self.engine) as conn:
            expires = self.clock() + self.lease_seconds
            n = conn.execute(reservations.update().where(
                reservations.c.worker_id == self.worker_id, reservations.c.state == "held").values(expires=expires)).rowcount
            conn.execute(ledger.update().where(ledger.c.worker_id == self.worker_id, ledger.c.action == "pending")
                         .values(lease_expires=expires))
        return n

    def expire(self, limit: int = 1000) -> int:
        """Release other workers' reservations whose lease ran out (their worker died) and fail their pending rows.

        A worker never expires its own: it is alive, so its holds are in flight and will be settled or
        released (expiring one would let another request take room this one is about to be charged for).
        """
        with writing(self.engine) as conn:
            now = self.clock()
            rows = conn.execute(reservations.select().where(reservations.c.state == "held", reservations.c.expires < now,
                                                            reservations.c.worker_id != self.worker_id)
                                .order_by(reservations.c.budget_id).limit(limit)).all()
            freed = sum(self._free(conn, r, "expired") for r in rows)
            conn.execute(ledger.update().where(ledger.c.action == "pending", ledger.c.lease_expires < now,
                                               ledger.c.worker_id != self.worker_id).values(
                action="failed", status=0, lease_expires=None, **UNCHARGED,
                error="worker stopped before the request finished; its reservation expired (upstream usage unknown)"))
        return freed

    def _free(self, conn: Any, r: Any, state: str) -> int:
        moved = conn.execute(reservations.update().where(
            reservations.c.request_id == r.request_id, reservations.c.budget_id == r.budget_id,
            reservations.c.state == "held").values(state=state, charged=0)).rowcount
        if moved == 1:
            conn.execute(budget_usage.update().where(
                budget_usage.c.budget_id == r.budget_id, budget_usage.c.period_start == r.period_start)
                .values(reserved=budget_usage.c.reserved - r.amount))
        return moved

    @staticmethod
    def _units(conn: Any, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = conn.execute(select(budgets_table.c.id, budgets_table.c.unit).where(budgets_table.c.id.in_(ids))).all()
        return {r.id: r.unit for r in rows}

    def _finalize(self, conn: Any, entry: LedgerEntry, late: bool) -> None:
        values = entry.final_values()
        values["worker_id"] = self.worker_id
        if late:
            values["error"] = (values["error"] + "; " if values["error"] else "") + "settled after its reservation had expired"
        if conn.execute(ledger.update().where(ledger.c.id == entry.id).values(**values)).rowcount == 0:
            conn.execute(ledger.insert().values(**{**entry.values(), "worker_id": self.worker_id, "lease_expires": None}))

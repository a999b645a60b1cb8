"""Quota enforcement without HTTP: reserve the worst case, settle the actual, release, expire.

``reserve`` checks and reserves in one write transaction: for every budget the request counts
against, one conditional ``UPDATE budget_usage SET reserved = reserved + :need WHERE spent +
reserved + :need <= limit``; if any budget has no room the transaction rolls back and nothing
is held. On PostgreSQL the UPDATE takes the row lock and re-checks its condition after a
concurrent writer commits; on SQLite the transaction is ``BEGIN IMMEDIATE``. Hence, per budget
and period, ``spent + reserved <= limit`` at every commit, with any number of workers and replicas.

Lock order (PostgreSQL; SQLite runs one writer at a time and ignores row locks): a transaction
locks reservation rows first (``SELECT ... FOR UPDATE``, by budget id then request id), then
budget counters in budget id order, then ledger rows. :meth:`QuotaStore.renew` and
:meth:`QuotaStore.expire` lock their candidate rows with ``SKIP LOCKED``: a row another
transaction holds is being settled or released, so they leave it. A transaction PostgreSQL still
aborts as a deadlock victim is run again (:func:`ragtrim.serve.db.write_retrying`); the state
guards (``held`` -> ``settled`` once) make that safe.

Each reservation carries its worker's id and a lease; a live worker renews the leases of its
open requests (:meth:`QuotaStore.renew`, from a :class:`ragtrim.serve.lease.LeaseKeeper` thread),
and :meth:`QuotaStore.expire` releases the reservations of a worker that died and fails its
pending ledger rows. A worker never expires its own open requests. On PostgreSQL lease times
are the database's clock, so replicas whose clocks disagree do not expire each other's live
holds; on SQLite (one host) they are ``clock``, read once the write lock is held. Settling moves
a reservation from ``held`` (or ``expired``: charged late) to ``settled`` once (a repeated settle
or a settle after release charges nothing).

A settle or release that fails on a database error is deferred (:meth:`QuotaStore.defer`) and
run again by the lease keeper (:meth:`QuotaStore.retry_deferred`), with the usage it had; its
hold is renewed meanwhile. After about a lease of failures the store gives it up: it stops
renewing that hold, and its own :meth:`QuotaStore.expire` then frees the room and fails the row.

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

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import and_, or_, select, tuple_

from ragtrim.serve.budgets import Budget, applicable_budgets, period_reset, period_start
from ragtrim.serve.db import db_epoch, insert_ignore, is_postgres, reading, write_retrying
from ragtrim.serve.ledger import UNCHARGED, LedgerEntry
from ragtrim.serve.schema import budget_usage, budgets as budgets_table, ledger, reservations

T = TypeVar("T")
LATE_NOTE = "settled after its reservation had expired"
DEAD_WORKER_NOTE = "worker stopped before the request finished; its reservation expired (upstream usage unknown)"
GAVE_UP_NOTE = ("the worker could not record how this request ended (database errors) and gave up; "
                "its reservation expired and nothing was charged")
_CHUNK = 400  # ids per IN (...) list (SQLite limits the parameters of a statement)


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


@dataclass(frozen=True)
class Deferred:
    """A settle or release that failed on a database error, kept to run again.

    ``need`` is the usage to charge (a settle; None for a release), ``entry`` the final ledger row,
    ``since`` the store's clock at the first failure, ``error`` the last failure.
    """

    kind: str  # settle | release
    need: Need | None
    entry: LedgerEntry | None
    since: float
    attempts: int = 1
    error: str = ""


class _NoRoom(Exception):
    def __init__(self, budget: Budget, needed: int, now: float):
        self.budget, self.needed, self.now = budget, needed, now


def _chunks(ids: Sequence[str]) -> list[Sequence[str]]:
    return [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


class QuotaStore:
    """Reservations and counters in the service database (see the module docstring).

    ``clock`` gives the budget periods and the ledger rows' time; lease times come from the
    database's clock on PostgreSQL (``db_clock``, default: on PostgreSQL) and from ``clock`` otherwise.
    """

    def __init__(self, engine: Any, *, worker_id: str, lease_seconds: float = 30.0, clock: Callable[[], float] = time.time,
                 db_clock: bool | None = None):
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self.engine = engine
        self.worker_id = worker_id
        self.lease_seconds = float(lease_seconds)
        self.clock = clock
        self.db_clock = is_postgres(engine) if db_clock is None else bool(db_clock)
        self._lock = threading.Lock()
        self._open: set[str] = set()  # reserved here and not yet settled or released (in flight or deferred)
        self._deferred: dict[str, Deferred] = {}

    # -- reading -------------------------------------------------------------------------------

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

    def clock_skew(self) -> float | None:
        """The database's clock minus ``clock`` (seconds) on PostgreSQL; None on SQLite (same host)."""
        with reading(self.engine) as conn:
            db = db_epoch(conn)
        return None if db is None else db - self.clock()

    # -- one request -----------------------------------------------------------------------------

    def reserve(self, request_id: str, budgets: Sequence[Budget], need: Need, pending: LedgerEntry | None = None) -> Reservation | Shortfall:
        """Hold ``need`` against every budget, atomically, and write the ``pending`` ledger row with it.

        The row's time (and so its ``day``) is the time the budget periods are taken at, so the
        ledger's day and the counters' period agree, at midnight too.
        """
        if need.tokens < 0 or need.micro < 0:
            raise ValueError(f"a reservation must be >= 0, got {need!r}")
        ordered = sorted(budgets, key=lambda b: b.id)
        self._track(request_id)  # open before its transaction: an expire must never see its hold untracked
        try:
            return self._write(lambda conn: self._reserve(conn, request_id, ordered, need, pending))
        except _NoRoom as exc:
            self._forget(request_id)
            return Shortfall(budget=exc.budget, needed=exc.needed, reset_at=period_reset(exc.budget.period, exc.now))
        except BaseException:
            self._forget(request_id)  # had it committed after all, its hold lapses unrenewed and expire frees it
            raise

    def _reserve(self, conn: Any, request_id: str, ordered: Sequence[Budget], need: Need, pending: LedgerEntry | None) -> Reservation:
        now = self.clock()  # read inside the transaction (after the write lock on SQLite)
        periods = {b.id: period_start(b.period, now) for b in ordered}
        for b in ordered:  # counters in budget id order
            self._take(conn, b, periods[b.id], need.amount(b.unit), now)
        expires = self._lease_now(conn, now) + self.lease_seconds  # after the locks: waiting for them must not eat into the lease
        if ordered:
            conn.execute(reservations.insert(), [
                {"request_id": request_id, "budget_id": b.id, "period_start": periods[b.id], "amount": need.amount(b.unit),
                 "charged": None, "worker_id": self.worker_id, "expires": expires, "state": "held", "created": now}
                for b in ordered])
        if pending is not None:
            row = replace(pending, ts=now).values()
            row.update(worker_id=self.worker_id, lease_expires=expires)
            conn.execute(ledger.insert().values(**row))
        return Reservation(request_id=request_id, need=need, budget_ids=tuple(b.id for b in ordered))

    def _take(self, conn: Any, b: Budget, p: str, amount: int, now: float) -> None:
        """Add ``amount`` to the budget's ``reserved`` if it fits under the limit, else raise :class:`_NoRoom`."""
        conn.execute(insert_ignore(self.engine, budget_usage).values(budget_id=b.id, period_start=p, spent=0, reserved=0))
        limit = select(budgets_table.c.limit_amount).where(budgets_table.c.id == b.id).scalar_subquery()
        result = conn.execute(
            budget_usage.update()
            .where(budget_usage.c.budget_id == b.id, budget_usage.c.period_start == p,
                   budget_usage.c.spent + budget_usage.c.reserved + amount <= limit)
            .values(reserved=budget_usage.c.reserved + amount)
        )
        if result.rowcount != 1:
            raise _NoRoom(b, amount, now)

    def settle(self, request_id: str, actual: Need, entry: LedgerEntry | None = None) -> bool:
        """Charge ``actual`` and free the hold; finalize the ledger row. True if a hold had already expired (charged late)."""
        late = self._write(lambda conn: self._settle(conn, request_id, actual, entry))
        self._forget(request_id)
        return late

    def _settle(self, conn: Any, request_id: str, actual: Need, entry: LedgerEntry | None) -> bool:
        rows = self._lock_reservations(conn, request_id)  # an expire in progress finishes first: its state is final here
        unit_of = self._units(conn, [r.budget_id for r in rows])
        late = False
        for r in rows:
            if r.state not in ("held", "expired"):
                continue  # already settled or released: never charge twice
            charge = actual.amount(unit_of.get(r.budget_id, "tokens"))
            if not self._move(conn, r, "settled", charge):
                continue
            late = late or r.state == "expired"
            held = r.amount if r.state == "held" else 0  # an expired hold was freed already: only charge it
            self._count(conn, r, reserved=-held, spent=charge)
        if entry is not None:
            self._finalize(conn, entry, late)
        return late

    def release(self, request_id: str, entry: LedgerEntry | None = None) -> None:
        """Free the hold without charging (the upstream call failed before any usage)."""
        self._write(lambda conn: self._release(conn, request_id, entry))
        self._forget(request_id)

    def _release(self, conn: Any, request_id: str, entry: LedgerEntry | None) -> None:
        for r in self._lock_reservations(conn, request_id):
            if r.state == "held":
                self._free(conn, r, "released")
        if entry is not None:
            self._finalize(conn, entry, False)

    def record(self, entry: LedgerEntry) -> None:
        """Write a final ledger row for a request that held nothing (refused, rejected, optimize-only)."""
        row = {**entry.values(), "worker_id": self.worker_id, "lease_expires": None}
        self._write(lambda conn: conn.execute(ledger.insert().values(**row)))

    # -- deferred settles and releases -------------------------------------------------------------

    def defer(self, kind: str, request_id: str, need: Need | None = None, entry: LedgerEntry | None = None, error: str = "") -> None:
        """Keep a ``settle`` (with the usage ``need``) or ``release`` that failed, for :meth:`retry_deferred`.

        The request stays open, so its hold is renewed until the retry succeeds or is given up.
        """
        if kind not in ("settle", "release") or (kind == "settle" and need is None):
            raise ValueError(f"defer needs kind 'settle' (with need) or 'release', got {kind!r}")
        with self._lock:
            old = self._deferred.get(request_id)
            since = old.since if old is not None else self.clock()
            attempts = old.attempts + 1 if old is not None else 1
            self._deferred[request_id] = Deferred(kind, need, entry, since, attempts, error[:300])
            self._open.add(request_id)

    def deferred(self) -> dict[str, Deferred]:
        """The settles and releases waiting for a retry (a copy)."""
        with self._lock:
            return dict(self._deferred)

    def retry_deferred(self) -> tuple[list[str], dict[str, Deferred]]:
        """Run every deferred settle or release again; returns (the request ids done, the items given up).

        An item still failing a lease after its first failure is given up: forgotten and no longer
        renewed, so its hold lapses and :meth:`expire` frees the room and fails its row (:data:`GAVE_UP_NOTE`).
        """
        done: list[str] = []
        given_up: dict[str, Deferred] = {}
        for request_id, item in self.deferred().items():
            try:
                if item.kind == "settle":
                    assert item.need is not None
                    self.settle(request_id, item.need, item.entry)
                else:
                    self.release(request_id, item.entry)
                done.append(request_id)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if self.clock() - item.since >= self.lease_seconds:
                    self._forget(request_id)
                    given_up[request_id] = replace(item, attempts=item.attempts + 1, error=error[:300])
                else:
                    self.defer(item.kind, request_id, item.need, item.entry, error)
        return done, given_up

    def open_requests(self) -> set[str]:
        """Request ids this worker reserved and has not yet settled or released (a copy)."""
        with self._lock:
            return set(self._open)

    def _track(self, request_id: str) -> None:
        with self._lock:
            self._open.add(request_id)

    def _forget(self, request_id: str) -> None:
        with self._lock:
            self._open.discard(request_id)
            self._deferred.pop(request_id, None)

    # -- leases --------------------------------------------------------------------------------

    def renew(self) -> int:
        """Extend the holds and pending rows of this worker's open requests; returns how many reservations.

        Only open requests (in flight or deferred): a hold this worker gave up lapses. Rows another
        transaction holds are skipped (a settle or release is finishing them).
        """
        ids = sorted(self.open_requests())
        if not ids:
            return 0
        return self._write(lambda conn: self._renew(conn, ids))

    def _renew(self, conn: Any, ids: list[str]) -> int:
        expires = self._lease_now(conn, self.clock()) + self.lease_seconds
        keys = []
        for chunk in _chunks(ids):  # reservation rows first, then ledger rows (the lock order)
            keys += [tuple(k) for k in conn.execute(
                select(reservations.c.request_id, reservations.c.budget_id)
                .where(reservations.c.worker_id == self.worker_id, reservations.c.state == "held", reservations.c.request_id.in_(chunk))
                .order_by(reservations.c.budget_id, reservations.c.request_id).with_for_update(skip_locked=True)).all()]
        n = 0
        for chunk in _chunks(keys):
            n += conn.execute(reservations.update().where(tuple_(reservations.c.request_id, reservations.c.budget_id).in_(chunk))
                              .values(expires=expires)).rowcount
        for chunk in _chunks(ids):
            rows = conn.execute(select(ledger.c.id).where(ledger.c.worker_id == self.worker_id, ledger.c.action == "pending",
                                                          ledger.c.id.in_(chunk))
                                .order_by(ledger.c.id).with_for_update(skip_locked=True)).scalars().all()
            if rows:
                conn.execute(ledger.update().where(ledger.c.id.in_(rows)).values(lease_expires=expires))
        return n

    def expire(self, limit: int = 1000) -> int:
        """Release the holds whose lease ran out and fail their pending rows; returns how many reservations.

        Those of another worker (it died or cannot reach the database), and this worker's own
        that it no longer tracks (it gave up settling or releasing them). Never this worker's open
        requests: they are in flight and will be settled or released (expiring one would let
        another request take room this one is about to be charged for).
        """
        return self._write(lambda conn: self._expire(conn, limit))

    def _expire(self, conn: Any, limit: int) -> int:
        now = self._lease_now(conn, self.clock())
        open_ids = sorted(self.open_requests())
        r = reservations.c
        untracked = or_(r.worker_id != self.worker_id, r.request_id.notin_(open_ids))
        rows = conn.execute(reservations.select().where(r.state == "held", r.expires < now, untracked)
                            .order_by(r.budget_id, r.request_id).limit(limit).with_for_update(skip_locked=True)).all()
        freed = sum(self._free(conn, row, "expired") for row in rows)
        self._fail_lapsed(conn, now, open_ids, limit)
        return freed

    def _fail_lapsed(self, conn: Any, now: float, open_ids: list[str], limit: int) -> None:
        """Fail the pending ledger rows whose lease ran out (another worker's, or this one's untracked)."""
        lapsed = and_(ledger.c.action == "pending", ledger.c.lease_expires < now)
        for whose, note in ((ledger.c.worker_id != self.worker_id, DEAD_WORKER_NOTE),
                            (and_(ledger.c.worker_id == self.worker_id, ledger.c.id.notin_(open_ids)), GAVE_UP_NOTE)):
            ids = conn.execute(select(ledger.c.id).where(lapsed, whose).order_by(ledger.c.id).limit(limit)
                               .with_for_update(skip_locked=True)).scalars().all()
            for chunk in _chunks(ids):
                conn.execute(ledger.update().where(ledger.c.id.in_(chunk), ledger.c.action == "pending").values(
                    action="failed", status=0, lease_expires=None, error=note, **UNCHARGED))

    def _lease_now(self, conn: Any, host_now: float) -> float:
        """The time leases are measured in: the database's clock on PostgreSQL (``db_clock``), else ``host_now``."""
        db = db_epoch(conn) if self.db_clock else None
        return db if db is not None else host_now

    # -- rows --------------------------------------------------------------------------------------

    def _write(self, fn: Callable[[Any], T]) -> T:
        return write_retrying(self.engine, fn)

    @staticmethod
    def _lock_reservations(conn: Any, request_id: str) -> list[Any]:
        """A request's reservation rows, locked (``FOR UPDATE``), in budget id order."""
        return conn.execute(reservations.select().where(reservations.c.request_id == request_id)
                            .order_by(reservations.c.budget_id).with_for_update()).all()

    @staticmethod
    def _move(conn: Any, r: Any, state: str, charged: int) -> bool:
        """Move reservation ``r`` from the state it was read in to ``state``; False if it had moved meanwhile."""
        return conn.execute(reservations.update().where(
            reservations.c.request_id == r.request_id, reservations.c.budget_id == r.budget_id,
            reservations.c.state == r.state).values(state=state, charged=charged)).rowcount == 1

    @staticmethod
    def _count(conn: Any, r: Any, *, reserved: int, spent: int = 0) -> None:
        """Add ``reserved`` and ``spent`` to the counters of ``r``'s budget and period."""
        conn.execute(budget_usage.update().where(
            budget_usage.c.budget_id == r.budget_id, budget_usage.c.period_start == r.period_start)
            .values(reserved=budget_usage.c.reserved + reserved, spent=budget_usage.c.spent + spent))

    def _free(self, conn: Any, r: Any, state: str) -> int:
        """A held reservation to ``state`` (released, expired), its room given back; 1 if it was held."""
        if r.state != "held" or not self._move(conn, r, state, 0):
            return 0
        self._count(conn, r, reserved=-r.amount)
        return 1

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
            values["error"] = (values["error"] + "; " if values["error"] else "") + LATE_NOTE
        if conn.execute(ledger.update().where(ledger.c.id == entry.id).values(**values)).rowcount == 0:
            conn.execute(ledger.insert().values(**{**entry.values(), "worker_id": self.worker_id, "lease_expires": None}))

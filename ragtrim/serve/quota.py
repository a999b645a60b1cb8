"""Quota enforcement without HTTP: reserve the worst case, settle the actual, release, expire.

``reserve`` checks and reserves in one write transaction: for every budget the request counts
against, one conditional ``UPDATE budget_usage SET reserved = reserved + :need WHERE spent +
reserved + :need <= limit``; if any budget has no room the transaction rolls back and nothing
is held. On PostgreSQL the UPDATE takes the row lock and re-checks its condition after a
concurrent writer commits; on SQLite the transaction is ``BEGIN IMMEDIATE``. Hence, per budget
and period, ``spent + reserved <= limit`` at every commit, with any number of workers and replicas.
A budget deleted after a request read its budgets (while it was planned) is skipped by its reservation,
so the request is held against the budgets that exist. A reservation that does not fit names the
budget that blocks it (:func:`blocking`).

Lock order (PostgreSQL; SQLite runs one writer at a time and ignores row locks): a transaction
locks reservation rows first (``SELECT ... FOR UPDATE``, by budget id then request id), then
budget rows (a reservation's ``FOR KEY SHARE``, a delete's ``FOR UPDATE``), then budget counters in
budget id order, then ledger rows. :meth:`QuotaStore.renew` and
:meth:`QuotaStore.expire` lock their candidate rows with ``SKIP LOCKED``: a row another
transaction holds is being settled or released, so they leave it. A transaction PostgreSQL still
aborts as a deadlock victim is run again (:func:`ragtrim.serve.db.write_retrying`); the state
guards (``held`` -> ``settled`` once) make that safe.

Each reservation carries its worker's id and a lease; a live worker renews the leases of its
open requests (:meth:`QuotaStore.renew`, from a :class:`ragtrim.serve.lease.LeaseKeeper` thread),
and :meth:`QuotaStore.expire` releases the reservations of a worker that died and fails its
pending ledger rows. A worker never expires its own open requests. On PostgreSQL lease times
are the database's clock, so replicas whose clocks disagree do not expire each other's live
holds; on SQLite (one host) they are the host's monotonic clock (:mod:`ragtrim.serve.hostclock`),
read once the write lock is held, so a step of the wall clock does not move them. Settling moves
a reservation from ``held`` (or ``expired``: charged late) to ``settled`` once (a repeated settle
or a settle after release charges nothing).

A request the upstream has in full is marked so (:meth:`QuotaStore.mark_sent`, the pending row's
``usage_source`` becomes ``sent``). The expiry of a dead worker's hold then charges its reservation
as an estimate (the upstream may have done and billed the work; the row is settled, ``ok`` or
``degraded`` as planned, with status 0 and ``usage_source`` ``estimated``); a hold whose request
never reached the upstream is freed uncharged and its row ``failed``.
A late settle of such a hold charges only the difference to the real usage, and a late release
gives the estimate back; each says which estimate it replaced (:class:`Ended`), so that
``/metrics``, which counted the estimate when it was charged, counts only the difference too.

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
Ended(late=False, replaced=None)
>>> [(s.spent, s.reserved) for s in store.standings(budgets)]
[(500, 0)]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from sqlalchemy import and_, case, func, or_, select, tuple_

from ragtrim.serve.budgets import Budget, applicable_budgets, period_reset, period_start
from ragtrim.serve.db import db_epoch, insert_ignore, is_postgres, reading, write_retrying
from ragtrim.serve.hostclock import HostClock
from ragtrim.serve.ledger import INPUT_ONLY_ENDPOINTS, UNCHARGED, LedgerEntry, estimated_tokens
from ragtrim.serve.logs import get_logger, log_event
from ragtrim.serve.schema import USAGE_ESTIMATED, USAGE_SENT, budget_usage, budgets as budgets_table, ledger, reservations

T = TypeVar("T")
LATE_NOTE = "settled after its reservation had expired"
DEAD_WORKER_NOTE = "worker stopped before the request finished; its reservation expired (upstream usage unknown)"
GAVE_UP_NOTE = ("the worker could not record how this request ended (database errors) and gave up; "
                "its reservation expired and nothing was charged")
# The same, for a request the upstream had in full (marked sent): its reservation is charged as an estimate.
DEAD_WORKER_SENT_NOTE = ("worker stopped after the upstream had the request, before it finished (upstream usage unknown); "
                         "its reservation was charged as an estimate")
GAVE_UP_SENT_NOTE = ("the worker could not record how this request ended (database errors) and gave up; the upstream "
                     "had the request, so its reservation was charged as an estimate")
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
    """Why a reservation failed: a budget without room (the one that blocks, :func:`blocking`), and when its period resets.

    ``spent`` is what that budget had spent when the request was refused (None when unknown): with
    ``limit - spent >= needed`` only requests in flight hold the room this one needs.
    """

    budget: Budget
    needed: int
    reset_at: float
    spent: int | None = None

    @property
    def held_only(self) -> bool:
        """True when the budget's spend alone leaves room for the request: reservations of requests in flight are in its way."""
        return self.spent is not None and self.budget.limit - self.spent >= self.needed


@dataclass(frozen=True)
class Ended:
    """What a settle or release found: ``late``, the hold had expired (a settle charged late); ``replaced``, the
    estimate an expiry had charged the request that its ledger row no longer holds (:func:`charged_usage`; None if none).
    """

    late: bool = False
    replaced: dict[str, Any] | None = None


@dataclass(frozen=True)
class Deferred:
    """A settle or release that failed on a database error, kept to run again.

    ``need`` is the usage to charge (a settle; None for a release), ``entry`` the final ledger row,
    ``since`` the store's clock at the first failure, ``error`` the last failure; ``ended`` what the
    retry that did it found (:meth:`QuotaStore.retry_deferred`).
    """

    kind: str  # settle | release
    need: Need | None
    entry: LedgerEntry | None
    since: float
    attempts: int = 1
    error: str = ""
    ended: Ended | None = None


def blocking(shortfalls: Sequence[Shortfall]) -> Shortfall:
    """The shortfall a refusal names, of every budget without room: of those whose spend leaves no room, the one
    whose period resets last (nothing fits before then, so its reset is the ``Retry-After``); only when requests in
    flight hold the room of every one (:attr:`Shortfall.held_only`), the first, to retry in seconds. Not the first
    in budget id order: ids are random, and a spent month must not be told as a busy day or a spent day.
    """
    spent = [s for s in shortfalls if not s.held_only]
    return max(spent, key=lambda s: s.reset_at) if spent else shortfalls[0]


class _NoRoom(Exception):
    def __init__(self, shortfall: Shortfall):
        self.shortfall = shortfall


def _chunks(ids: Sequence[Any]) -> list[Sequence[Any]]:
    return [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def charged_usage(row: Any) -> dict[str, Any]:
    """What a ledger ``row`` (or :class:`LedgerEntry`) charges, as :meth:`ragtrim.serve.metrics.Metrics.observe_usage` takes it."""
    return {"tenant": row.tenant_id, "model": row.model_used, "tokens_sent": row.tokens_sent,
            "tokens_saved": row.tokens_full - row.tokens_sent, "prompt": row.prompt_tokens,
            "completion": row.completion_tokens, "cached": row.cached_tokens, "cost_micro": row.cost_micro,
            "saved_micro": row.saved_micro}


def expiry_estimate(row: Any) -> dict[str, Any] | None:
    """The estimate an expiry charged ``row`` (:meth:`QuotaStore.expire`: settled, status 0, ``usage_source`` ``estimated``;
    the gateway's own rows always carry the client's status), as :func:`charged_usage` gives it; None for any other row."""
    if row is None or row.status != 0 or row.usage_source != USAGE_ESTIMATED or row.action not in ("ok", "degraded"):
        return None
    return charged_usage(row)


def expired_row(row: Any) -> bool:
    """True when an expiry finalized ``row`` (a dead or stalled worker's request: status 0, no longer pending)."""
    return row is not None and row.action != "pending" and row.status == 0


def estimated_usage(row: Any) -> dict[str, Any]:
    """The usage a pending ledger ``row`` is charged as an estimate, its reservation, as
    :meth:`ragtrim.serve.metrics.Metrics.observe_usage` takes it (:func:`ragtrim.serve.ledger.estimated_tokens`)."""
    prompt, completion = estimated_tokens(row.endpoint, row.prompt_tokens, row.reserved_tokens)
    return {"tenant": row.tenant_id, "model": row.model_used, "tokens_sent": row.tokens_sent,
            "tokens_saved": row.tokens_full - row.tokens_sent, "prompt": prompt, "completion": completion, "cached": 0,
            "cost_micro": row.reserved_micro, "saved_micro": row.saved_micro}


def _estimated_columns() -> dict[str, Any]:
    """The ledger's token columns of a row charged its reservation as an estimate, in SQL (as
    :func:`ragtrim.serve.ledger.estimated_tokens` gives them): the counted prompt and the rest as completion, or all input
    for an input-only endpoint."""
    input_only = ledger.c.endpoint.in_(INPUT_ONLY_ENDPOINTS)
    return {"prompt_tokens": case((input_only, ledger.c.reserved_tokens), else_=ledger.c.prompt_tokens),
            "completion_tokens": case((input_only, 0), else_=ledger.c.reserved_tokens - ledger.c.prompt_tokens)}


class QuotaStore:
    """Reservations and counters in the service database (see the module docstring).

    ``clock`` gives the budget periods and the ledger rows' time; lease times come from the
    database's clock on PostgreSQL (``db_clock``, default: on PostgreSQL), else from ``host_clock``
    (default: the host's monotonic clock, :mod:`ragtrim.serve.hostclock`, unless ``clock`` is not
    ``time.time``: a test's clock then measures the leases too).
    """

    def __init__(self, engine: Any, *, worker_id: str, lease_seconds: float = 30.0, clock: Callable[[], float] = time.time,
                 db_clock: bool | None = None, host_clock: HostClock | None = None):
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds!r}")
        self.engine = engine
        self.worker_id = worker_id
        self.lease_seconds = float(lease_seconds)
        self.clock = clock
        self.db_clock = is_postgres(engine) if db_clock is None else bool(db_clock)
        if host_clock is None and not self.db_clock and clock is time.time:
            host_clock = HostClock()
        self.host_clock = None if self.db_clock else host_clock
        self._lock = threading.Lock()
        self._open: set[str] = set()  # reserved here and not yet settled or released (in flight or deferred)
        self._deferred: dict[str, Deferred] = {}
        self._to_mark: set[str] = set()  # sent upstream, not yet marked in the ledger (mark_sent)
        self._marker: ThreadPoolExecutor | None = None
        self.mark_errors = 0
        self._estimates: list[tuple[str, dict[str, Any]]] = []  # charged by expire, for the lease keeper's metrics

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

    def holds(self, budget: Budget) -> int:
        """How many requests hold room in ``budget``'s current period (in flight, or a dead worker's not yet expired)."""
        r = reservations.c
        with reading(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(reservations).where(
                r.budget_id == budget.id, r.period_start == period_start(budget.period, self.clock()), r.state == "held")).scalar_one())

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
            return exc.shortfall
        except BaseException:
            self._forget(request_id)  # had it committed after all, its hold lapses unrenewed and expire frees it
            raise

    def _reserve(self, conn: Any, request_id: str, ordered: Sequence[Budget], need: Need, pending: LedgerEntry | None) -> Reservation:
        now = self.clock()  # read inside the transaction (after the write lock on SQLite)
        ordered = self._existing(conn, ordered)
        periods = {b.id: period_start(b.period, now) for b in ordered}
        short = [s for b in ordered  # counters in budget id order; every one, so the refusal names the one that blocks
                 if (s := self._take(conn, b, periods[b.id], need.amount(b.unit), now)) is not None]
        if short:
            raise _NoRoom(blocking(short))
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

    @staticmethod
    def _existing(conn: Any, ordered: Sequence[Budget]) -> list[Budget]:
        """The budgets of ``ordered`` that still exist, their rows kept from a delete until the transaction ends
        (``FOR KEY SHARE`` on PostgreSQL; SQLite has one writer at a time).

        A budget an admin deleted after the request read it (also one deleted and set again, which has a new id)
        has no counters to hold room in: it is skipped, and the request is held against the budgets that exist.
        """
        if not ordered:
            return []
        ids = set(conn.execute(select(budgets_table.c.id).where(budgets_table.c.id.in_([b.id for b in ordered]))
                               .order_by(budgets_table.c.id).with_for_update(key_share=True)).scalars().all())
        return [b for b in ordered if b.id in ids]

    def _take(self, conn: Any, b: Budget, p: str, amount: int, now: float) -> Shortfall | None:
        """Add ``amount`` to the budget's ``reserved`` if it fits under the limit; else its :class:`Shortfall` (nothing
        added), with its limit and spend as they are now, so the caller can tell a spent budget from a busy one."""
        conn.execute(insert_ignore(self.engine, budget_usage).values(budget_id=b.id, period_start=p, spent=0, reserved=0))
        limit = select(budgets_table.c.limit_amount).where(budgets_table.c.id == b.id).scalar_subquery()
        result = conn.execute(
            budget_usage.update()
            .where(budget_usage.c.budget_id == b.id, budget_usage.c.period_start == p,
                   budget_usage.c.spent + budget_usage.c.reserved + amount <= limit)
            .values(reserved=budget_usage.c.reserved + amount)
        )
        if result.rowcount == 1:
            return None
        row = conn.execute(select(budget_usage.c.spent, limit.label("limit_amount")).where(
            budget_usage.c.budget_id == b.id, budget_usage.c.period_start == p)).one()
        return Shortfall(budget=replace(b, limit=int(row.limit_amount)), needed=amount, reset_at=period_reset(b.period, now),
                         spent=int(row.spent))

    def settle(self, request_id: str, actual: Need, entry: LedgerEntry | None = None) -> Ended:
        """Charge ``actual`` and free the hold; finalize the ledger row as ``entry``. :attr:`Ended.late` if the hold
        had already expired (charged late); :attr:`Ended.replaced`, the estimate its expiry had charged, which
        ``entry`` replaces (the counters are charged only the difference)."""
        ended = self._write(lambda conn: self._settle(conn, request_id, actual, entry))
        self._forget(request_id)
        return ended

    def _settle(self, conn: Any, request_id: str, actual: Need, entry: LedgerEntry | None) -> Ended:
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
            estimated = (r.charged or 0) if r.state == "expired" else 0  # what its expiry charged (an estimate)
            self._count(conn, r, reserved=-held, spent=charge - estimated)
        if entry is None:
            return Ended(late=late)
        row = self._lock_row(conn, request_id)  # a request in no budget has no reservation: its row says if it expired
        late = late or expired_row(row)
        self._finalize(conn, entry, late)
        return Ended(late=late, replaced=expiry_estimate(row))

    def release(self, request_id: str, entry: LedgerEntry | None = None) -> Ended:
        """Free the hold without charging (the upstream call failed before any usage); an estimate its
        expiry charged meanwhile is given back (:attr:`Ended.replaced`, when ``entry`` replaces its row)."""
        ended = self._write(lambda conn: self._release(conn, request_id, entry))
        self._forget(request_id)
        return ended

    def _release(self, conn: Any, request_id: str, entry: LedgerEntry | None) -> Ended:
        for r in self._lock_reservations(conn, request_id):
            if r.state == "held":
                self._free(conn, r, "released")
            elif r.state == "expired" and r.charged and self._move(conn, r, "released", 0):
                self._count(conn, r, reserved=0, spent=-r.charged)
        if entry is None:
            return Ended()
        row = self._lock_row(conn, request_id)
        self._finalize(conn, entry, False)
        return Ended(replaced=expiry_estimate(row))

    def record(self, entry: LedgerEntry) -> None:
        """Write a final ledger row for a request that held nothing (refused, rejected, optimize-only)."""
        row = {**entry.values(), "worker_id": self.worker_id, "lease_expires": None}
        self._write(lambda conn: conn.execute(ledger.insert().values(**row)))

    # -- requests the upstream has -------------------------------------------------------------------

    def mark_sent(self, request_id: str) -> None:
        """Note that the upstream has ``request_id`` in full: its pending row's ``usage_source`` becomes ``sent``.

        The write runs on a thread of its own (:meth:`write_marks`, one transaction for all the marks
        queued meanwhile), so the request does not wait for it. Should this worker die before the
        request ends, the worker that expires its hold charges the reservation as an estimate
        (:meth:`expire`); a request that never reached the upstream is never marked, so never charged.
        """
        with self._lock:
            idle = not self._to_mark
            self._to_mark.add(request_id)
            if self._marker is None:
                self._marker = ThreadPoolExecutor(1, thread_name_prefix=f"ragtrim-marks-{self.worker_id}")
            marker = self._marker
        if idle:  # else a write already queued takes this mark too
            marker.submit(self.write_marks)

    def write_marks(self) -> int:
        """Write the marks :meth:`mark_sent` queued, in one transaction; how many pending rows were marked.

        A database error is logged (``mark_sent_failed``) and counted in ``mark_errors``; those marks
        are dropped (their requests, should the worker die, would be freed uncharged as before).
        """
        with self._lock:
            ids, self._to_mark = sorted(self._to_mark), set()
        if not ids:
            return 0
        try:
            return self._write(lambda conn: sum(
                conn.execute(ledger.update().where(ledger.c.id.in_(chunk), ledger.c.action == "pending",
                                                   ledger.c.worker_id == self.worker_id).values(usage_source=USAGE_SENT)).rowcount
                for chunk in _chunks(ids)))
        except Exception as exc:
            self.mark_errors += 1
            log_event(get_logger(), "mark_sent_failed", level=logging.WARNING, worker=self.worker_id, requests=len(ids),
                      error=f"{type(exc).__name__}: {exc}"[:300])
            return 0

    def close(self) -> None:
        """Write the marks still queued and stop their thread (a worker that stops)."""
        with self._lock:
            marker, self._marker = self._marker, None
        if marker is not None:
            marker.shutdown(wait=True)
        self.write_marks()

    def drain_estimates(self) -> list[tuple[str, dict[str, Any]]]:
        """The requests :meth:`expire` charged an estimate since the last call: ``(request id, usage)``, the usage as
        :meth:`ragtrim.serve.metrics.Metrics.observe_usage` takes it (the lease keeper counts them on ``/metrics``)."""
        with self._lock:
            out, self._estimates = self._estimates, []
        return out

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

    def retry_deferred(self) -> tuple[dict[str, Deferred], dict[str, Deferred]]:
        """Run every deferred settle or release again; returns (the items done, each with what it found in
        :attr:`Deferred.ended`; the items given up), by request id.

        An item still failing a lease after its first failure is given up: forgotten and no longer
        renewed, so its hold lapses and :meth:`expire` frees the room and fails its row (:data:`GAVE_UP_NOTE`).
        """
        done: dict[str, Deferred] = {}
        given_up: dict[str, Deferred] = {}
        for request_id, item in self.deferred().items():
            try:
                if item.kind == "settle":
                    assert item.need is not None
                    ended = self.settle(request_id, item.need, item.entry)
                else:
                    ended = self.release(request_id, item.entry)
                done[request_id] = replace(item, ended=ended)
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
        freed, charged = self._write(lambda conn: self._expire(conn, limit))
        if charged:
            with self._lock:
                self._estimates.extend(charged)
        return freed

    def _expire(self, conn: Any, limit: int) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
        """Expire the lapsed holds (a request marked sent is charged its reservation), then fail their rows."""
        now = self._lease_now(conn, self.clock())
        open_ids = sorted(self.open_requests())
        r = reservations.c
        untracked = or_(r.worker_id != self.worker_id, r.request_id.notin_(open_ids))
        rows = conn.execute(reservations.select().where(r.state == "held", r.expires < now, untracked)
                            .order_by(r.budget_id, r.request_id).limit(limit).with_for_update(skip_locked=True)).all()
        sent = self._sent(conn, sorted({row.request_id for row in rows}))
        freed = sum(self._free(conn, row, "expired", charge=row.amount if row.request_id in sent else 0) for row in rows)
        return freed, self._fail_lapsed(conn, now, open_ids, limit)

    @staticmethod
    def _sent(conn: Any, ids: Sequence[str]) -> set[str]:
        """Which of the requests ``ids`` the upstream had (marked sent, or their row already charged an estimate)."""
        out: set[str] = set()
        for chunk in _chunks(ids):
            out.update(conn.execute(select(ledger.c.id).where(ledger.c.id.in_(chunk), ledger.c.usage_source.in_(
                (USAGE_SENT, USAGE_ESTIMATED)))).scalars().all())
        return out

    def _fail_lapsed(self, conn: Any, now: float, open_ids: list[str], limit: int) -> list[tuple[str, dict[str, Any]]]:
        """Fail the pending ledger rows whose lease ran out (another worker's, or this one's untracked); a row marked
        sent is settled at its reservation as an estimate instead (``ok``, or ``degraded`` when its plan degraded, as
        its ``detail`` says). Returns those, with their usage (:meth:`drain_estimates`)."""
        lapsed = and_(ledger.c.action == "pending", ledger.c.lease_expires < now)
        charged = []
        for whose, notes in ((ledger.c.worker_id != self.worker_id, (DEAD_WORKER_NOTE, DEAD_WORKER_SENT_NOTE)),
                             (and_(ledger.c.worker_id == self.worker_id, ledger.c.id.notin_(open_ids)), (GAVE_UP_NOTE, GAVE_UP_SENT_NOTE))):
            rows = conn.execute(ledger.select().where(lapsed, whose).order_by(ledger.c.id).limit(limit)
                                .with_for_update(skip_locked=True)).all()
            sent = [row for row in rows if row.usage_source == USAGE_SENT]
            unsent = [row.id for row in rows if row.usage_source != USAGE_SENT]
            for chunk in _chunks(unsent):
                conn.execute(ledger.update().where(ledger.c.id.in_(chunk), ledger.c.action == "pending").values(
                    action="failed", status=0, lease_expires=None, error=notes[0], **UNCHARGED))
            for chunk in _chunks([row.id for row in sent]):
                conn.execute(ledger.update().where(ledger.c.id.in_(chunk), ledger.c.action == "pending").values(
                    action=case((ledger.c.detail == "", "ok"), else_="degraded"), status=0, lease_expires=None, error=notes[1],
                    usage_source=USAGE_ESTIMATED, **_estimated_columns(), cost_micro=ledger.c.reserved_micro))
            charged += [(row.id, estimated_usage(row)) for row in sent]
        return charged

    def _lease_now(self, conn: Any, host_now: float) -> float:
        """The time leases are measured in: the database's clock on PostgreSQL (``db_clock``), else the
        host's (``host_clock``), else ``host_now``."""
        db = db_epoch(conn) if self.db_clock else None
        if db is not None:
            return db
        return self.host_clock.now() if self.host_clock is not None else host_now

    # -- rows --------------------------------------------------------------------------------------

    def _write(self, fn: Callable[[Any], T]) -> T:
        if self.host_clock is not None:
            self.host_clock.prepare(self.engine)  # before the transaction (once): it may write the boot's anchor
        return write_retrying(self.engine, fn)

    @staticmethod
    def _lock_reservations(conn: Any, request_id: str) -> list[Any]:
        """A request's reservation rows, locked (``FOR UPDATE``), in budget id order."""
        return conn.execute(reservations.select().where(reservations.c.request_id == request_id)
                            .order_by(reservations.c.budget_id).with_for_update()).all()

    @staticmethod
    def _lock_row(conn: Any, request_id: str) -> Any:
        """A request's ledger row, locked (after its reservations: the lock order), or None."""
        return conn.execute(ledger.select().where(ledger.c.id == request_id).with_for_update()).first()

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

    def _free(self, conn: Any, r: Any, state: str, *, charge: int = 0) -> int:
        """A held reservation to ``state`` (released, expired), its room given back and ``charge`` spent; 1 if it was held."""
        if r.state != "held" or not self._move(conn, r, state, charge):
            return 0
        self._count(conn, r, reserved=-r.amount, spent=charge)
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

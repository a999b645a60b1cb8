"""A request the upstream had, whose usage is unknown, is charged its reservation as an estimate.

The quota store without HTTP, on SQLite and on PostgreSQL: a request marked sent (the upstream has
it in full) whose worker died is charged its reservation when its hold expires, its ledger row
settled (``ok``, status 0) with ``usage_source`` ``estimated``; one never sent is freed uncharged and
its row ``failed``, as before. A late
settle of an estimated hold charges only the difference to the real usage; a late release gives the
estimate back. The budgets' counters, the ledger's sums (``/v1/usage``) and ``spent_so_far`` agree.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ragtrim.serve.budgets import set_budget, spent_so_far
from ragtrim.serve.db import reading
from ragtrim.serve.lease import LeaseKeeper
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.metrics import Metrics
from ragtrim.serve.quota import DEAD_WORKER_NOTE, DEAD_WORKER_SENT_NOTE, LATE_NOTE, Need, QuotaStore, Reservation
from ragtrim.serve.schema import budget_usage, ledger, reservations
from ragtrim.serve.usage import usage_summary
from quota_fixtures import Clock, db_engine, engine, first_tick, pg_engine, pg_url  # noqa: F401 (fixtures)

LEASE = 10


def pending(rid: str, clock: Clock, prompt: int = 300, reserved: int = 800, micro: int = 5000) -> LedgerEntry:
    """A pending row as the gateway writes it: the counted prompt and the reservation (prompt + the completion cap)."""
    return LedgerEntry(id=rid, ts=clock.t, tenant_id="acme", endpoint="chat", action="pending", model_used="gpt-4o",
                       prompt_tokens=prompt, tokens_full=400, tokens_sent=250, reserved_tokens=reserved, reserved_micro=micro)


def setup(engine: Any) -> tuple[Clock, QuotaStore, QuotaStore, list[Any], list[Any]]:
    """A token and a dollar budget, a worker that will die and one that lives on, on one clock."""
    bt = set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=2_000)
    bu = set_budget(engine, tenant_id="acme", unit="usd", period="day", limit=100_000)
    clock = Clock()
    dead, alive = (QuotaStore(engine, worker_id=w, lease_seconds=LEASE, clock=clock, db_clock=False) for w in ("dead", "alive"))
    return clock, dead, alive, [bt, bu], dead.budgets_for("acme", user="", feature="")


def counters(engine: Any) -> dict[str, tuple[int, int]]:
    with engine.connect() as c:
        return {r.budget_id: (int(r.spent), int(r.reserved)) for r in c.execute(budget_usage.select()).all()}


def row(engine: Any, rid: str) -> dict[str, Any]:
    with engine.connect() as c:
        return c.execute(ledger.select().where(ledger.c.id == rid)).one()._asdict()


def reservation_states(engine: Any) -> dict[str, tuple[str, int | None]]:
    with engine.connect() as c:
        return {f"{r.request_id}/{r.budget_id}": (r.state, r.charged) for r in c.execute(reservations.select()).all()}


def ledger_agrees(engine: Any, clock: Clock, budgets: list[Any]) -> None:
    """The budgets' spent equals what the ledger says was charged (spent_so_far and /v1/usage's totals)."""
    spent = counters(engine)
    with reading(engine) as conn:
        for b in budgets:
            assert spent_so_far(conn, b, clock.t) == spent[b.id][0], b.unit
    totals = usage_summary(engine, tenant_id="acme", by=[])["totals"]
    tokens = next(b for b in budgets if b.unit == "tokens")
    assert totals["prompt_tokens"] + totals["completion_tokens"] == spent[tokens.id][0]


def test_a_dead_workers_request_that_was_sent_is_charged_its_reservation_one_never_sent_is_not(db_engine):
    clock, dead, alive, budgets, applicable = setup(db_engine)
    assert isinstance(dead.reserve("sent", applicable, Need(800, 5000), pending("sent", clock)), Reservation)
    assert isinstance(dead.reserve("unsent", applicable, Need(700, 4000), pending("unsent", clock, reserved=700, micro=4000)),
                      Reservation)
    dead.mark_sent("sent")
    dead.close()  # the marks are written in the background: wait for them, as a worker's shutdown does
    assert row(db_engine, "sent")["usage_source"] == "sent" and row(db_engine, "unsent")["usage_source"] == "none"
    clock.t += LEASE + 1  # the dead worker never renews
    assert alive.expire() == 4  # two requests, two budgets each
    charged = row(db_engine, "sent")
    assert (charged["action"], charged["status"], charged["usage_source"], charged["prompt_tokens"], charged["completion_tokens"],
            charged["cost_micro"], charged["error"]) == ("ok", 0, "estimated", 300, 500, 5000, DEAD_WORKER_SENT_NOTE)
    freed = row(db_engine, "unsent")
    assert (freed["action"], freed["cost_micro"], freed["completion_tokens"], freed["error"]) == ("failed", 0, 0, DEAD_WORKER_NOTE)
    bt, bu = budgets
    assert counters(db_engine) == {bt.id: (800, 0), bu.id: (5000, 0)}
    assert sorted(reservation_states(db_engine).values()) == [("expired", 0), ("expired", 0), ("expired", 800), ("expired", 5000)]
    ledger_agrees(db_engine, clock, budgets)
    totals = usage_summary(db_engine, tenant_id="acme", by=[])["totals"]  # an operator sees what was an estimate
    assert (totals["estimated"], totals["estimated_tokens"], totals["estimated_cost_micro"], totals["failed"]) == (1, 800, 5000, 1)
    [(rid, usage)] = alive.drain_estimates()
    assert rid == "sent" and (usage["prompt"], usage["completion"], usage["cost_micro"]) == (300, 500, 5000)
    assert alive.drain_estimates() == []


def test_a_dead_workers_embeddings_request_is_charged_its_reservation_all_as_input(db_engine):
    """An embedding has no output: its reservation (the counted input with the model's count_margin) is all input."""
    clock, dead, alive, budgets, applicable = setup(db_engine)
    entry = replace(pending("emb", clock, prompt=80, reserved=100, micro=2), endpoint="embeddings", model_used="te3")
    assert isinstance(dead.reserve("emb", applicable, Need(100, 2), entry), Reservation)
    dead.mark_sent("emb")
    dead.close()
    clock.t += LEASE + 1
    assert alive.expire() == 2
    charged = row(db_engine, "emb")
    assert (charged["action"], charged["usage_source"], charged["prompt_tokens"], charged["completion_tokens"],
            charged["cost_micro"]) == ("ok", "estimated", 100, 0, 2)
    ledger_agrees(db_engine, clock, budgets)
    [(rid, usage)] = alive.drain_estimates()
    assert rid == "emb" and (usage["prompt"], usage["completion"], usage["cost_micro"]) == (100, 0, 2)


def test_a_late_settle_corrects_the_estimate_and_a_late_release_gives_it_back(db_engine):
    clock, slow, other, budgets, applicable = setup(db_engine)
    bt, bu = budgets
    for rid in ("settled-late", "released-late"):
        slow.reserve(rid, applicable, Need(800, 5000), pending(rid, clock))
        slow.mark_sent(rid)
    slow.close()
    clock.t += LEASE + 1  # the worker could not renew (its database was out of reach): another expires its holds
    other.expire()
    assert counters(db_engine) == {bt.id: (1600, 0), bu.id: (10_000, 0)}
    final = replace(pending("settled-late", clock), action="ok", status=200, completion_tokens=20, cost_micro=1500,
                    usage_source="upstream")
    assert slow.settle("settled-late", Need(320, 1500), final).late is True  # late: charged the real usage, not twice
    assert counters(db_engine) == {bt.id: (800 + 320, 0), bu.id: (5000 + 1500, 0)}
    assert row(db_engine, "settled-late")["error"] == LATE_NOTE
    slow.release("released-late", LedgerEntry(id="released-late", ts=clock.t, tenant_id="acme", endpoint="chat",
                                               action="failed", status=400, error="upstream answered HTTP 400"))
    assert counters(db_engine) == {bt.id: (320, 0), bu.id: (1500, 0)}  # the estimate given back
    ledger_agrees(db_engine, clock, budgets)


def test_marks_queued_together_are_written_in_one_transaction_and_only_on_pending_rows(engine):
    clock, store, _, _, applicable = setup(engine)
    for rid in ("a", "b", "c"):
        store.reserve(rid, applicable, Need(100, 10), pending(rid, clock, prompt=50, reserved=100, micro=10))
    store.settle("c", Need(60, 5), LedgerEntry(id="c", ts=clock.t, tenant_id="acme", endpoint="chat", action="ok",
                                               usage_source="upstream", prompt_tokens=50, completion_tokens=10))
    with store._lock:  # queue three marks before the writer runs
        store._to_mark.update({"a", "b", "c"})
    assert store.write_marks() == 2 and store.write_marks() == 0  # "c" is settled already: its row stays as it is
    assert [row(engine, r)["usage_source"] for r in ("a", "b", "c")] == ["sent", "sent", "upstream"]


def test_the_lease_keeper_counts_an_estimate_on_metrics_and_expires_lapsed_holds_at_once(engine):
    """A worker starting after a crash expires the dead worker's lapsed holds in its first tick, at start."""
    clock, dead, _, budgets, applicable = setup(engine)
    dead.reserve("r1", applicable, Need(800, 5000), pending("r1", clock))
    dead.mark_sent("r1")
    dead.close()
    restarted = QuotaStore(engine, worker_id="restarted", lease_seconds=LEASE, clock=lambda: clock.t + LEASE + 1)
    metrics = Metrics()
    keeper = LeaseKeeper(restarted, period=3600, metrics=metrics)  # its next tick is an hour away
    first_tick(keeper)
    assert keeper.expired == 2 and row(engine, "r1")["usage_source"] == "estimated"
    text = metrics.exposition()[0].decode()
    assert 'ragtrim_completion_tokens_total{model="gpt-4o",tenant="acme"} 500.0' in text
    assert 'ragtrim_spend_microdollars_total{model="gpt-4o",tenant="acme"} 5000.0' in text

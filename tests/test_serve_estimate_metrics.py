"""``/metrics`` agrees with the ledger when an estimate is replaced (the gatewayops hunt's finding 1).

A request whose hold expired while it waited on the upstream (its worker stalled) is charged its
reservation as an estimate by the worker that expired it, and that worker counts the estimate on
its ``/metrics``. When the stalled worker then settles it late, the ledger and the budget counters
hold the real usage only; ``/metrics`` must too: the settle counts only what is above the estimate,
and what is below it on ``ragtrim_estimate_corrections_*`` (a counter never goes down). The same for
a late release (the estimate given back) and for a settle deferred on database errors and given up
(its own worker's expiry then charges the estimate: the real usage must not be counted as well).

For every counter ``ragtrim_X`` of tokens or money: ``ragtrim_X - ragtrim_estimate_corrections_X``
summed over the workers equals the ledger's sum.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.hold import Hold
from ragtrim.serve.lease import LeaseKeeper
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.metrics import Metrics
from ragtrim.serve.quota import GAVE_UP_SENT_NOTE, LATE_NOTE, Need, QuotaStore
from ragtrim.serve.schema import budget_usage, ledger

from quota_fixtures import Clock, db_engine, engine, pg_engine, pg_url  # noqa: F401 (fixtures)
from test_serve_deferred import breaks

LOG = logging.getLogger("ragtrim.serve.test_estimate_metrics")
LEASE = 10
# each /metrics counter of tokens or money, and the ledger value it counts
COUNTED = {
    "prompt_tokens": lambda r: r.prompt_tokens,
    "completion_tokens": lambda r: r.completion_tokens,
    "cached_prompt_tokens": lambda r: r.cached_tokens,
    "spend_microdollars": lambda r: r.cost_micro,
    "context_tokens_sent": lambda r: r.tokens_sent,
    "context_tokens_saved": lambda r: r.tokens_full - r.tokens_sent,
    "saved_microdollars": lambda r: r.saved_micro,
}


def metric(metrics: list[Metrics], name: str) -> float:
    """``name``'s samples summed over every label set and every worker's ``metrics``."""
    total = 0.0
    for m in metrics:
        for family in text_string_to_metric_families(m.exposition()[0].decode()):
            total += sum(s.value for s in family.samples if s.name == name)
    return total


def net(metrics: list[Metrics], what: str) -> float:
    """What ``/metrics`` says was charged: ``ragtrim_<what>_total`` less its estimate corrections."""
    return metric(metrics, f"ragtrim_{what}_total") - metric(metrics, f"ragtrim_estimate_corrections_{what}_total")


def ledger_sums(engine: Any) -> dict[str, int]:
    with engine.connect() as c:
        rows = c.execute(ledger.select()).all()
    return {what: sum(value(r) for r in rows if r.action in ("ok", "degraded")) for what, value in COUNTED.items()}


def spent(engine: Any) -> int:
    with engine.connect() as c:
        return sum(int(r.spent) for r in c.execute(budget_usage.select()).all())


def assert_metrics_match_ledger(engine: Any, metrics: list[Metrics]) -> None:
    sums = ledger_sums(engine)
    assert {what: net(metrics, what) for what in COUNTED} == {what: float(v) for what, v in sums.items()}


def pending(rid: str, clock: Clock) -> LedgerEntry:
    """A pending row as the gateway writes it: 300 prompt tokens counted, 800 reserved (5000 micro-dollars)."""
    return LedgerEntry(id=rid, ts=clock.t, tenant_id="acme", endpoint="chat", action="pending", model_used="gpt-4o",
                       prompt_tokens=300, tokens_full=400, tokens_sent=250, saved_micro=700, reserved_tokens=800,
                       reserved_micro=5000)


def worker(engine: Any, name: str, clock: Clock) -> tuple[QuotaStore, Metrics]:
    return QuotaStore(engine, worker_id=name, lease_seconds=LEASE, clock=clock, db_clock=False), Metrics()


def held(store: QuotaStore, metrics: Metrics, rid: str, clock: Clock, budgeted: bool = True) -> Hold:
    """``rid`` reserved by ``store`` (in budgets or none), sent upstream, and its :class:`Hold`."""
    entry = pending(rid, clock)
    budgets = store.budgets_for("acme", user="", feature="") if budgeted else []
    store.reserve(rid, budgets, Need(800, 5000), entry)
    hold = Hold(SimpleNamespace(quota=store, log=LOG, metrics=metrics), entry, time.perf_counter())
    hold.mark_sent()
    store.close()  # the mark is written in the background: wait for it
    return hold


def real_usage(hold: Hold, prompt: int = 310, completion: int = 20, cost: int = 1500) -> tuple[LedgerEntry, int, int, int]:
    """The upstream's answer: a prompt above the counted one (100 of its tokens from the prompt cache), far fewer
    completion tokens than the cap."""
    final = replace(hold.entry, action="ok", status=200, prompt_tokens=prompt, completion_tokens=completion, cost_micro=cost,
                    usage_source="upstream", cached_tokens=100)
    return final, prompt, completion, cost


@pytest.fixture
def budgeted(db_engine):  # noqa: F811 (the fixture)
    """A token and a dollar budget for acme, on SQLite and on PostgreSQL."""
    set_budget(db_engine, tenant_id="acme", unit="tokens", period="day", limit=100_000)
    set_budget(db_engine, tenant_id="acme", unit="usd", period="day", limit=10**9)
    return db_engine


@pytest.mark.parametrize("in_budgets", [True, False], ids=["in-budgets", "no-budget"])
def test_a_late_settle_counts_only_the_difference_to_the_estimate(budgeted, in_budgets):
    """The hunt's late.py: worker A stalls past its lease, B expires A's hold and counts the estimate, A settles late."""
    clock = Clock()
    (a, ma), (b, mb) = worker(budgeted, "A", clock), worker(budgeted, "B", clock)
    hold = held(a, ma, "r1", clock, in_budgets)
    clock.t += LEASE + 1  # A never renewed
    LeaseKeeper(b, period=3600, metrics=mb, log=LOG).tick()
    assert net([mb], "completion_tokens") == 500  # B counted the estimate (300 prompt + 500 completion)
    anyio.run(lambda: hold.settle(*real_usage(hold)))
    with budgeted.connect() as c:
        row = c.execute(ledger.select()).one()
    assert (row.usage_source, row.prompt_tokens, row.completion_tokens, row.cost_micro) == ("upstream", 310, 20, 1500)
    assert LATE_NOTE in row.error
    if in_budgets:
        assert spent(budgeted) == 330 + 1500  # the budget counters: the real usage only
    assert_metrics_match_ledger(budgeted, [ma, mb])
    # the prompt went up 10 tokens: counted on the usual counter; the rest went down: counted as corrections
    assert metric([ma, mb], "ragtrim_prompt_tokens_total") == 310
    assert metric([ma, mb], "ragtrim_estimate_corrections_completion_tokens_total") == 480
    assert metric([ma, mb], "ragtrim_estimate_corrections_spend_microdollars_total") == 3500


def test_a_late_release_counts_the_estimate_given_back(budgeted):
    clock = Clock()
    (a, ma), (b, mb) = worker(budgeted, "A", clock), worker(budgeted, "B", clock)
    hold = held(a, ma, "r1", clock)
    clock.t += LEASE + 1
    LeaseKeeper(b, period=3600, metrics=mb, log=LOG).tick()
    anyio.run(lambda: hold.release(400, "upstream answered HTTP 400"))
    assert spent(budgeted) == 0 and ledger_sums(budgeted)["spend_microdollars"] == 0
    assert_metrics_match_ledger(budgeted, [ma, mb])
    assert metric([ma, mb], "ragtrim_estimate_corrections_spend_microdollars_total") == 5000


def test_a_deferred_settle_given_up_and_expired_is_counted_once_as_the_estimate(budgeted):
    """The settle fails on database errors until it is given up; its own worker's expiry then charges the estimate.
    The real usage, never recorded, must not be counted beside it."""
    clock = Clock()
    a, ma = worker(budgeted, "A", clock)
    hold = held(a, ma, "r1", clock)
    breaks(a, "settle", times=None)
    anyio.run(lambda: hold.settle(*real_usage(hold)))
    keeper = LeaseKeeper(a, period=3600, metrics=ma, log=LOG)
    for _ in range(4):  # two leases: given up, then expired by its own worker
        clock.t += LEASE / 2
        keeper.tick()
    with budgeted.connect() as c:
        row = c.execute(ledger.select()).one()
    assert (row.usage_source, row.completion_tokens, row.error) == ("estimated", 500, GAVE_UP_SENT_NOTE)
    assert keeper.deferred_given_up == 1
    assert_metrics_match_ledger(budgeted, [ma])


def test_a_deferred_settle_that_succeeds_later_is_counted_once_with_its_real_usage(budgeted):
    clock = Clock()
    a, ma = worker(budgeted, "A", clock)
    hold = held(a, ma, "r1", clock)
    breaks(a, "settle", times=1)
    anyio.run(lambda: hold.settle(*real_usage(hold)))
    LeaseKeeper(a, period=3600, metrics=ma, log=LOG).tick()
    assert ledger_sums(budgeted)["completion_tokens"] == 20
    assert_metrics_match_ledger(budgeted, [ma])
    assert metric([ma], "ragtrim_estimate_corrections_completion_tokens_total") == 0


def test_each_counted_series_has_its_correction_series_from_the_start():
    """A correction series exists (at 0) as soon as its counter has a series, so ``X - corrections_X`` needs no ``or``."""
    m = Metrics()
    m.observe_usage(tenant="acme", model="gpt-4o", tokens_sent=10, tokens_saved=5, prompt=12, completion=3, cost_micro=40,
                    saved_micro=9, upstream_s=0.2)
    text = m.exposition()[0].decode()
    for what in COUNTED:
        assert f"ragtrim_estimate_corrections_{what}_total{{" in text, what

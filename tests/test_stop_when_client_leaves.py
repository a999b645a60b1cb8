"""A running optimizer run whose client hung up stops: ``Deadline.stop`` in the library, the gateway's watcher.

Before, the gateway asked whether the client was still there only when a run got its thread: a run already running
went on to its end (up to ``[limits] optimize_seconds``), holding a thread for no one, and an SDK that timed out sent
the request again (three times), so one slow request became four runs.

Counts and events only: a stage that spins on its run's deadline check says when it started and what stopped it.
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from typing import Any

import httpx
import pytest

from optimizer import Deadline, OptimizerStopped, OptimizerTimeout, Pipeline
from optimizer.stage import Stage
from ragtrim.serve.schema import budget_usage, reservations
from optimizer_gates import until
from serve_fixtures import DOCS, PEPPER, admin_key, auth, chat, final_rows, gateway_config, ledger_rows, stack
from test_serve_neighbours import OPTIMIZE, answer_ok, leave, one_optimizer_thread, raw_post  # noqa: F401 (a fixture: one optimizer thread)


class Spin(Stage):
    """Works until its run's deadline stops it, or until ``release`` (the test's own way out, never needed once fixed).

    ``started`` is set when it begins, ``stopped_by`` is what its deadline check raised, ``ended`` set when it ends.
    """

    name = "spin"

    def __init__(self) -> None:
        self.started, self.ended, self.release = threading.Event(), threading.Event(), threading.Event()
        self.stopped_by: BaseException | None = None
        self.checks = 0

    def __call__(self, query: str, chunks: Any, context: Any) -> Any:
        self.started.set()
        try:
            while not self.release.is_set():
                try:
                    context.check_deadline("spinning")
                except BaseException as exc:
                    self.stopped_by = exc
                    raise
                self.checks += 1
                time.sleep(0.005)
            return list(chunks)
        finally:
            self.ended.set()


# -- the library ------------------------------------------------------------------------------------


def test_a_stopped_deadline_raises_optimizer_stopped_naming_why_and_where():
    d = Deadline(60)
    d.check("before")  # not stopped, not late: nothing
    assert not d.expired() and d.remaining() > 0
    d.stop("the client disconnected")
    d.stop("a second reason")  # the first one stays
    assert d.expired() and d.remaining() == 0.0 and d.stopped == "the client disconnected"
    with pytest.raises(OptimizerStopped) as caught:
        d.check("in stage 'spin'")
    exc = caught.value
    assert not isinstance(exc, TimeoutError)  # nothing timed out
    assert (exc.why, exc.where) == ("the client disconnected", "in stage 'spin'") and exc.elapsed >= 0
    assert str(exc).startswith("the optimizer run was stopped after ") and "the client disconnected (in stage 'spin')" in str(exc)
    again = pickle.loads(pickle.dumps(exc))  # crosses a process boundary as OptimizerTimeout does
    assert type(again) is OptimizerStopped and (again.why, again.where, again.elapsed) == (exc.why, exc.where, exc.elapsed)
    assert "stopped='the client disconnected'" in repr(d)


def test_an_infinite_deadline_never_times_out_and_still_stops():
    d = Deadline(math.inf)
    d.check("anywhere")
    assert not d.expired() and d.remaining() == math.inf and "seconds=inf" in repr(d)
    d.stop("enough")
    with pytest.raises(OptimizerStopped):
        d.check("anywhere")


def test_elapsed_counts_from_the_deadline_as_its_limit_does():
    now = [10.0]
    d = Deadline(5, clock=lambda: now[0])
    now[0] = 14.0
    assert d.elapsed() == 4.0 and d.remaining() == 1.0


def test_a_stopped_deadline_that_is_also_late_says_it_was_stopped():
    clock = iter([0.0, 100.0]).__next__
    d = Deadline(1, clock=clock)
    d.stop("the client disconnected")
    with pytest.raises(OptimizerStopped):
        d.check("late too")


def test_a_run_with_a_deadline_stopped_before_it_stops_at_its_first_check():
    d = Deadline(math.inf)
    d.stop("the client disconnected")
    with pytest.raises(OptimizerStopped) as caught:
        Pipeline.preset("bm25-pack").run("capital?", DOCS, budget=40, timeout=d)
    assert caught.value.where == "after counting the full context"


def test_a_run_stopped_from_another_thread_stops_at_its_next_check():
    spin = Spin()
    d = Deadline(math.inf)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            Pipeline([spin]).run("q", ["Paris is the capital of France."], timeout=d)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert spin.started.wait(30)
        d.stop("the client disconnected")
        assert spin.ended.wait(30)
    finally:
        spin.release.set()
        thread.join(30)
    [exc] = failed
    assert isinstance(exc, OptimizerStopped) and exc.where == "spinning" and "in stage 'spin'" in " ".join(exc.__notes__)


@pytest.mark.parametrize("given", [lambda: Deadline(math.inf), lambda: Deadline(3600), lambda: 3600.0])
def test_a_run_never_stopped_returns_what_it_returns_without_a_deadline(given):
    pipeline = Pipeline.preset("bm25-pack")
    for share in (0.25, 0.5, 40):
        plain = pipeline.run("What is the capital of France?", DOCS, budget=share).to_dict()
        timed = pipeline.run("What is the capital of France?", DOCS, budget=share, timeout=given()).to_dict()
        for out in (plain, timed):
            for step in out["trace"]:
                step.pop("ms", None)
        assert timed == plain


def test_a_deadline_past_its_limit_still_times_out():
    with pytest.raises(OptimizerTimeout):
        Pipeline.preset("bm25-pack").run("capital?", DOCS, timeout=Deadline(0))


# -- the gateway: a real HTTP client that leaves mid-run ------------------------------------------------


def spinning(service: Any) -> tuple[Spin, Any]:
    """Every run of ``service`` spins (``[limits] optimize_seconds`` is 20 s: a run not stopped spins that long); the real
    ``pipeline`` to put back."""
    spin, real = Spin(), service.pipeline
    service.pipeline = lambda preset, tokenizer, *rest: Pipeline([spin], tokenizer=tokenizer)
    return spin, real


def metrics(s: Any) -> str:
    return httpx.get(f"{s.url}/metrics", headers=auth(admin_key(s.service)), timeout=30).text


def stopped_by_leaving(s: Any, path: str, body: dict[str, Any]) -> Spin:
    """Send ``body`` to ``path`` on a socket of its own, close it once the run spins, and wait until the run stops."""
    spin, real = spinning(s.service)
    sock = raw_post(s.url, path, body, s.key)
    try:
        assert spin.started.wait(30), "the run never started"
        leave(sock)
        until(spin.ended.is_set, 15)  # before: the run spun on, to the 20 s limit, for a client that had left
    finally:
        spin.release.set()
        s.service.pipeline = real
    assert isinstance(spin.stopped_by, OptimizerStopped) and spin.stopped_by.why == "the client disconnected"
    return spin


def test_an_optimize_whose_client_leaves_during_its_run_stops_and_frees_the_thread(tmp_path, one_optimizer_thread):
    with stack(tmp_path, answer_ok) as s:
        stopped_by_leaving(s, "/v1/optimize", OPTIMIZE)
        until(lambda: ledger_rows(s.service))
        [row] = final_rows(s.service)
        assert (row["endpoint"], row["action"], row["status"]) == ("optimize", "failed", 499), row
        assert "during its optimizer run, so the run was stopped" in row["error"] and "nothing was charged" in row["error"]
        assert (row["tokens_sent"], row["cost_micro"], row["saved_micro"]) == (0, 0, 0)
        assert s.service.tenant_runs.held("acme") == 0
        # the only optimizer thread is free: the next request runs at once
        r = httpx.post(f"{s.url}/v1/optimize", json=OPTIMIZE, headers=auth(s.key), timeout=30)
        assert r.status_code == 200, r.text
        text = metrics(s)
        assert 'ragtrim_optimizer_stopped_total{preset="bm25-pack"} 1.0' in text
        assert 'ragtrim_requests_total{action="failed",endpoint="optimize",status="499"} 1.0' in text
        assert 'ragtrim_optimizer_timeouts_total{preset="bm25-pack"}' not in text  # not a timeout


def test_a_chat_whose_client_leaves_during_its_run_stops_unsent_and_uncharged(tmp_path, one_optimizer_thread):
    with stack(tmp_path, answer_ok) as s:
        stopped_by_leaving(s, "/v1/chat/completions", chat(documents=DOCS))
        until(lambda: ledger_rows(s.service))
        [row] = final_rows(s.service)
        assert (row["endpoint"], row["action"], row["status"]) == ("chat", "failed", 499), row
        assert "during its optimizer run, so the run was stopped" in row["error"] and "not sent upstream" in row["error"]
        assert "nothing was charged" in row["error"]
        assert row["cost_micro"] == row["prompt_tokens"] == row["completion_tokens"] == row["reserved_tokens"] == 0
        assert s.calls == []  # never sent upstream
        with s.service.engine.connect() as c:  # never reserved: the optimizer runs before the reservation
            assert c.execute(reservations.select()).all() == []
            assert all((u.spent, u.reserved) == (0, 0) for u in c.execute(budget_usage.select()).all())
        assert s.service.tenant_runs.held("acme") == 0
        assert s.post(documents=DOCS).status_code == 200  # the only optimizer thread is free for the next request
        text = metrics(s)
        assert 'ragtrim_optimizer_stopped_total{preset="bm25-pack"} 1.0' in text
        assert 'ragtrim_requests_total{action="failed",endpoint="chat",status="499"} 1.0' in text
        assert 'ragtrim_optimizer_timeouts_total{preset="bm25-pack"}' not in text


def test_a_run_whose_client_stays_is_not_stopped_and_its_watcher_ends_with_it(tmp_path):
    """The watcher asks while the run spins and goes when the run ends; the run returns its result."""
    import asyncio

    import anyio

    from ragtrim.serve.service import Service

    service = Service(gateway_config("http://127.0.0.1:9"), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    spin, _ = spinning(service)
    asks: list[int] = []

    async def client_left() -> bool:
        asks.append(1)
        if len(asks) == 3:  # the first ask is at its turn, the others the watcher's: the run ends on its own now
            spin.release.set()
        return False

    async def main() -> tuple[Any, int]:
        result = await service.optimize("default", "cl100k_base", "capital?", DOCS, tenant="acme", budget=40,
                                        client_left=client_left)
        return result, len(asyncio.all_tasks())

    try:
        result, tasks = anyio.run(main)
    finally:
        spin.release.set()
        service.engine.dispose()
    assert spin.stopped_by is None and result.tokens > 0 and len(asks) >= 3
    assert tasks == 1  # only the test's own task: the watcher did not outlive the run

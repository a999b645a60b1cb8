"""A time limit on one optimization: ``Pipeline.run(..., timeout=)`` in the library, ``[limits] optimize_seconds``
at the gateway (a 503 ``optimizer_timeout``, uncharged, on the ledger and /metrics), and each upstream's
``connect_timeout``.

The limit is cooperative (a deadline on the run's StageContext, checked between steps and in the long
loops), so the work itself stops: the thread, and the gateway's optimizer slot, are free again."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from optimizer import OptimizerTimeout, Pipeline
from optimizer.stage import Stage
from ragtrim.serve.config import ServeConfig, UpstreamConfig
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.schema import budget_usage, reservations
from ragtrim.serve.testing import serve_in_thread
from serve_fixtures import DOCS, admin_key, auth, budget, chat_body, gateway, ledger_rows, tenant_with_key

DATA = Path(__file__).resolve().parent.parent / "datasets"


def big_context(chars: int = 600_000) -> list[dict]:
    """Distinct prose passages of the bundled sets (nq-multidoc first), joined into chunks of about 4,000 characters."""
    chunks, buf, seen = [], [], set()
    for name in ("nq-multidoc", "hotpotqa", "squad2-pools", "2wiki"):
        with open(DATA / f"{name}.jsonl", encoding="utf-8") as f:
            for line in f:
                for c in json.loads(line)["chunks"]:
                    if c["text"] in seen:
                        continue
                    seen.add(c["text"])
                    buf.append(c["text"])
                    if sum(map(len, buf)) >= 4_000:
                        chunks.append({"id": f"c{len(chunks)}", "text": " ".join(buf)[:4_000]})
                        buf = []
                        if len(chunks) * 4_000 >= chars:
                            return chunks
    return chunks


def questions(n: int) -> list[tuple[str, list]]:
    out = []
    with open(DATA / "nq-multidoc.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out.append((row["question"], row["chunks"]))
            if len(out) == n:
                return out
    return out


def comparable(result) -> dict:
    """A result as JSON without the steps' timings (the only part that differs from run to run)."""
    out = result.to_dict()
    for step in out["trace"]:
        step.pop("ms", None)
    return out


class Spin(Stage):
    """A stage that works until its run's deadline stops it (at most 30 s, then it gives up and returns)."""

    name = "spin"

    def __call__(self, query, chunks, context):
        end = time.monotonic() + 30
        while time.monotonic() < end:
            context.check_deadline("spinning")
            time.sleep(0.005)
        return list(chunks)


# -- the library ----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", [pytest.param("default", marks=pytest.mark.slow), "bm25-pack",
                                    pytest.param("quality", marks=pytest.mark.slow)])
def test_a_run_that_ends_in_time_returns_exactly_what_it_returns_without_a_timeout(preset):
    """With a limit, embeddings are made in slices (the deadline checked between them): each run gets models of its
    own (a fresh ModelStore), so the timed run really embeds every sentence again rather than reading a memo."""
    from optimizer.models import ModelStore, use_store

    def run(question: str, chunks: list, share: float, timeout: float | None) -> dict:
        with ModelStore() as store, use_store(store):
            return comparable(Pipeline.preset(preset).run(question, chunks, budget=share, timeout=timeout))

    for question, chunks in questions(2 if preset == "quality" else 4):
        for share in (0.125, 0.25):
            assert run(question, chunks, share, 3600) == run(question, chunks, share, None)


def test_a_run_past_its_limit_raises_a_timeout_error_naming_the_limit_and_where_it_stopped():
    pipeline = Pipeline([Spin()])
    start = time.monotonic()
    with pytest.raises(OptimizerTimeout) as caught:
        pipeline.run("q", ["Paris is the capital of France."], timeout=0.3)
    took = time.monotonic() - start
    exc = caught.value
    assert isinstance(exc, TimeoutError)
    assert exc.seconds == 0.3 and 0.3 <= exc.elapsed < 3 and took < 3  # Spin checks every 5 ms (and would spin 30 s)
    assert exc.where == "spinning" and "in stage 'spin'" in " ".join(exc.__notes__)
    assert "time limit of 0.3 s" in str(exc) and "bm25-pack" in str(exc)
    with pytest.raises(OptimizerTimeout) as at_once:  # a spent limit stops the run before its first step
        Pipeline.preset("bm25-pack").run("q", ["Paris is the capital of France."], timeout=0)
    assert at_once.value.where == "after counting the full context"


@pytest.mark.parametrize("bad", [-1, float("nan"), "5", True])
def test_a_timeout_that_is_not_seconds_is_refused(bad):
    with pytest.raises(ValueError, match="timeout must be a number of seconds >= 0"):
        Pipeline.preset("bm25-pack").run("q", ["Paris."], timeout=bad)


def test_runs_on_several_threads_keep_their_own_limits():
    results: dict[str, object] = {}

    def run(name: str, timeout: float | None) -> None:
        try:
            if timeout is None:
                results[name] = Pipeline.preset("bm25-pack").run("capital", DOCS, budget=40).tokens
            else:
                Pipeline([Spin()]).run("q", ["x"], timeout=timeout)
        except OptimizerTimeout as exc:
            results[name] = exc.seconds

    threads = [threading.Thread(target=run, args=a) for a in (("short", 0.2), ("long", 0.6), ("none", None))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results["short"] == 0.2 and results["long"] == 0.6 and isinstance(results["none"], int)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["default", "quality"])
def test_a_big_run_stops_near_its_limit_and_its_work_stops_with_it(preset):
    from optimizer.models import ModelStore, use_store

    chunks = big_context(4_000_000)  # ~4 MB of distinct prose (all four sets): default about 2.5 s on 2 cores (2026-12), quality minutes
    assert len(chunks) * 4_000 >= 4_000_000  # enough text that the run cannot finish inside the limit
    limit = 1.0
    with ModelStore() as store, use_store(store):  # models of its own: no embedding memo from an earlier test helps
        pipeline = Pipeline.preset(preset).warm_up()
        pipeline.run("warm", ["Warm up one sentence. And another."])
        start = time.monotonic()
        with pytest.raises(OptimizerTimeout) as caught:
            pipeline.run("who got the first nobel prize in physics", chunks, budget=0.05, timeout=limit)
        took = time.monotonic() - start
        assert caught.value.seconds == limit and limit <= took < 3 * limit, (took, caught.value.where)
        # the work stopped: no thread of the run (the embedder's included) goes on spending CPU
        cpu = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - cpu < 0.3


# -- the gateway ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    app = create_fake_upstream(latency_ms=1, answer_tokens=12)
    with serve_in_thread(app) as url:
        yield url


def spinning(service) -> None:
    service.pipeline = lambda preset, tokenizer: Pipeline([Spin()], tokenizer=tokenizer)


def test_optimize_past_the_limit_is_a_503_optimizer_timeout_on_the_ledger_and_metrics(fake):
    with gateway(fake, limits={"optimize_seconds": 0.4}) as (client, service):
        key = tenant_with_key(service, "acme")
        spinning(service)
        start = time.monotonic()
        r = client.post("/v1/optimize", json={"query": "capital?", "chunks": DOCS, "preset": "quality"}, headers=auth(key))
        assert time.monotonic() - start < 5
        assert r.status_code == 503, r.text
        error, rid = r.json()["error"], r.headers["X-Ragtrim-Request-Id"]
        assert error["code"] == "optimizer_timeout" and error["type"] == "server_error"
        for part in ("preset 'quality'", "time limit of 0.4 s", "[limits] optimize_seconds", "bm25-pack", "smaller context",
                     f"request id {rid}", "nothing was charged"):
            assert part in error["message"]
        assert r.headers["x-should-retry"] == "false"
        [row] = ledger_rows(service)
        assert (row["id"], row["action"], row["status"], row["endpoint"]) == (rid, "failed", 503, "optimize")
        assert row["detail"].startswith("optimizer_timeout: preset quality, limit 0.4 s, stopped after ")
        assert "in stage 'spin'" in row["detail"] and row["error"] == error["message"]
        assert (row["tokens_sent"], row["cost_micro"], row["saved_micro"]) == (0, 0, 0)
        text = client.get("/metrics", headers=auth(admin_key(service))).text
        assert 'ragtrim_optimizer_timeouts_total{preset="quality"} 1.0' in text
        assert 'ragtrim_requests_total{action="failed",endpoint="optimize",status="503"} 1.0' in text
        assert 'ragtrim_optimizer_run_seconds_count{preset="quality"} 1.0' in text


def test_chat_past_the_limit_is_refused_uncharged_and_holds_nothing(fake):
    with gateway(fake, limits={"optimize_seconds": 0.4}) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        real = service.pipeline
        spinning(service)
        r = client.post("/v1/chat/completions", json=chat_body(preset="default"), headers=auth(key))
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "optimizer_timeout" and r.headers["x-should-retry"] == "false"
        [row] = ledger_rows(service)
        assert (row["action"], row["status"], row["endpoint"], row["preset"]) == ("failed", 503, "chat", "default")
        assert row["detail"].startswith("optimizer_timeout: preset default, limit 0.4 s")
        assert (row["prompt_tokens"], row["completion_tokens"], row["cost_micro"], row["reserved_tokens"]) == (0, 0, 0, 0)
        with service.engine.connect() as c:  # never reserved: the optimizer runs before the reservation
            assert c.execute(reservations.select()).all() == []
            assert all((u.spent, u.reserved) == (0, 0) for u in c.execute(budget_usage.select()).all())
        text = client.get("/metrics", headers=auth(admin_key(service))).text
        assert 'ragtrim_optimizer_timeouts_total{preset="default"} 1.0' in text
        assert 'ragtrim_requests_total{action="failed",endpoint="chat",status="503"} 1.0' in text
        service.pipeline = real  # the next request, in time, is answered and charged as usual
        ok = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert ok.status_code == 200, ok.text
        assert [r["action"] for r in ledger_rows(service)] == ["failed", "ok"]


def test_the_limit_is_20_seconds_by_default_0_is_none_and_a_bad_one_is_named():
    assert ServeConfig().limits.optimize_seconds == 20
    from ragtrim.serve.service import OptimizerClock

    assert OptimizerClock(ServeConfig.from_dict({"limits": {"optimize_seconds": 0}}).limits.optimize_seconds).left() is None
    assert ServeConfig.from_dict({"limits": {"optimize_seconds": 2.5}}).limits.optimize_seconds == 2.5
    for bad in (-1, "10", True, float("nan"), 3601):
        with pytest.raises(ValueError, match=r"limits.optimize_seconds must be a number of seconds from 0 to 3600 "
                                             r"\(0: no limit; 20 by default\), got "):
            ServeConfig.from_dict({"limits": {"optimize_seconds": bad}})


def test_a_requests_runs_share_one_allowance(fake):
    """A chat request that degrades runs the optimizer again: the runs share [limits] optimize_seconds."""
    from ragtrim.serve.service import OptimizerClock

    with gateway(fake, limits={"optimize_seconds": 0.3}) as (client, service):
        spinning(service)
        clock = service.optimizer_clock()
        assert isinstance(clock, OptimizerClock) and clock.left() == 0.3

        async def twice() -> list[str]:
            seen = []
            for _ in range(2):
                with pytest.raises(OptimizerTimeout) as caught:
                    await service.optimize("default", "cl100k_base", "q", DOCS, tenant="acme", budget=40, clock=clock)
                seen.append(caught.value.where)
            return seen

        start = time.monotonic()
        first, second = client.portal.call(twice)
        assert first == "spinning" and second.startswith("before a further run") and clock.spent >= 0.3
        assert time.monotonic() - start < 3  # the second run did not get a second allowance


@pytest.mark.slow
def test_a_huge_quality_request_no_longer_holds_the_only_optimizer_thread(fake):
    """One optimizer thread; a ~600 KB `quality` request (over a minute unbounded) and, behind it, another tenant's small one."""
    chunks = big_context()
    with gateway(fake, optimizer_threads=1, limits={"optimize_seconds": 2}) as (client, service):
        big, small = tenant_with_key(service, "big"), tenant_with_key(service, "small")
        client.post("/v1/optimize", json={"query": "warm", "chunks": DOCS, "preset": "quality"}, headers=auth(small))  # load models
        answer: dict = {}

        def send_big() -> None:
            t = time.monotonic()
            r = client.post("/v1/optimize", json={"query": "who got the first nobel prize in physics", "chunks": chunks,
                                                  "preset": "quality", "budget": 0.05}, headers=auth(big))
            answer.update(status=r.status_code, code=r.json()["error"]["code"] if r.status_code != 200 else None,
                          took=time.monotonic() - t)

        thread = threading.Thread(target=send_big)
        thread.start()
        time.sleep(0.5)
        t = time.monotonic()
        r = client.post("/v1/optimize", json={"query": "capital of France?", "chunks": DOCS, "preset": "default"}, headers=auth(small))
        waited = time.monotonic() - t
        thread.join(60)
        assert r.status_code == 200, r.text
        assert answer["status"] == 503 and answer["code"] == "optimizer_timeout"
        assert answer["took"] < 3 * 2 + 2, answer  # the limit, a fraction of a second more, reading a 600 KB body
        assert waited < 3 * 2 + 2, waited


# -- connect_timeout ---------------------------------------------------------------------------------


def test_connect_timeout_is_5_by_default_configurable_per_upstream_and_a_bad_one_is_named():
    import asyncio

    from ragtrim.serve.upstream import OpenAIUpstream

    assert UpstreamConfig(name="u").connect_timeout == 5
    cfg = ServeConfig.from_dict({"upstreams": {"far": {"base_url": "http://127.0.0.1:1/v1", "connect_timeout": 12.5}},
                                 "models": {"m": {"upstream": "far", "input_per_million": 1, "output_per_million": 1}}})
    for given, want in ((cfg.upstreams["far"], 12.5), (UpstreamConfig(name="u", base_url="http://127.0.0.1:1/v1"), 5.0),
                        (UpstreamConfig(name="u", base_url="http://127.0.0.1:1/v1", timeout=3, connect_timeout=10), 3.0)):
        up = OpenAIUpstream(given)
        asyncio.run(up.start())
        try:
            assert up._client.timeout.connect == want and up._client.timeout.read == given.timeout
        finally:
            asyncio.run(up.aclose())
    for bad in (0, -1, "5", True, float("nan"), 601):
        with pytest.raises(ValueError) as caught:
            ServeConfig.from_dict({"upstreams": {"far": {"base_url": "http://h/v1", "connect_timeout": bad}},
                                   "models": {"m": {"upstream": "far", "input_per_million": 1, "output_per_million": 1}}})
        assert str(caught.value) == (f"upstream 'far': connect_timeout must be seconds above 0, at most 600 (5 fails fast as "
                                     f"the OpenAI SDK does; raise it for a far or slow-to-connect upstream), got {bad!r}")

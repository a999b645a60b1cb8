"""Optimizer runs get their own limiter per worker (``optimizer_threads``), so requests that
need no optimizer run (an exhausted budget's refusal, ``/healthz``) are not queued behind
them, and a worker never runs more optimizer runs at once than it has cores for."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import anyio.to_thread
import pytest

from ragtrim.serve.app import create_app
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.service import Service
from optimizer_gates import Gate, until
from serve_fixtures import DOCS, PEPPER, admin_key, budget, chat_body, gateway_config, tenant_with_key


def test_waiting_optimizer_runs_do_not_hold_up_refusals_or_health_checks(tmp_path):
    from starlette.testclient import TestClient

    config = gateway_config("http://127.0.0.1:9", optimizer_threads=2, limits={"tenant_optimizer_runs": 64})  # one tenant queues many
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite",
                      pepper=PEPPER)
    gate = Gate(service)
    service.pipeline = gate.pipeline
    busy, broke = tenant_with_key(service, "busy"), tenant_with_key(service, "broke")
    budget(service, "broke", "tokens", 1)  # used up before any request: refused without an optimizer run
    body = {"query": "capital of France?", "chunks": DOCS, "budget": 40}
    with TestClient(create_app(service)) as client:
        # more waiting optimizer requests than the event loop's own thread pool has threads
        waiting = client.portal.call(anyio.to_thread.current_default_thread_limiter).total_tokens + 4
        pool = ThreadPoolExecutor(waiting)
        try:
            futures = [pool.submit(client.post, "/v1/optimize", json=body, headers={"Authorization": f"Bearer {busy}"})
                       for _ in range(waiting)]
            until(lambda: service.fair.statistics().tasks_waiting == waiting - 2 and gate.running == 2)
            refused = client.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {broke}"})
            health = client.get("/healthz")
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["type"] == "insufficient_quota"
            assert health.status_code == 200
            assert gate.running == 2 and not any(f.done() for f in futures)  # answered while every optimizer run waited
        finally:
            gate.open.set()  # a failed check must not leave the requests waiting for the gate
            pool.shutdown()
        assert [f.result().status_code for f in futures] == [200] * waiting
        text = client.get("/metrics", headers={"Authorization": f"Bearer {admin_key(service)}"}).text
        assert f"ragtrim_optimizer_wait_seconds_count {float(waiting)}" in text  # every run's wait for a thread
        waited = [line for line in text.splitlines() if line.startswith('ragtrim_optimizer_wait_seconds_bucket{le="0.001"}')]
        assert waited and float(waited[0].split()[-1]) < waiting  # those queued behind the gate waited longer
    assert gate.most == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_optimizer_threads_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="optimizer_threads must be a positive integer"):
        ServeConfig.from_dict({"optimizer_threads": bad})

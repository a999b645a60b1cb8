"""Durability: a graceful shutdown that runs out of time, leases on a clock that steps, a database
that cannot be reached."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from types import SimpleNamespace

import httpx

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.db import make_engine
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.keys import create_key, create_tenant
from ragtrim.serve.schema import ledger
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import chat_body, spent_and_reserved
from test_serve_process import start_gateway


def test_streams_cut_by_the_graceful_timeout_are_settled_before_the_worker_exits(tmp_path):
    """SIGTERM with ``--graceful-timeout 1`` while 10 s streams run: uvicorn cancels them; each is still
    settled (charged the text it carried), none left pending and no room held."""
    engine = make_engine(f"sqlite:///{tmp_path}/s.sqlite")
    create_tenant(engine, "acme")
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1_000_000)
    key = create_key(engine, b"p" * 32, tenant_id="acme")[1]
    with serve_in_thread(create_fake_upstream(latency_ms=0, answer_tokens=20, token_delay_ms=500)) as up:
        proc, base = start_gateway(
            tmp_path, f'preset = "bm25-pack"\n[upstreams.fake]\nbase_url = "{up}/v1"\n'
            '[models."gpt-4o"]\nupstream = "fake"\ntokenizer = "cl100k_base"\n', workers=1,
            args=["--graceful-timeout", "1"])
        try:
            started = threading.Barrier(3)

            def stream() -> None:
                try:
                    with httpx.stream("POST", f"{base}/v1/chat/completions", json=chat_body(stream=True),
                                      headers={"Authorization": f"Bearer {key}"}, timeout=30) as r:
                        pieces = r.iter_bytes()
                        next(pieces)
                        started.wait(10)  # its first bytes are here: the request holds its reservation
                        for _ in pieces:
                            pass
                except (httpx.HTTPError, threading.BrokenBarrierError):
                    pass

            threads = [threading.Thread(target=stream) for _ in range(2)]
            for t in threads:
                t.start()
            started.wait(30)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
            for t in threads:
                t.join(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    with engine.connect() as c:
        rows = [r._asdict() for r in c.execute(ledger.select()).all()]
    assert len(rows) == 2 and [r["action"] for r in rows] == ["ok", "ok"], rows
    assert all(0 < r["completion_tokens"] < 20 for r in rows), rows  # charged the text each carried
    spent, reserved = spent_and_reserved(SimpleNamespace(engine=engine))
    assert reserved == 0 and spent == sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)

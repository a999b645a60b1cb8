"""A request cut off by the gateway's shutdown (the gatewayops hunt's finding 2).

When ``--graceful-timeout`` runs out, uvicorn cancels the requests still running. A plain request
the upstream had is charged its reservation as an estimate; its client used to get uvicorn's
plain-text 500, which the OpenAI SDKs retry (and each retry is charged again). It now gets an
OpenAI-style JSON error with ``x-should-retry: false`` and its request id, and its ledger row has
the status the client got and says the shutdown cut it. A stream cut so says the same, not that its
client disconnected.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from ragtrim.serve.budgets import set_budget
from ragtrim.serve.db import make_engine
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.keys import create_key, create_tenant
from ragtrim.serve.schema import ledger
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import chat_body
from test_serve_process import sigterm_while, start_gateway


def wait_for(condition: Any, timeout: float = 30) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError("timed out waiting for the requests to reach the upstream")


def test_a_plain_request_cut_by_the_graceful_timeout_gets_a_json_error_that_says_do_not_retry(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/s.sqlite")
    create_tenant(engine, "acme")
    set_budget(engine, tenant_id="acme", unit="tokens", period="day", limit=1_000_000)
    key = create_key(engine, b"p" * 32, tenant_id="acme")[1]
    slow = create_fake_upstream(latency_ms=6000, answer_tokens=20)  # answers after the gateway has stopped
    drip = create_fake_upstream(latency_ms=0, answer_tokens=20, token_delay_ms=500)  # a 10 s stream
    with serve_in_thread(slow) as slow_url, serve_in_thread(drip) as drip_url:
        proc, base = start_gateway(
            tmp_path, f'preset = "bm25-pack"\n[upstreams.slow]\nbase_url = "{slow_url}/v1"\n'
            f'[upstreams.drip]\nbase_url = "{drip_url}/v1"\n'
            '[models."gpt-4o"]\nupstream = "slow"\ntokenizer = "cl100k_base"\n'
            '[models."gpt-4o-mini"]\nupstream = "drip"\ntokenizer = "cl100k_base"\n', workers=1,
            args=["--graceful-timeout", "1"])
        got: dict[str, Any] = {}
        streamed = threading.Event()

        def plain() -> None:
            got["plain"] = httpx.post(f"{base}/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {key}"},
                                      timeout=30)

        def stream() -> None:
            try:
                with httpx.stream("POST", f"{base}/v1/chat/completions", json=chat_body(model="gpt-4o-mini", stream=True),
                                  headers={"Authorization": f"Bearer {key}"}, timeout=30) as r:
                    pieces = r.iter_bytes()
                    next(pieces)
                    streamed.set()
                    for _ in pieces:
                        pass
            except httpx.HTTPError:
                pass

        sigterm_while(proc, [threading.Thread(target=plain), threading.Thread(target=stream)],
                      lambda: wait_for(lambda: slow.state.fake.calls == 1 and streamed.is_set()))
    with engine.connect() as c:
        rows = {r.stream: r._asdict() for r in c.execute(ledger.select()).all()}
    r = got["plain"]
    assert r.status_code == 503 and r.headers["content-type"].startswith("application/json"), (r.status_code, r.text)
    assert r.headers["x-should-retry"] == "false"  # the OpenAI SDKs do not send it again (and get charged again)
    error = r.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "gateway_shutdown", error
    row = rows[False]
    assert r.headers["x-ragtrim-request-id"] == row["id"] and row["id"] in error["message"]
    assert "charged its reservation as an estimate" in error["message"] and "--graceful-timeout" in error["message"]
    assert (row["action"], row["status"], row["usage_source"]) == ("ok", 503, "estimated"), row
    assert "shutdown" in row["error"] and "--graceful-timeout" in row["error"], row["error"]
    cut = rows[True]
    assert cut["action"] == "ok" and 0 < cut["completion_tokens"] < 20, cut  # charged the text it carried
    assert "shutdown" in cut["error"] and "client disconnected" not in cut["error"], cut["error"]

"""The gateway over HTTP with a fake OpenAI-compatible upstream on loopback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import admin_key, auth, budget, chat_body, DOCS, gateway, ledger_rows, tenant_with_key


@pytest.fixture(scope="module")
def fake():
    app = create_fake_upstream(latency_ms=1, answer_tokens=12)
    with serve_in_thread(app) as url:
        yield url, app.state.fake


def test_optimize_matches_the_cli_json_and_reports_savings(fake, tmp_path):
    with gateway(fake[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        body = {"query": "What is the capital of France?", "chunks": DOCS, "budget": 40, "preset": "bm25-pack", "model": "gpt-4o"}
        r = client.post("/v1/optimize", json=body, headers=auth(key))
        assert r.status_code == 200, r.text
        out = r.json()
        chunks = tmp_path / "c.jsonl"
        chunks.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
        cli = subprocess.run([sys.executable, "-m", "ragtrim", "optimize", "-q", body["query"], "-c", str(chunks),
                              "-b", "40", "-p", "bm25-pack", "-f", "json"], capture_output=True, text=True, check=True)
        expected = json.loads(cli.stdout)
        for k, v in expected.items():
            if k != "trace":
                assert out[k] == v, k
        assert [t["name"] for t in out["trace"]] == [t["name"] for t in expected["trace"]]
        assert out["tokens"] <= 40 and out["tokens_saved"] == out["tokens_full"] - out["tokens"]
        assert out["saved_micro"] == int(out["tokens_saved"] * 2.5)  # gpt-4o input: $2.50 per million
        [row] = ledger_rows(service)
        assert row["endpoint"] == "optimize" and row["action"] == "ok" and row["saved_micro"] == out["saved_micro"]


@pytest.mark.parametrize("budget_value", ["-3", 0, "abc", 1.5])
def test_bad_budget_gives_the_cli_error_text(fake, budget_value, tmp_path):
    chunks = tmp_path / "c.jsonl"
    chunks.write_text(json.dumps(DOCS[0]) + "\n")
    cli = subprocess.run([sys.executable, "-m", "ragtrim", "optimize", "-q", "x", "-c", str(chunks), "-b", str(budget_value)],
                         capture_output=True, text=True)
    assert cli.returncode == 2
    with gateway(fake[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        r = client.post("/v1/optimize", json={"query": "x", "chunks": DOCS, "budget": budget_value}, headers=auth(key))
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == "budget"
        if isinstance(budget_value, str):  # the CLI passes strings; the same string gives the same text
            assert cli.stderr.strip() == f"error: {err['message']}"
        assert ledger_rows(service)[0]["action"] == "failed"


def test_bad_requests_are_clear_4xx(fake):
    with gateway(fake[0], limits={"max_chunks": 3, "max_chunk_chars": 50, "max_body_bytes": 4000}) as (client, service):
        key = tenant_with_key(service, "acme")
        h = auth(key)
        cases = [
            (client.post("/v1/optimize", content=b"{not json", headers={**h, "content-type": "application/json"}), 400, "not valid JSON"),
            (client.post("/v1/optimize", json={"query": "q", "chunks": ["a b", "c d"], "preset": "fastest"}, headers=h), 400, "unknown preset 'fastest'"),
            (client.post("/v1/optimize", json={"query": "q", "chunks": DOCS}, headers=h), 413, "limits.max_chunks"),
            (client.post("/v1/optimize", json={"query": "q", "chunks": [{"id": 1, "text": "x" * 60}]}, headers=h), 413, "max_chunk_chars"),
            (client.post("/v1/optimize", json={"query": "q", "chunks": ["x" * 40] * 3, "pad": "y" * 5000}, headers=h), 413, "max_body_bytes"),
            (client.post("/v1/optimize", json={"query": "", "chunks": ["a"]}, headers=h), 400, "query must be"),
            (client.post("/v1/chat/completions", json={"model": "gpt-5", "messages": [{"role": "user", "content": "q"}]}, headers=h), 400, "unknown model 'gpt-5'"),
            (client.post("/v1/chat/completions", json={"messages": []}, headers=h), 400, "messages must be"),
            (client.post("/v1/chat/completions", json={**chat_body(), "documents": ["short"], "max_tokens": 10**6}, headers=h), 400, "max_tokens"),
            (client.post("/v1/optimize", json={"query": "q", "chunks": ["a"]}), 401, "missing API key"),
            (client.post("/v1/optimize", json={"query": "q", "chunks": ["a"]}, headers=auth("rtk_0123456789ab_" + "x" * 43)), 401, "invalid"),
        ]
        for r, status, text in cases:
            assert r.status_code == status, (r.status_code, r.text)
            err = r.json()["error"]
            assert set(err) == {"type", "message", "param", "code"} and text in err["message"], err  # OpenAI's shape


def test_chat_non_stream_settles_upstream_usage_and_writes_the_ledger(fake, monkeypatch):
    monkeypatch.setenv("RAGTRIM_TEST_UPSTREAM_KEY", "sk-upstream-secret-123456")
    url, state = fake
    with gateway(url, budget=60) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "usd", 1_000_000)
        r = client.post("/v1/chat/completions", json=chat_body(user="ann", feature="faq"), headers=auth(key))
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["choices"][0]["message"]["content"] and out["usage"]["completion_tokens"] == 12
        assert r.headers["X-Ragtrim-Action"] == "ok" and r.headers["X-Ragtrim-Model"] == "gpt-4o"
        assert int(r.headers["X-Ragtrim-Tokens-Sent"]) <= 60 < int(r.headers["X-Ragtrim-Tokens-Full"])
        sent = state.bodies[-1]
        assert sent["max_tokens"] == 20 and "documents" not in sent and sent["messages"][0]["role"] == "system"
        assert "Paris is the capital of France" in sent["messages"][0]["content"]
        [row] = ledger_rows(service)
        expected_cost = -(-(out["usage"]["prompt_tokens"] * 25 + 12 * 100) // 10)  # $2.50/M in, $10/M out, rounded up
        assert (row["action"], row["user"], row["feature"], row["usage_source"]) == ("ok", "ann", "faq", "upstream")
        assert row["prompt_tokens"] == out["usage"]["prompt_tokens"] and row["cost_micro"] == expected_cost == out["ragtrim"]["cost_micro"]
        assert row["price_ref"] == "gpt-4o@2025-06-01" and row["budget_used"] == 60
        assert "sk-upstream-secret" not in json.dumps(row) and "sk-upstream-secret" not in r.text
        assert state.saw_authorization[-1] == "yes"
        usage = client.get("/v1/usage?by=user,feature", headers=auth(key)).json()
        assert usage["rows"][0]["user"] == "ann" and usage["totals"]["cost_micro"] == expected_cost
        assert usage["budgets"][0]["spent"] == expected_cost and usage["budgets"][0]["reserved"] == 0


def test_chat_counts_tokens_when_the_upstream_reports_none():
    app = create_fake_upstream(latency_ms=1, answer_tokens=7, report_usage=False)
    with serve_in_thread(app) as url, gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 200 and "usage" not in {k for k in r.json() if k != "ragtrim"}
        [row] = ledger_rows(service)
        assert row["usage_source"] == "counted" and row["completion_tokens"] == 7 and row["prompt_tokens"] > 0


def test_degrade_shrinks_the_context_then_switches_model_then_refuses(fake):
    url, state = fake
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        probe = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        full_prompt = probe.json()["usage"]["prompt_tokens"]
        # $ left for ~ the floor-size prompt on gpt-4o, not the full one
        tight = (full_prompt - 60) * 25 // 10 + 20 * 10
        # a budget set mid-period starts with what was already charged in it (the probe): give that room too
        budget(service, "acme", "usd", tight + probe.json()["ragtrim"]["cost_micro"], period="day")
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 200, r.text
        assert r.headers["X-Ragtrim-Action"] == "degraded" and r.headers["X-Ragtrim-Model"] == "gpt-4o"
        assert "budget full ->" in r.headers["X-Ragtrim-Degrade"]
        assert int(r.headers["X-Ragtrim-Budget-Used"]) >= 40
        # next: what is left cannot pay gpt-4o even at the floor, but gpt-4o-mini (16x cheaper) can
        r2 = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r2.status_code == 200, r2.text
        assert r2.headers["X-Ragtrim-Model"] == "gpt-4o-mini" and "model gpt-4o -> gpt-4o-mini" in r2.headers["X-Ragtrim-Degrade"]
        assert state.bodies[-1]["model"] == "gpt-4o-mini"
        for _ in range(200):
            r3 = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
            if r3.status_code == 429:
                break
        assert r3.status_code == 429
        assert r3.json()["error"]["type"] == "insufficient_quota" and int(r3.headers["Retry-After"]) >= 1
        rows = ledger_rows(service)
        assert [r["action"] for r in rows][:3] == ["ok", "degraded", "degraded"] and rows[-1]["action"] == "refused"
        st = client.get("/v1/usage", headers=auth(key)).json()["budgets"][0]
        assert st["spent"] <= st["limit"] and st["reserved"] == 0


def test_upstream_failure_releases_the_reservation(fake):
    with gateway(fake[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        r = client.post("/v1/chat/completions", json=chat_body("FAIL_UPSTREAM please"), headers=auth(key))
        assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error"
        [row] = ledger_rows(service)
        assert row["action"] == "failed" and row["status"] == 502 and row["cost_micro"] == 0
        st = client.get("/v1/usage", headers=auth(key)).json()["budgets"][0]
        assert (st["spent"], st["reserved"]) == (0, 0)


def test_streaming_passes_events_through_and_settles(fake):
    with gateway(fake[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True), headers=auth(key)) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            data = b"".join(r.iter_bytes()).decode()
        events = [e[6:] for e in data.split("\n\n") if e.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert len(text.split()) == 12
        assert all(c["choices"] for c in chunks)  # the client did not ask for usage: the gateway's usage chunk is dropped
        [row] = ledger_rows(service)
        assert row["stream"] and row["action"] == "ok" and row["completion_tokens"] == 12 and row["usage_source"] == "upstream"
        with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True, stream_options={"include_usage": True}),
                           headers=auth(key)) as r:
            data = b"".join(r.iter_bytes()).decode()
        assert '"usage"' in data


def test_tenant_isolation_and_admin_routes(fake):
    with gateway(fake[0]) as (client, service):
        a = tenant_with_key(service, "acme")
        b = tenant_with_key(service, "globex")
        root = admin_key(service)
        assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(a)).status_code == 200
        assert client.get("/v1/usage", headers=auth(b)).json()["totals"] == {}
        assert client.get("/v1/usage?tenant=acme", headers=auth(b)).status_code == 403
        assert client.get("/v1/admin/tenants", headers=auth(a)).status_code == 403
        assert client.get("/v1/usage?tenant=acme", headers=auth(root)).json()["totals"]["requests"] == 1
        assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(root)).status_code == 403
        r = client.post("/v1/admin/tenants", json={"name": "initech"}, headers=auth(root))
        assert r.status_code == 201
        r = client.post("/v1/admin/keys", json={"tenant": "initech"}, headers=auth(root))
        new = r.json()
        assert new["key"].startswith("rtk_")
        listed = client.get("/v1/admin/keys?tenant=initech", headers=auth(root)).json()["data"]
        assert new["key"] not in json.dumps(listed) and listed[0]["id"] == new["id"]
        r = client.put("/v1/admin/budgets", json={"tenant": "initech", "unit": "usd", "period": "month", "limit": "2.50"}, headers=auth(root))
        assert r.status_code == 200 and r.json()["limit"] == 2_500_000
        assert client.delete(f"/v1/admin/keys/{new['id']}", headers=auth(root)).status_code == 200
        assert client.post("/v1/optimize", json={"query": "q", "chunks": ["a"]}, headers=auth(new["key"])).status_code == 401
        with service.engine.connect() as c:
            stored = json.dumps([list(r) for r in c.exec_driver_sql("SELECT * FROM rt_api_keys").all()])
        assert a not in stored and b not in stored and root not in stored


def test_healthz_metrics_and_openapi(fake):
    with gateway(fake[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert client.get("/healthz").json()["status"] == "ok"
        text = client.get("/metrics", headers=auth(admin_key(service))).text
        assert 'ragtrim_requests_total{action="ok",endpoint="chat",status="200"} 1.0' in text
        assert "ragtrim_spend_microdollars_total" in text and "ragtrim_gateway_overhead_seconds_bucket" in text
        spec = client.get("/openapi.json").json()
        assert "/v1/chat/completions" in spec["paths"] and "/v1/optimize" in spec["paths"]


def test_client_leaving_mid_stream_still_settles_and_writes_its_row(tmp_path):
    import time

    import httpx

    from ragtrim.serve.app import create_app
    from ragtrim.serve.service import Service

    from serve_fixtures import PEPPER, gateway_config

    with serve_in_thread(create_fake_upstream(latency_ms=1, answer_tokens=40, token_delay_ms=200)) as up:
        service = Service(gateway_config(up), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
        with serve_in_thread(create_app(service)) as base:
            key = tenant_with_key(service, "acme")
            budget(service, "acme", "tokens", 100_000)
            with httpx.stream("POST", f"{base}/v1/chat/completions", json=chat_body(stream=True, max_tokens=40), headers=auth(key)) as r:
                # leave once a word of the answer has arrived (the first event is the role, with no content;
                # leaving right after it may rightly settle 0 completion tokens)
                words = []
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        words += [c["delta"].get("content") for c in json.loads(line[6:])["choices"]]
                    if any(words):
                        break
                assert any(words)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rows = ledger_rows(service)
                if rows and rows[0]["action"] != "pending":
                    break
                time.sleep(0.1)
    [row] = rows
    assert row["action"] == "ok" and "client disconnected" in row["error"], {k: row[k] for k in ("completion_tokens", "error", "latency_ms", "upstream_ms", "usage_source")}
    assert row["usage_source"] == "counted" and 0 < row["completion_tokens"] < 40  # only what was streamed before leaving
    with service.engine.connect() as c:
        spent, reserved = c.exec_driver_sql("SELECT spent, reserved FROM rt_budget_usage").one()
    assert reserved == 0 and spent == row["prompt_tokens"] + row["completion_tokens"]


def test_count_margin_keeps_a_budget_whole_when_the_upstream_counts_more():
    # as above, the upstream counts ~1.33x the tokens the gateway's tokenizer counts
    big = [{"id": str(i), "text": "ĉ ĝ ĥ ĵ ŝ ŭ " * 60} for i in range(3)]
    app = create_fake_upstream(latency_ms=1, answer_tokens=20, tokenizer="cl100k_base")

    def spend(margin: float, limit: int | None) -> tuple[dict, dict]:
        models = {"gpt-4o": {"upstream": "fake", "tokenizer": "o200k_base", "count_margin": margin}}
        with serve_in_thread(app) as url, gateway(url, models=models) as (client, service):
            key = tenant_with_key(service, "acme")
            budget(service, "acme", "tokens", limit if limit is not None else 1_000_000)
            r = client.post("/v1/chat/completions", json={**chat_body(max_tokens=20), "documents": big}, headers=auth(key))
            rows = ledger_rows(service)
            return {"status": r.status_code, "row": rows[0] if rows else None}, client.get("/v1/usage", headers=auth(key)).json()["budgets"][0]

    probe, _ = spend(0.0, None)
    reserved = probe["row"]["reserved_tokens"]  # the worst case by the gateway's count: what a budget of exactly this admits
    assert probe["row"]["prompt_tokens"] + probe["row"]["completion_tokens"] > reserved
    without, st = spend(0.0, reserved)
    assert without["status"] == 200 and st["spent"] > st["limit"]  # admitted, then charged past the limit
    with_margin, st = spend(0.4, reserved)
    assert st["spent"] <= st["limit"] and st["reserved"] == 0
    row = with_margin["row"]  # answered with a smaller context, one whose count the margin covers
    assert with_margin["status"] == 200 and row["action"] == "degraded"
    assert row["prompt_tokens"] + row["completion_tokens"] <= row["reserved_tokens"] <= st["limit"]
    assert "usage above the reservation" not in (row["error"] or "")


def test_count_margin_outside_zero_to_one_is_refused_with_its_name():
    from ragtrim.serve.config import ServeConfig

    for bad in (-0.1, 1.5, "0.2", True):
        with pytest.raises(ValueError, match="count_margin"):
            ServeConfig.from_dict({"models": {"m": {"upstream": "local", "count_margin": bad}}})


def test_usage_above_the_reservation_is_charged_and_flagged():
    # the gateway is told the model uses o200k, but the upstream counts with cl100k, which splits this text into more tokens
    app = create_fake_upstream(latency_ms=1, answer_tokens=5, tokenizer="cl100k_base")
    models = {"gpt-4o": {"upstream": "fake", "tokenizer": "o200k_base"}}
    with serve_in_thread(app) as url, gateway(url, models=models) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 1_000_000)
        big = [{"id": str(i), "text": "ĉ ĝ ĥ ĵ ŝ ŭ " * 60} for i in range(3)]  # 721 cl100k tokens, 541 o200k
        r = client.post("/v1/chat/completions", json={**chat_body(), "documents": big}, headers=auth(key))
        assert r.status_code == 200
        [row] = ledger_rows(service)
        assert row["prompt_tokens"] + row["completion_tokens"] > row["reserved_tokens"]
        assert "usage above the reservation" in row["error"]
        st = client.get("/v1/usage", headers=auth(key)).json()["budgets"][0]
        assert st["spent"] == row["prompt_tokens"] + row["completion_tokens"] and st["reserved"] == 0  # charged as reported

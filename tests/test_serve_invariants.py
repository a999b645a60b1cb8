"""The load test's invariants, small and bounded (not timed): real ``ragtrim serve`` processes
with 2 workers, concurrent clients, a quota that runs out midway, and one worker SIGKILLed
while requests are in flight. Runs ``bench/load_serve.py`` and reads its JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_load(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "load_serve.py"), "--preset", "bm25-pack", "--out", str(out), *args],
                          capture_output=True, text=True, env=env, timeout=540)
    assert out.exists(), proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert proc.returncode == 0, json.dumps(report, indent=1)[:3000]
    return report


def _common(report: dict, sent: int, ran_out: float = 0.9, lost: int = 0) -> None:
    """The invariants of every run; ``lost``: connections a killed worker dropped (a refusal it had
    written to the ledger just before it died reaches the client as a lost connection, not a 429)."""
    assert report["requests_sent"] == sent
    for b in report["budgets"]:
        assert b["overspend"] == 0 and b["reserved"] == 0 and b["ledger_minus_counter"] == 0, b
        assert b["spent"] > b["limit"] * ran_out, b  # the quota really ran out
    assert report["answered_without_ledger_row"] == 0 and report["rows_pending"] == 0 and report["reservations_held"] == 0
    assert report["rows_settled_late"] == 0  # no live request's hold lapsed (that could overspend)
    assert report["usage_mismatch"] == []  # GET /v1/usage?by=endpoint is the ledger, tenant by tenant
    assert all(b["usage_minus_counter"] == 0 for b in report["budgets"]), report["budgets"]
    assert report["refused"] > 0 and report["degraded"] > 0
    seen = report["status"].get("429", 0)
    assert seen <= report["refused"] <= seen + lost


def test_two_workers_quota_runs_out_midway_no_overspend(tmp_path):
    report = run_load(tmp_path, "--requests", "300", "--concurrency", "32", "--workers", "2", "--upstream-ms", "5",
                      "--upstream-jitter-ms", "5")
    _common(report, 300)
    assert report["answered"] == 300 and report["ledger_rows"] == 300 and report["lost_connection"] == 0


def test_mixed_routes_quota_runs_out_no_overspend_usage_is_the_ledger(tmp_path):
    """Chat, Responses, embeddings and Anthropic Messages requests in turn, every tenant on every route, against the
    same budgets."""
    report = run_load(tmp_path, "--requests", "200", "--concurrency", "16", "--workers", "2", "--upstream-ms", "5",
                      "--upstream-jitter-ms", "5", "--mix", "chat,responses,embeddings,messages")
    _common(report, 200)
    assert report["answered"] == 200 and report["ledger_rows"] == 200 and report["lost_connection"] == 0
    routes = report["routes"]
    assert set(routes) == {"chat", "responses", "embeddings", "messages"}
    for name, r in routes.items():
        assert r["sent"] == 50 and r["ledger_rows"] == 50 and r["ok"] > 0 and r["failed"] == 0, (name, r)
        assert r["status"].get("200", 0) == r["ok"] + r["degraded"] and r["status"].get("429", 0) == r["refused"], (name, r)
    assert routes["embeddings"]["degraded"] == 0 and routes["embeddings"]["completion_tokens"] == 0  # never trimmed
    assert sum(r["refused"] for r in routes.values()) == report["refused"]
    assert all(n >= 50 for n in report["metrics_requests_by_endpoint"].values())  # the first replica counts its own (+ probes)
    claude = next(p for p in report["probe"] if p["route"] == "messages")  # Anthropic's usage read: input (+ cache) and output
    assert claude["prompt_tokens"] > 0 and claude["completion_tokens"] > 0 and routes["messages"]["cost_micro"] > 0


def test_killed_worker_loses_no_ledger_row_and_its_reservations_expire(tmp_path):
    report = run_load(tmp_path, "--requests", "300", "--concurrency", "32", "--workers", "2", "--upstream-ms", "150",
                      "--upstream-jitter-ms", "50", "--kill-at", "0.5", "--lease", "2")
    # The killed worker's holds (up to ~16 in flight, about 5 per tenant = 10 % of a limit sized for 50
    # requests) count against the quota until their lease expires, so requests are refused while up to
    # that share of the limit is held by the dead worker; CI saw 89.7 %. The bound allows for it.
    _common(report, 300, ran_out=0.75, lost=report["lost_connection"])
    assert len(report["killed_workers"]) == 1
    lost = report["lost_connection"]
    assert lost > 0  # requests were in flight on the killed worker
    # the dead worker's in-flight requests that had reserved are in the ledger: the upstream had them (they were
    # streaming or waiting for it), so they are charged their reservation as an estimate (settled rows whose error
    # says "worker stopped after the upstream had the request"); one it had not sent yet is failed, uncharged (and
    # one it settled just before dying is charged as usual); those that had not reached the ledger held nothing
    extra = report["rows_not_answered"]
    assert 0 < report["rows_failed_worker_died"] <= sum(extra.values()) and extra.get("failed", 0) <= report["rows_failed_worker_died"]
    assert set(extra) <= {"failed", "ok", "degraded"} and sum(extra.values()) <= lost
    assert report["ledger_rows"] == report["answered"] + sum(extra.values())
    assert report["reservation_states"].get("expired", 0) >= 1 and "held" not in report["reservation_states"]


@pytest.mark.postgres
def test_postgres_two_replicas_no_overspend(tmp_path):
    from ragtrim.serve.testing import postgres_available

    if not postgres_available() and os.environ.get("CI") != "true":
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql); CI runs this")
    report = run_load(tmp_path, "--db", "postgres", "--replicas", "2", "--workers", "1", "--requests", "300",
                      "--concurrency", "32", "--upstream-ms", "5", "--upstream-jitter-ms", "5")
    _common(report, 300)
    assert report["answered"] == 300 and report["ledger_rows"] == 300

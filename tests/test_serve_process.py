"""`python -m ragtrim.serve serve` as a real process: 2 workers, metrics summed across workers,
JSON request logs without secrets, and a graceful shutdown that finishes in-flight requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from ragtrim.serve.db import make_engine
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.keys import create_key, create_tenant
from ragtrim.serve.schema import ledger
from ragtrim.serve.testing import free_port, serve_in_thread

from serve_fixtures import chat_body

ROOT = Path(__file__).resolve().parent.parent


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server exited"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


def start_gateway(tmp_path: Path, toml: str, *, workers: int, env: dict[str, str] | None = None,
                  stdout: int = subprocess.DEVNULL, args: tuple[str, ...] | list[str] = ()) -> tuple[subprocess.Popen, str]:
    """``python -m ragtrim.serve serve`` with ``toml`` as its config (and ``args``), on a free port, in its own process
    group; waits for /healthz."""
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}", "RAGTRIM_SERVE_PEPPER": "p" * 32, "RAGTRIM_SERVE_METRICS_TOKEN": "m" * 32,
                "RAGTRIM_CACHE": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), **(env or {})}
    (tmp_path / "prom").mkdir(exist_ok=True)
    (tmp_path / "serve.toml").write_text(toml)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ragtrim.serve", "serve", "--config", str(tmp_path / "serve.toml"), "--db",
                             f"sqlite:///{tmp_path}/s.sqlite", "--workers", str(workers), "--port", str(port), *args],
                            env=full_env, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_up(f"{base}/healthz", proc)
    return proc, base



def sigterm_while(proc: subprocess.Popen, threads: list[threading.Thread], ready: Callable[[], object]) -> None:
    """Start ``threads`` (clients of the gateway ``proc``), wait until ``ready()`` (their requests are in flight),
    send the gateway SIGTERM and wait for it to exit and for the clients; a gateway still up then is killed."""
    try:
        for t in threads:
            t.start()
        ready()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        for t in threads:
            t.join(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

def test_two_workers_metrics_logs_and_graceful_shutdown(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/s.sqlite")
    create_tenant(engine, "acme")
    key = create_key(engine, b"p" * 32, tenant_id="acme")[1]
    with serve_in_thread(create_fake_upstream(latency_ms=1500, answer_tokens=5)) as up:
        proc, base = start_gateway(
            tmp_path, f'preset = "bm25-pack"\n[upstreams.fake]\nbase_url = "{up}/v1"\napi_key_env = "UPSTREAM_KEY"\n'
            '[models."gpt-4o"]\nupstream = "fake"\ntokenizer = "cl100k_base"\n'
            '[limits]\ntenant_optimizer_runs = 8\n',  # the four at once from one tenant may all reach one worker
            workers=2, env={"UPSTREAM_KEY": "sk-never-logged-0123456789"}, stdout=subprocess.PIPE)
        try:
            h = {"Authorization": f"Bearer {key}"}
            threads = [threading.Thread(target=lambda: httpx.post(f"{base}/v1/chat/completions", json=chat_body(), headers=h, timeout=30))
                       for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            scrape = {"Authorization": "Bearer " + "m" * 32}  # the metrics token (RAGTRIM_SERVE_METRICS_TOKEN)
            metrics = "".join(httpx.get(f"{base}/metrics", headers=scrape).text for _ in range(4))  # any worker reports the sum
            assert metrics.count('ragtrim_requests_total{action="ok",endpoint="chat",status="200"} 4.0') == 4
            late: dict = {}
            t = threading.Thread(target=lambda: late.update(r=httpx.post(f"{base}/v1/chat/completions", json=chat_body(), headers=h, timeout=30)))
            t.start()
            time.sleep(0.5)  # the request is now waiting on the 1.5 s upstream
            os.killpg(proc.pid, signal.SIGTERM)
            t.join(30)
            assert late["r"].status_code == 200 and late["r"].json()["choices"]
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    logs = out.decode()
    assert "sk-never-logged" not in logs and key not in logs
    requests = [json.loads(line) for line in logs.splitlines() if line.startswith("{") and '"event": "request"' in line]
    assert len(requests) == 5 and {r["action"] for r in requests} == {"ok"} and all(r["tenant"] == "acme" for r in requests)
    with engine.connect() as c:
        rows = c.execute(ledger.select()).all()
    assert len(rows) == 5 and {r.action for r in rows} == {"ok"} and len({r.worker_id for r in rows}) >= 1


def test_after_a_worker_is_killed_keep_alive_clients_reach_its_replacement(tmp_path):
    """Clients of a killed worker reconnect to the survivor before the replacement is up; connection
    recycling (``connection_max_age``) moves some of them to the replacement once it serves."""
    proc, base = start_gateway(tmp_path, 'preset = "bm25-pack"\nconnection_max_age = 1\n', workers=2)
    try:
        first: set[int] = set()
        deadline = time.monotonic() + 30
        while len(first) < 2 and time.monotonic() < deadline:  # fresh connections until both workers answered
            first.add(httpx.get(f"{base}/healthz", timeout=10).json()["pid"])
        assert len(first) == 2, first
        stop = threading.Event()
        seen: list[int] = []

        def client() -> None:  # one kept-alive connection per thread, reconnecting at once on an error
            with httpx.Client(base_url=base, timeout=10, limits=httpx.Limits(max_connections=1)) as c:
                while not stop.is_set():
                    try:
                        seen.append(c.get("/healthz").json()["pid"])
                    except httpx.HTTPError:
                        continue
                    time.sleep(0.02)

        threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not (set(seen) - first) and time.monotonic() < deadline:
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(15)
        assert set(seen) - first, f"no kept-alive client reached the replacement worker; pids seen {sorted(set(seen))}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

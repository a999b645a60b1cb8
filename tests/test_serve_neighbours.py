"""Noisy neighbours: one tenant's load must not hold up the others on a shared gateway worker.

1. A tenant may have at most ``[limits] tenant_optimizer_runs`` optimizer runs in flight per worker; one more is a
   429 ``rate_limit_exceeded`` at once, uncharged, nothing reserved (chat with documents, and ``/v1/optimize``).
2. A client that left is not optimized, sent upstream nor charged: its request stops with a 499 row.
3. The in-process model's calls queue on a limiter of their own, not on threads of the event loop's pool.
4. Counting a prompt for an OpenAI-compatible upstream runs on a thread, not on the event loop.
5. A stream whose client stops reading is cut after ``[limits] stream_idle_seconds``, its upstream closed.

Counts and states only: gates hold optimizer runs and model calls where the test needs them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.to_thread
import pytest

from ragtrim.serve.app import create_app
from ragtrim.serve.config import ServeConfig, UpstreamConfig
from ragtrim.serve.service import Service
from ragtrim.serve.schema import budget_usage, reservations
from optimizer_gates import Gate, until
from serve_fixtures import DOCS, PEPPER, auth, budget, chat, final_rows, gateway_config, ledger_rows, stack, tenant_with_key


def spent_and_reserved(service: Service) -> tuple[int, int]:
    """What the budgets spent and hold in all (0, 0 when no request reached them); no reservation may be held."""
    with service.engine.connect() as c:
        assert c.execute(reservations.select().where(reservations.c.state == "held")).all() == []
        rows = c.execute(budget_usage.select()).all()
    return sum(int(r.spent) for r in rows), sum(int(r.reserved) for r in rows)


OPTIMIZE = {"query": "capital of France?", "chunks": DOCS, "budget": 40}


# 1. a per-tenant cap on optimizer runs in flight


def test_a_tenant_past_its_optimizer_runs_is_refused_at_once_and_others_still_queue(tmp_path):
    from starlette.testclient import TestClient

    config = gateway_config("http://127.0.0.1:9", optimizer_threads=1, limits={"tenant_optimizer_runs": 2})
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    gate = Gate(service)
    service.pipeline = gate.pipeline
    busy, other = tenant_with_key(service, "busy"), tenant_with_key(service, "other")
    budget(service, "busy", "tokens", 100_000)
    with TestClient(create_app(service)) as client, ThreadPoolExecutor(8) as pool:
        try:
            first = [pool.submit(client.post, "/v1/optimize", json=OPTIMIZE, headers=auth(busy)) for _ in range(2)]
            until(lambda: gate.running == 1 and service.fair.statistics().tasks_waiting == 1)
            # the tenant's third and fourth requests: refused at once, while its two runs are in flight
            third = pool.submit(client.post, "/v1/optimize", json=OPTIMIZE, headers=auth(busy)).result(timeout=20)
            chat_refused = pool.submit(client.post, "/v1/chat/completions", json={**chat(), "documents": DOCS},
                                       headers=auth(busy)).result(timeout=20)
            # another tenant's request is not refused: it waits its turn
            theirs = pool.submit(client.post, "/v1/optimize", json=OPTIMIZE, headers=auth(other))
            until(lambda: service.fair.statistics().tasks_waiting == 2)
            assert not theirs.done() and service.tenant_runs.held("busy") == 2 and service.tenant_runs.held("other") == 1
        finally:
            gate.open.set()
        for refused in (third, chat_refused):
            assert refused.status_code == 429, refused.text
            error = refused.json()["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
            assert "[limits] tenant_optimizer_runs" in error["message"] and "nothing was charged" in error["message"]
            assert 1 <= int(refused.headers["Retry-After"]) <= 5
        assert [f.result().status_code for f in first] + [theirs.result().status_code] == [200] * 3
        assert gate.runs == 3  # the refused requests never ran
        assert spent_and_reserved(service) == (0, 0)  # the refused chat reserved nothing, charged nothing
        assert service.tenant_runs.held("busy") == service.tenant_runs.held("other") == 0
        again = client.post("/v1/optimize", json=OPTIMIZE, headers=auth(busy))
        assert again.status_code == 200, again.text  # its slots came back
    refused_rows = [r for r in ledger_rows(service) if r["status"] == 429]
    assert len(refused_rows) == 2 and all(r["cost_micro"] == 0 and r["prompt_tokens"] == 0 for r in refused_rows)
    assert {r["endpoint"] for r in refused_rows} == {"optimize", "chat"}


def test_a_failed_optimizer_run_gives_its_slot_back(tmp_path):
    from starlette.testclient import TestClient

    config = gateway_config("http://127.0.0.1:9", optimizer_threads=1, limits={"tenant_optimizer_runs": 1})
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    key = tenant_with_key(service, "acme")
    real = service.pipeline

    class Failing:
        def run(self, *args: Any, **kw: Any) -> Any:
            raise ValueError("chunk 0 is not one the optimizer takes")

    service.pipeline = lambda *args: Failing()
    with TestClient(create_app(service)) as client:
        for _ in range(3):  # the optimizer refuses the input (a 400), each time with the slot free again
            bad = client.post("/v1/optimize", json=OPTIMIZE, headers=auth(key))
            assert bad.status_code == 400, bad.text
        service.pipeline = real
        assert client.post("/v1/optimize", json=OPTIMIZE, headers=auth(key)).status_code == 200
    assert service.tenant_runs.held("acme") == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_tenant_optimizer_runs_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="limits.tenant_optimizer_runs must be a positive integer"):
        ServeConfig.from_dict({"limits": {"tenant_optimizer_runs": bad}})


def test_tenant_optimizer_runs_defaults_to_four_per_optimizer_thread():
    assert ServeConfig.from_dict({"optimizer_threads": 3}).tenant_optimizer_runs == 12
    assert ServeConfig.from_dict({"optimizer_threads": 3, "limits": {"tenant_optimizer_runs": 1}}).tenant_optimizer_runs == 1


# 2. clients that left


def raw_post(url: str, path: str, body: dict[str, Any], key: str) -> socket.socket:
    """Send a POST on a socket of its own and return the socket unread (the test closes it: the client leaves)."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def leave(sock: socket.socket) -> None:
    """Close the client's socket, and give the gateway's event loop a moment to read the end of the connection."""
    sock.close()
    time.sleep(0.3)


def answer_ok(body: dict[str, Any]) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"id": "c1", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}})


def test_a_chat_whose_client_left_during_its_optimizer_run_is_not_sent_nor_charged(tmp_path, one_optimizer_thread):
    with stack(tmp_path, answer_ok) as s:
        gate = Gate(s.service)
        s.service.pipeline = gate.pipeline
        sock = raw_post(s.url, "/v1/chat/completions", chat(documents=DOCS), s.key)
        try:
            until(lambda: gate.running == 1)
            leave(sock)
        finally:
            gate.open.set()
        until(lambda: ledger_rows(s.service))
        [row] = final_rows(s.service)
        assert (row["action"], row["status"]) == ("failed", 499), row
        assert "client disconnected" in row["error"] and "not sent upstream" in row["error"] and "nothing was charged" in row["error"]
        assert row["cost_micro"] == row["prompt_tokens"] == row["completion_tokens"] == 0
        assert s.calls == []  # never sent upstream
        assert spent_and_reserved(s.service) == (0, 0)
        assert s.post(documents=DOCS).status_code == 200  # the next request is served as before


def test_an_optimize_whose_client_left_while_it_waited_for_a_thread_is_never_run(tmp_path, one_optimizer_thread):
    import httpx

    with stack(tmp_path, answer_ok) as s:
        gate = Gate(s.service)
        s.service.pipeline = gate.pipeline
        other = tenant_with_key(s.service, "other")
        with ThreadPoolExecutor(1) as pool:
            try:
                holder = pool.submit(httpx.post, f"{s.url}/v1/optimize", json=OPTIMIZE, headers=auth(other), timeout=60)
                until(lambda: gate.running == 1)  # the worker's only optimizer thread (optimizer_threads 1 below)
                sock = raw_post(s.url, "/v1/optimize", OPTIMIZE, s.key)
                until(lambda: s.service.fair.statistics().tasks_waiting == 1)
                leave(sock)
            finally:
                gate.open.set()
            assert holder.result().status_code == 200
        until(lambda: len(ledger_rows(s.service)) == 2)
        gone = [r for r in ledger_rows(s.service) if r["tenant_id"] == "acme"]
        assert [(r["action"], r["status"]) for r in gone] == [("failed", 499)], gone
        assert "waited for a thread" in gone[0]["error"]
        assert gate.runs == 1  # the run of the client that left was never started
        assert s.service.tenant_runs.held("acme") == 0


@pytest.fixture
def one_optimizer_thread(monkeypatch):
    """A stack's gateway runs one optimizer thread, so a second run waits for it."""
    real = gateway_config

    def one_thread(*args: Any, **kw: Any) -> ServeConfig:
        kw.setdefault("optimizer_threads", 1)
        return real(*args, **kw)

    import serve_fixtures

    monkeypatch.setattr(serve_fixtures, "gateway_config", one_thread)


# 3. the in-process model's calls


class SlowReader:
    """A local reader whose calls wait for ``open``; counts calls at once and the most at once."""

    model = "gemma-test"

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = self.calls = 0

    def prompt(self, question: str, context: str) -> str:
        return f"{context}\n{question}"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, prompt: str, max_tokens: int) -> Any:
        from types import SimpleNamespace

        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            assert self.open.wait(30)
            return SimpleNamespace(ok=True, text="Paris", prompt_tokens=3, completion_tokens=1, error=None)
        finally:
            with self.lock:
                self.running -= 1


def test_queued_local_model_calls_hold_no_threads_of_the_event_loops_pool():
    from ragtrim.serve.upstream import LocalUpstream

    reader = SlowReader()
    upstream = LocalUpstream(UpstreamConfig(name="local", kind="local"), reader=reader)
    calls = 6

    async def main() -> tuple[int, int, list[Any]]:
        await upstream.start()
        pool = anyio.to_thread.current_default_thread_limiter()
        replies: list[Any] = []

        async def one() -> None:
            replies.append(await upstream.complete({"max_tokens": 4}, "q?", "ctx"))

        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(one)
            while reader.running < 1 or upstream.limiter.statistics().tasks_waiting < calls - 1:
                await anyio.sleep(0.01)
            borrowed = pool.borrowed_tokens  # threads of the loop's own pool the queued calls hold
            probe = await anyio.to_thread.run_sync(lambda: 1)  # and the pool still has a thread to give
            reader.open.set()
        return borrowed, probe, replies

    borrowed, probe, replies = anyio.run(main)
    assert borrowed == 0 and probe == 1
    assert reader.most == 1 and reader.calls == calls and len(replies) == calls
    other = LocalUpstream(UpstreamConfig(name="local", kind="local"), reader=SlowReader())
    assert other.limiter is not upstream.limiter  # one per upstream client (so per Service), none process-wide


# 4. prompt counting off the event loop


def test_an_openai_upstream_counts_the_prompt_on_a_thread(monkeypatch):
    import ragtrim.serve.upstream as up

    seen: list[int] = []
    real = up.count_chat_tokens

    def counting(messages: Any, tokenizer: str) -> int:
        seen.append(threading.get_ident())
        return real(messages, tokenizer)

    monkeypatch.setattr(up, "count_chat_tokens", counting)
    upstream = up.OpenAIUpstream(UpstreamConfig(name="fake", base_url="http://127.0.0.1:9/v1"))

    async def main() -> tuple[int, int]:
        n = await upstream.count_prompt_tokens([{"role": "user", "content": "hello world"}], "cl100k_base", "q", "")
        return n, threading.get_ident()

    n, loop_thread = anyio.run(main)
    assert n == real([{"role": "user", "content": "hello world"}], "cl100k_base")
    assert seen and seen[0] != loop_thread


# 5. a stream whose client stops reading


def test_a_stream_whose_client_stops_reading_is_cut_and_its_upstream_closed(tmp_path, monkeypatch):
    from starlette.responses import StreamingResponse

    import serve_fixtures

    real = serve_fixtures.gateway_config
    monkeypatch.setattr(serve_fixtures, "gateway_config", lambda *a, **kw: real(*a, limits={"stream_idle_seconds": 1}, **kw))
    live: set[int] = set()
    closed = threading.Event()

    class Tracked(StreamingResponse):
        """The upstream's endless answer; ``live`` holds it until its connection is closed."""

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            live.add(id(self))
            try:
                await super().__call__(scope, receive, send)
            finally:
                live.discard(id(self))
                closed.set()

    async def endless() -> Any:
        piece = "word " * 1600  # 8 KB of content per event, for as long as someone reads
        while True:
            chunk = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await anyio.sleep(0)

    with stack(tmp_path, lambda body: Tracked(endless(), media_type="text/event-stream")) as s:
        host, port = s.url.removeprefix("http://").split(":")
        data = json.dumps(chat(stream=True)).encode()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing fills it at once
        sock.connect((host, int(port)))
        try:
            sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {s.key}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
            assert sock.recv(12) == b"HTTP/1.1 200"  # the answer began; the client reads no more of it
            assert closed.wait(60), "the upstream's stream was never closed"
            assert live == set()
            until(lambda: ledger_rows(s.service))
            [row] = final_rows(s.service)
        finally:
            sock.close()
        assert (row["action"], row["status"]) == ("ok", 200), row
        assert "client stopped reading the stream" in row["error"] and "[limits] stream_idle_seconds" in row["error"], row
        assert row["completion_tokens"] > 0 and row["cost_micro"] > 0  # charged what was carried
        spent, reserved = spent_and_reserved(s.service)
        assert reserved == 0 and spent == row["prompt_tokens"] + row["completion_tokens"]


@pytest.mark.parametrize("bad", [0, -1, True, "60"])
def test_stream_idle_seconds_must_be_a_positive_number(bad):
    with pytest.raises(ValueError, match="limits.stream_idle_seconds must be a number of seconds above 0"):
        ServeConfig.from_dict({"limits": {"stream_idle_seconds": bad}})

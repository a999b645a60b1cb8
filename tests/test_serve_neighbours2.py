"""The gateway under failure, second round (the neighbours2 hunt's findings).

1. A client that leaves while its upstream call waits (for the in-process model's one-at-a-time limiter, or for a
   connection of a full httpx pool) is not sent upstream nor charged: a 499 row, its hold released.
2. A ``/v1/optimize`` request takes its tenant's slot only once its body is in, and reading a body (any endpoint) is
   bounded by ``[limits] body_seconds``: a client that stalls mid-body gets a 408 naming the setting.
3. A ``/v1/optimize`` request cut off by the gateway's shutdown gets a JSON 503 with ``x-should-retry`` and a row.

Counts and states only: gates hold upstream answers, model calls and optimizer runs where the test needs them.
"""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from ragtrim.serve.app import create_app
from ragtrim.serve.client_left import CLIENT_POLL_SECONDS
from ragtrim.serve.config import ServeConfig, UpstreamConfig
from ragtrim.serve.schema import reservations
from ragtrim.serve.service import Service
from ragtrim.serve.testing import free_port, serve_in_thread
from ragtrim.serve.upstream import LocalUpstream
from optimizer_gates import until
from serve_fixtures import (DOCS, PEPPER, auth, budget, chat, final_rows, gateway_config, ledger_rows, spent_and_reserved,
                            stack, tenant_with_key)
from test_serve_neighbours import OPTIMIZE, answer_ok, leave, raw_post
from test_stop_when_client_leaves import spinning

from optimizer import OptimizerStopped


def held_reservations(service: Service) -> list[Any]:
    with service.engine.connect() as c:
        return c.execute(reservations.select().where(reservations.c.state == "held")).all()


def all_reservations(service: Service) -> list[Any]:
    with service.engine.connect() as c:
        return c.execute(reservations.select()).all()


# 1. a client that leaves while its upstream call waits


def queued_for_a_connection(service: Service) -> int:
    """Requests waiting for a connection of the ``fake`` upstream's httpx pool (httpcore's own queue)."""
    pool = service.upstreams["fake"]._client._transport._pool
    return sum(1 for r in pool._requests if r.is_queued())


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_whose_client_left_while_it_waited_for_an_upstream_connection_is_not_sent(tmp_path, stream):
    release = threading.Event()

    async def answer(body: dict[str, Any]) -> Any:
        if body["messages"][-1]["content"] == "hold the connection":
            await anyio.to_thread.run_sync(release.wait, 60)
        return answer_ok(body)

    with stack(tmp_path, answer, max_connections=1) as s, ThreadPoolExecutor(1) as pool:
        try:
            holder = pool.submit(s.post, messages=[{"role": "user", "content": "hold the connection"}])
            until(lambda: len(s.calls) == 1)  # the only connection is the holder's until `release`
            sock = raw_post(s.url, "/v1/chat/completions", chat(stream=stream), s.key)
            until(lambda: queued_for_a_connection(s.service) == 1)  # reserved, past every earlier check, waiting
            leave(sock)
            # before: the row stayed pending, and once the connection was free the request was sent and charged
            until(lambda: any(r["status"] == 499 for r in ledger_rows(s.service)), 15)
        finally:
            release.set()
        assert holder.result(timeout=30).status_code == 200
        rows = final_rows(s.service)
        assert len(s.calls) == 1  # only the holder's call reached the upstream
        [gone] = [r for r in rows if r["status"] == 499]
        assert (gone["action"], gone["stream"]) == ("failed", stream), gone
        assert "before it was sent upstream" in gone["error"] and "waited for a connection to the upstream" in gone["error"], gone
        assert "nothing was charged" in gone["error"]
        assert gone["cost_micro"] == gone["prompt_tokens"] == gone["completion_tokens"] == 0
        assert spent_and_reserved(s.service) == (32, 0)  # the holder's 30 + 2 tokens alone
        assert s.post().status_code == 200 and len(s.calls) == 2  # the pool serves the next request as before


def test_an_openai_call_written_before_its_client_left_goes_on_and_its_watcher_ends():
    """Only a call none of which was written is given up: once the upstream may work on it, it is answered (and charged)."""
    import asyncio

    from ragtrim.serve.fake_upstream import create_fake_upstream
    from ragtrim.serve.upstream import OpenAIUpstream

    sent: list[int] = []

    async def client_left() -> bool:  # the client leaves as soon as the request is written
        return bool(sent)

    with serve_in_thread(create_fake_upstream(latency_ms=600, answer_tokens=5)) as up:
        upstream = OpenAIUpstream(UpstreamConfig(name="fake", base_url=f"{up}/v1"))

        async def main() -> tuple[Any, int]:
            await upstream.start()
            try:
                reply = await upstream.complete(chat(), "hi", "", on_sent=lambda: sent.append(1), client_left=client_left)
                return reply, len(asyncio.all_tasks())
            finally:
                await upstream.aclose()

        reply, tasks = anyio.run(main)
    assert reply.error is None and reply.status == 200 and reply.completion_tokens == 5 and sent == [1]
    assert tasks == 1  # only the test's own task: the watcher did not outlive the call


class QueuedReader:
    """A local reader whose calls each wait for one ``turns.release()``; counts its counts and calls."""

    model = "gemma-test"

    def __init__(self) -> None:
        self.turns = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.running = self.calls = self.counts = 0

    def prompt(self, question: str, context: str) -> str:
        return f"{context}\n{question}"

    def count_tokens(self, text: str) -> int:
        with self.lock:
            self.counts += 1
        return len(text.split())

    def complete(self, prompt: str, max_tokens: int) -> Any:
        with self.lock:
            self.calls += 1
            self.running += 1
        try:
            assert self.turns.acquire(timeout=60), "the test never let the call answer"
            return SimpleNamespace(ok=True, text="Paris", prompt_tokens=3, completion_tokens=1, error=None)
        finally:
            with self.lock:
                self.running -= 1


LOCAL_CHAT = {"model": "gemma-3-270m", "messages": [{"role": "user", "content": "capital of France?"}], "max_tokens": 4}


def local_gateway(tmp_path: Any) -> tuple[Service, QueuedReader, LocalUpstream]:
    reader = QueuedReader()
    local = LocalUpstream(UpstreamConfig(name="local", kind="local"), reader=reader)
    service = Service(ServeConfig.from_dict({"preset": "bm25-pack", "default_model": "gemma-3-270m"}),
                      db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER, upstreams={"local": local})
    return service, reader, local


def pending(service: Service) -> int:
    return sum(1 for r in ledger_rows(service) if r["action"] == "pending")


def test_a_local_model_call_whose_client_left_while_it_queued_is_never_run(tmp_path):
    service, reader, local = local_gateway(tmp_path)
    with serve_in_thread(create_app(service)) as url:
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        first = raw_post(url, "/v1/chat/completions", LOCAL_CHAT, key)
        socks = []
        try:
            until(lambda: reader.running == 1)
            socks = [raw_post(url, "/v1/chat/completions", LOCAL_CHAT, key) for _ in range(2)]
            until(lambda: local.limiter.statistics().tasks_waiting == 2)  # their prompt counts wait
            reader.turns.release()  # the first answers; the two count (twice each), reserve and queue their model calls
            # one call runs and the other request waits for it: as a reserved model call, or (when the running call's
            # request queued its call before the other's second count, as a busy machine orders them) as that count
            until(lambda: reader.calls == 2 and local.limiter.statistics().tasks_waiting == 1)
            for sock in socks:
                leave(sock)  # both clients leave: one call is running, the other request's turn has not come
        finally:
            for _ in range(3):
                reader.turns.release()
        until(lambda: len(ledger_rows(service)) == 3 and pending(service) == 0)
        rows = final_rows(service)
        first.close()
    assert reader.calls == 2  # before: 3, the call of a client that had left run all the same
    assert sorted(r["status"] for r in rows) == [200, 200, 499]
    [gone] = [r for r in rows if r["status"] == 499]
    assert gone["action"] == "failed" and "waited for the local model" in gone["error"], gone
    assert "call waited" in gone["error"] or "prompt count waited" in gone["error"], gone  # either turn, never run
    assert gone["completion_tokens"] == gone["cost_micro"] == 0 and held_reservations(service) == []
    charged = [r for r in rows if r["status"] == 200]
    with service.engine.connect() as c:
        from ragtrim.serve.schema import budget_usage

        spent = sum(int(u.spent) for u in c.execute(budget_usage.select()).all())
    assert spent == sum(r["prompt_tokens"] + r["completion_tokens"] for r in charged)


def test_a_local_prompt_count_whose_client_left_while_it_queued_is_never_run(tmp_path):
    service, reader, local = local_gateway(tmp_path)
    with serve_in_thread(create_app(service)) as url:
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 100_000)
        first = raw_post(url, "/v1/chat/completions", LOCAL_CHAT, key)
        try:
            until(lambda: reader.running == 1)
            counted = reader.counts
            sock = raw_post(url, "/v1/chat/completions", LOCAL_CHAT, key)
            until(lambda: local.limiter.statistics().tasks_waiting == 1)  # its count waits for the model
            leave(sock)
        finally:
            reader.turns.release()
        until(lambda: len(ledger_rows(service)) == 2 and pending(service) == 0)
        rows = final_rows(service)
        first.close()
    assert reader.counts == counted and reader.calls == 1  # before: counted twice, reserved, then let go
    [gone] = [r for r in rows if r["status"] == 499]
    assert gone["action"] == "failed" and "waited for the local model" in gone["error"], gone
    assert len(all_reservations(service)) == 1  # the first request's alone: the one that left reserved nothing


# 2. a tenant's slot and a deadline on reading the body


def stalled(url: str, path: str, key: str, body: dict[str, Any], sent: int = 20) -> socket.socket:
    """A POST whose headers and first ``sent`` bytes of body are sent, and then nothing more."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:sent])
    return sock


@pytest.fixture
def reading(monkeypatch) -> threading.Event:
    """Set once a ``/v1/optimize`` request is past its key check and reading its body."""
    import ragtrim.serve.optimize as optimize

    entered = threading.Event()
    real = optimize.read_json

    async def read_json(request: Any, limits: Any) -> Any:
        entered.set()
        return await real(request, limits)

    monkeypatch.setattr(optimize, "read_json", read_json)
    return entered


def test_an_optimize_stalled_mid_body_holds_no_slot_of_its_tenant(tmp_path, reading):
    config = gateway_config("http://127.0.0.1:9", limits={"tenant_optimizer_runs": 1})
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    with serve_in_thread(create_app(service)) as url:
        key = tenant_with_key(service, "acme")
        sock = stalled(url, "/v1/optimize", key, OPTIMIZE)
        try:
            until(reading.is_set)  # past its key check, reading its body
            # before: the stalled request held the tenant's only slot for as long as its socket stayed open
            r = httpx.post(f"{url}/v1/optimize", json=OPTIMIZE, headers=auth(key), timeout=30)
            assert r.status_code == 200, r.text
            assert service.tenant_runs.held("acme") == 0
        finally:
            leave(sock)
        until(lambda: len(ledger_rows(service)) == 2)
        [gone] = [row for row in ledger_rows(service) if row["status"] != 200]
        assert (gone["endpoint"], gone["status"]) == ("optimize", 499) and "sending its request body" in gone["error"], gone


@pytest.mark.parametrize("path", ["/v1/optimize", "/v1/chat/completions"])
def test_a_body_that_stalls_past_body_seconds_is_a_408_naming_the_setting(tmp_path, path):
    config = gateway_config("http://127.0.0.1:9", limits={"body_seconds": 1})
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    with serve_in_thread(create_app(service)) as url:
        key = tenant_with_key(service, "acme")
        body = OPTIMIZE if path == "/v1/optimize" else chat(documents=DOCS)
        sock = stalled(url, path, key, body)
        sock.settimeout(30)  # before: no answer ever came (the read had no deadline)
        try:
            received = b""
            while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
                piece = sock.recv(65536)
                if not piece:
                    break
                received += piece
        finally:
            sock.close()
        head, _, text = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), received
        error = json.loads(text)["error"]
        assert error["code"] == "request_timeout" and "[limits] body_seconds" in error["message"], error
        assert "20 bytes" in error["message"], error
        until(lambda: ledger_rows(service))
        [row] = ledger_rows(service)
        assert (row["action"], row["status"]) == ("failed", 408) and "[limits] body_seconds" in row["error"], row
        assert service.tenant_runs.held("acme") == 0


def test_a_slow_but_steady_body_is_read_to_its_end(tmp_path):
    # body_seconds bounds a stall (no bytes for that long), not the whole upload: before, a body sent at 280 kbit/s
    # could never finish a 1 MiB body within the default 30 s, and the SDKs sent it again three times
    config = gateway_config("http://127.0.0.1:9", limits={"body_seconds": 2})
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    with serve_in_thread(create_app(service)) as url:
        key = tenant_with_key(service, "acme")
        data = json.dumps({**OPTIMIZE, "chunks": [*OPTIMIZE["chunks"], "padding " * 2500]}).encode()  # ~20 KB
        host, port = url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        try:
            sock.sendall(f"POST /v1/optimize HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode())
            pieces = [data[i : i + max(1, len(data) // 12)] for i in range(0, len(data), max(1, len(data) // 12))]
            for piece in pieces:  # about 12 x 0.35 s (~5 KB/s): past body_seconds in all, never a stall of it
                sock.sendall(piece)
                threading.Event().wait(0.35)
            sock.settimeout(30)
            answer = sock.recv(65536)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_a_body_that_trickles_is_a_408_once_past_its_deadline(tmp_path):
    # a byte every half second never stalls a 1 s body_seconds; before, the request stayed open as long as the client
    # liked (a 1 MB body at one byte per 29 s: about a year); now past body_seconds it must average 1 KiB/s
    config = gateway_config("http://127.0.0.1:9", limits={"body_seconds": 1})
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    with serve_in_thread(create_app(service)) as url:
        key = tenant_with_key(service, "acme")
        sock = stalled(url, "/v1/optimize", key, OPTIMIZE, sent=0)
        sock.settimeout(0.5)
        answer = b""
        try:
            for _ in range(60):  # at most 30 s of trickling
                try:
                    sock.sendall(b" ")
                    answer += sock.recv(65536)
                except (TimeoutError, socket.timeout):
                    continue
                except OSError:
                    break
                if answer:
                    break
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


@pytest.mark.parametrize("bad", [0, -1, True, "30", 3601])
def test_body_seconds_must_be_a_positive_number(bad):
    with pytest.raises(ValueError, match="limits.body_seconds must be a number of seconds above 0"):
        ServeConfig.from_dict({"limits": {"body_seconds": bad}})


def test_body_seconds_defaults_to_thirty():
    assert ServeConfig().limits.body_seconds == 30
    assert ServeConfig.from_dict({"limits": {"body_seconds": 2.5}}).limits.body_seconds == 2.5


# 3. /v1/optimize cut off by the shutdown


class Gateway:
    """A uvicorn server in a thread with ``--graceful-timeout`` ``graceful`` s; :meth:`shut_down` stops it as SIGTERM does."""

    def __init__(self, app: Any, graceful: float) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical",
                                                    access_log=False, lifespan="on", timeout_graceful_shutdown=graceful))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        until(lambda: self.server.started)
        self.url = f"http://127.0.0.1:{self.port}"

    def shut_down(self) -> None:
        self.server.should_exit = True  # what uvicorn's SIGTERM handler does
        self.thread.join(60)
        assert not self.thread.is_alive()


def test_optimize_requests_cut_off_by_the_shutdown_get_a_json_503_and_a_row(tmp_path, reading):
    config = gateway_config("http://127.0.0.1:9", optimizer_threads=1)
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    spin, _ = spinning(service)  # every run works until it is stopped
    key = tenant_with_key(service, "acme")
    gateway = Gateway(create_app(service), graceful=1)
    got: dict[str, Any] = {}

    def send(name: str) -> None:
        got[name] = httpx.post(f"{gateway.url}/v1/optimize", json=OPTIMIZE, headers=auth(key), timeout=60)

    threads = [threading.Thread(target=send, args=(name,)) for name in ("running", "queued")]
    sock = None
    try:
        threads[0].start()
        assert spin.started.wait(30)
        threads[1].start()
        until(lambda: service.fair.statistics().waiting == {"acme": 1})
        reading.clear()
        sock = stalled(gateway.url, "/v1/optimize", key, OPTIMIZE)  # and one still sending its body
        until(reading.is_set)
        gateway.shut_down()
        for t in threads:
            t.join(30)
        sock.settimeout(30)
        answer = sock.recv(65536)
        # the running run stops too: before, its thread spun on for no one, up to [limits] optimize_seconds
        until(spin.ended.is_set, 15)
        assert isinstance(spin.stopped_by, OptimizerStopped) and "cancelled" in spin.stopped_by.why, spin.stopped_by
    finally:
        spin.release.set()
        if sock is not None:
            sock.close()
    for name in ("running", "queued"):
        r = got[name]
        # before: uvicorn's plain-text 500, which the OpenAI SDKs send again, and no ledger row
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/json"), (name, r.status_code, r.text)
        assert r.headers["x-should-retry"] == "true"  # nothing was charged: sending it again is safe
        error = r.json()["error"]
        assert error["code"] == "gateway_shutdown" and "nothing was charged" in error["message"], error
        assert r.headers["X-Ragtrim-Request-Id"] in error["message"]
    assert answer.startswith(b"HTTP/1.1 503") and b"gateway_shutdown" in answer, answer
    until(lambda: len(ledger_rows(service)) == 3, 15)  # a row's write may end on its thread after the loop has gone
    rows = ledger_rows(service)
    assert len(rows) == 3 and {r["id"] for r in rows} >= {got[n].headers["X-Ragtrim-Request-Id"] for n in got}
    for row in rows:
        assert (row["endpoint"], row["action"], row["status"]) == ("optimize", "failed", 503), row
        assert "cut off by the gateway's shutdown" in row["error"] and row["cost_micro"] == 0, row


# the review of the fixes above: a retry of a request the upstream had whole is never given up


class DroppingUpstream:
    """An OpenAI-style upstream on a raw socket: the first ``R`` it reads whole it drops without an answer (a stale
    keep-alive connection, resendable), and it answers ``Q`` only once ``q_release`` is set."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.q_release = threading.Event()
        self.port = free_port()
        threading.Thread(target=lambda: anyio.run(self._serve), daemon=True).start()
        until(self._listening)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    async def _serve(self) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        await listener.serve(self._connection)

    async def _connection(self, stream: Any) -> None:
        from anyio.streams.buffered import BufferedByteReceiveStream

        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                head = await reader.receive_until(b"\r\n\r\n", 65536)
                size = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
                body = json.loads(await reader.receive_exactly(size))
                question = body["messages"][-1]["content"]
                if question == "ping":  # the test's own probe of the listener
                    continue
                self.received.append(question)
                if question == "R" and self.received.count("R") == 1:
                    await anyio.sleep(0.12)
                    await stream.aclose()  # the whole request arrived; dropped without an answer
                    return
                if question == "Q":
                    await anyio.to_thread.run_sync(self.q_release.wait, 30)
                data = json.dumps({"id": "c1", "object": "chat.completion", "model": body["model"],
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}}).encode()
                await stream.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError, StopIteration):
            pass


def test_a_retry_of_a_request_the_upstream_had_whole_is_charged_when_its_client_leaves(tmp_path):
    upstream = DroppingUpstream()
    config = gateway_config(f"http://127.0.0.1:{upstream.port}", {"max_connections": 1})
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    with serve_in_thread(create_app(service)) as url:
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 10**6)
        ask = lambda q: chat(messages=[{"role": "user", "content": q}])  # noqa: E731
        assert httpx.post(f"{url}/v1/chat/completions", json=ask("W"), headers=auth(key), timeout=30).status_code == 200
        gone = raw_post(url, "/v1/chat/completions", ask("R"), key)  # written whole on the kept connection, then dropped
        until(lambda: upstream.received.count("R") == 1)
        with ThreadPoolExecutor(1) as pool:
            q = pool.submit(httpx.post, f"{url}/v1/chat/completions", json=ask("Q"), headers=auth(key), timeout=30)
            until(lambda: "Q" in upstream.received and service.upstreams["fake"].retries == 1)
            until(lambda: queued_for_a_connection(service) == 1)  # R's retry waits for Q's connection
            leave(gone)  # R's client leaves while its retry waits
            threading.Event().wait(4 * CLIENT_POLL_SECONDS)  # the watcher asks every CLIENT_POLL_SECONDS: time to notice
            upstream.q_release.set()
            assert q.result().status_code == 200
        until(lambda: len(final_rows(service)) == 3)
        rows = final_rows(service)
    # before: R's row was a 499 "before it was sent upstream (it was not sent); nothing was charged", for a request
    # the upstream had whole; now its retry goes out (the upstream may have the first) and is charged, as before 499s
    assert upstream.received == ["W", "R", "Q", "R"], upstream.received
    assert [r["status"] for r in rows] == [200, 200, 200] and all(r["cost_micro"] > 0 for r in rows), rows

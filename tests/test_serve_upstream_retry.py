"""The upstream client against a server that drops connections: what is sent again and what is not.

A tiny HTTP/1.1 server on loopback plays the upstream. Its script says, per request it reads,
whether to answer, to close the connection without a word (what a server does to a keep-alive
connection it times out just as the request arrives), to close it without a word after holding
the request a while (the upstream may have started: not sent again), or to send the status line
and headers and then close mid-body (the upstream did the work; that must not be sent again).
Only a failure the upstream cannot have started on is resent: no connection, or a reused
keep-alive connection closed as the request arrived.
"""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("httpx")

from ragtrim.serve.config import ServeConfig, UpstreamConfig  # noqa: E402
from ragtrim.serve.upstream import OpenAIUpstream, UpstreamError, completion_events  # noqa: E402

ANSWER = json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"}}],
                     "usage": {"prompt_tokens": 5, "completion_tokens": 1}}).encode()
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


class Script:
    """Plays each request it reads by the next action: "answer", "slow" (answer after 0.1 s), "drop" (close at once),
    "hold" (close after 0.6 s without a word) or "half" (headers, then close)."""

    def __init__(self, actions: list[str], default: str = "answer") -> None:
        self.actions, self.default = list(actions), default
        self.requests = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                self.requests += 1
                action = self.actions.pop(0) if self.actions else self.default
                if action == "hold":
                    await asyncio.sleep(0.6)  # longer than a keep-alive race: the upstream had the request
                if action in ("drop", "hold"):
                    break
                if action == "slow":
                    await asyncio.sleep(0.1)
                if action == "half":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"choi")
                    await writer.drain()
                    break
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER) + ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _with_server(script: Script, body, **config):  # noqa: ANN001, ANN003
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    up = OpenAIUpstream(UpstreamConfig(name="u", base_url=f"http://127.0.0.1:{port}/v1", **config))
    await up.start()
    try:
        return await body(up)
    finally:
        await up.aclose()
        server.close()
        await server.wait_closed()


def test_a_keep_alive_connection_closed_under_the_request_is_replaced_and_the_request_answered():
    async def two_calls(up: OpenAIUpstream):
        first = await up.complete(BODY, "hi", "")
        second = await up.complete(BODY, "hi", "")  # the reused connection is dropped: sent again on a new one
        return first, second, up.retries

    script = Script(["answer", "drop", "answer"])
    first, second, retries = asyncio.run(_with_server(script, two_calls))
    assert (first.status, second.status, second.prompt_tokens, second.completion_tokens) == (200, 200, 5, 1)
    assert retries == 1 and script.requests == 3 and script.connections == 2

    # without retries the same script gives the old answer: a 502 that names the failure
    script = Script(["answer", "drop"])
    first, second, retries = asyncio.run(_with_server(script, two_calls, connection_retries=0))
    assert first.status == 200 and second.status == 502 and retries == 0
    assert "upstream unreachable" in second.error and script.requests == 2


def test_retries_stop_at_the_limit_and_a_stream_is_retried_before_its_first_byte():
    async def warm_then_call(up: OpenAIUpstream):
        # three requests at once leave three idle keep-alive connections in the pool
        await asyncio.gather(*(up.complete(BODY, "hi", "") for _ in range(3)))
        return await up.complete(BODY, "hi", ""), up.retries

    script = Script(["slow"] * 3, default="drop")  # then every reused connection is closed under its request
    reply, retries = asyncio.run(_with_server(script, warm_then_call, connection_retries=2))
    assert script.connections == 3
    assert reply.status == 502 and retries == 2 and script.requests == 3 + 3  # 1 + 2, then it gives up

    async def stream(up: OpenAIUpstream):
        await up.complete(BODY, "hi", "")
        pieces = [p async for p in await up.stream({**BODY, "stream": True}, "hi", "")]
        return b"".join(pieces), up.retries

    script = Script(["answer", "drop"])
    data, retries = asyncio.run(_with_server(script, stream))
    # the script answers in JSON even to a stream request: the client gets it as the events that carry it
    assert data == b"".join(completion_events(json.loads(ANSWER))) and retries == 1 and script.requests == 3

    async def fresh_stream(up: OpenAIUpstream):
        return [p async for p in await up.stream({**BODY, "stream": True}, "hi", "")]

    with pytest.raises(UpstreamError) as err:
        asyncio.run(_with_server(Script([], default="drop"), fresh_stream, connection_retries=1))
    assert err.value.status == 502


def test_a_request_the_upstream_may_have_started_is_not_sent_again():
    """A connection of its own closed after the request was read, or a reused one closed after holding it 0.6 s."""

    async def one_call(up: OpenAIUpstream):
        return await up.complete(BODY, "hi", ""), up.retries

    script = Script([], default="drop")
    reply, retries = asyncio.run(_with_server(script, one_call))
    assert reply.status == 502 and retries == 0 and script.requests == 1

    async def two_calls(up: OpenAIUpstream):
        first = await up.complete(BODY, "hi", "")
        return first, await up.complete(BODY, "hi", ""), up.retries

    script = Script(["answer", "hold"], default="answer")
    first, second, retries = asyncio.run(_with_server(script, two_calls))
    assert first.status == 200 and second.status == 502 and "RemoteProtocolError" in second.error
    assert retries == 0 and script.requests == 2  # one client request, one upstream call


def test_a_refused_connection_is_sent_again():
    """Nothing listens: the upstream never saw the request, so it is tried 1 + connection_retries times."""
    from ragtrim.serve.testing import free_port

    async def one_call(up: OpenAIUpstream):
        return await up.complete(BODY, "hi", ""), up.retries

    async def with_nobody() -> tuple:
        up = OpenAIUpstream(UpstreamConfig(name="u", base_url=f"http://127.0.0.1:{free_port()}/v1", connection_retries=2))
        await up.start()
        try:
            return await one_call(up)
        finally:
            await up.aclose()

    reply, retries = asyncio.run(with_nobody())
    assert reply.status == 502 and "ConnectError" in reply.error and retries == 2


def test_a_failure_after_the_response_began_is_never_sent_again():
    """Headers came, then the body broke: the upstream did the work, so one request, one 502."""

    async def one_call(up: OpenAIUpstream):
        return await up.complete(BODY, "hi", ""), up.retries

    script = Script(["half"])
    reply, retries = asyncio.run(_with_server(script, one_call))
    assert reply.status == 502 and retries == 0 and script.requests == 1


def test_retry_and_keep_alive_settings_are_checked_with_the_value_named():
    base = {"upstreams": {"u": {"base_url": "http://127.0.0.1:1/v1"}}, "models": {"m": {"upstream": "u"}}}
    cfg = ServeConfig.from_dict(base)
    assert (cfg.upstreams["u"].keepalive_expiry, cfg.upstreams["u"].connection_retries) == (4.0, 2)
    for key, value, words in (("connection_retries", -1, "0 to 10"), ("connection_retries", 1.5, "whole number"),
                              ("keepalive_expiry", "soon", "seconds")):
        bad = {**base, "upstreams": {"u": {**base["upstreams"]["u"], key: value}}}
        with pytest.raises(ValueError, match=words) as err:
            ServeConfig.from_dict(bad)
        assert repr(value) in str(err.value)


def test_a_resend_is_counted_on_metrics_per_upstream(tmp_path):
    """The service wires each OpenAI-compatible upstream's resends to ragtrim_upstream_retries_total."""
    from ragtrim.serve.metrics import Metrics
    from ragtrim.serve.service import Service

    cfg = ServeConfig.from_dict({"upstreams": {"u": {"base_url": "http://127.0.0.1:1/v1"}}, "models": {"gpt-4o": {"upstream": "u"}}})
    metrics = Metrics()
    service = Service(cfg, db_url=f"sqlite:///{tmp_path / 'db.sqlite'}", metrics=metrics, pepper=b"p" * 32)
    up = service.upstreams["u"]
    script = Script(["answer", "drop", "answer"])

    async def two_calls(_):  # noqa: ANN001 - the service's own client, pointed at the script's port
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        up.config = UpstreamConfig(name="u", base_url=f"http://127.0.0.1:{port}/v1")
        await up.start()
        try:
            await up.complete(BODY, "hi", "")
            return await up.complete(BODY, "hi", "")
        finally:
            await up.aclose()
            server.close()
            await server.wait_closed()

    reply = asyncio.run(two_calls(None))
    assert reply.status == 200
    text = metrics.exposition()[0].decode()
    assert 'ragtrim_upstream_retries_total{upstream="u"} 1.0' in text

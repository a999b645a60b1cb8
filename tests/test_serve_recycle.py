"""Connection recycling: a keep-alive connection is told to close once it is ``connection_max_age`` old,
so clients reconnect and load spreads over the workers again after one restarts."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from ragtrim.serve.app import create_app
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.recycle import ConnectionRecycler
from ragtrim.serve.service import Service
from ragtrim.serve.testing import serve_in_thread


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def call(mw, *, client=("10.0.0.1", 5000), scope_type="http", headers=(), body_parts=(b"ok",)):
    """Run one request through ``mw``; return the messages the server would send."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        for i, part in enumerate(body_parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(body_parts) - 1})

    mw.app = app
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(mw({"type": scope_type, "client": client}, None, send))
    return sent


def start_headers(messages):
    return [m for m in messages if m["type"] == "http.response.start"][0]["headers"]


def test_close_is_added_once_the_connection_is_old_enough_then_the_port_starts_over():
    clock = Clock()
    mw = ConnectionRecycler(None, max_age=5, clock=clock)
    assert start_headers(call(mw)) == []
    clock.now = 4.9
    assert start_headers(call(mw)) == []
    clock.now = 5.0
    assert start_headers(call(mw)) == [(b"connection", b"close")]
    clock.now = 5.1  # the client's next connection (same port or not) is new
    assert start_headers(call(mw)) == []


def test_each_connection_has_its_own_age():
    clock = Clock()
    mw = ConnectionRecycler(None, max_age=5, clock=clock)
    call(mw, client=("10.0.0.1", 1))
    clock.now = 3.0
    call(mw, client=("10.0.0.1", 2))
    clock.now = 6.0
    assert start_headers(call(mw, client=("10.0.0.1", 1))) == [(b"connection", b"close")]
    assert start_headers(call(mw, client=("10.0.0.1", 2))) == []


def test_an_existing_connection_header_is_replaced_and_the_body_is_untouched():
    clock = Clock()
    mw = ConnectionRecycler(None, max_age=1, clock=clock)
    call(mw)
    clock.now = 2.0
    sent = call(mw, headers=[(b"content-type", b"text/plain"), (b"Connection", b"keep-alive")], body_parts=(b"a", b"b"))
    assert start_headers(sent) == [(b"content-type", b"text/plain"), (b"connection", b"close")]
    assert [m.get("body") for m in sent[1:]] == [b"a", b"b"]


def test_off_without_client_and_for_other_scopes():
    clock = Clock()
    off = ConnectionRecycler(None, max_age=0, clock=clock)
    on = ConnectionRecycler(None, max_age=1, clock=clock)
    for mw in (off, on):
        call(mw)
        call(mw, client=None)
        call(mw, client=("203.0.113.9", 0))  # uvicorn's X-Forwarded-For address: not one connection
        call(mw, scope_type="websocket")
    clock.now = 10.0
    assert start_headers(call(off)) == []
    assert start_headers(call(on, client=None)) == []
    assert start_headers(call(on, client=("203.0.113.9", 0))) == []
    assert start_headers(call(on)) == [(b"connection", b"close")]
    assert on._first_seen == {}  # the websocket, forwarded and client-less scopes were never tracked


def test_the_table_is_bounded_and_forgets_the_oldest_first():
    clock = Clock()
    mw = ConnectionRecycler(None, max_age=5, clock=clock, max_tracked=2)
    for port in (1, 2, 3):
        call(mw, client=("h", port))
    assert list(mw._first_seen) == [("h", 2), ("h", 3)]
    clock.now = 6.0
    assert start_headers(call(mw, client=("h", 1))) == []  # forgotten: seen as new
    assert start_headers(call(mw, client=("h", 3))) == [(b"connection", b"close")]


@pytest.mark.parametrize("bad", [-1, "15", True, None])
def test_bad_max_age_names_the_value(bad):
    with pytest.raises(ValueError, match="connection_max_age"):
        ConnectionRecycler(None, max_age=bad)
    with pytest.raises(ValueError, match="connection_max_age"):
        ServeConfig.from_dict({"connection_max_age": bad})


def _port_app(max_age: float):
    async def port(request):
        return JSONResponse({"port": request.client.port})

    async def stream(request):
        async def parts():
            for i in range(3):
                yield f"{i},".encode()
                await asyncio.sleep(0.01)
        return StreamingResponse(parts())

    app = Starlette(routes=[Route("/port", port), Route("/stream", stream)])
    return ConnectionRecycler(app, max_age=max_age)


def test_a_real_keep_alive_client_reconnects_after_max_age_and_loses_nothing():
    with serve_in_thread(_port_app(0.3)) as base, httpx.Client(base_url=base, timeout=10) as client:
        first = [client.get("/port") for _ in range(3)]
        assert {r.json()["port"] for r in first} == {first[0].json()["port"]}  # one kept-alive connection
        assert all("close" not in r.headers.get("connection", "") for r in first)
        time.sleep(0.35)
        closing = client.get("/stream")  # a streamed response completes before the close
        assert closing.text == "0,1,2," and closing.headers["connection"] == "close"
        after = client.get("/port")
        assert after.status_code == 200 and after.json()["port"] != first[0].json()["port"]


def test_without_recycling_the_connection_stays():
    with serve_in_thread(_port_app(0)) as base, httpx.Client(base_url=base, timeout=10) as client:
        ports = [client.get("/port").json()["port"]]
        time.sleep(0.35)
        ports.append(client.get("/port").json()["port"])
        assert ports[0] == ports[1]


def test_the_gateway_uses_the_configured_max_age():
    app = create_app(Service(ServeConfig.from_dict({"connection_max_age": 7}), db_url="sqlite://", pepper=b"x" * 32))
    [mw] = [m for m in app.user_middleware if m.cls is ConnectionRecycler]
    assert mw.kwargs == {"max_age": 7}

"""Close a client connection once it is ``max_age`` seconds old, so load spreads again after a worker restarts.

With several workers on one listening socket, each new TCP connection goes to whichever
worker accepts it, and then stays there for as long as the client keeps it alive. When a
worker dies, its clients reconnect while the replacement is still starting, so every
connection lands on the survivor, and HTTP keep-alive keeps it there: in the load test
(``bench/load_serve.py --kill-at 0.3``, BENCHMARKS.md) the replacement served no request at
all for the rest of the run and throughput halved. nginx's ``keepalive_time`` and Envoy's
``max_connection_duration`` bound a connection's life for the same reason.

The middleware remembers when it first saw each connection (the client's address and port,
unique among a worker's open connections) and adds ``Connection: close`` to the first response
after ``max_age``; the server then closes the connection once that response is sent, and the
client opens a new one, which any worker may accept. A connection is never cut mid-response.
A closed connection's entry stays until its port is reused (its next connection is then
recycled after one response) or the table is full (``max_tracked``, oldest first).

Behind a proxy whose ``X-Forwarded-For`` uvicorn trusts (``--forwarded-allow-ips``, by default
127.0.0.1), uvicorn replaces the client address with the forwarded one and port 0, so
connections cannot be told apart: such requests are left alone, and the proxy's own limit
(nginx ``keepalive_time``, Envoy ``max_connection_duration``) does the job. The same recycling
also helps several replicas behind a connection-level load balancer, such as a Kubernetes Service.

>>> import asyncio
>>> async def app(scope, receive, send):
...     await send({"type": "http.response.start", "status": 200, "headers": []})
...     await send({"type": "http.response.body", "body": b"ok"})
>>> now = [0.0]
>>> mw = ConnectionRecycler(app, max_age=10, clock=lambda: now[0])
>>> def headers_after(t):
...     now[0], sent = t, []
...     async def send(message): sent.append(message)
...     asyncio.run(mw({"type": "http", "client": ("10.0.0.1", 5000)}, None, send))
...     return sent[0]["headers"]
>>> headers_after(0.0), headers_after(9.0), headers_after(10.0)
([], [], [(b'connection', b'close')])
>>> headers_after(11.0)  # a new connection from that port starts a new life
[]
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Any, Send], Awaitable[None]]


def check_max_age(value: Any) -> None:
    """Raise ValueError unless ``value`` is a number of seconds >= 0 (the ``connection_max_age`` setting)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"connection_max_age must be a number of seconds >= 0 (0: never close), got {value!r}")


class ConnectionRecycler:
    """ASGI middleware: ``Connection: close`` on the first response of a connection older than ``max_age`` s.

    ``max_age`` 0 turns it off. ``clock`` is a monotonic clock in seconds (tests pass their own).
    """

    def __init__(self, app: ASGIApp, *, max_age: float, clock: Callable[[], float] = time.monotonic,
                 max_tracked: int = 20_000) -> None:
        check_max_age(max_age)
        if isinstance(max_tracked, bool) or not isinstance(max_tracked, int) or max_tracked < 1:
            raise ValueError(f"max_tracked must be a positive integer, got {max_tracked!r}")
        self.app, self.max_age, self.clock, self.max_tracked = app, float(max_age), clock, max_tracked
        self._first_seen: dict[tuple[Any, ...], float] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        client = scope.get("client")
        if scope.get("type") != "http" or not self.max_age or not client or not client[1]:  # port 0: a forwarded address
            await self.app(scope, receive, send)
            return
        if not self._expired(tuple(client)):
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message.get("type") == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)

    def _expired(self, key: tuple[Any, ...]) -> bool:
        """Whether connection ``key`` has reached ``max_age`` (then it is forgotten: its next use is a new connection)."""
        now = self.clock()
        first = self._first_seen.get(key)
        if first is None:
            if len(self._first_seen) >= self.max_tracked:
                del self._first_seen[next(iter(self._first_seen))]  # the oldest entry (insertion order)
            self._first_seen[key] = now
            return False
        if now - first < self.max_age:
            return False
        del self._first_seen[key]
        return True

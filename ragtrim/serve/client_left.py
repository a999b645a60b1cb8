"""A request whose client disconnected while it waited: what stops it, and the one watcher that notices.

Work done for a client that left is work for no one, and an upstream call sent for it is charged. So a
request asks ``client_left`` (its ``Request.is_disconnected``) where it waits: once it has its turn (an
optimizer thread, the in-process model), and, while something runs or waits that can still be given up,
every :data:`CLIENT_POLL_SECONDS` through :func:`when_client_leaves` (an optimizer run's deadline is
stopped; an upstream call still waiting for a connection is cancelled).

>>> import anyio
>>> async def main():
...     asked, gone = [], []
...     async def client_left():
...         asked.append(1)
...         return len(asked) == 3
...     await when_client_leaves(client_left, lambda: gone.append("stopped"), every=0)
...     return len(asked), gone
>>> anyio.run(main)
(3, ['stopped'])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from optimizer.lazy import lazy_import

CLIENT_POLL_SECONDS = 0.25  # how often a request that runs or waits asks whether its client is still there


async def when_client_leaves(client_left: Callable[[], Awaitable[bool]], then: Callable[[], None],
                             every: float = CLIENT_POLL_SECONDS) -> None:
    """Ask ``client_left`` every ``every`` seconds; once it says yes, call ``then()`` and return. A watcher task beside
    the work it may stop, cancelled when that work ends."""
    anyio = lazy_import("anyio", extra="serve", purpose="ragtrim serve")
    while not await client_left():
        await anyio.sleep(every)
    then()


class ClientLeft(Exception):
    """The request's client disconnected: its optimizer run was not started (``started`` False: it waited for a
    thread) or was stopped at its next check (``started`` True). ``when`` says which, for the request's 499.

    >>> ClientLeft(started=True).when
    'during its optimizer run, so the run was stopped'
    """

    def __init__(self, *, started: bool) -> None:
        self.started = started
        self.when = ("during its optimizer run, so the run was stopped" if started
                     else "while its optimizer run waited for a thread, so it was not run")
        super().__init__(f"the client disconnected {self.when}")


class LeftBeforeSent(Exception):
    """The request's client disconnected while its upstream call waited (``when``: for what), before any of it was
    written upstream: the call was given up, so the upstream never had it (nothing to charge).

    >>> LeftBeforeSent("while its call waited for the local model").when
    'while its call waited for the local model'
    """

    def __init__(self, when: str) -> None:
        self.when = when
        super().__init__(f"the client disconnected {when}")


class LeftMidway(Exception):
    """The request's client disconnected after ``done`` of its ``total`` inputs were embedded in-process: the rest were
    not (the work stops at its next turn), and what was done is charged.

    >>> LeftMidway(64, 640).when
    'after 64 of 640 inputs were embedded, so the other 576 were not'
    """

    def __init__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        self.when = f"after {done} of {total} inputs were embedded, so the other {total - done} were not"
        super().__init__(f"the client disconnected {self.when}")


WAITED_FOR_CONNECTION = "while its call waited for a connection to the upstream (max_connections)"
WAITED_FOR_LOCAL_MODEL = "while its call waited for the local model (it answers one call at a time)"
COUNT_WAITED_FOR_LOCAL_MODEL = "while its prompt count waited for the local model (it answers one call at a time)"

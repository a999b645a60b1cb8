"""Stand-ins for a gateway's optimizer pipelines that tests hold and release, to see queues as they are.

``StandIn(service)`` answers ``service.pipeline(...)`` with itself and forwards to the real pipeline;
:class:`Gate` makes every run wait until ``gate.open`` is set, counting runs begun (``runs``), running
(``running``) and the most at once (``most``). :func:`until` polls a condition (a test's own deadline).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable


class StandIn:
    """Stands in for ``service.pipeline``: ``service.pipeline = stand_in.pipeline``; runs go to :meth:`run`."""

    def __init__(self, service: Any) -> None:
        self.real = service.pipeline
        self.lock = threading.Lock()

    def pipeline(self, preset: str, tokenizer: str, *rest: Any) -> Any:
        self.inner = self.real(preset, tokenizer, *rest)
        return self

    def full_tokens(self, chunks: Any) -> int:
        return self.inner.full_tokens(chunks)


class Gate(StandIn):
    """Every run waits for ``open`` (at most 60 s, else the run fails naming the test's mistake)."""

    def __init__(self, service: Any) -> None:
        super().__init__(service)
        self.open = threading.Event()
        self.running = self.most = self.runs = 0

    def run(self, query: str, chunks: Any, budget: Any = None, **kw: Any) -> Any:
        with self.lock:
            self.running += 1
            self.runs += 1
            self.most = max(self.most, self.running)
        try:
            assert self.open.wait(60), "the test never opened the gate"
            return self.inner.run(query, chunks, budget=budget, **kw)
        finally:
            with self.lock:
                self.running -= 1


def until(check: Callable[[], Any], seconds: float = 30.0) -> None:
    """Poll ``check`` every 20 ms until it is true; an AssertionError after ``seconds``."""
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)

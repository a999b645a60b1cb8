"""A time limit on one optimizer run, which another thread may also stop: :meth:`optimizer.Pipeline.run`'s ``timeout``.

The limit is cooperative: the run carries a :class:`Deadline` on its
:class:`~optimizer.stage.StageContext` (``context.deadline``; no global state, no signals, so
runs on several threads each keep their own), and checks it between steps and inside the long
loops (sentence embeddings in slices, sentence scoring, near-duplicate blocks, the packer). Past
the limit the run stops at the next check and raises :class:`OptimizerTimeout`: the work stops,
the thread is free again, nothing half-done is returned.

>>> d = Deadline(0.0)
>>> d.expired()
True
>>> try:
...     d.check("before stage 'compress-sentences'")
... except OptimizerTimeout as exc:
...     print(exc.seconds, exc.where)
0.0 before stage 'compress-sentences'

Another thread stops a run early with :meth:`Deadline.stop` (e.g. a server whose client hung up): the run's
next check raises :class:`OptimizerStopped`, naming why. ``Deadline(math.inf)`` never expires; it only stops.

>>> import math
>>> d = Deadline(math.inf)
>>> d.expired()
False
>>> d.stop("the client disconnected")
>>> try:
...     d.check("in stage 'rerank-bm25'")
... except OptimizerStopped as exc:
...     print(exc.why, "|", exc.where)
the client disconnected | in stage 'rerank-bm25'

A stage of your own checks it in its long loops with :meth:`~optimizer.stage.StageContext.check_deadline`
(a no-op without a deadline; about 0.1 µs with one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class OptimizerTimeout(TimeoutError):
    """An optimizer run stopped because it went past its time limit (``Pipeline.run(..., timeout=...)``).

    ``seconds`` is the limit, ``elapsed`` how long the run had taken when it stopped, ``where`` the
    check that stopped it (e.g. ``"in stage 'compress-sentences': embedding sentences (1024 of 9000)"``).
    It is a :class:`TimeoutError`, so ``except TimeoutError`` catches it too.
    """

    def __init__(self, seconds: float, elapsed: float, where: str) -> None:
        self.seconds = seconds
        self.elapsed = elapsed
        self.where = where
        super().__init__(
            f"the optimizer stopped after {elapsed:.2f} s, past its time limit of {seconds:g} s ({where}); "
            "send a smaller context, use a faster preset (bm25-pack is linear in the input), or raise the limit"
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.seconds, self.elapsed, self.where))


class OptimizerStopped(Exception):
    """An optimizer run stopped because its :class:`Deadline` was stopped (:meth:`Deadline.stop`), not because it ran late.

    ``why`` is the reason given to ``stop`` (e.g. ``"the client disconnected"``), ``where`` the check that
    stopped the run, ``elapsed`` how long the run had taken. Not a :class:`TimeoutError`: nothing timed out.
    """

    def __init__(self, why: str, where: str, elapsed: float) -> None:
        self.why = why
        self.where = where
        self.elapsed = elapsed
        super().__init__(f"the optimizer run was stopped after {elapsed:.2f} s: {why} ({where})")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.why, self.where, self.elapsed))


class Deadline:
    """``seconds`` from now (``clock``: :func:`time.monotonic`; ``math.inf``: no limit); :meth:`check` raises
    :class:`OptimizerTimeout` once past it, :class:`OptimizerStopped` once :meth:`stop` was called."""

    __slots__ = ("seconds", "start", "at", "_clock", "stopped")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 (None: no limit), got {seconds!r}")
        self.seconds = float(seconds)
        self._clock = clock
        self.start = clock()
        self.at = self.start + self.seconds
        self.stopped: str | None = None  # why, once stop() was called

    def stop(self, why: str) -> None:
        """Stop the run from any thread: its next :meth:`check` raises :class:`OptimizerStopped` saying ``why``.

        One attribute write, so safe to call from another thread (e.g. an event loop watching the
        run's client); the run stops at its next check, not at once. A second call keeps the first reason.
        """
        if self.stopped is None:
            self.stopped = str(why)

    def expired(self) -> bool:
        """True once the limit has passed or the run was stopped."""
        return self.stopped is not None or self._clock() >= self.at

    def elapsed(self) -> float:
        """Seconds since the deadline was made (the run's time so far, as its limit counts it)."""
        return self._clock() - self.start

    def remaining(self) -> float:
        """Seconds left (0 once past or stopped)."""
        return 0.0 if self.stopped is not None else max(0.0, self.at - self._clock())

    def check(self, where: str) -> None:
        """Raise :class:`OptimizerStopped` naming ``where`` once stopped, :class:`OptimizerTimeout` once past the limit."""
        now = self._clock()
        if self.stopped is not None:
            raise OptimizerStopped(self.stopped, where, now - self.start)
        if now >= self.at:
            raise OptimizerTimeout(self.seconds, now - self.start, where)

    def __repr__(self) -> str:
        stopped = f", stopped={self.stopped!r}" if self.stopped is not None else ""
        return f"Deadline(seconds={self.seconds:g}, remaining={self.remaining():.3f}{stopped})"


__all__ = ["Deadline", "OptimizerStopped", "OptimizerTimeout"]

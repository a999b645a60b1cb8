"""A time limit on one optimizer run: :meth:`optimizer.Pipeline.run`'s ``timeout``.

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


class Deadline:
    """``seconds`` from now (``clock``: :func:`time.monotonic`); :meth:`check` raises :class:`OptimizerTimeout` once past it."""

    __slots__ = ("seconds", "start", "at", "_clock")

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0 (None: no limit), got {seconds!r}")
        self.seconds = float(seconds)
        self._clock = clock
        self.start = clock()
        self.at = self.start + self.seconds

    def expired(self) -> bool:
        """True once the limit has passed."""
        return self._clock() >= self.at

    def remaining(self) -> float:
        """Seconds left (0 once past)."""
        return max(0.0, self.at - self._clock())

    def check(self, where: str) -> None:
        """Raise :class:`OptimizerTimeout` naming ``where`` when the limit has passed."""
        now = self._clock()
        if now >= self.at:
            raise OptimizerTimeout(self.seconds, now - self.start, where)

    def __repr__(self) -> str:
        return f"Deadline(seconds={self.seconds:g}, remaining={self.remaining():.3f})"


__all__ = ["Deadline", "OptimizerTimeout"]

"""Lease time on one host (SQLite): the host's monotonic clock, anchored per boot, so a wall-clock step does not move it.

On SQLite every worker runs on one host, so leases are measured on ``CLOCK_MONOTONIC`` (``time.monotonic``,
the same for every process of the host on Linux) plus an anchor: the wall clock when this boot first took a
lease, kept in the database per boot id (``/proc/sys/kernel/random/boot_id``), so every worker of the boot
shares it. Leases on the wall clock followed its steps: a clock stepped back kept a dead worker's holds for the
step's length (its requests refused meanwhile), and one stepped forward let a worker expire another live
worker's holds (the budget then overspent). After a reboot the monotonic clock starts again from zero; the new
boot's anchor is the wall clock then, so the holds of the workers from before the reboot lapse on time.

Where there is no boot id (not Linux), leases stay on the wall clock.

>>> from ragtrim.serve.db import make_engine, writing
>>> clock = HostClock(boot_id="boot-1", monotonic=lambda: 5.0, wall=lambda: 1000.0)
>>> engine = make_engine("sqlite://")
>>> with writing(engine) as conn:
...     clock.anchor(conn)
995.0
>>> other = HostClock(boot_id="boot-1", monotonic=lambda: 9.0, wall=lambda: 1.0)  # another worker, the wall clock stepped back
>>> other.prepare(engine); other.now()
1004.0
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ragtrim.serve.db import insert_ignore, write_retrying
from ragtrim.serve.schema import lease_epochs

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def read_boot_id(path: str = BOOT_ID_PATH) -> str | None:
    """This host's boot id (changes at every reboot); None where the system has none."""
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@dataclass
class HostClock:
    """Lease times of one host: ``anchor + monotonic()``, the anchor per ``boot_id`` from the database (module docstring)."""

    boot_id: str | None = field(default_factory=read_boot_id)
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    _anchor: float | None = field(default=None, repr=False)

    def prepare(self, engine: Any) -> None:
        """Read (or set) the boot's anchor, once, in a transaction of its own: call it before the transaction that
        reads :meth:`now` (an anchor set in that one and rolled back with it would leave this worker a different one)."""
        if self.boot_id is not None and self._anchor is None:
            self._anchor = write_retrying(engine, self.anchor)

    def now(self) -> float:
        """The lease time now (:meth:`prepare` first); the wall clock without a boot id."""
        if self.boot_id is None:
            return self.wall()
        if self._anchor is None:
            raise RuntimeError("HostClock.now() before prepare(engine): the boot's anchor is not read yet")
        return self._anchor + self.monotonic()

    def anchor(self, conn: Any) -> float:
        """This boot's anchor, set to the wall clock less the monotonic clock by the boot's first worker
        (the other boots' rows deleted: their workers are gone)."""
        conn.execute(lease_epochs.delete().where(lease_epochs.c.boot_id != self.boot_id))
        conn.execute(insert_ignore(conn.engine, lease_epochs).values(boot_id=self.boot_id, anchor=self.wall() - self.monotonic()))
        return float(conn.execute(select(lease_epochs.c.anchor).where(lease_epochs.c.boot_id == self.boot_id)).scalar_one())

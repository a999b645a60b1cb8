"""One SQLite writer at a time, fairly: threads queue on a lock, processes on an ``flock``.

SQLite alone makes a second writer sleep in its busy handler (backing off up to 100 ms) and
retry, so a process can lose the write lock to another one for seconds under load; a lease
renewal stuck there lets another worker expire holds whose requests are still in flight. Here a
writer first takes this process's thread lock, then blocks in the kernel on an exclusive
``flock`` of a sidecar file (``<database>-writelock``), and is woken the moment the holder lets
go. Where ``fcntl`` is missing (Windows) or the database is in memory, only the thread lock is used.

>>> import tempfile, os
>>> lock = WriteLock(os.path.join(tempfile.mkdtemp(), "serve.sqlite"))
>>> with lock:
...     os.path.exists(lock.path)
True
"""

from __future__ import annotations

import os
import threading
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: processes meet at BEGIN IMMEDIATE only
    fcntl = None  # type: ignore[assignment]


class WriteLock:
    """A context manager: this process's thread lock, then (for a file database) an exclusive flock."""

    def __init__(self, database: str | None):
        self.path = f"{database}-writelock" if database and database != ":memory:" and fcntl is not None else None
        self._threads = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> WriteLock:
        self._threads.acquire()
        if self.path is None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # opened per use: a forked child never shares it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        fd, self._fd = self._fd, None
        try:
            if fd is not None:
                os.close(fd)  # closing the only descriptor releases the flock
        finally:
            self._threads.release()

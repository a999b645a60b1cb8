"""The SQLite write lock: exclusive across threads and across processes, released on exit."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import pytest

from ragtrim.serve.writelock import WriteLock, fcntl


def _hold(db: str, marks: str, seconds: float) -> None:
    with WriteLock(db):
        Path(marks).write_text("in")
        time.sleep(seconds)
        Path(marks).write_text("out")


@pytest.mark.skipif(fcntl is None, reason="flock needs a POSIX system")
def test_another_process_waits_for_the_holder(tmp_path):
    db, marks = str(tmp_path / "serve.sqlite"), tmp_path / "marks"
    child = mp.get_context("spawn").Process(target=_hold, args=(db, str(marks), 0.5))
    child.start()
    deadline = time.time() + 60
    while not (marks.exists() and marks.read_text() == "in") and time.time() < deadline:
        time.sleep(0.01)
    assert marks.read_text() == "in"
    with WriteLock(db):
        assert marks.read_text() == "out"  # got it only after the child let go
    child.join(30)
    assert child.exitcode == 0


def test_threads_of_one_process_take_turns(tmp_path):
    lock, inside, overlaps = WriteLock(str(tmp_path / "serve.sqlite")), [0], []

    def work() -> None:
        for _ in range(50):
            with lock:
                inside[0] += 1
                overlaps.append(inside[0])
                time.sleep(0.0005)
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 200 and max(overlaps) == 1


def test_a_failed_body_releases_the_lock(tmp_path):
    lock = WriteLock(str(tmp_path / "serve.sqlite"))
    with pytest.raises(ValueError), lock:
        raise ValueError("boom")
    assert lock._threads.acquire(timeout=1)  # not left held by this process's threads
    lock._threads.release()
    if fcntl is not None:  # nor the file lock: another holder gets it without waiting
        fd = os.open(lock.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_in_memory_database_uses_the_thread_lock_only():
    assert WriteLock(":memory:").path is None and WriteLock(None).path is None

"""The eighth hunt's eval-lifecycle fixes: a Ctrl-C on a stalled endpoint, a broken reader cache,
the local reader's cache key, all-or-nothing output files, and the report's reader n."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from evals.readers.openai import OpenAIReader
from test_eval_resume_http import FakeEndpoint, endpoint  # noqa: F401  (the fixture)

ITEMS = [(f"question number {i}?", f"Document {i} says the answer is {i}.") for i in range(6)]


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ragtrim-reader")]


def _ctrl_c_once(endpoint: FakeEndpoint, in_flight: int, seen: list[int]) -> threading.Thread:
    """Send this process one SIGINT (a Ctrl-C) once ``in_flight`` requests hang; ``seen`` gets the count then."""
    def fire():
        while endpoint.received < in_flight:
            time.sleep(0.01)
        seen.append(endpoint.received)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


# -- 1. one Ctrl-C stops a batch stuck on a stalled endpoint ----------------------------------------
@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name == "nt", reason="needs a real SIGINT")
def test_one_ctrl_c_on_a_stalled_endpoint_stops_at_once_and_sends_no_retry(endpoint):  # noqa: F811
    endpoint.kill_after = 0  # every request hangs
    reader = OpenAIReader(model="fake", base_url=endpoint.base_url, timeout=2, max_retries=3,
                          backoff_base=0.01, max_concurrency=2)
    seen: list[int] = []
    _ctrl_c_once(endpoint, 2, seen)
    with pytest.raises(KeyboardInterrupt):
        reader.answer_many(ITEMS)
    for thread in _reader_threads():
        thread.join(10)  # generous: each was stuck for 4 tries x 2 s, and the process waited for them at exit
    assert not _reader_threads()
    assert endpoint.received == seen[0] == 2  # no retry and no queued item was sent after the Ctrl-C

    endpoint.reset()  # the endpoint answers again: the same reader works for the next batch
    outs = reader.answer_many(ITEMS[:2])
    assert [o.ok for o in outs] == [True, True]
    reader.close()

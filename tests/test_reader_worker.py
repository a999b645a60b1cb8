"""The local model runs in a worker process: a native crash or a kill is one failed call, never a dead sweep."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from evals.datasets import load_dataset
from evals.readers.cache import ReaderCache
from evals.readers.local import LocalReader
from evals.readers.worker import ModelWorker, WorkerDied, WorkerError
from evals.sweep import run_eval

TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture(autouse=True)
def _backends_importable_in_the_child(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p))


class FakeLocalReader(LocalReader):
    backend = "worker_backends:FakeLlamaBackend"


def _dataset(tmp_path, markers):
    rows = []
    for i, marker in enumerate(markers):
        text = "Paris is the capital of France. Lyon is a city."
        rows.append({"id": f"q{i}", "question": f"Which city is the capital of France, case {i} {marker}?", "answers": ["Paris"],
                     "chunks": [{"id": f"q{i}-0", "title": "France", "text": text, "gold": True}]})
    path = tmp_path / "crashy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return load_dataset(path)


def test_worker_answers_and_reports_python_errors_without_dying():
    with ModelWorker("worker_backends:SlowEcho") as worker:
        assert worker.call("generate", prompt="hi") == {"text": "hi"}
        pid = worker.pid
        with pytest.raises(WorkerError, match="ValueError: an ordinary Python error"):
            worker.call("fail")
        assert worker.pid == pid and worker.crashes == 0  # same process, still alive


def test_a_worker_killed_mid_call_fails_that_call_and_the_next_call_restarts_it():
    with ModelWorker("worker_backends:SlowEcho", {"delay": 2.0}, max_crashes=3) as worker:
        worker.start()
        first = worker.pid
        threading.Timer(0.5, os.kill, (first, signal.SIGKILL)).start()
        with pytest.raises(WorkerDied, match="SIGKILL"):
            worker.call("generate", prompt="lost")
        assert worker.pid is None and worker.crashes == 1
        worker.params = {"delay": 0.0}
        assert worker.call("generate", prompt="next") == {"text": "next"}
        assert worker.pid not in (None, first) and worker.crashes == 0


def test_a_worker_that_keeps_dying_is_not_restarted_forever():
    reader = FakeLocalReader()
    outs = [reader.complete(f"boom {i} segfault-me") for i in range(4)]
    assert all(not o.ok for o in outs)
    assert "SIGSEGV" in outs[0].error and "crash in native code" in outs[0].error
    assert "died 3 times in a row" in outs[3].error and reader.worker.pid is None
    reader.close()


def test_a_hung_worker_is_killed_after_the_timeout():
    reader = FakeLocalReader(timeout_s=1.0)
    out = reader.complete("please hang-me")
    assert not out.ok and "no answer within timeout_s=1 s" in out.error
    assert reader.complete("Capital is Paris").ok  # a fresh worker answers the next call
    reader.close()


@pytest.mark.parametrize("marker,reason", [("segfault-me", "SIGSEGV"), ("oom-me", "SIGKILL")])
def test_a_sweep_with_a_crashing_reader_records_the_failure_and_loses_no_finished_call(tmp_path, marker, reason):
    dataset = _dataset(tmp_path, ["", "", marker, "", ""])
    cache = ReaderCache(tmp_path / "cache.sqlite")
    reader = FakeLocalReader(cache=cache)
    result = run_eval(dataset, ["truncate"], [0.5], reader=reader, progress=False)
    reader.close()
    rows = {r.id: r for r in result.rows if r.pipeline == "truncate" and r.budget == 0.5}
    failed = [i for i, r in rows.items() if r.reader_error]
    assert failed == ["q2"] and reason in rows["q2"].reader_error
    assert all(rows[i].prediction == "Paris" for i in ("q0", "q1", "q3", "q4"))
    assert len(cache) >= 4  # every finished call is kept (the full reference run adds its own)

    again = FakeLocalReader(cache=ReaderCache(tmp_path / "cache.sqlite"))
    rerun = run_eval(dataset, ["truncate"], [0.5], reader=again, progress=False)
    again.close()
    assert again.cache.hits >= 4 and again.cache.misses <= 2  # only the crashed prompts are asked again
    assert [r.prediction for r in rerun.rows] == [r.prediction for r in result.rows]


def test_the_child_gets_the_workers_env_defaults_and_the_users_own_setting_wins(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with ModelWorker("worker_backends:EnvEcho", env={"OMP_WAIT_POLICY": "PASSIVE"}) as worker:
        assert worker.call("env", name="OMP_WAIT_POLICY") == {"value": "PASSIVE"}
    assert "OMP_WAIT_POLICY" not in os.environ  # this process's environment is untouched
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with ModelWorker("worker_backends:EnvEcho", env={"OMP_WAIT_POLICY": "PASSIVE"}) as worker:
        assert worker.call("env", name="OMP_WAIT_POLICY") == {"value": "ACTIVE"}


def test_the_local_readers_worker_waits_passively():
    # llama.cpp's OpenMP threads spin by default, which is several times slower on busy cores
    assert LocalReader().worker.env == {"OMP_WAIT_POLICY": "PASSIVE"}

"""A crash is a recorded failure, never lost work and never a wrong answer.

An interrupted reader call never leaves its late answer for the next call; a model that does not load
fails every call (and the CLI) with the real reason; a pipeline that raises on one example is one failed
row, not a dead sweep; a dead worker's pipes are closed; Ctrl-C on ``demo`` says what was kept; the
worker process ends with its parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

import evals.demo as demo
from eval_fixtures import write_tiny
from evals.datasets import load_dataset
from evals.readers.cache import ReaderCache
from evals.readers.fake import FakeReader
from evals.readers.local import LocalReader
from evals.readers.worker import ModelWorker, WorkerDied, WorkerError
from evals.sweep import run_eval
from optimizer.pipeline import Pipeline
from ragtrim.cli import app

TESTS = str(Path(__file__).resolve().parent)
ROOT = str(Path(__file__).resolve().parents[1])
DECODE_ERROR = "llama_decode returned -3"  # what llama-cpp-python raises when a decode fails


@pytest.fixture(autouse=True)
def _backends_importable_in_the_child(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (TESTS, os.environ.get("PYTHONPATH")) if p))


class FakeLocalReader(LocalReader):
    backend = "worker_backends:FakeLlamaBackend"


class BrokenLocalReader(LocalReader):
    backend = "worker_backends:BrokenLlamaBackend"


@contextmanager
def ctrl_c_after(seconds: float):
    """Raise KeyboardInterrupt in the main thread after ``seconds`` (what Ctrl-C in a notebook does)."""
    def interrupt(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def gone(pid: int, within_s: float = 5.0) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


# -- 1. an interrupted call -------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_an_interrupted_call_kills_the_worker_and_the_next_call_gets_its_own_answer():
    with ModelWorker("worker_backends:Sleepy") as worker:
        worker.start()
        first = worker.pid
        with pytest.raises(KeyboardInterrupt), ctrl_c_after(0.3):
            worker.call("generate", prompt="A", delay=2.0)
        assert worker.pid is None and gone(first) and worker.crashes == 0  # given up on, not a crash
        assert worker.call("generate", prompt="B") == {"text": "B"}  # was {"text": "A"}: the late reply


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_an_interrupted_reader_call_never_caches_its_late_answer_under_the_next_prompt(tmp_path):
    reader = FakeLocalReader(cache=ReaderCache(tmp_path / "cache.sqlite"))
    reader.warm_up()
    with pytest.raises(KeyboardInterrupt), ctrl_c_after(0.3):
        reader.complete("Documents:\nLyon\nLyon slow-me")
    b = reader.complete("Documents:\nFrance\nParis is the capital")
    assert (b.ok, b.text, b.cached) == (True, "Paris", False)
    again = reader.complete("Documents:\nFrance\nParis is the capital")
    assert (again.text, again.cached) == ("Paris", True)
    reader.close()


def test_a_reply_to_an_earlier_request_is_never_taken_for_this_one():
    with ModelWorker("worker_backends:Sleepy") as worker:
        worker.start()
        worker._lines.put(json.dumps({"id": 0, "ok": True, "result": {"text": "stale"}}) + "\n")  # a late reply
        assert worker.call("generate", prompt="fresh") == {"text": "fresh"}


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_an_interrupt_while_the_worker_starts_leaves_no_half_started_worker():
    with ModelWorker("worker_backends:Sleepy", {"start_delay": 2.0}) as worker:
        with pytest.raises(KeyboardInterrupt), ctrl_c_after(0.5):
            worker.start()
        assert worker.pid is None and worker._proc is None
        worker.params = {"start_delay": 0.0}
        assert worker.call("generate", prompt="B") == {"text": "B"}  # was None: the constructor's late reply


# -- 2. a model that does not load ----------------------------------------------------------------
def test_a_backend_that_fails_to_start_fails_every_call_with_the_real_reason():
    worker = ModelWorker("worker_backends:BrokenStart", {"path": "trunc.gguf"})
    spawned = []
    spawn = worker._spawn
    worker._spawn = lambda: (spawned.append(1), spawn())[1]
    for _ in range(3):
        with pytest.raises(WorkerError, match="could not start .*Failed to load model from file: trunc.gguf"):
            worker.call("generate", prompt="x")
    assert len(spawned) == 1 and worker.pid is None and worker.crashes == 0  # stopped, not retried, not a crash
    worker.params = {"path": "other.gguf"}  # other settings: tried again
    with pytest.raises(WorkerError, match="other.gguf"):
        worker.call("generate", prompt="x")
    assert len(spawned) == 2
    worker.close()


def test_a_local_reader_whose_model_does_not_load_says_so_on_every_call():
    reader = BrokenLocalReader()
    outs = [reader.complete(f"question {i}") for i in range(3)]
    assert all(not o.ok and "Failed to load model from file" in o.error for o in outs)
    assert all("NoneType" not in o.error for o in outs)
    reader.close()


def test_eval_stops_before_any_work_when_the_local_model_does_not_load(tmp_path, monkeypatch):
    monkeypatch.setattr(LocalReader, "backend", "worker_backends:BrokenLlamaBackend")
    bad = tmp_path / "trunc.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["eval", "--data", str(write_tiny(tmp_path / "tiny.jsonl")), "--out", str(out),
                                   "--pipelines", "truncate", "--budgets", "0.5", "--reader", "local",
                                   "--model", str(bad), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert f"could not load --model '{bad}'" in res.output and "Failed to load model from file" in res.output
    assert "Traceback" not in res.output and not (out / "results.json").exists()


# -- 3. a pipeline that raises on one example -------------------------------------------------------
def _raise_on(monkeypatch, question_word: str, exc: BaseException, pipeline: str = "truncate") -> None:
    run = Pipeline.run

    def flaky(self, query, chunks, **kw):
        if self.name == pipeline and question_word in query:
            raise exc
        return run(self, query, chunks, **kw)

    monkeypatch.setattr(Pipeline, "run", flaky)


def test_a_pipeline_that_raises_on_one_example_is_a_recorded_failure_not_a_dead_sweep(tmp_path, monkeypatch):
    _raise_on(monkeypatch, "Hamlet", RuntimeError(DECODE_ERROR))
    dataset = load_dataset(write_tiny(tmp_path / "tiny.jsonl"))
    run = run_eval(dataset, ["truncate"], [0.5], reader=FakeReader(), progress=False, resamples=10)
    failed = [r for r in run.rows if r.pipeline_error]
    assert [(r.id, r.arm.label) for r in failed] == [("q-hamlet", "truncate@50%")]
    row = failed[0]
    assert row.pipeline_error == f"RuntimeError: {DECODE_ERROR}"
    assert (row.context, row.tokens, row.answer_recall, row.reader_called, row.accuracy) == (None, None, None, False, None)
    full, cut = run.run_for("full", None).metrics, run.run_for("truncate", 0.5).metrics
    assert (full.pipeline_failures, cut.pipeline_failures) == (0, 1)
    assert cut.n == 5 and cut.n_answer_recall == full.n_answer_recall - 1  # left out of the mean, not a success
    assert cut.reader_calls == 4 and cut.reader_failures == 0
    assert run.run_for("truncate", 0.5).delta("answer_recall").n == full.n_answer_recall - 1
    results = run.to_results()
    assert [r["metrics"]["pipeline_failures"] for r in results["runs"]] == [0, 1]
    assert all(r.pipeline_error is None for r in run.rows if r is not row)


def test_ctrl_c_in_a_pipeline_still_stops_the_sweep(tmp_path, monkeypatch):
    _raise_on(monkeypatch, "Hamlet", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_eval(load_dataset(write_tiny(tmp_path / "tiny.jsonl")), ["truncate"], [0.5], progress=False, resamples=10)


def _eval(tmp_path, out):
    return CliRunner().invoke(app, ["eval", "--data", str(write_tiny(tmp_path / "tiny.jsonl")), "--out", str(out),
                                    "--pipelines", "truncate", "--budgets", "0.5", "--reader", "fake",
                                    "--resamples", "10", "--no-progress"])


def test_eval_writes_everything_and_warns_when_a_pipeline_raised_on_some_examples(tmp_path, monkeypatch):
    _raise_on(monkeypatch, "Hamlet", RuntimeError(DECODE_ERROR))
    out = tmp_path / "out"
    res = _eval(tmp_path, out)
    assert res.exit_code == 0, res.output
    warning = [ln for ln in res.output.splitlines() if ln.startswith("warning: 1 of 10 pipeline runs raised")]
    assert warning and "truncate@50% on example 'q-hamlet'" in warning[0] and DECODE_ERROR in warning[0]
    assert "pipeline errors" in res.output  # the terminal table's column
    results = json.loads((out / "results.json").read_text())
    assert [r["metrics"]["pipeline_failures"] for r in results["runs"]] == [0, 1]
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert [(r["id"], r["pipeline_error"]) for r in rows if r["pipeline_error"]] == [("q-hamlet", f"RuntimeError: {DECODE_ERROR}")]
    assert "pipeline errors" in (out / "report.md").read_text()


def test_eval_exits_1_naming_the_first_error_when_a_pipeline_raised_on_every_example_of_an_arm(tmp_path, monkeypatch):
    _raise_on(monkeypatch, "", TypeError("unsupported operand type(s) for +: 'int' and 'str'"))  # a bug in a config's stage
    out = tmp_path / "out"
    res = _eval(tmp_path, out)
    assert res.exit_code == 1, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("error: "))
    assert "raised on every example of truncate@50%" in line and "TypeError: unsupported operand" in line
    assert (out / "results.json").is_file() and (out / "report.html").is_file()  # the outputs are written


# -- 4. a dead worker's pipes ------------------------------------------------------------------
def test_a_dead_or_closed_workers_pipes_are_closed():
    worker = ModelWorker("worker_backends:Sleepy")
    worker.start()
    proc = worker._proc
    threading.Timer(0.3, os.kill, (proc.pid, signal.SIGKILL)).start()
    with pytest.raises(WorkerDied, match="SIGKILL"):
        worker.call("generate", prompt="lost", delay=5.0)
    assert proc.stdin.closed and proc.stdout.closed and proc.stderr.closed
    worker.start()
    proc = worker._proc
    worker.close()
    assert proc.stdin.closed and proc.stdout.closed and proc.stderr.closed


# -- 5. Ctrl-C on demo ----------------------------------------------------------------------------
def test_ctrl_c_on_demo_says_what_was_kept(tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "reader_available", lambda: False)
    monkeypatch.setattr(demo, "run_demo", interrupted)
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "o"), "--limit", "2"])
    assert res.exit_code == 130 and "interrupted: nothing was written" in res.output


# -- 6. the worker ends with its parent ------------------------------------------------------
PARENT = """
import sys
from evals.readers.worker import ModelWorker
worker = ModelWorker("worker_backends:Sleepy")
worker.start()
print(worker.pid, flush=True)
worker.call("generate", prompt="long", delay=60.0)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
def test_the_worker_dies_with_its_parent_even_in_the_middle_of_a_call():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.5)  # the call is under way
    parent.kill()
    parent.wait()
    parent.stdout.close()
    assert gone(child), "the worker outlived its parent"


def test_a_worker_started_from_a_thread_that_ends_lives_on():
    worker = ModelWorker("worker_backends:Sleepy")
    starter = threading.Thread(target=worker.start)
    starter.start()
    starter.join()
    pid = worker.pid
    time.sleep(1.5)  # a parent-death signal tied to the starting thread would have killed it by now
    assert worker.pid == pid and worker.call("generate", prompt="still here") == {"text": "still here"}
    worker.close()


def test_a_missing_extra_stops_the_eval_before_any_pipeline_runs(tmp_path, monkeypatch):
    """Every pipeline's models load before the first example: a pipeline listed last whose extra is missing
    stops the eval at once with the install line, not after the work of the pipelines before it."""
    from optimizer.lazy import MissingDependency
    from optimizer.stage import Stage

    class NeedsAnExtra(Stage):
        name = "needs-an-extra"

        def warm_up(self):
            raise MissingDependency("needs-an-extra needs 'onnxruntime'; install it with: pip install 'ragtrim[onnx]'")

        def __call__(self, query, chunks, context):
            return list(chunks)

    ran = []
    real_run = Pipeline.run
    monkeypatch.setattr(Pipeline, "run", lambda self, *a, **k: ran.append(1) or real_run(self, *a, **k))
    dataset = load_dataset(write_tiny(tmp_path / "tiny.jsonl"))
    with pytest.raises(MissingDependency, match=r"ragtrim\[onnx\]"):
        run_eval(dataset, ["truncate", Pipeline([NeedsAnExtra()])], [0.5], progress=False, resamples=10)
    assert ran == []


# -- 6. tune: the same guarantees as eval ------------------------------------------------------------
def test_tune_stops_before_any_work_when_the_local_model_does_not_load(tmp_path, monkeypatch):
    monkeypatch.setattr(LocalReader, "backend", "worker_backends:BrokenLlamaBackend")
    ran = []
    real_run = Pipeline.run
    monkeypatch.setattr(Pipeline, "run", lambda self, *a, **k: ran.append(1) or real_run(self, *a, **k))
    bad = tmp_path / "trunc.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    res = CliRunner().invoke(app, ["tune", "--data", str(write_tiny(tmp_path / "tiny.jsonl")), "--pipeline", "truncate",
                                   "--metric", "accuracy", "--reader", "local", "--model", str(bad),
                                   "--cache", str(tmp_path / "answers.sqlite")])
    assert res.exit_code == 2, res.output
    assert f"could not load --model '{bad}'" in res.output and "Failed to load model from file" in res.output
    assert "Traceback" not in res.output and ran == []


def _tune_data(tmp_path) -> Path:
    import json

    from test_tune import synthetic_examples

    path = tmp_path / "synthetic.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in synthetic_examples(60)), encoding="utf-8")
    return path


@pytest.mark.parametrize("holdout", [0.0, 0.5])
def test_tune_leaves_out_and_counts_the_examples_a_pipeline_raised_on(tmp_path, monkeypatch, holdout):
    from evals.tune import tune_budget

    _raise_on(monkeypatch, "Zorbland7?", RuntimeError(DECODE_ERROR))
    result = tune_budget(load_dataset(_tune_data(tmp_path)), "truncate", target_retention=0.9, holdout=holdout,
                         resamples=50)
    held = result.held_out
    assert result.pipeline_failures == 1 and result.first_pipeline_error == f"RuntimeError: {DECODE_ERROR}"
    in_search = result.n_metric == result.n_tune - 1  # the failed example is in exactly one of the two parts
    in_held = held is not None and held.pipeline_failures == 1 and held.n_metric == held.n - 1
    assert in_search != in_held
    assert (result.n_left_out if in_search else held.n_left_out) == 1
    assert held is None or held.tokens_mean is not None
    assert "raised an error on 1 examples" in result.summary() and DECODE_ERROR in result.failure_warning()
    assert result.met


def test_tune_says_the_pipeline_raised_on_every_example_instead_of_a_miss(tmp_path, monkeypatch):
    _raise_on(monkeypatch, "Zorbland", RuntimeError(DECODE_ERROR))
    res = CliRunner().invoke(app, ["tune", "--data", str(_tune_data(tmp_path)), "--pipeline", "truncate"])
    assert res.exit_code == 2, res.output
    assert "'truncate' raised on every one of the 30 examples at budget 1.0" in res.output and DECODE_ERROR in res.output
    assert "MISSES" not in res.output and "Traceback" not in res.output

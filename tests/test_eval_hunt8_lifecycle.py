"""The eighth hunt's eval-lifecycle fixes: a Ctrl-C on a stalled endpoint, a broken reader cache,
the local reader's cache key, all-or-nothing output files, and the report's reader n."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time

import pytest
from typer.testing import CliRunner

from eval_fixtures import write_tiny
from evals.datasets import load_dataset
from evals.readers.cache import ReaderCache
from evals.readers.fake import FakeReader
from evals.report import summary_table, write_report
from evals.readers.openai import OpenAIReader
from evals.sweep import run_eval
from optimizer.gguf import PACKAGED_MODEL
from ragtrim.cli import app
from test_crash_resilience import TESTS, FakeLocalReader
from test_eval_resume_http import FakeEndpoint, endpoint  # noqa: F401  (the fixture)

runner = CliRunner()

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
    # Python's own Ctrl-C handler for this test: a process started in the background inherits SIGINT ignored (and
    # an earlier test may have left another handler), where the signal would never become a KeyboardInterrupt
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_once(endpoint, 2, seen)
        with pytest.raises(KeyboardInterrupt):
            reader.answer_many(ITEMS)
    finally:
        signal.signal(signal.SIGINT, before)
    for thread in _reader_threads():
        thread.join(10)  # generous: each was stuck for 4 tries x 2 s, and the process waited for them at exit
    assert not _reader_threads()
    assert endpoint.received == seen[0] == 2  # no retry and no queued item was sent after the Ctrl-C

    endpoint.reset()  # the endpoint answers again: the same reader works for the next batch
    outs = reader.answer_many(ITEMS[:2])
    assert [o.ok for o in outs] == [True, True]
    reader.close()


# -- 2. a reader cache that SQLite cannot use -------------------------------------------------------
def _eval_fake_reader(tmp_path, *more):
    data = write_tiny(tmp_path / "tiny.jsonl")
    out = tmp_path / "out"
    args = ["eval", "--data", str(data), "--pipelines", "truncate", "--budgets", "0.25,0.5", "--reader", "fake",
            "--out", str(out), "--no-progress", *more]
    return runner.invoke(app, args), out


def test_a_reader_cache_that_is_not_sqlite_stops_eval_with_exit_2_naming_the_file(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "reader-cache.sqlite").write_bytes(b"this is not a database, it was half copied" * 100)
    res, _ = _eval_fake_reader(tmp_path)
    assert res.exit_code == 2, res.output
    assert str(out / "reader-cache.sqlite") in res.output and "delete it" in res.output
    assert "Traceback" not in res.output and not (out / "results.json").exists()


def test_a_cache_option_naming_a_folder_stops_eval_with_exit_2(tmp_path):
    folder = tmp_path / "somedir"
    folder.mkdir()
    res, _ = _eval_fake_reader(tmp_path, "--cache", str(folder))
    assert res.exit_code == 2, res.output
    assert str(folder) in res.output and "--cache" in res.output


def test_reader_cache_errors_during_a_sweep_warn_once_and_the_outputs_keep_the_answers(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ReaderCache, "put", broken)
    monkeypatch.setattr(ReaderCache, "get", broken)
    res, out = _eval_fake_reader(tmp_path)
    assert res.exit_code == 0, res.output
    assert res.output.count("disk I/O error") == 1
    doc = json.loads((out / "results.json").read_text())
    assert all(run["metrics"]["accuracy"] is not None and run["metrics"]["reader_failures"] == 0 for run in doc["runs"])
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert rows and all(r["prediction"] is not None for r in rows)


# -- 3. the local reader's cache key names the model file, not its stem --------------------------------
def test_two_gguf_files_with_the_same_name_never_share_cached_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", TESTS)  # the worker imports worker_backends
    data = load_dataset(write_tiny(tmp_path / "tiny.jsonl"))
    cache = ReaderCache(tmp_path / "reader-cache.sqlite")
    results = []
    for folder in ("llama-3b", "qwen-0.5b"):
        gguf = tmp_path / folder / "model.gguf"
        gguf.parent.mkdir()
        gguf.write_bytes(b"GGUF" + folder.encode())
        reader = FakeLocalReader(model_path=str(gguf), cache=cache)
        try:
            run = run_eval(data, ["truncate"], [0.5], reader=reader, progress=False)
        finally:
            reader.close()
        results.append(run.to_results())
        assert not any(row.reader_cached for row in run.rows)  # the second model was asked, not served the first's
        assert run.reader_model == "model"  # the readable name stays
    assert [r["reader_model_path"] for r in results] == [str((tmp_path / f / "model.gguf").resolve()) for f in ("llama-3b", "qwen-0.5b")]
    assert cache.hits == 0


def test_the_packaged_model_keeps_its_cache_key_and_a_sampling_seed_joins_it():
    assert FakeLocalReader().model_id == FakeLocalReader().model_id == PACKAGED_MODEL  # old caches stay valid
    assert "seed" not in FakeLocalReader(seed=1).generation_params()  # greedy: the seed changes nothing
    assert FakeLocalReader(temperature=0.7, seed=1).generation_params()["seed"] == 1


# -- 4. the outputs are replaced all together or not at all --------------------------------------------
def _files(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_a_failed_write_leaves_every_previous_output_as_it_was(tmp_path, monkeypatch):
    data = load_dataset(write_tiny(tmp_path / "tiny.jsonl"))
    out = tmp_path / "out"
    first = run_eval(data, ["truncate", "bm25-topk"], [0.25, 0.5], reader=FakeReader(), progress=False, resamples=20)
    write_report(first, out, meta={"created": "first"})
    before = _files(out)
    assert {"results.json", "examples.jsonl", "report.md", "report.html"} <= set(before)

    second = run_eval(data, ["truncate"], [0.125], progress=False, resamples=20)

    def disk_full(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(second.rows[0]), "to_dict", disk_full)  # the examples.jsonl write fails
    with pytest.raises(OSError) as raised:
        write_report(second, out, meta={"created": "second"})
    assert _files(out) == before  # no new results.json next to the old examples and report, no temporary left
    message = "; ".join([str(raised.value), *getattr(raised.value, "__notes__", [])])
    assert "examples.jsonl" in message and "intact" in message


# -- 5. the summary's n is the n accuracy, EM and F1 are averaged over -----------------------------------
def test_the_summary_shows_the_n_the_reader_scores_are_averaged_over(tmp_path):
    data = load_dataset(write_tiny(tmp_path / "tiny.jsonl"))  # q-none has no answer: answered, but not scored
    results = run_eval(data, ["truncate"], [0.5], reader=FakeReader(), progress=False, resamples=20).to_results()
    table = summary_table(results)
    for run, row in zip(results["runs"], table.rows):
        m = run["metrics"]
        assert (m["n_reader"], m["n_accuracy"]) == (5, 4)
        assert row[table.headers.index("scored n")] == "4"
    assert "scored n" in table.note.lower() and "no gold answer" in table.note

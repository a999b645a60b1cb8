"""``ragtrim eval``: each (pipeline, budget) arm's latency is its own cold-memo cost, and the openai reader fails fast.

Latency is checked by counting embedder work, never by timing: a later budget that read an earlier budget's
memos would embed nothing and report a fraction of the real latency.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from typer.testing import CliRunner

from eval_fixtures import TINY, send_json, write_tiny
from evals.datasets import load_dataset
from evals.sweep import run_eval
from optimizer import Pipeline
from optimizer.memo import remembered
from optimizer.models import ModelStore, default_store, use_store
from ragtrim.cli import app


# -- latency: no arm reads another arm's memos ----------------------------------------------
class CountingEmbedder:
    """Loaded into a store (not put by hand), memoizing like the MiniLM embedders (optimizer.memo.remembered)."""

    MEMO_SIZE = 100_000
    loaded = 0

    def __init__(self) -> None:
        CountingEmbedder.loaded += 1
        self.embedded = 0

    def encode(self, texts):
        def embed(missing):
            self.embedded += len(missing)
            return np.ones((len(missing), 4), dtype=np.float32)

        return remembered(self, texts, embed)


class Embeds:
    """A stage that embeds every chunk's text with the store's counting embedder, logging what each call embedded."""

    name = "embeds"

    def __init__(self, log: list[int]) -> None:
        self.log = log

    def __call__(self, query, chunks, context):
        embedder = default_store().get(("embedder", "counting"), CountingEmbedder)
        before = embedder.embedded
        embedder.encode([query, *(c.text for c in chunks)])
        self.log.append(embedder.embedded - before)
        return chunks


@pytest.fixture
def tiny(tmp_path):
    return load_dataset(write_tiny(tmp_path / "tiny.jsonl"))


def test_a_later_budget_embeds_as_much_as_the_first_so_its_latency_is_its_own(tiny):
    log: list[int] = []
    with use_store(ModelStore()):
        run_eval(tiny, [Pipeline([Embeds(log)], name="emb")], [0.125, 0.5], progress=False)
    n = len(tiny.examples)
    first, second = log[:n], log[n:]
    assert len(second) == n and sum(first) > 0
    assert second == first  # before: the 50 % arm embedded nothing, reading the 12.5 % arm's memo


def test_each_arm_has_a_store_of_its_own_with_the_models_loaded_before_it_runs(tiny):
    seen: list[tuple[ModelStore, bool]] = []

    class Warm:
        name = "warm"

        def warm_up(self):
            default_store().get(("embedder", "counting"), CountingEmbedder)

        def __call__(self, query, chunks, context):
            seen.append((default_store(), ("embedder", "counting") in default_store()))
            return chunks

    outer = ModelStore()
    with use_store(outer):
        run_eval(tiny, [Pipeline([Warm()], name="warm")], [0.25, 0.5, 300], progress=False)
    stores = list(dict.fromkeys(s for s, _ in seen))
    assert len(stores) == 3 and outer not in stores and all(loaded for _, loaded in seen)


def test_fresh_models_false_still_shares_one_memo_across_budgets(tiny):
    log: list[int] = []
    with use_store(ModelStore()):
        run_eval(tiny, [Pipeline([Embeds(log)], name="emb")], [0.125, 0.5], progress=False, fresh_models=False)
    assert sum(log[len(tiny.examples):]) == 0  # the tuner's choice: faster, latencies read earlier memos


def test_results_other_than_latency_do_not_depend_on_the_other_budgets(tiny):
    def rows(budgets):
        run = run_eval(tiny, ["truncate", "default"], budgets, progress=False, resamples=10)
        return [replace(r, latency_ms=0.0) for r in run.rows if r.budget == 0.5]

    assert rows([0.5]) == rows([0.125, 0.5])


# -- the openai reader fails fast ------------------------------------------------------------
runner = CliRunner()


def _eval(data, out, base_url, *more):
    return runner.invoke(app, [
        "eval", "--data", str(data), "--out", str(out), "--pipelines", "truncate", "--budgets", "0.5",
        "--reader", "openai", "--base-url", base_url, "--no-progress", *more,
    ])


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


def test_a_refused_endpoint_stops_before_the_sweep_naming_base_url(tmp_path, monkeypatch):
    monkeypatch.delenv("RAGTRIM_TEST_NO_SUCH_KEY", raising=False)
    data, out = write_tiny(tmp_path / "tiny.jsonl"), tmp_path / "out"
    res = _eval(data, out, f"http://127.0.0.1:{_refused_port()}/v1", "--api-key-env", "RAGTRIM_TEST_NO_SUCH_KEY")
    assert res.exit_code == 2, res.output
    assert "$RAGTRIM_TEST_NO_SUCH_KEY" in res.output and "not set" in res.output  # warned up front
    assert "cannot reach" in res.output and "--base-url" in res.output and "connection refused" in res.output
    assert not (out / "results.json").exists()


class Endpoint:
    """An OpenAI-compatible endpoint with no /models (GET answers 404) whose chat calls fail (HTTP 400, not retried)
    for prompts holding ``fail_on``, and answer "Paris" otherwise."""

    def __init__(self, fail_on: str) -> None:
        self.posts = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                send_json(self, body, status)

            def do_GET(self):
                self._send(404, {"error": "no such route"})

            def do_POST(self):
                endpoint.posts += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fail_on in body["messages"][0]["content"]:
                    self._send(400, {"error": "bad request"})
                else:
                    self._send(200, {"choices": [{"message": {"content": "Paris"}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("fail_on, code", [("Question", 1), (TINY[0]["question"], 0)])
def test_exit_status_is_1_only_when_every_reader_call_failed(tmp_path, fail_on, code):
    endpoint = Endpoint(fail_on)
    try:
        res = _eval(write_tiny(tmp_path / "tiny.jsonl"), tmp_path / "out", endpoint.base_url)
    finally:
        endpoint.close()
    assert res.exit_code == code, res.output
    assert endpoint.posts > 0 and (tmp_path / "out" / "results.json").is_file()  # a 404 on /models is reachable
    assert "reader calls failed" in res.output  # all or some: the count is reported either way
    if code:
        assert "error: all" in res.output and "HTTP 400" in res.output
    else:
        assert "error:" not in res.output

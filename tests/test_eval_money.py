"""The eval harness's money numbers, checked against numbers computed here, independently of it.

- ``$ saved`` (``cost_saved_per_1k``) and tune's ``tokens_saved_per_1k`` pair examples by id: an example the
  pipeline raised on counts in neither arm, so an arm that keeps everything saves nothing.
- ``prompt_tokens`` is the count of the whole prompt the reader is sent (tiktoken on the real request body), not
  context tokens plus the empty template's (tokens merge across the join when a context is cut mid-sentence).
- A malformed or cut-off chat completion (``message: null``; no text with ``finish_reason`` ``length`` or
  ``content_filter``) is a failed reader call: not scored, not cached, asked again on a rerun.
- ``ragtrim eval`` with a missing ``--data`` file creates nothing.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from evals.datasets import parse_example
from evals.readers.cache import ReaderCache
from evals.readers.openai import OpenAIReader
from evals.readers.prompt import DEFAULT_TEMPLATE
from evals.sweep import run_eval
from evals.tune import tune_budget
from optimizer import Pipeline
from optimizer.stage import Stage
from ragtrim.cli import app

from eval_fixtures import send_json

USD_PER_MILLION = 2.5

FIVE = [
    {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"], "chunks": [
        {"id": "q1-a", "title": "France", "text": "France is a country in Europe. Its capital is Paris, a large city.", "gold": True},
        {"id": "q1-b", "title": "Lyon", "text": "Lyon is the third-largest city of France. It is known for food.", "gold": False}]},
    {"id": "q2", "question": "How many people live in Tokyo?", "answers": ["14,000,000", "14 million"], "chunks": [
        {"id": "q2-a", "title": "Tokyo", "text": "Tokyo has a population of about 14,000,000 people. It is the capital of Japan.", "gold": True},
        {"id": "q2-b", "title": "Osaka", "text": "Osaka is a large city in Japan with a busy port.", "gold": False}]},
    {"id": "q3", "question": "Is Berlin in Germany?", "answers": ["yes"], "chunks": [
        {"id": "q3-a", "title": "Berlin", "text": "Berlin is the capital of Germany.", "gold": True}]},
    {"id": "q4", "question": "Who wrote Faust?", "answers": ["Goethe"], "chunks": [
        {"id": "q4-a", "title": "Weimar", "text": "Weimar is a city in Thuringia. Many poets lived there.", "gold": False}]},
    {"id": "q5", "question": "Who painted the Mona Lisa?", "answers": ["Leonardo da Vinci", "Leonardo"], "chunks": [
        {"id": "q5-a", "title": "Mona Lisa", "text": "The Mona Lisa was painted by Leonardo da Vinci in the sixteenth century. It hangs in the Louvre.", "gold": True},
        {"id": "q5-b", "title": "Louvre", "text": "The Louvre is the world's most-visited museum, in Paris.", "gold": False}]},
]


def _dataset(name="five"):
    return SimpleNamespace(name=name, examples=[parse_example(e) for e in FIVE])


QUESTION = {e["id"]: e["question"] for e in FIVE}


@pytest.fixture(scope="module")
def enc():
    """tiktoken's own cl100k_base, read from the BPE file llama-index ships (no network)."""
    from optimizer._offline import packaged_tiktoken_cache

    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(packaged_tiktoken_cache())
    try:
        import tiktoken

        yield tiktoken.get_encoding("cl100k_base")
    finally:
        if old is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


def _prompt_len(enc, question, context):
    return len(enc.encode(DEFAULT_TEMPLATE.format(context=context, question=question)))


class RaiseOn(Stage):
    """Keeps every chunk, but raises on questions containing ``word`` (a stage bug on some inputs)."""

    name = "money-raise-on"

    def __init__(self, *, word: str = "Mona"):
        self.word = word

    def __call__(self, query, chunks, context):
        if self.word in query:
            raise RuntimeError("boom")
        return list(chunks)


# -- 1. $ saved is paired --------------------------------------------------------------------------


def test_cost_saved_is_zero_for_an_arm_that_keeps_everything_but_fails_on_one_example(enc):
    pipe = Pipeline([RaiseOn(word="Mona")], name="keepall-boom")
    run = run_eval(_dataset(), [pipe], [1.0], progress=False, resamples=10)
    arm = run.run_for("keepall-boom", 1.0)
    rows = {r.id: r for r in run.rows_for("keepall-boom", 1.0)}
    full = {r.id: r for r in run.rows_for("full", None)}
    assert rows["q5"].pipeline_error and arm.metrics.pipeline_failures == 1
    # independently: on the 4 examples it ran on, the arm's prompt is full's prompt, token for token
    for i in ("q1", "q2", "q3", "q4"):
        assert _prompt_len(enc, QUESTION[i], rows[i].context) == _prompt_len(enc, QUESTION[i], full[i].context)
    assert arm.metrics.cost_saved_per_1k == 0.0  # was 0.0095 (6.7 % "saved"): q5's long prompt counted for full only
    assert arm.metrics.n_cost_saved == 4
    assert arm.metrics.cost_saved_share == 0.0


def test_cost_saved_of_a_cutting_arm_is_over_the_examples_both_ran_on(enc):
    pipe = Pipeline([RaiseOn(word="Tokyo"), *(s for _, s in Pipeline.preset("truncate").steps)], name="cut-boom")
    run = run_eval(_dataset(), [pipe], [0.4], progress=False, resamples=10, price_model="gpt-4o")
    price = run.settings["price"]["input_per_million"]
    rows = run.rows_for("cut-boom", 0.4)
    full = {r.id: r for r in run.rows_for("full", None)}
    ok = [r for r in rows if not r.pipeline_error]
    assert [r.id for r in rows if r.pipeline_error] == ["q2"]
    full_mean = statistics.fmean(_prompt_len(enc, QUESTION[r.id], full[r.id].context) for r in ok)
    arm_mean = statistics.fmean(_prompt_len(enc, QUESTION[r.id], r.context) for r in ok)
    expected = (full_mean - arm_mean) * 1000 * price / 1e6
    m = run.run_for("cut-boom", 0.4).metrics
    assert m.cost_saved_per_1k == pytest.approx(expected, abs=1e-6)
    assert m.n_cost_saved == 4
    assert m.cost_saved_share == pytest.approx((full_mean - arm_mean) / full_mean, abs=1e-6)


def test_report_says_over_how_many_examples_the_saving_is(tmp_path):
    from evals.report import cost_table

    pipe = Pipeline([RaiseOn(word="Mona")], name="keepall-boom")
    run = run_eval(_dataset(), [pipe], [1.0], progress=False, resamples=10)
    table = cost_table(run.to_results())
    row = next(r for r in table.rows if r[0] == "keepall-boom")
    assert row[-1] == "0.0%"  # was 6.7%
    assert "keepall-boom@100%: 4 of 5" in table.note


def test_tune_tokens_saved_is_paired_by_example(enc):
    pipe = Pipeline([RaiseOn(word="Mona")], name="keepall-boom")
    result = tune_budget(_dataset(), pipe, target_retention=0.5, resamples=20, holdout=0.0)
    assert result.pipeline_failures == 1
    data = {e.id: e for e in _dataset().examples}
    full_pipe = Pipeline.preset("full")
    saved = []
    for i in ("q1", "q2", "q3", "q4"):  # q5 raised: no prompt, left out of both sides
        ex = data[i]
        full_ctx = full_pipe.run(ex.question, ex.chunks).text
        arm_ctx = pipe.run(ex.question, ex.chunks, budget=result.budget).text
        saved.append(_prompt_len(enc, ex.question, full_ctx) - _prompt_len(enc, ex.question, arm_ctx))
    assert result.tokens_saved_per_1k == pytest.approx(statistics.fmean(saved) * 1000, abs=1e-3)
    assert result.n_saved == 4
    assert "over the 4 of them" in result.summary()


# -- 2. prompt tokens: the whole prompt the reader sends ----------------------------------------------


class _Server:
    """A chat-completions endpoint: records each request's prompt; ``modes[keyword]`` picks a reply."""

    ANSWERS = {"France": "Paris", "Tokyo": "14,000,000", "Berlin": "yes", "Faust": "Goethe", "Mona": "Leonardo da Vinci"}

    def __init__(self, modes=None):
        self.modes = dict(modes or {})
        self.prompts: list[str] = []
        self.calls: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                prompt = body["messages"][0]["content"]
                key = next((k for k in server.ANSWERS if k in prompt.rsplit("Question:", 1)[-1]), "?")
                server.prompts.append(prompt)
                server.calls[key] = server.calls.get(key, 0) + 1
                mode = server.modes.get(key, "ok")
                if mode == "nullmsg":
                    reply = {"choices": [{"message": None, "finish_reason": "stop"}]}
                elif mode == "nullcontent_length":
                    reply = {"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "length"}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 32}}
                elif mode == "filtered":
                    reply = {"choices": [{"message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter"}]}
                elif mode == "empty_stop":
                    reply = {"choices": [{"message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}]}
                else:
                    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": server.ANSWERS.get(key, "dunno")},
                                          "finish_reason": "stop"}]}
                send_json(self, reply)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _reader(server, cache_path):
    return OpenAIReader(model="m", base_url=server.base_url, max_retries=0, max_concurrency=2,
                        cache=ReaderCache(cache_path))


def test_prompt_tokens_count_the_whole_prompt_when_the_context_is_cut_mid_sentence(enc):
    run = run_eval(_dataset(), ["truncate"], [0.4], progress=False, resamples=10)
    rows = run.rows_for("truncate", 0.4)
    assert any(not r.context.rstrip().endswith(".") for r in rows)  # cut mid-sentence: the case that merged tokens
    got = {r.id: r.prompt_tokens for r in rows}
    want = {r.id: _prompt_len(enc, QUESTION[r.id], r.context) for r in rows}
    assert got == want  # was 1 short on 4 of the 5 rows
    m = run.run_for("truncate", 0.4).metrics
    assert m.prompt_tokens_mean == pytest.approx(statistics.fmean(want.values()), abs=1e-6)


def test_prompt_tokens_are_the_tokens_of_what_the_reader_actually_sent(enc, tmp_path):
    with _Server() as server:
        run = run_eval(_dataset(), ["truncate"], [0.4], reader=_reader(server, tmp_path / "c.sqlite"),
                       progress=False, resamples=10)
    sent = {len(enc.encode(p)) for p in server.prompts}
    assert len(server.prompts) == 10
    assert {r.prompt_tokens for r in run.rows} == sent


# -- 3. malformed or cut-off chat completions are failed calls ------------------------------------------


@pytest.fixture
def bad_replies(tmp_path):
    modes = {"Mona": "nullmsg", "Tokyo": "nullcontent_length", "Faust": "filtered", "Berlin": "empty_stop"}
    with _Server(modes) as server:
        cache = tmp_path / "cache.sqlite"
        run = run_eval(_dataset(), ["truncate"], [0.5], reader=_reader(server, cache), progress=False, resamples=10)
        yield SimpleNamespace(server=server, run=run, cache=cache, tmp=tmp_path)


def _row(run, pipeline, i):
    budget = None if pipeline == "full" else 0.5
    return next(r for r in run.rows_for(pipeline, budget) if r.id == i)


@pytest.mark.parametrize("pipeline", ["full", "truncate"])
def test_a_null_message_is_a_reader_failure_not_a_wrong_answer(bad_replies, pipeline):
    row = _row(bad_replies.run, pipeline, "q5")
    assert row.reader_called and row.prediction is None and row.accuracy is None
    assert row.reader_error and "message" in row.reader_error and "null" in row.reader_error


@pytest.mark.parametrize("pipeline", ["full", "truncate"])
def test_no_content_at_finish_reason_length_is_a_failure_that_says_raise_max_tokens(bad_replies, pipeline):
    row = _row(bad_replies.run, pipeline, "q2")
    assert row.prediction is None and row.accuracy is None
    assert "length" in row.reader_error and "max_tokens" in row.reader_error
    assert row.reader_finish_reason == "length"


@pytest.mark.parametrize("pipeline", ["full", "truncate"])
def test_empty_content_from_the_content_filter_is_a_failure_that_names_it(bad_replies, pipeline):
    row = _row(bad_replies.run, pipeline, "q4")
    assert row.prediction is None and row.accuracy is None
    assert "content_filter" in row.reader_error and "filter" in row.reader_error.replace("content_filter", "")
    assert row.reader_finish_reason == "content_filter"


def test_an_empty_answer_the_model_ended_itself_is_still_an_answer(bad_replies):
    row = _row(bad_replies.run, "full", "q3")
    assert row.prediction == "" and row.reader_error is None and row.accuracy == 0
    assert row.reader_finish_reason == "stop"


def test_bad_replies_are_counted_as_failures_and_left_out_of_the_means(bad_replies):
    for label_budget in (("full", None), ("truncate", 0.5)):
        m = bad_replies.run.run_for(*label_budget).metrics
        # q1 Paris (right), q3 "" (wrong, the model's own empty answer); q2, q4, q5 failed
        assert (m.reader_calls, m.reader_failures, m.n_reader) == (5, 3, 2)
        assert m.accuracy == 0.5 and m.n_accuracy == 2  # was 0.5 over 4 ("" scored 0 three times, q4 unscored)


def test_bad_replies_are_not_cached_and_are_asked_again_on_a_rerun(bad_replies):
    import sqlite3

    with sqlite3.connect(bad_replies.cache) as db:
        assert db.execute("SELECT count(*) FROM answers").fetchone()[0] == 4  # q1 and q3, in two arms; was 10
    server = bad_replies.server
    before = dict(server.calls)
    server.modes.clear()  # the endpoint now answers
    run = run_eval(_dataset(), ["truncate"], [0.5], reader=_reader(server, bad_replies.cache), progress=False, resamples=10)
    asked = {k: server.calls[k] - before.get(k, 0) for k in server.calls}
    assert asked.get("Mona") == 2 and asked.get("Tokyo") == 2 and asked.get("Faust") == 2
    assert not asked.get("France") and not asked.get("Berlin")  # served from the cache
    assert run.run_for("full", None).metrics.reader_failures == 0


# -- 4. a missing --data creates nothing -------------------------------------------------------------


def test_eval_with_a_missing_data_file_creates_no_output_folder(tmp_path):
    out = tmp_path / "outX"
    res = CliRunner().invoke(app, ["eval", "-d", str(tmp_path / "nope.jsonl"), "-o", str(out), "-r", "openai",
                                   "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "nope.jsonl" in res.output
    assert not out.exists()


def test_eval_with_an_unknown_bundled_name_creates_no_output_folder(tmp_path):
    out = tmp_path / "outY"
    res = CliRunner().invoke(app, ["eval", "-d", "hotpotqq", "-o", str(out), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert not out.exists()

"""Readers: prompt, cache, the OpenAI-compatible reader against a fake loopback server, and
(slow) the packaged Gemma."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evals.readers import ReaderCache, ReaderOutput, format_prompt, make_reader, postprocess
from evals.readers.base import Reader
from evals.readers.fake import FakeReader

from eval_fixtures import send_json
from evals.readers.local import LocalReader, cut_at_stop, fits_context
from evals.readers.openai import OpenAIReader
from evals.readers.prompt import DEFAULT_TEMPLATE, check_template

SECRET = "sk-test-SECRET0123456789abcdef"


# --------------------------------------------------------------------------------------
# a fake OpenAI-compatible server on loopback
# --------------------------------------------------------------------------------------
class FakeServer:
    """Answers ``answer to <question>``; ``script`` holds responses to send first.

    A script entry is ``(status, content, headers)``; content ``None`` sends a message
    without content, and ``"ECHO_AUTH"`` a body that echoes the Authorization header.
    """

    def __init__(self, delay_for=None, die_after=None):
        self.die_after = die_after  # after this many answers, drop every connection unanswered
        self.answered = 0
        self.usage_extra: dict = {}  # more usage fields in every answer (reasoning tokens, totals)
        self.script: list[tuple[int, str | None, dict[str, str]]] = []
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay_for = delay_for  # question -> seconds to wait before answering
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    if server.die_after is not None and server.answered >= server.die_after:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    server.answered += 1
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    step = server.script.pop(0) if server.script else None
                counted = True
                try:
                    prompt = body["messages"][0]["content"]
                    question = re.search(r"Question: (.*)\nAnswer:", prompt).group(1)
                    if server.delay_for is not None:
                        time.sleep(server.delay_for(question))
                    if step is None:
                        step = (200, f"answer to {question}", {})
                    status, content, headers = step
                    if status == 200:
                        payload = {
                            "choices": [{"message": {"role": "assistant", "content": content}}],
                            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 3, **server.usage_extra},
                        }
                    elif content == "ECHO_AUTH":
                        payload = {"error": {"message": f"Incorrect API key provided: {self.headers.get('Authorization')}"}}
                    else:
                        payload = {"error": {"message": content or "boom"}}
                    with server.lock:  # done before the client can see the answer and send its next request
                        server.in_flight -= 1
                        counted = False
                    send_json(self, payload, status, headers)
                finally:
                    if counted:
                        with server.lock:
                            server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.stop()


@pytest.fixture
def no_sleep(monkeypatch):
    """Record backoff sleeps instead of sleeping."""
    slept: list[float] = []
    monkeypatch.setattr(OpenAIReader, "_pause", lambda self, seconds, stop: slept.append(seconds))
    return slept


def _reader(server: FakeServer, **kw) -> OpenAIReader:
    kw.setdefault("max_retries", 3)
    kw.setdefault("backoff_base", 0.001)
    return OpenAIReader(model="fake-model", base_url=server.base_url, **kw)


ITEMS = [(f"question number {i}?", f"Document {i} says the answer is {i}.") for i in range(10)]


# --------------------------------------------------------------------------------------
# prompt
# --------------------------------------------------------------------------------------
def test_template_fills_question_and_context_and_leaves_their_braces_alone():
    p = format_prompt(DEFAULT_TEMPLATE, "What is {x}?", "[1] T\nset {a, b}")
    assert p.endswith("Question: What is {x}?\nAnswer:")
    assert "Documents:\n[1] T\nset {a, b}\n\n" in p


@pytest.mark.parametrize(
    "template, fragment",
    [("Q: {question}", "lacks {context}"), ("{context} {question} {date}", "unknown placeholders"), ("{context {question}", "not a valid")],
)
def test_bad_templates_are_rejected_with_the_fix(template, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        check_template(template)


def test_postprocess_keeps_the_first_line():
    assert postprocess("\n  Paris \nQuestion: next") == "Paris"
    assert postprocess("   ") == ""
    assert cut_at_stop("\n\nThe Seine\nmore", ("\n",)) == "The Seine"


def test_make_reader_names():
    assert make_reader("none") is None
    with pytest.raises(ValueError, match="none, local, openai, fake"):
        make_reader("llama")
    assert isinstance(make_reader("fake"), Reader)
    assert isinstance(make_reader("openai", model="m", base_url="http://127.0.0.1:1/v1"), Reader)
    assert make_reader("local", n_ctx=1024).n_ctx == 1024  # no model load on construction


def test_fits_context_says_what_to_do():
    assert fits_context(4000, 32, 4096) is None
    msg = fits_context(4080, 32, 4096)
    assert "4080" in msg and "n_ctx=4096" in msg and "raise n_ctx" in msg


# --------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------
def test_cache_keys_on_reader_model_params_and_prompt(tmp_path):
    cache = ReaderCache(tmp_path / "c.sqlite")
    out = ReaderOutput("Paris", True, None, 123.0, False, 10, 2)
    cache.put("r", "m", "prompt", {"t": 0}, out)
    hit = cache.get("r", "m", "prompt", {"t": 0})
    assert (hit.text, hit.cached, hit.latency_ms, hit.prompt_tokens) == ("Paris", True, 123.0, 10)
    for args in [("r2", "m", "prompt", {"t": 0}), ("r", "m2", "prompt", {"t": 0}), ("r", "m", "prompt", {"t": 1}), ("r", "m", "prompt!", {"t": 0})]:
        assert cache.get(*args) is None
    assert (cache.hits, cache.misses) == (1, 4)


def test_cache_ignores_failures_and_survives_reopen(tmp_path):
    path = tmp_path / "sub" / "c.sqlite"
    cache = ReaderCache(path)
    cache.put("r", "m", "p1", {}, ReaderOutput.failure("timeout"))
    cache.put("r", "m", "p2", {}, ReaderOutput("ok", True, None, 1.0, False))
    reopened = ReaderCache(str(path))
    assert reopened.get("r", "m", "p1", {}) is None
    assert reopened.get("r", "m", "p2", {}).text == "ok"
    assert len(reopened) == 1


def test_cache_from_many_threads(tmp_path):
    cache = ReaderCache(tmp_path / "c.sqlite")

    def work(t):
        for i in range(20):
            cache.put("r", "m", f"{t}-{i}", {}, ReaderOutput(f"{t}-{i}", True, None, 1.0, False))
            assert cache.get("r", "m", f"{t}-{i}", {}).text == f"{t}-{i}"

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 80 and cache.hits == 80


def test_cache_rejects_memory_database():
    with pytest.raises(ValueError, match="file path"):
        ReaderCache(":memory:")


def test_failed_answers_are_not_cached_and_retried(tmp_path):
    cache = ReaderCache(tmp_path / "c.sqlite")
    items = [(f"Which {i}?", f"Doc {i} names Which {i}.") for i in range(4)]
    first = FakeReader(fail_every=2, cache=cache).answer_many(items)
    assert [o.ok for o in first] == [True, False, True, False]
    again = FakeReader(cache=cache)
    second = again.answer_many(items)
    assert again.calls == 2 and all(o.ok for o in second)
    assert [o.cached for o in second] == [True, False, True, False]


def test_reasoning_tokens_reported_beside_the_completion_are_counted_as_output(server, monkeypatch):
    """xAI reports the visible text as completion_tokens and the reasoning beside it (total_tokens counts both), and
    bills the reasoning as output: the eval's money numbers counted 3 tokens for a 903-token answer."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = _reader(server).answer("Who?", "Doc says Ann.")
    server.usage_extra = {"total_tokens": out.prompt_tokens + 903, "completion_tokens_details": {"reasoning_tokens": 900}}
    beside = _reader(server).answer("Who else?", "Doc says Bob.")
    assert (out.completion_tokens, beside.completion_tokens) == (3, 903)
    server.usage_extra = {"total_tokens": beside.prompt_tokens + 3, "completion_tokens_details": {"reasoning_tokens": 2}}
    within = _reader(server).answer("Who now?", "Doc says Cy.")  # OpenAI: the reasoning is a part of the completion
    assert within.completion_tokens == 3


def test_exceptions_in_a_reader_become_failures():
    class Broken(FakeReader):
        def _generate(self, prompt):
            raise RuntimeError("model exploded")

    out = Broken().answer("q?", "c.")
    assert not out.ok and out.text is None and "model exploded" in out.error


# --------------------------------------------------------------------------------------
# OpenAI-compatible reader
# --------------------------------------------------------------------------------------
def test_answer_is_parsed_and_the_request_is_well_formed(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = _reader(server).answer("Who?", "Doc says Ann.")
    assert out.ok and out.text == "answer to Who?" and not out.cached
    assert out.completion_tokens == 3 and out.prompt_tokens > 0
    body = server.requests[0]
    assert body["model"] == "fake-model" and body["max_tokens"] == 32 and body["temperature"] == 0.0
    assert body["stop"] == ["\n"] and "Doc says Ann." in body["messages"][0]["content"]
    assert server.auth == [f"Bearer {SECRET}"]


def test_max_tokens_field_and_extra_body_go_in_the_request(server):
    reader = _reader(server, max_tokens_field="max_completion_tokens", extra_body={"top_p": 1.0}, stop=())
    assert reader.answer("Who?", "x").ok
    body = server.requests[0]
    assert body["max_completion_tokens"] == 32 and "max_tokens" not in body
    assert body["top_p"] == 1.0 and "stop" not in body
    assert reader.generation_params()["extra_body"] == {"top_p": 1.0}


def test_no_key_sends_no_authorization(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert _reader(server).answer("Who?", "x").ok
    assert server.auth == [None]


def test_retries_on_429_and_5xx_then_succeeds(server, no_sleep):
    server.script = [(429, "slow down", {"Retry-After": "7"}), (500, "oops", {}), (503, "busy", {})]
    out = _reader(server, backoff_base=1.0, backoff_max=30.0).answer("Who?", "x")
    assert out.ok and out.text == "answer to Who?"
    assert len(server.requests) == 4
    assert no_sleep[0] == 7.0  # Retry-After honoured
    assert 1.0 <= no_sleep[1] <= 2.0 and 2.0 <= no_sleep[2] <= 4.0  # backoff 2**attempt with jitter in [0.5, 1]


def test_gives_up_after_max_retries(server, no_sleep):
    server.script = [(500, "down", {})] * 10
    out = _reader(server, max_retries=2).answer("Who?", "x")
    assert not out.ok and out.text is None
    assert "HTTP 500" in out.error and "gave up after 3 tries" in out.error
    assert len(server.requests) == 3 and len(no_sleep) == 2


def test_client_errors_fail_at_once_with_a_hint(server, no_sleep, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server.script = [(401, "ECHO_AUTH", {})]
    out = _reader(server).answer("Who?", "x")
    assert not out.ok and "HTTP 401" in out.error and "$OPENAI_API_KEY" in out.error
    assert len(server.requests) == 1 and no_sleep == []
    assert SECRET not in out.error and "SECRET" not in out.error


@pytest.mark.parametrize("content", ["", None, "  \n  "])
def test_empty_content_is_an_empty_answer_and_cached(server, tmp_path, content):
    # an empty answer is a real (wrong) answer, not a failed call: ok, text "", cached like any answer
    cache = ReaderCache(tmp_path / "c.sqlite")
    server.script = [(200, content, {})]
    out = _reader(server, cache=cache).answer("Who?", "x")
    assert out.ok and out.text == "" and out.error is None
    again = _reader(server, cache=cache).answer("Who?", "x")
    assert again.ok and again.cached and again.text == "" and len(server.requests) == 1


def test_unreachable_endpoint_says_so(no_sleep):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    out = OpenAIReader(model="m", base_url=url, max_retries=1).answer("Who?", "x")
    assert not out.ok
    assert f"could not reach {url}/chat/completions : connection refused; check --base-url" in out.error
    assert len(no_sleep) == 1


def test_second_run_is_served_from_the_cache(server, tmp_path):
    path = tmp_path / "reader-cache.sqlite"
    first = _reader(server, cache=ReaderCache(path)).answer_many(ITEMS)
    assert len(server.requests) == len(ITEMS)
    cache = ReaderCache(path)
    second = _reader(server, cache=cache).answer_many(ITEMS)
    assert len(server.requests) == len(ITEMS)  # zero new requests
    assert [o.text for o in second] == [o.text for o in first]
    assert all(o.cached for o in second) and cache.hits == len(ITEMS)
    assert [o.latency_ms for o in second] == [o.latency_ms for o in first]


def test_answer_many_keeps_order_and_bounds_concurrency():
    slow = FakeServer(delay_for=lambda q: 0.05 if q.endswith(("0?", "1?", "2?")) else 0.0)
    try:
        seen: list[int] = []
        outs = _reader(slow, max_concurrency=3).answer_many(ITEMS, progress=seen.append)
    finally:
        slow.stop()
    assert [o.text for o in outs] == [f"answer to {q}" for q, _ in ITEMS]
    assert 1 < slow.max_in_flight <= 3
    assert sum(seen) == len(ITEMS)


def test_duplicate_items_are_asked_once(server):
    seen: list[int] = []
    outs = _reader(server).answer_many([ITEMS[0], ITEMS[1], ITEMS[0], ITEMS[0]], progress=seen.append)
    assert len(server.requests) == 2
    assert outs[0].text == outs[2].text == outs[3].text == "answer to question number 0?"
    assert sum(seen) == 4


def test_kill_and_resume_after_an_interrupt(server, tmp_path):
    clean = _reader(server).answer_many(ITEMS)
    server.requests.clear()

    path = tmp_path / "reader-cache.sqlite"
    done = []

    def interrupt_half_way(n):
        done.append(n)
        if sum(done) >= len(ITEMS) // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _reader(server, cache=ReaderCache(path), max_concurrency=2).answer_many(ITEMS, progress=interrupt_half_way)
    finished = len(ReaderCache(path))
    assert len(ITEMS) // 2 <= finished < len(ITEMS)
    first_requests = len(server.requests)

    cache = ReaderCache(path)
    resumed = _reader(server, cache=cache, max_concurrency=2).answer_many(ITEMS)
    assert len(server.requests) - first_requests == len(ITEMS) - finished
    assert cache.hits == finished
    assert [o.text for o in resumed] == [o.text for o in clean]


def test_kill_and_resume_after_the_server_dies(tmp_path, no_sleep):
    first_server = FakeServer(die_after=4)
    path = tmp_path / "reader-cache.sqlite"
    try:
        outs = _reader(first_server, cache=ReaderCache(path), max_concurrency=1, max_retries=1).answer_many(ITEMS)
    finally:
        first_server.stop()
    assert [o.ok for o in outs] == [True] * 4 + [False] * 6
    assert all("could not reach" in o.error for o in outs[4:])

    second_server = FakeServer()  # another port: base_url is not part of the cache key
    try:
        resumed = _reader(second_server, cache=ReaderCache(path)).answer_many(ITEMS)
    finally:
        second_server.stop()
    assert len(second_server.requests) == 6
    assert [o.text for o in resumed] == [f"answer to {q}" for q, _ in ITEMS]
    assert [o.cached for o in resumed] == [True] * 4 + [False] * 6


def test_the_api_key_never_leaks(server, tmp_path, monkeypatch, no_sleep):
    monkeypatch.setenv("MY_KEY", SECRET)
    path = tmp_path / "reader-cache.sqlite"
    cache = ReaderCache(path)
    reader = _reader(server, api_key_env="MY_KEY", cache=cache, max_concurrency=1)
    server.script = [(401, "ECHO_AUTH", {}), (500, "ECHO_AUTH", {}), (500, "ECHO_AUTH", {}), (500, "ECHO_AUTH", {}), (500, "ECHO_AUTH", {})]
    outs = reader.answer_many(ITEMS[:3])
    assert server.auth[0] == f"Bearer {SECRET}"  # the key was really used
    assert sum(o.ok for o in outs) == 1 and all(SECRET not in (o.error or "") for o in outs)
    texts = [repr(reader), str(reader.get_params()), str(reader.generation_params()), repr(outs)]
    assert all(SECRET not in t for t in texts)
    cache.close()
    for f in Path(tmp_path).iterdir():
        assert SECRET.encode() not in f.read_bytes(), f.name


def test_openai_reader_validates_its_settings():
    with pytest.raises(ValueError, match="base_url must start with http"):
        OpenAIReader(base_url="localhost:8000")
    with pytest.raises(ValueError, match="max_concurrency must be a positive integer, got 0"):
        OpenAIReader(max_concurrency=0)


# --------------------------------------------------------------------------------------
# local Gemma (slow)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def gemma():
    reader = LocalReader()
    reader.warm_up()
    yield reader
    reader.close()


@pytest.mark.slow
@pytest.mark.reader
def test_gemma_answers_from_the_context_deterministically(gemma):
    first = gemma.answer("What is the capital of France?", "The capital of France is Paris.")
    assert first.ok and "Paris" in first.text and "\n" not in first.text
    assert first.prompt_tokens > 10 and first.completion_tokens >= 1
    second = gemma.answer("What is the capital of France?", "The capital of France is Paris.")
    assert second.text == first.text


@pytest.mark.slow
@pytest.mark.reader
def test_the_real_model_runs_on_this_cpu_and_a_killed_worker_is_one_failed_call(gemma):
    """On this very machine (AMX or not) the packaged Gemma answers; a SIGKILL mid-call fails only that call."""
    import os
    import signal
    import threading

    from optimizer.gguf import cpu_has_amx

    out = gemma.complete("Paris is the capital and largest city of France.\nQuestion: What is the capital of France?\nAnswer:")
    assert out.ok and "Paris" in out.text, (cpu_has_amx(), out)
    pid = gemma.worker.pid
    threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
    lost = gemma.complete("word " * 1500 + "\nQuestion: how many words?\nAnswer:", max_tokens=32)
    assert not lost.ok and "SIGKILL" in lost.error
    again = gemma.answer("What is the capital of France?", "The capital of France is Paris.")
    assert again.ok and "Paris" in again.text and gemma.worker.pid not in (None, pid)


@pytest.mark.slow
@pytest.mark.reader
def test_gemma_reports_a_prompt_too_long(gemma):
    out = gemma.answer("Why?", "word " * 5000)
    assert not out.ok and out.text is None
    assert "n_ctx=4096" in out.error and "shorten the context" in out.error


@pytest.mark.slow
@pytest.mark.reader
def test_gemma_answers_are_cached(gemma, tmp_path):
    cache = ReaderCache(tmp_path / "c.sqlite")
    reader = LocalReader(cache=cache)
    reader._worker = gemma.worker  # share the running model: same weights and settings
    outs = reader.answer_many([("What is the capital of France?", "The capital of France is Paris.")] * 2)
    again = reader.answer("What is the capital of France?", "The capital of France is Paris.")
    assert outs[0].text == outs[1].text == again.text and again.cached and cache.hits == 1


def test_probe_command_reports_gold_all_none(tmp_path, capsys):
    from evals.readers.probe import main

    data = tmp_path / "tiny.jsonl"
    rows = [
        {"id": "q1", "question": "Which river flows through Paris?", "answers": ["Seine"],
         "chunks": [{"id": "a", "text": "Lyon has a river.", "gold": False}, {"id": "b", "text": "The Seine flows through Paris.", "gold": True}]},
        {"id": "q2", "question": "Is Lyon big?", "answers": ["yes"], "chunks": [{"id": "c", "text": "Lyon is big.", "gold": True}]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["--reader", "fake", "--data", str(data), "--n", "5", "--skip-yes-no", "--rows", str(tmp_path / "rows.jsonl")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("reader=fake") and "n=1" in lines[0]
    summary = {s["setting"]: s for s in map(json.loads, lines[1:])}
    # no context: the fake reader answers "" (a real, wrong answer), not a failed call
    assert summary["gold"]["accuracy"] == 1.0 and summary["none"]["accuracy"] == 0.0 and summary["none"]["failures"] == 0
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 3

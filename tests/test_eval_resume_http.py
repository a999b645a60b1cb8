"""Kill a real ``ragtrim eval`` process mid-sweep, rerun it: no finished reader call is repeated.

A fake OpenAI-compatible endpoint runs on loopback in a thread. After it has answered ``K``
requests it stops answering, waits for the client to store what it received, and SIGKILLs
the client process. The rerun must ask only for the prompts that were never answered, and
its results must equal a clean run's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eval_fixtures import send_json, strip_timings, write_tiny

_WORD = re.compile(r"\w+")


def _answer(prompt: str) -> str:
    """Deterministic: the context line sharing most words with the question."""
    head, _, tail = prompt.rpartition("\n\nQuestion: ")
    question = tail.split("\nAnswer:", 1)[0]
    lines = [ln for ln in head.split("Documents:\n", 1)[-1].splitlines() if ln.strip()] or ["unknown"]
    q = {w.lower() for w in _WORD.findall(question) if len(w) > 2}
    return max(lines, key=lambda ln: (len(q & {w.lower() for w in _WORD.findall(ln)}), -lines.index(ln)))


class FakeEndpoint:
    """Chat-completions on 127.0.0.1; records answered prompts; can kill a client after K answers."""

    def __init__(self) -> None:
        self.answered: list[str] = []
        self.received = 0  # every POST, answered or left hanging
        self.lock = threading.Lock()
        self.kill_after: int | None = None
        self.victim: subprocess.Popen | None = None
        self.dead = threading.Event()
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"]
                with endpoint.lock:
                    endpoint.received += 1
                    if not endpoint.dead.is_set() and endpoint.kill_after is not None and len(endpoint.answered) >= endpoint.kill_after:
                        endpoint.dead.set()
                        threading.Thread(target=endpoint._kill, daemon=True).start()
                    hang = endpoint.dead.is_set()
                    if not hang:
                        endpoint.answered.append(prompt)
                if hang:  # never answer: the client dies waiting
                    endpoint.release.wait(30)
                    return
                send_json(self, {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": _answer(prompt)}}],
                    "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 5},
                })

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _kill(self) -> None:
        time.sleep(1.0)  # let the client store the answers it already has
        if self.victim is not None:
            os.kill(self.victim.pid, signal.SIGKILL)

    def reset(self) -> list[str]:
        with self.lock:
            got, self.answered = self.answered, []
            self.kill_after, self.victim = None, None
            self.dead.clear()
        return got

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    e = FakeEndpoint()
    yield e
    e.close()


def _cmd(data: Path, out: Path, base_url: str) -> list[str]:
    return [
        sys.executable, "-c", "from ragtrim.cli import main; main()", "eval", "--data", str(data), "--out", str(out),
        "--pipelines", "truncate,bm25-topk", "--budgets", "0.25,0.5", "--reader", "openai",
        "--base-url", base_url, "--model", "fake-model", "--no-progress",
    ]


def _results(out: Path) -> dict:
    return strip_timings(json.loads((out / "results.json").read_text()))


def test_killed_sweep_resumes_with_no_repeated_call(endpoint, tmp_path):
    data = write_tiny(tmp_path / "tiny.jsonl")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    clean = subprocess.run(_cmd(data, tmp_path / "clean", endpoint.base_url), env=env, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    clean_prompts = endpoint.reset()
    n = len(clean_prompts)
    assert n == len(set(clean_prompts)) and n > 10

    k = n // 2
    endpoint.kill_after = k
    out = tmp_path / "resumed"
    endpoint.victim = subprocess.Popen(_cmd(data, out, endpoint.base_url), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    endpoint.victim.communicate(timeout=120)
    assert endpoint.victim.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists()
    first = endpoint.reset()
    assert len(first) == k

    again = subprocess.run(_cmd(data, out, endpoint.base_url), env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    second = endpoint.reset()
    assert f"{k} hits" in again.stdout
    assert not set(first) & set(second)  # nothing answered twice
    assert len(first) + len(second) == n
    assert sorted(first + second) == sorted(clean_prompts)
    assert _results(out) == _results(tmp_path / "clean")

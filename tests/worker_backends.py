"""Backends for the worker-process tests: no model, but they crash, hang or die like native code can."""

from __future__ import annotations

import os
import re
import signal
import time


class FakeLlamaBackend:
    """Stands in for :class:`evals.readers.local.LlamaBackend` in a :class:`LocalReader` subclass.

    Answers with the first word of the first document's text; a prompt holding ``segfault-me`` crashes the process
    with SIGSEGV, one holding ``hang-me`` never answers, one holding ``oom-me`` is SIGKILLed, one holding ``slow-me``
    answers after a second.
    """

    def __init__(self, *, model_path=None, n_ctx=4096, n_threads=2, seed=0, extra_buffers=None):
        self.n_ctx = n_ctx

    def count_tokens(self, prompt):
        return len(prompt.split())

    def generate(self, prompt, max_tokens, temperature, stop, seed):
        if "segfault-me" in prompt:
            os.kill(os.getpid(), signal.SIGSEGV)
        if "oom-me" in prompt:
            os.kill(os.getpid(), signal.SIGKILL)
        if "hang-me" in prompt:
            time.sleep(3600)
        if "slow-me" in prompt:
            time.sleep(1.0)
        first = re.search(r"Documents:\n[^\n]*\n(\w+)", prompt)  # the first word under the first title
        return {"text": " " + (first.group(1) if first else "unknown") + "\n", "latency_ms": 1.0,
                "prompt_tokens": self.count_tokens(prompt), "completion_tokens": 1}


class SlowEcho:
    """Echoes after ``delay`` seconds (time for a test to kill it mid-call)."""

    def __init__(self, delay=0.0):
        self.delay = delay

    def generate(self, prompt):
        time.sleep(self.delay)
        return {"text": prompt}

    def fail(self):
        raise ValueError("an ordinary Python error")


class EnvEcho:
    """Reports one variable of the child's environment."""

    def __init__(self) -> None:
        pass

    def env(self, name: str) -> dict:
        return {"value": os.environ.get(name)}


class BrokenLlamaBackend(FakeLlamaBackend):
    """A model file that does not load: the constructor raises what llama-cpp-python raises."""

    def __init__(self, *, model_path=None, **settings):
        raise ValueError(f"Failed to load model from file: {model_path}")


class Sleepy:
    """Echoes after ``delay`` seconds given per call; the constructor itself takes ``start_delay`` seconds."""

    def __init__(self, start_delay=0.0):
        time.sleep(start_delay)

    def generate(self, prompt, delay=0.0):
        time.sleep(delay)
        return {"text": prompt}


class BrokenStart:
    """A backend whose constructor always raises."""

    def __init__(self, path="x.gguf"):
        raise ValueError(f"Failed to load model from file: {path}")

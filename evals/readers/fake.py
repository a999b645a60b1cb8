"""A model-free reader for tests and demos: it answers with the context sentence that shares
the most words with the question. Deterministic, instant, and it gets better when the
context holds the answer, so a harness test can see quality move without loading Gemma.

>>> r = FakeReader()
>>> r.answer("Which river flows through Paris?", "Lyon is big.\\nThe Seine flows through Paris.").text
'The Seine flows through Paris.'
>>> r.calls
1
"""

from __future__ import annotations

import re
import threading
from typing import Any

from evals.readers.base import BaseReader, ReaderOutput
from evals.readers.cache import ReaderCache
from evals.readers.prompt import DEFAULT_TEMPLATE, check_template

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


class FakeReader(BaseReader):
    """Answers with the best-overlapping context sentence; ``calls`` counts model calls.

    ``fail_every`` > 0 makes every n-th call fail (to test failure handling).
    """

    name = "fake"

    def __init__(
        self,
        *,
        model: str = "overlap-v1",
        template: str = DEFAULT_TEMPLATE,
        fail_every: int = 0,
        cache: ReaderCache | None = None,
    ):
        self.model = model
        self.template = check_template(template)
        self.fail_every = fail_every
        self.cache = cache
        self.calls = 0
        self._lock = threading.Lock()

    def generation_params(self) -> dict[str, Any]:
        return {}  # fail_every only injects failures, which are never cached

    def _generate(self, prompt: str) -> ReaderOutput:
        with self._lock:
            self.calls += 1
            n = self.calls
        if self.fail_every > 0 and n % self.fail_every == 0:
            return ReaderOutput.failure(f"fake failure on call {n}")
        question, context = _split(prompt)
        qwords = {w.lower() for w in _WORD.findall(question) if len(w) > 2}
        best, best_score = "", -1
        for sentence in _SENTENCE_END.split(context):
            sentence = sentence.strip()
            if not sentence:
                continue
            score = len(qwords & {w.lower() for w in _WORD.findall(sentence)})
            if score > best_score:
                best, best_score = sentence, score
        # an empty context gets an empty answer: a real (wrong) answer, not a failed call
        return ReaderOutput(text=best, ok=True, error=None, latency_ms=0.0, cached=False)


def _split(prompt: str) -> tuple[str, str]:
    """Recover question and context from a prompt made with the default template."""
    head, _, tail = prompt.rpartition("\n\nQuestion: ")
    question = tail.split("\nAnswer:", 1)[0]
    context = head.split("Documents:\n", 1)[-1]
    return question, context

"""What every reader returns (:class:`ReaderOutput`), the :class:`Reader` protocol, and
:class:`BaseReader`, which does prompting, caching and batching so a reader only has to
implement one call to its model.

>>> from evals.readers.fake import FakeReader
>>> out = FakeReader().answer("What is the capital of France?", "Lyon is big. Paris is the capital of France.")
>>> out.ok, out.text, out.cached
(True, 'Paris is the capital of France.', False)
"""

from __future__ import annotations

import sqlite3
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from evals.readers.prompt import format_prompt
from optimizer.stage import constructor_params

if TYPE_CHECKING:
    from evals.readers.cache import ReaderCache


@dataclass(frozen=True)
class ReaderOutput:
    """One reader answer.

    ``text`` is the post-processed answer (``None`` when the call failed, and then
    ``ok`` is False and ``error`` says why, never with an API key in it). An empty answer
    (``""``) is a successful call: the model answered nothing, which scores 0, and it is
    cached like any answer; a crash, a timeout, an HTTP error or a reply with no answer in it
    (no message, or no text because generation hit ``max_tokens`` or a content filter) is a failure. ``latency_ms`` is
    the time the model call took; a cache hit keeps the original call's latency and has
    ``cached=True``.
    """

    text: str | None
    ok: bool
    error: str | None
    latency_ms: float
    cached: bool
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None  # why generation stopped, when the reader says ("stop", "length"...; None if unknown)

    @classmethod
    def failure(cls, error: str, latency_ms: float = 0.0) -> ReaderOutput:
        """A failed call: no text, ``ok=False``, the reason in ``error``."""
        return cls(text=None, ok=False, error=error, latency_ms=latency_ms, cached=False)


@runtime_checkable
class Reader(Protocol):
    """An LLM that answers a question from a context (what the eval harness calls)."""

    name: str
    model: str
    template: str

    def prompt(self, question: str, context: str) -> str: ...

    def answer(self, question: str, context: str) -> ReaderOutput: ...

    def answer_many(
        self,
        items: Sequence[tuple[str, str]],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[ReaderOutput]: ...


class BaseReader:
    """Prompting, caching and batching around one model call, :meth:`_generate`.

    Subclasses set ``name`` and store their keyword-only settings as attributes of the same
    name (``get_params()`` returns them). They implement ``_generate(prompt) -> ReaderOutput``
    and ``generation_params()`` (what changes the output besides model and prompt; it goes
    in the cache key). Only successful outputs are cached; failures are retried next run.
    """

    name: ClassVar[str] = "base"
    model: str
    template: str
    cache: ReaderCache | None = None

    # -- to implement -------------------------------------------------------------------
    def _generate(self, prompt: str, **overrides: Any) -> ReaderOutput:  # pragma: no cover - abstract
        """One model call; ``overrides`` replace generation settings (e.g. ``max_tokens``) for this call."""
        raise NotImplementedError

    def generation_params(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The model as the cache key names it: ``model``, unless a reader knows more (the local reader's file)."""
        return self.model

    def prompt(self, question: str, context: str) -> str:
        """The exact text the model sees for this question and context."""
        return format_prompt(self.template, question, context)

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments, as stored (scikit-learn style)."""
        return constructor_params(self)

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.get_params().items() if k not in ("cache", "template")}
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({args})"

    def warm_up(self) -> None:
        """Load heavy resources now instead of on the first call (no-op by default)."""

    def answer(self, question: str, context: str) -> ReaderOutput:
        """Answer one question from ``context``, through the cache when there is one."""
        return self._answer_prompt(self.prompt(question, context))

    def _answer_prompt(self, prompt: str, overrides: Mapping[str, Any] | None = None) -> ReaderOutput:
        params = {**self.generation_params(), **(overrides or {})}
        hit = self._cache_get(prompt, params)
        if hit is not None:
            return hit
        start = time.perf_counter()
        try:
            out = self._generate(prompt, **(overrides or {}))
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a reader failure must not end a sweep: report it per item
            out = ReaderOutput.failure(
                self._redact(f"{type(exc).__name__}: {exc}"), (time.perf_counter() - start) * 1000
            )
        if out.ok:
            self._cache_put(prompt, params, out)
        return out

    def _cache_get(self, prompt: str, params: Mapping[str, Any]) -> ReaderOutput | None:
        """The cached answer, or None; a cache SQLite cannot read (damaged, disk error) is a miss, not the sweep's end."""
        if self.cache is None:
            return None
        try:
            return self.cache.get(self.name, self.model_id, prompt, params)
        except sqlite3.Error as exc:
            self._cache_failed(exc)
            return None

    def _cache_put(self, prompt: str, params: Mapping[str, Any], out: ReaderOutput) -> None:
        """Store an answer; when the cache cannot (disk full, damaged file) the answer still goes in this run's results."""
        if self.cache is None:
            return
        try:
            self.cache.put(self.name, self.model_id, prompt, params, out)
        except sqlite3.Error as exc:
            self._cache_failed(exc)

    def _cache_failed(self, exc: sqlite3.Error) -> None:
        """Warn once per reader: the run goes on without the cache (its answers are in the outputs, not stored)."""
        if getattr(self, "_cache_warned", False):
            return
        self._cache_warned = True
        warnings.warn(
            f"the reader cache {getattr(self.cache, 'path', self.cache)} failed ({type(exc).__name__}: {exc}); this run goes on without it "
            "(answers are written to the outputs but not stored, so a rerun asks them again); free disk space, or "
            "delete the file or pass --cache with another file", RuntimeWarning, stacklevel=2)

    def _redact(self, text: str) -> str:
        """Remove secrets from an error text (readers with secrets override this)."""
        return text

    def answer_many(
        self,
        items: Sequence[tuple[str, str]],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[ReaderOutput]:
        """Answer ``(question, context)`` pairs; results in input order.

        Identical prompts are answered once. Every finished item calls ``progress(n)`` with
        the number of items that just finished (pass ``tqdm.update`` or a counter); an
        exception raised by ``progress`` (e.g. ``KeyboardInterrupt``) stops the batch, and
        what finished is already in the cache.
        """
        prompts = [self.prompt(q, c) for q, c in items]
        first: dict[str, int] = {}
        for i, p in enumerate(prompts):
            first.setdefault(p, i)
        results = self._run_unique(list(first), prompts, progress)
        return [results[p] if i == first[p] else _as_repeat(results[p]) for i, p in enumerate(prompts)]

    def _run_unique(
        self,
        unique: list[str],
        prompts: list[str],
        progress: Callable[[int], None] | None,
    ) -> dict[str, ReaderOutput]:
        """Answer each unique prompt, one after another (readers with concurrency override)."""
        counts = _counts(prompts)
        results: dict[str, ReaderOutput] = {}
        for p in unique:
            results[p] = self._answer_prompt(p)
            if progress is not None:
                progress(counts[p])
        return results


def _counts(prompts: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in prompts:
        counts[p] = counts.get(p, 0) + 1
    return counts


def _as_repeat(out: ReaderOutput) -> ReaderOutput:
    """A repeated prompt in one batch is served from the first answer, like a cache hit."""
    return replace(out, cached=True) if out.ok else out


def params_as_json(params: Mapping[str, Any]) -> dict[str, Any]:
    """Settings with tuples as lists, so they compare equal after a JSON round trip."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}

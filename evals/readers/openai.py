"""A reader for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp
server, Ollama, ...), over httpx.

The API key is read from the environment variable named by ``api_key_env`` at each call
and is never stored on the object, so it cannot leak into its repr, params, errors, the
cache or reports. Transient failures (connection errors, timeouts, HTTP 408/429/5xx) are
retried with exponential backoff and jitter, honouring ``Retry-After``; other HTTP errors,
malformed answers (no message object) and answers cut before any text (``finish_reason``
``length`` or ``content_filter`` with no content, see :func:`incomplete_answer`) fail at once
with ``ok=False``: not scored, not cached, asked again on the next run.

>>> r = OpenAIReader(model="gpt-4o-mini", base_url="http://127.0.0.1:8000/v1")
>>> r.endpoint
'http://127.0.0.1:8000/v1/chat/completions'
>>> r.generation_params()
{'max_tokens': 32, 'temperature': 0.0, 'stop': ['\\n']}
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from evals.readers.openai_usage import billed_completion, usage_count
from evals.readers.base import BaseReader, ReaderOutput, _counts, params_as_json
from evals.readers.cache import ReaderCache
from evals.readers.prompt import DEFAULT_TEMPLATE, check_template, postprocess
from optimizer.lazy import lazy_import

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_WRAP_UP_S = 5.0  # after a Ctrl-C, how long running items may take to store answers already received
_KEY_LIKE = re.compile(r"\b(sk|key|tok)-[A-Za-z0-9_\-*.]{6,}")


class _Retryable(Exception):
    """A transient failure; ``delay`` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, message: str, delay: float | None = None):
        super().__init__(message)
        self.delay = delay


class EndpointUnreachableError(RuntimeError):
    """The endpoint could not be reached at all (connection refused, unknown host, no route): every call would fail."""


class OpenAIReader(BaseReader):
    """Answers through ``POST {base_url}/chat/completions``.

    Parameters
    ----------
    model:
        The model name the endpoint expects (goes in reports and the cache key).
    base_url:
        Endpoint root such as ``http://localhost:8000/v1``; ``None`` reads ``OPENAI_BASE_URL``
        at call time, else uses the OpenAI API. Not part of the cache key, so the same model
        behind another proxy reuses cached answers.
    api_key_env:
        Name of the environment variable holding the key (the key itself is never stored).
        Unset or empty sends no ``Authorization`` header (fine for local servers).
    max_tokens, temperature, stop, extra_body:
        Generation settings, all in the cache key; ``extra_body`` adds request fields.
    max_tokens_field:
        The request field for ``max_tokens`` (``"max_completion_tokens"`` for OpenAI's
        reasoning models, which reject ``max_tokens``).
    timeout:
        Seconds per request.
    max_retries, backoff_base, backoff_max:
        Up to ``max_retries`` retries after the first try, sleeping
        ``min(backoff_max, backoff_base * 2**attempt)`` times a random factor in [0.5, 1]
        (or the server's ``Retry-After``).
    max_concurrency:
        Parallel requests in :meth:`answer_many`.
    """

    name = "openai"

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 32,
        max_tokens_field: str = "max_tokens",
        temperature: float = 0.0,
        stop: tuple[str, ...] = ("\n",),
        extra_body: Mapping[str, Any] | None = None,
        template: str = DEFAULT_TEMPLATE,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        max_concurrency: int = 4,
        cache: ReaderCache | None = None,
    ):
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, got {model!r}")
        if base_url is not None and not re.match(r"^https?://", str(base_url)):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not isinstance(api_key_env, str) or not api_key_env:
            raise ValueError(f"api_key_env must name an environment variable, got {api_key_env!r}")
        for label, value in (("max_tokens", max_tokens), ("max_concurrency", max_concurrency)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        for label, value in (("timeout", timeout), ("backoff_base", backoff_base), ("backoff_max", backoff_max)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{label} must be a number >= 0 (seconds), got {value!r}")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_tokens = max_tokens
        self.max_tokens_field = max_tokens_field
        self.temperature = temperature
        self.stop = tuple(stop)
        self.extra_body = dict(extra_body) if extra_body is not None else None
        self.template = check_template(template)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_concurrency = max_concurrency
        self.cache = cache
        self._client: Any = None
        self._lock = threading.Lock()
        self._streams: weakref.WeakSet[Any] = weakref.WeakSet()  # open connections, so a Ctrl-C can cut them
        self._batch = threading.local()  # a pool thread's batch: its stop event

    # -- settings -----------------------------------------------------------------------
    @property
    def base(self) -> str:
        """The endpoint root in use (``base_url``, else ``$OPENAI_BASE_URL``, else the OpenAI API)."""
        return (self.base_url if self.base_url is not None else os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")

    @property
    def endpoint(self) -> str:
        """The chat-completions URL this reader posts to."""
        return self.base + "/chat/completions"

    def key_warning(self, *, named: bool = True) -> str | None:
        """What to tell a user whose key variable is unset or empty, else None.

        ``named``: the user chose ``api_key_env``; when not, only the OpenAI API (which needs
        a key) is warned about, since a local server is fine without one.
        """
        if self._api_key() is not None or (not named and self.base != DEFAULT_BASE_URL):
            return None
        return (f"${self.api_key_env} (--api-key-env) is not set or empty: requests to {self.base} go without an "
                "Authorization header (fine for a local server; an API that needs a key will answer 401 to every call)")

    def check_endpoint(self, timeout: float = 10.0) -> str | None:
        """One cheap request (``GET {base}/models``) before a sweep, so a wrong ``--base-url`` stops it at once.

        Raises :class:`EndpointUnreachableError` when no connection can be made (refused, unknown
        host, connect timeout, not HTTP). Any HTTP answer, even an error (some servers have no
        ``/models``), counts as reachable; a 401/403 is returned as a warning to show. Nothing is cached.
        """
        httpx = lazy_import("httpx", extra="eval", purpose="the OpenAI-compatible reader")
        url = self.base + "/models"
        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        try:
            response = self._http().get(url, headers=headers, timeout=min(float(self.timeout), timeout) or timeout)
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            return None  # connected: the server is there, only slow to list its models
        except httpx.TransportError as exc:
            detail = str(exc).strip().rstrip(".") or type(exc).__name__
            reason = "connection refused" if "refused" in detail.lower() else f"{type(exc).__name__}: {detail}"
            raise EndpointUnreachableError(self._redact(
                f"cannot reach the openai reader's endpoint {self.base} ({reason}); check --base-url "
                "(scheme, host, port and the /v1 root) and that the server is running; nothing was run"
            )) from None
        if response.status_code in (401, 403):
            return f"{url} answered HTTP {response.status_code}: check the API key in ${self.api_key_env}"
        return None

    def generation_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_tokens": self.max_tokens,
            "temperature": float(self.temperature),
            "stop": self.stop,
        }
        if self.extra_body:
            params["extra_body"] = dict(self.extra_body)
        return params_as_json(params)

    def _api_key(self) -> str | None:
        key = os.environ.get(self.api_key_env)
        return key if key else None

    def _redact(self, text: str) -> str:
        key = self._api_key()
        if key:
            text = text.replace(key, "***")
        return _KEY_LIKE.sub("***", text)

    # -- HTTP ---------------------------------------------------------------------------
    def _http(self) -> Any:
        with self._lock:
            if self._client is None:
                httpx = lazy_import("httpx", extra="eval", purpose="the OpenAI-compatible reader")
                limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
                self._client = httpx.Client(timeout=self.timeout, limits=limits)
            return self._client

    def close(self) -> None:
        """Close the HTTP connection pool (it reopens on next use)."""
        with self._lock:
            client, self._client = self._client, None
            self._streams = weakref.WeakSet()
        if client is not None:
            client.close()

    def _abort(self) -> None:
        """Cut every open connection, then close the pool: a request waiting on a stalled endpoint ends now.

        Closing an httpx client alone leaves a thread blocked reading its socket until the timeout.
        """
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            _cut(stream)
        self.close()

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx trace hook: remember each new connection, and cut one opened after a stop at once."""
        if event == "connection.connect_tcp.complete":
            stream = info.get("return_value")
            with self._lock:
                self._streams.add(stream)
            if self._stop().is_set():
                _cut(stream)

    def _stop(self) -> threading.Event:
        """The stop event of the batch this thread works for (a fresh, unset one outside a batch)."""
        return getattr(self._batch, "stop", None) or threading.Event()

    def _join_batch(self, stop: threading.Event) -> None:
        """Pool-thread initializer: this thread stops retrying when ``stop`` is set."""
        self._batch.stop = stop

    def _request_body(self, prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            self.max_tokens_field: self.max_tokens,
            "temperature": float(self.temperature),
        }
        if self.stop:
            body["stop"] = list(self.stop)
        if self.extra_body:
            body.update(self.extra_body)
        return body

    def _generate(self, prompt: str) -> ReaderOutput:
        body = self._request_body(prompt)
        error = "no attempt made"
        stop = self._stop()
        for attempt in range(self.max_retries + 1):
            if stop.is_set():  # the batch was interrupted: send nothing more (retries may be paid for)
                return ReaderOutput.failure(self._redact(f"interrupted after {attempt} of {self.max_retries + 1} tries ({error})"))
            try:
                return self._post_once(body)
            except _Retryable as exc:
                error = str(exc)
                if attempt == self.max_retries:
                    break
                self._pause(self._backoff(attempt, exc.delay), stop)
        tries = self.max_retries + 1
        return ReaderOutput.failure(self._redact(f"{error} (gave up after {tries} {'try' if tries == 1 else 'tries'})"))

    def _pause(self, seconds: float, stop: threading.Event) -> None:
        """Sleep between retries, waking as soon as the batch is interrupted."""
        stop.wait(seconds)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), 600.0)
        return min(self.backoff_max, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.0)

    def _post_once(self, body: dict[str, Any]) -> ReaderOutput:
        httpx = lazy_import("httpx", extra="eval", purpose="the OpenAI-compatible reader")
        url = self.endpoint
        headers = {"Content-Type": "application/json"}
        key = self._api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        start = time.perf_counter()
        try:
            response = self._http().post(url, json=body, headers=headers, extensions={"trace": self._trace})
        except httpx.TimeoutException as exc:
            raise _Retryable(f"request to {url} timed out after {self.timeout}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            detail = str(exc).strip().rstrip(".")
            reason = "connection refused" if "refused" in detail.lower() else f"{type(exc).__name__}: {detail}"
            raise _Retryable(f"could not reach {url} : {reason}; check --base-url") from None
        latency_ms = (time.perf_counter() - start) * 1000
        status = response.status_code
        if status in RETRY_STATUS:
            raise _Retryable(
                f"HTTP {status} from {url}: {_snippet(response.text)}", _retry_after(response.headers)
            )
        if status >= 400:
            hint = f"; check the API key in ${self.api_key_env}" if status in (401, 403) else ""
            if status == 404:
                hint = f"; check --base-url and that model {self.model!r} exists there"
            return ReaderOutput.failure(self._redact(f"HTTP {status} from {url}: {_snippet(response.text)}{hint}"), latency_ms)
        try:
            payload = response.json()
            choice = payload["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            return ReaderOutput.failure(
                self._redact(f"unexpected response from {url} (not chat-completions JSON): {_snippet(response.text)}"),
                latency_ms,
            )
        finish_reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        finish_reason = finish_reason if isinstance(finish_reason, str) else None
        if not isinstance(message, dict):
            # {"message": null} or a string: no answer came back, which is not the model answering nothing
            return replace(ReaderOutput.failure(self._redact(
                f"malformed response from {url}: choices[0].message is {'null' if message is None else type(message).__name__}, not an object "
                f"(finish_reason {finish_reason!r}): {_snippet(response.text)}"), latency_ms), finish_reason=finish_reason)
        raw = _content_text(message.get("content"))
        problem = incomplete_answer(raw, finish_reason, max_tokens=self.max_tokens, field=self.max_tokens_field)
        if problem is not None:
            return replace(ReaderOutput.failure(self._redact(f"{problem} (from {url})"), latency_ms), finish_reason=finish_reason)
        text = postprocess(raw)
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        # reasoning tokens an upstream reports beside completion_tokens (xAI) are billed as output too (openai_usage)
        prompt_tokens = usage_count(usage.get("prompt_tokens"))
        completion_tokens = billed_completion(usage, prompt_tokens, usage_count(usage.get("completion_tokens")))
        # an empty answer the model ended itself ("stop") is a real, wrong answer: ok, scored 0, cached like any other
        return ReaderOutput(text, True, None, latency_ms, False, prompt_tokens, completion_tokens, finish_reason)

    # -- batches ------------------------------------------------------------------------
    def _run_unique(
        self,
        unique: list[str],
        prompts: list[str],
        progress: Callable[[int], None] | None,
    ) -> dict[str, ReaderOutput]:
        """Answer unique prompts with up to ``max_concurrency`` requests in flight."""
        counts = _counts(prompts)
        results: dict[str, ReaderOutput] = {}
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="ragtrim-reader",
                                  initializer=self._join_batch, initargs=(stop,))
        pending: dict[Future[ReaderOutput], str] = {}
        try:
            pending.update({pool.submit(self._answer_prompt, p): p for p in unique})
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    p = pending.pop(future)
                    results[p] = future.result()
                    if progress is not None:
                        progress(counts[p])
        except BaseException:
            # a Ctrl-C: drop queued items, stop retrying, cut requests in flight (waiting for them could
            # take max_retries x timeout, paid retries included); answers already received are cached
            stop.set()
            self._abort()
            pool.shutdown(wait=False, cancel_futures=True)
            wait(pending, timeout=_WRAP_UP_S)  # running items now end at once, storing what they received
            raise
        pool.shutdown(wait=True)
        return results


def incomplete_answer(content: str, finish_reason: str | None, *, max_tokens: int, field: str = "max_tokens") -> str | None:
    """Why an answer with no text is a failed call, not a wrong answer (None when it is an answer).

    No text with ``finish_reason`` ``"length"`` means the model ran out of tokens before answering (a reasoning
    model spends them thinking), and ``"content_filter"`` that the provider withheld the answer: neither is the
    model's answer, so neither is scored or cached.

    >>> incomplete_answer("", "length", max_tokens=32)  # doctest: +ELLIPSIS
    "no answer: finish_reason 'length', the model used all max_tokens=32 before writing an answer; raise max_tokens..."
    >>> incomplete_answer("Paris", "length", max_tokens=32) is None, incomplete_answer("", "stop", max_tokens=32) is None
    (True, True)
    """
    if content.strip():
        return None
    if finish_reason == "length":
        return (f"no answer: finish_reason 'length', the model used all {field}={max_tokens} before writing an answer; "
                "raise max_tokens (OpenAIReader(max_tokens=...); a reasoning model needs hundreds or more) or use a model "
                "that answers without reasoning first")
    if finish_reason == "content_filter":
        return ("no answer: finish_reason 'content_filter', the provider's content filter withheld the answer; check the "
                "prompt or the content filter settings of the endpoint (e.g. the Azure OpenAI deployment's filter)")
    return None


def _cut(stream: Any) -> None:
    """Shut an httpcore network stream's socket down, so a thread blocked reading it wakes at once."""
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


def _content_text(content: Any) -> str:
    """Message content as text (a string, or a list of ``{"type": "text"}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else None.

    >>> _retry_after({"retry-after": "2"}), _retry_after({})
    (2.0, None)
    """
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)

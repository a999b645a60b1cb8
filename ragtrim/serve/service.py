"""The running service's parts, built once per process from a :class:`ServeConfig`.

Tests build one directly (``Service(config, db_url="sqlite://", pepper=b"...")``) and pass
fake upstream clients; :func:`ragtrim.serve.app.create_app` wraps it in HTTP.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from ragtrim.serve.client_left import ClientLeft, when_client_leaves
from ragtrim.serve.config import ModelConfig, ServeConfig, check_tokenizers
from ragtrim.serve.db import make_engine
from ragtrim.serve.fair_queue import FairQueue
from ragtrim.serve.keys import load_pepper
from ragtrim.serve.logs import get_logger
from ragtrim.serve.metrics import Metrics
from ragtrim.serve.paths import cache_dir, default_db_url
from ragtrim.serve.pricing import ModelPrice, model_price
from ragtrim.serve.quota import QuotaStore
from ragtrim.serve.tenant_runs import TenantRuns
from ragtrim.serve.anthropic_upstream import AnthropicUpstream
from ragtrim.serve.upstream import LocalUpstream, OpenAIUpstream

_PIPELINES = 32


def make_upstream(config: Any, *, on_retry: Callable[[], None] | None = None) -> Any:
    """The client for an upstream's ``config`` (:class:`ragtrim.serve.config.UpstreamConfig`); ``on_retry`` is called each
    time a request is sent again (HTTP upstreams only)."""
    if config.kind == "anthropic":
        return AnthropicUpstream(config, on_retry=on_retry)
    return LocalUpstream(config) if config.kind == "local" else OpenAIUpstream(config, on_retry=on_retry)


def new_worker_id() -> str:
    """``host:pid:random`` so reservations name the process that holds them."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OptimizerClock:
    """One request's optimizer time: ``limit`` seconds in all (0: none), ``spent`` so far over its runs.

    A chat request that degrades runs the optimizer again at a smaller budget; each run gets what
    the earlier ones left, so ``[limits] optimize_seconds`` bounds the request, not each run.

    >>> c = OptimizerClock(20); c.spent = 12.5; c.left()
    7.5
    >>> OptimizerClock(0).left() is None
    True
    """

    __slots__ = ("limit", "spent")

    def __init__(self, limit: float) -> None:
        self.limit = float(limit)
        self.spent = 0.0

    def left(self) -> float | None:
        """Seconds the next run may take (0 once spent), None without a limit."""
        return max(0.0, self.limit - self.spent) if self.limit > 0 else None


async def _stop_when_cancelled(deadline: Any, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """Wait beside an optimizer run; once cancelled, stop its ``deadline``: a request the shutdown cancels
    stops its run at the next check (its thread would otherwise work on for no one, up to the limit). Also
    cancelled when the run is over, when stopping changes nothing. Started (``task_status``) once it waits, so
    no cancellation lands before its ``finally`` is armed."""
    try:
        task_status.started()
        await anyio.sleep_forever()
    finally:
        deadline.stop("the request was cancelled (the gateway is shutting down)")


class Service:
    """Config, database, quota store, prices, upstream clients, pipelines and metrics."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        db_url: str | None = None,
        engine: Any = None,
        pepper: bytes | None = None,
        upstreams: Mapping[str, Any] | None = None,
        worker_id: str | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ):
        self.config = config
        check_tokenizers(config)  # a name no request could use stops the start, not every request
        url = db_url if db_url is not None else (config.db if config.db is not None else default_db_url())
        self.db_url = url
        self.engine = engine if engine is not None else make_engine(url)
        self.pepper = pepper if pepper is not None else load_pepper(config.pepper_env, cache_dir())
        self.worker_id = worker_id if worker_id is not None else new_worker_id()
        self.clock = clock
        self.quota = QuotaStore(self.engine, worker_id=self.worker_id, lease_seconds=config.lease_seconds, clock=clock)
        from evals.cost import load_prices

        table = load_prices(config.prices)
        self.prices: dict[str, ModelPrice] = {name: model_price(m, table, local=config.upstreams[m.upstream].kind == "local",
                                                                anthropic=config.upstreams[m.upstream].kind == "anthropic")
                                              for name, m in config.models.items()}
        self.metrics = metrics if metrics is not None else Metrics()
        given = dict(upstreams or {})
        self.upstreams = {name: given.get(name) or make_upstream(u, on_retry=self.metrics.upstream_retries.labels(name).inc)
                          for name, u in config.upstreams.items()}
        self.log = get_logger()
        self._pipelines: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._optimizer_limiter: anyio.CapacityLimiter | None = None
        self._fair: FairQueue | None = None
        self.tenant_runs = TenantRuns(config.tenant_optimizer_runs)  # per tenant, runs in flight on this worker
        self.started = time.time()

    def model(self, name: str | None, kind: str | None = "chat", route: str | None = None) -> ModelConfig:
        """The configured model ``name`` of ``kind``, asked on ``route`` (:meth:`ragtrim.serve.config.ServeConfig.model`)."""
        return self.config.model(name, kind, route)

    def upstream(self, model: ModelConfig) -> Any:
        return self.upstreams[model.upstream]

    def pipeline(self, preset: str, tokenizer: str, score_direction: str = "auto") -> Any:
        """A cached pipeline for ``(preset, tokenizer, score_direction)``; the budget is passed per run."""
        from optimizer.pipeline import Pipeline

        key = (preset, tokenizer, score_direction)
        with self._lock:
            if key in self._pipelines:
                self._pipelines.move_to_end(key)
                return self._pipelines[key]
        built = Pipeline.preset(preset, tokenizer=tokenizer, score_direction=None if score_direction == "auto" else score_direction)
        with self._lock:
            self._pipelines[key] = built
            while len(self._pipelines) > _PIPELINES:
                self._pipelines.popitem(last=False)
        return built

    async def optimize(self, preset: str, tokenizer: str, query: str, chunks: Sequence[Any], *, tenant: str, budget: Any,
                       clock: OptimizerClock | None = None, score_direction: str = "auto",
                       client_left: Callable[[], Awaitable[bool]] | None = None) -> Any:
        """Run the ``(preset, tokenizer, score_direction)`` pipeline on a thread of this worker's optimizer pool.

        At most ``optimizer_threads`` runs at once; the others wait here in ``tenant``'s turn
        (:class:`ragtrim.serve.fair_queue.FairQueue`: a freed thread goes to the waiting tenant served
        least recently, each tenant's runs in arrival order), so one tenant's many runs do not queue
        every other tenant's behind all of them. The blocking database calls (key checks, budgets,
        ledger rows) use the event loop's own thread pool, so a refusal or a settle does not queue
        behind optimizer runs.

        The run gets what is left of the request's ``[limits] optimize_seconds`` (``clock``, shared
        by a request's runs; a new one when None), counted from when it starts, not while it waits
        for a thread. Past it, the run stops at its next check and raises
        :class:`optimizer.OptimizerTimeout` (counted in ``ragtrim_optimizer_timeouts_total``).

        ``client_left`` (the request's ``is_disconnected``) is asked once the run has its turn: a
        client that gave up while the run waited gets no run (:class:`ClientLeft`), so the threads go
        to requests someone still waits for. While the run is on its thread, a watcher task
        (:func:`ragtrim.serve.client_left.when_client_leaves`) asks it again every ``CLIENT_POLL_SECONDS``
        (0.25 s) and, once the client has gone, stops the run's
        :class:`optimizer.Deadline`: the run stops at its next check (:class:`optimizer.OptimizerStopped`,
        counted in ``ragtrim_optimizer_stopped_total``) and this raises :class:`ClientLeft`, so the
        thread is free again rather than working up to the limit for no one (the OpenAI SDKs time out
        and send a slow request again, up to three times).
        """
        from optimizer.deadline import Deadline, OptimizerStopped, OptimizerTimeout

        queued = time.perf_counter()
        clock = clock if clock is not None else self.optimizer_clock()

        def run(deadline: Deadline) -> Any:
            started = time.perf_counter()
            self.metrics.observe_optimizer_wait(started - queued)  # ragtrim_optimizer_wait_seconds
            try:
                if deadline.seconds == 0:  # a degraded request's earlier runs used the whole allowance: not even a render
                    raise OptimizerTimeout(clock.limit, clock.spent, "before a further run: the request's earlier runs used the limit")
                # the default asks as before, (preset, tokenizer): a stand-in for ``pipeline`` may take just those
                args = (preset, tokenizer) if score_direction == "auto" else (preset, tokenizer, score_direction)
                return self.pipeline(*args).run(query, list(chunks), budget=budget, timeout=deadline)
            except OptimizerTimeout:
                self.metrics.observe_optimizer_timeout(preset)
                raise
            except OptimizerStopped:
                self.metrics.observe_optimizer_stopped(preset)
                raise
            finally:
                clock.spent += deadline.elapsed()  # as the limit counts it, from the deadline made just before the thread
                self.metrics.observe_optimizer_run(preset, time.perf_counter() - started)

        async with self.fair.turn(tenant):  # its turn: a thread is free (the limiter below never queues)
            if client_left is not None and await client_left():
                raise ClientLeft(started=False)
            left = clock.left()
            deadline = Deadline(math.inf if left is None else left)  # counted from here: the thread starts now
            async with anyio.create_task_group() as watch:
                await watch.start(_stop_when_cancelled, deadline)  # a shutdown cancels the request: the run stops too
                if client_left is not None:
                    watch.start_soon(when_client_leaves, client_left, partial(deadline.stop, "the client disconnected"))
                try:
                    return await anyio.to_thread.run_sync(run, deadline, limiter=self.optimizer_limiter)
                except Exception as exc:  # raised below, past the task group (which would wrap it in an ExceptionGroup)
                    failed = exc
                finally:
                    watch.cancel_scope.cancel()  # the run is over: its watcher ends with it
        if isinstance(failed, OptimizerStopped):
            await anyio.lowlevel.checkpoint_if_cancelled()  # stopped by a shutdown's cancellation: that goes on
            raise ClientLeft(started=True) from None
        raise failed

    def optimizer_clock(self) -> OptimizerClock:
        """A new request's allowance of optimizer time (``[limits] optimize_seconds``)."""
        return OptimizerClock(self.config.limits.optimize_seconds)

    def full_tokens(self, preset: str, tokenizer: str, chunks: Sequence[Any]) -> int:
        """Tokens of every chunk rendered by the ``(preset, tokenizer)`` pipeline, without optimizing (blocking)."""
        return int(self.pipeline(preset, tokenizer).full_tokens(chunks))

    @property
    def fair(self) -> FairQueue:
        """The queue of optimizer runs, in turn across tenants (``statistics()`` tells how many run and wait, per tenant)."""
        if self._fair is None:
            self._fair = FairQueue(self.config.optimizer_threads)
        return self._fair

    @property
    def optimizer_limiter(self) -> anyio.CapacityLimiter:
        """The optimizer's own threads (never waited for: :attr:`fair` admits at most ``optimizer_threads`` runs)."""
        if self._optimizer_limiter is None:
            self._optimizer_limiter = anyio.CapacityLimiter(self.config.optimizer_threads)
        return self._optimizer_limiter

    async def start(self) -> None:
        self._optimizer_limiter = anyio.CapacityLimiter(self.config.optimizer_threads)  # bound to this event loop
        self._fair = FairQueue(self.config.optimizer_threads)  # its waits are events of this loop
        for client in self.upstreams.values():
            await client.start()

    async def stop(self) -> None:
        for client in self.upstreams.values():
            await client.aclose()
        await anyio.to_thread.run_sync(self.quota.close)  # the marks of requests sent upstream still queued
        self.engine.dispose()

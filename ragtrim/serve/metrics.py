"""Prometheus metrics: requests, tokens sent and saved, $ spent and saved, refusals,
degradations and latency histograms.

A request charged its reservation as an estimate by the expiry of its hold is counted then, by
the worker that expired it. Should its own worker still settle it (late, with the real usage) or
release it, the ledger replaces the estimate; a counter cannot go down, so what the real usage
is below the estimate (all of it, for a release) is counted on ``ragtrim_estimate_corrections_X``,
one for each counter ``ragtrim_X`` of tokens or money, with the same labels, and what it is above
on ``ragtrim_X`` itself (:meth:`Metrics.observe_settled`). What was charged is ``ragtrim_X -
ragtrim_estimate_corrections_X``: the ledger's sum. Each correction series is created (at 0) with
its counter's, so that subtraction finds both sides.

With several uvicorn workers, ``ragtrim serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
directory before the workers start; every worker then writes its values there and
``/metrics`` on any worker reports the sum over all of them (prometheus-client's multiprocess
mode). With one worker, or in tests, each :class:`Metrics` has its own registry.

>>> m = Metrics()
>>> m.observe_request(endpoint="chat", action="ok", tenant="acme", status=200, latency_s=0.1, overhead_s=0.01)
>>> b"ragtrim_requests_total" in m.exposition()[0]
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from optimizer.lazy import lazy_import

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# an optimizer run: milliseconds for a retriever's 20 chunks, up to [limits] optimize_seconds (20 s by default) and past it
_RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0)
# the amounts of a usage (as observe_usage takes it), the counter each is counted on (without ragtrim_), and whether
# that counter is per model too (else per tenant only)
AMOUNTS = {"tokens_sent": ("context_tokens_sent", False), "tokens_saved": ("context_tokens_saved", False),
           "prompt": ("prompt_tokens", True), "completion": ("completion_tokens", True),
           "cached": ("cached_prompt_tokens", True), "cost_micro": ("spend_microdollars", True),
           "saved_micro": ("saved_microdollars", False)}


class Metrics:
    """The service's metric families (created per instance, never at import time)."""

    def __init__(self) -> None:
        prom = lazy_import("prometheus_client", extra="serve", purpose="ragtrim serve's /metrics")
        self._prom = prom
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = prom.CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = prom.Counter("ragtrim_requests", "Requests answered", ["endpoint", "action", "status"], registry=reg)
        self.tokens_sent = prom.Counter("ragtrim_context_tokens_sent", "Context tokens sent after optimization", ["tenant"], registry=reg)
        self.tokens_saved = prom.Counter("ragtrim_context_tokens_saved", "Context tokens the optimizer removed", ["tenant"], registry=reg)
        self.prompt_tokens = prom.Counter("ragtrim_prompt_tokens", "Prompt tokens (upstream-reported, else counted)", ["tenant", "model"], registry=reg)
        self.completion_tokens = prom.Counter("ragtrim_completion_tokens", "Completion tokens", ["tenant", "model"], registry=reg)
        self.cached_tokens = prom.Counter("ragtrim_cached_prompt_tokens", "Of the prompt tokens, those the upstream read from "
                                          "its prompt cache (charged the cached-input price)", ["tenant", "model"], registry=reg)
        self.spent = prom.Counter("ragtrim_spend_microdollars", "Cost charged, micro-dollars", ["tenant", "model"], registry=reg)
        self.saved = prom.Counter("ragtrim_saved_microdollars", "Input cost avoided by optimization, micro-dollars", ["tenant"], registry=reg)
        self.refusals = prom.Counter("ragtrim_quota_refusals", "Requests refused with 429 (quota)", ["tenant"], registry=reg)
        self.degradations = prom.Counter("ragtrim_degradations", "Requests degraded to fit a budget", ["tenant", "kind"], registry=reg)
        self.corrections = {amount: prom.Counter(
            f"ragtrim_estimate_corrections_{name}", f"Charged estimates taken back by a late settle (the part above the real "
            f"usage) or a late release (all of it): subtract from ragtrim_{name}", ["tenant", "model"] if per_model else ["tenant"],
            registry=reg) for amount, (name, per_model) in AMOUNTS.items()}
        self.upstream_retries = prom.Counter("ragtrim_upstream_retries", "Requests sent to an upstream again because it "
                                             "cannot have started on them (no connection, or a keep-alive race)", ["upstream"], registry=reg)
        self.latency = prom.Histogram("ragtrim_request_seconds", "Request latency", ["endpoint"], buckets=_LATENCY_BUCKETS, registry=reg)
        self.overhead = prom.Histogram("ragtrim_gateway_overhead_seconds", "Latency minus upstream time", ["endpoint"],
                                       buckets=_LATENCY_BUCKETS, registry=reg)
        self.upstream = prom.Histogram("ragtrim_upstream_seconds", "Upstream call time", ["model"], buckets=_LATENCY_BUCKETS, registry=reg)
        self.optimizer_runs = prom.Histogram("ragtrim_optimizer_run_seconds", "Time an optimizer run took (on its thread), "
                                             "stopped ones included", ["preset"], buckets=_RUN_BUCKETS, registry=reg)
        self.optimizer_timeouts = prom.Counter("ragtrim_optimizer_timeouts", "Optimizer runs stopped at [limits] "
                                               "optimize_seconds (each request refused with a 503 optimizer_timeout)",
                                               ["preset"], registry=reg)
        self.optimizer_stopped = prom.Counter("ragtrim_optimizer_stopped", "Optimizer runs stopped before their end "
                                              "because their client disconnected (each request a 499, uncharged)",
                                              ["preset"], registry=reg)
        self.optimizer_wait = prom.Histogram("ragtrim_optimizer_wait_seconds", "Time an optimizer run waited for one of its "
                                             "worker's optimizer_threads", buckets=_LATENCY_BUCKETS, registry=reg)

    def observe_request(self, *, endpoint: str, action: str, tenant: str, status: int, latency_s: float, overhead_s: float) -> None:
        self.requests.labels(endpoint, action, str(status)).inc()
        self.latency.labels(endpoint).observe(latency_s)
        self.overhead.labels(endpoint).observe(max(0.0, overhead_s))
        if action == "refused":
            self.refusals.labels(tenant).inc()

    def observe_usage(self, *, tenant: str, model: str, tokens_sent: int, tokens_saved: int, prompt: int, completion: int,
                      cost_micro: int, saved_micro: int, upstream_s: float | None, cached: int = 0) -> None:
        self.tokens_sent.labels(tenant).inc(tokens_sent)
        self.tokens_saved.labels(tenant).inc(max(0, tokens_saved))
        self.saved.labels(tenant).inc(max(0, saved_micro))
        if model:
            self.prompt_tokens.labels(tenant, model).inc(prompt)
            self.completion_tokens.labels(tenant, model).inc(completion)
            self.cached_tokens.labels(tenant, model).inc(cached)
            self.spent.labels(tenant, model).inc(cost_micro)
        self._correct(tenant, model, {})  # the correction series exist from the first count, at 0
        if upstream_s is not None:
            self.observe_upstream(model, upstream_s)

    def observe_upstream(self, model: str, seconds: float) -> None:
        if model:
            self.upstream.labels(model).observe(seconds)

    def observe_settled(self, usage: Mapping[str, Any], *, replaced: Mapping[str, Any] | None = None,
                        upstream_s: float | None = None) -> None:
        """Count a settle's ``usage`` (as :meth:`observe_usage` takes it); one that replaced an estimate an expiry had
        charged and counted (``replaced``, the same form) only by the difference: the amounts above the estimate on
        the usual counters, those below it on ``ragtrim_estimate_corrections_*``.

        >>> m = Metrics()
        >>> est = dict(tenant="t", model="m", tokens_sent=9, tokens_saved=1, prompt=300, completion=500, cost_micro=5000, saved_micro=4)
        >>> m.observe_usage(**est, upstream_s=None)  # the expiry's estimate
        >>> m.observe_settled({**est, "prompt": 310, "completion": 20, "cost_micro": 1500}, replaced=est)
        >>> m.spent.labels("t", "m")._value.get(), m.corrections["cost_micro"].labels("t", "m")._value.get()
        (5000.0, 3500.0)
        >>> m.prompt_tokens.labels("t", "m")._value.get(), m.corrections["prompt"].labels("t", "m")._value.get()
        (310.0, 0.0)
        """
        if replaced is None or (replaced["tenant"], replaced["model"]) != (usage["tenant"], usage["model"]):
            self.observe_usage(**usage, upstream_s=upstream_s)
            if replaced is not None:  # another tenant or model (never, as the gateway settles): the estimate given back whole
                self.observe_given_back(replaced)
            return
        above = {k: max(0, int(usage.get(k, 0)) - int(replaced.get(k, 0))) for k in AMOUNTS}  # "cached" may be left out
        self.observe_usage(tenant=usage["tenant"], model=usage["model"], **above, upstream_s=upstream_s)
        below = {k: max(0, int(replaced.get(k, 0)) - int(usage.get(k, 0))) for k in AMOUNTS}
        self._correct(usage["tenant"], usage["model"], below)

    def observe_given_back(self, estimate: Mapping[str, Any]) -> None:
        """Count an estimate a late release gave back (the request is charged nothing) on ``ragtrim_estimate_corrections_*``."""
        self._correct(estimate["tenant"], estimate["model"], {k: int(estimate.get(k, 0)) for k in AMOUNTS})

    def _correct(self, tenant: str, model: str, amounts: Mapping[str, int]) -> None:
        """Add ``amounts`` to the correction counters of ``tenant`` (and ``model``); 0 for an amount not given."""
        for amount, (_, per_model) in AMOUNTS.items():
            if per_model and not model:
                continue
            child = self.corrections[amount].labels(tenant, model) if per_model else self.corrections[amount].labels(tenant)
            child.inc(max(0, amounts.get(amount, 0)))

    def observe_optimizer_run(self, preset: str, seconds: float) -> None:
        self.optimizer_runs.labels(preset).observe(max(0.0, seconds))

    def observe_optimizer_timeout(self, preset: str) -> None:
        self.optimizer_timeouts.labels(preset).inc()

    def observe_optimizer_stopped(self, preset: str) -> None:
        self.optimizer_stopped.labels(preset).inc()

    def observe_optimizer_wait(self, seconds: float) -> None:
        self.optimizer_wait.observe(max(0.0, seconds))

    def observe_degrade(self, *, tenant: str, steps: tuple[str, ...]) -> None:
        for step in steps:
            self.degradations.labels(tenant, step.split(" ", 1)[0]).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type (summed over workers in multiprocess mode)."""
        prom = self._prom
        if self.multiprocess:
            multiprocess = lazy_import("prometheus_client.multiprocess", extra="serve", purpose="ragtrim serve's /metrics")
            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Clean a dead worker's live gauges (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess: Any = lazy_import("prometheus_client.multiprocess", extra="serve", purpose="ragtrim serve's /metrics")
        multiprocess.mark_process_dead(pid)

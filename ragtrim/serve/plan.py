"""Degrade before refusing: fit a chat request into what its budgets have left, then reserve it.

The worst case of a request is its prompt after optimization plus ``max_tokens`` of
completion, at the model's price. Order of attempts:

1. the asked context budget with the asked model;
2. a smaller context budget, computed from what the tightest budget has left, down to the
   configured floor (``degrade.floor``);
3. the model's configured ``cheaper`` model (again from the asked budget down to the floor);
4. refuse (the caller answers 429 with ``Retry-After``: at the period's reset when a budget is
   spent, the latest of them when several are; a few seconds when only requests in flight hold the
   room of every budget short of it; :func:`ragtrim.serve.quota.blocking`).

Every reservation is atomic (:meth:`ragtrim.serve.quota.QuotaStore.reserve`); the snapshot
used to pick a smaller budget may be stale, so a failed reservation is re-planned a few times.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optimizer.budget import Budget, resolve_budget
from ragtrim.serve.budgets import Budget as QuotaBudget, period_reset
from ragtrim.serve.config import ModelConfig
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.logs import get_logger, log_event
from ragtrim.serve.pricing import ModelPrice
from ragtrim.serve.quota import Need, QuotaStore, Reservation, Shortfall, Standing, blocking

MAX_REPLANS = 8
JOIN_SLACK = 2  # tokens a prompt's count may lose where the context joins the text around it


@dataclass(frozen=True)
class Attempt:
    """One way to send the request: model, context budget, the optimized context and its worst case."""

    model: ModelConfig
    price: ModelPrice
    budget_tokens: int | None
    result: Any  # optimizer Result, or None without documents
    messages: tuple[Mapping[str, Any], ...]
    prompt_tokens: int
    max_tokens: int  # the completion cap (what the upstream is sent as its cap)
    # completion tokens the upstream may bill above that cap: a ``prediction``'s rejected tokens
    # (:func:`ragtrim.serve.upstream.prediction_tokens`); reserved with it, never sent as a cap
    predicted_tokens: int = 0

    @property
    def completion_tokens(self) -> int:
        """The most completion tokens the upstream can bill: the cap and :attr:`predicted_tokens`."""
        return self.max_tokens + self.predicted_tokens

    @property
    def tokens_full(self) -> int:
        return int(self.result.tokens_full) if self.result is not None else 0

    @property
    def tokens_sent(self) -> int:
        return int(self.result.tokens) if self.result is not None else 0

    @property
    def context(self) -> str:
        return self.result.text if self.result is not None else ""

    def need(self) -> Need:
        """The worst case to reserve: prompt and ``max_tokens`` out, each with the model's ``count_margin``."""
        margin = self.model.count_margin
        prompt, out = with_margin(self.prompt_tokens, margin), with_margin(self.completion_tokens, margin)
        return Need(tokens=prompt + out, micro=self.price.worst_micro(prompt_tokens=prompt, completion_tokens=out))


def _ppm(margin: float) -> int:
    """``margin`` in parts per million, so margins are added with integers."""
    return round(margin * 1_000_000)


def with_margin(tokens: int, margin: float) -> int:
    """``tokens`` plus the share ``margin`` of them, rounded up (exact integer arithmetic).

    >>> with_margin(100, 0.2), with_margin(101, 0.2), with_margin(7, 0.0)
    (120, 122, 7)
    """
    ppm = _ppm(margin)
    return tokens + (tokens * ppm + 999_999) // 1_000_000 if ppm and tokens > 0 else tokens


def without_margin(reserved: int, margin: float) -> int:
    """The most tokens whose :func:`with_margin` fits in ``reserved`` (``reserved`` itself when it is below 1).

    >>> without_margin(120, 0.2), without_margin(121, 0.2), without_margin(-1, 0.2)
    (100, 100, -1)
    """
    ppm = _ppm(margin)
    if reserved < 1 or not ppm:
        return reserved
    tokens = reserved * 1_000_000 // (1_000_000 + ppm)
    while tokens > 0 and with_margin(tokens, margin) > reserved:
        tokens -= 1
    return tokens


@dataclass(frozen=True)
class Planned:
    attempt: Attempt
    reservation: Reservation
    action: str  # ok | degraded
    steps: tuple[str, ...]


@dataclass(frozen=True)
class Refused:
    """No attempt fits. ``attempt`` is None when a budget could not pay, on any model of the
    chain, for the smallest attempt (refused before optimizing anything; see :func:`exhausted`)."""

    attempt: Attempt | None
    shortfall: Shortfall
    steps: tuple[str, ...]


def exhausted(standings: Sequence[Standing], floor_needs: Sequence[Need], reset: Callable[[QuotaBudget], float]) -> Shortfall | None:
    """A budget whose room is below every model's smallest attempt (``floor_needs``: the prompt
    at :func:`smallest_context` and ``max_tokens`` out), so the request is refused before any
    optimizer run, however many requests of a spent tenant arrive. Of several, the one that blocks (:func:`blocking`)."""
    short = []
    for s in standings:
        smallest = min(n.amount(s.budget.unit) for n in floor_needs)
        if s.available < smallest:
            short.append(Shortfall(budget=s.budget, needed=smallest, reset_at=reset(s.budget), spent=s.spent))
    return blocking(short) if short else None


async def _early_shortfall(quota: QuotaStore, run: Callable[[Callable[[], Any]], Awaitable[Any]],
                           budgets: Sequence[QuotaBudget], needs: Sequence[Need]) -> Shortfall | None:
    """:func:`exhausted` on the budgets as they stand. When only reservations are in the way, lapsed ones (a dead
    worker's, after a restart) are expired first and the budgets read again, so they never refuse a request."""
    now = quota.clock()

    def check() -> Shortfall | None:
        return exhausted(quota.standings(budgets), needs, lambda b: period_reset(b.period, now))

    early = await run(check)
    if early is not None and early.held_only and await _expire_quietly(quota, run):
        early = await run(check)
    return early


Build = Callable[[ModelConfig, "Budget | None"], Awaitable[Attempt]]
Pending = Callable[[Attempt, str, tuple[str, ...]], LedgerEntry]


def affordable_context(standings: Sequence[Standing], attempt: Attempt) -> int | None:
    """The largest context (tokens) the tightest budget can still pay for (None: no budget binds)."""
    overhead = attempt.prompt_tokens - attempt.tokens_sent
    margin = attempt.model.count_margin
    out = with_margin(attempt.completion_tokens, margin)
    best: int | None = None
    for s in standings:
        if s.budget.unit == "tokens":
            max_prompt: int | None = s.available - out
        else:
            max_prompt = attempt.price.max_prompt_tokens(s.available, out)
        if max_prompt is None:
            continue
        max_prompt = without_margin(max_prompt, margin)
        fit = max_prompt - overhead
        best = fit if best is None else min(best, fit)
    return best


def model_chain(models: Mapping[str, ModelConfig], first: ModelConfig) -> list[ModelConfig]:
    """The asked model, then its ``cheaper`` model, and so on (no cycles).

    >>> ms = {"a": ModelConfig("a", cheaper="b"), "b": ModelConfig("b", cheaper="a")}
    >>> [m.name for m in model_chain(ms, ms["a"])]
    ['a', 'b']
    """
    chain, seen = [first], {first.name}
    while chain[-1].cheaper is not None and chain[-1].cheaper not in seen:
        chain.append(models[chain[-1].cheaper])
        seen.add(chain[-1].name)
    return chain


async def plan_and_reserve(
    *,
    quota: QuotaStore,
    run: Callable[[Callable[[], Any]], Awaitable[Any]],
    budgets: Sequence[QuotaBudget],
    request_id: str,
    chain: Sequence[ModelConfig],
    asked_budget: Budget | None,
    floor: Budget,
    build: Build,
    pending: Pending,
    smallest_needs: Sequence[Need] = (),
) -> Planned | Refused:
    """Try the attempts in degrade order; reserve the first that fits. ``run`` runs blocking calls off the event loop."""
    steps: list[str] = []
    shortfall: Shortfall | None = None
    attempt: Attempt | None = None
    expired_once = False
    standings: Sequence[Standing] = ()
    if budgets and smallest_needs:
        early = await _early_shortfall(quota, run, budgets, smallest_needs)
        if early is not None:
            return Refused(None, early, ())
    for index, model in enumerate(chain):
        if index > 0:
            steps.append(f"model {chain[index - 1].name} -> {model.name}")
        attempt = await build(model, asked_budget)
        floor_tokens = _floor_tokens(floor, attempt)
        for _ in range(MAX_REPLANS):
            action = "ok" if not steps else "degraded"
            entry = pending(attempt, action, tuple(steps))
            outcome = await run(lambda: quota.reserve(request_id, budgets, attempt.need(), entry))  # noqa: B023
            if isinstance(outcome, Reservation):
                return Planned(attempt, outcome, action, tuple(steps))
            shortfall = outcome
            standings = await run(lambda: quota.standings(budgets))
            held = any(s.reserved > 0 and s.budget.limit - s.spent >= attempt.need().amount(s.budget.unit) for s in standings)
            if held and not expired_once:  # only reservations block it: a dead worker's may have expired
                expired_once = True
                if await _expire_quietly(quota, run):
                    continue
            if attempt.result is None:
                break
            fit = affordable_context(standings, attempt)
            current = attempt.tokens_sent
            target = current - 1 if fit is None or fit >= current else fit
            if target < floor_tokens or target < 0:
                break
            steps.append(f"budget {attempt.budget_tokens if attempt.budget_tokens is not None else 'full'} -> {target}")
            attempt = await build(model, target)
    if shortfall is None:
        raise RuntimeError("plan_and_reserve needs at least one model in the chain")
    return Refused(attempt, shortfall, tuple(steps))  # its spend as the reservation found it


async def _expire_quietly(quota: QuotaStore, run: Callable[[Callable[[], Any]], Awaitable[Any]]) -> int:
    """``quota.expire()`` for a request that found only reservations in its way: how many it freed.

    Opportunistic (the lease keeper expires them anyway), so a database error here is logged and
    counts as nothing freed; it never fails the request.
    """
    try:
        return int(await run(quota.expire))
    except Exception as exc:
        log_event(get_logger(), "expire_failed", level=logging.WARNING, worker=quota.worker_id,
                  error=f"{type(exc).__name__}: {exc}"[:300])
        return 0


def _floor_tokens(floor: Budget, attempt: Attempt) -> int:
    if attempt.result is None:
        return 0
    return smallest_context(floor, attempt.budget_tokens, attempt.tokens_full)


def smallest_context(floor: Budget, asked: Budget | None, tokens_full: int) -> int:
    """The least context (tokens) the plan degrades to: the floor, or the asked budget or every
    document if that is smaller.

    >>> smallest_context(0.1, None, 1000), smallest_context(0.1, 50, 1000), smallest_context(300, None, 120)
    (100, 50, 120)
    """
    asked_tokens = resolve_budget(asked, tokens_full)
    return min(resolve_budget(floor, tokens_full) or 0, tokens_full if asked_tokens is None else asked_tokens, tokens_full)

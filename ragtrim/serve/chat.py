"""``POST /v1/chat/completions``: OpenAI-compatible, with the retrieved chunks optimized into the prompt.

Send a normal chat body plus ``documents`` (top level, or inside ``extra_body`` / ``ragtrim``),
and optionally ``budget``, ``preset``, ``feature``, ``query``, ``score_direction`` there too (``user``
is OpenAI's own field; an ``extra_body`` or ``ragtrim`` object holds these alone:
:func:`ragtrim.serve.bodies._extras`). The documents are optimized for ``query`` when given, else for
the last user message, and inserted, with the configured template, as a system message after any
leading system and developer messages. The request is then fitted
into the tenant's budgets (:mod:`ragtrim.serve.plan`), forwarded, and settled with the
upstream's reported usage (counted with the model's tokenizer when it reports none, reports
something that is not a count, or a count below one token per 32 bytes of its text: :func:`trusted_count`;
a reasoning model's answer whose usage never came is charged its reservation: :func:`hidden_reasoning`); the
prompt tokens it read from its prompt cache are charged the model's cached-input price (:func:`cached_prompt`).
Whatever ends a reserved request, its hold ends in one settle or one release
(:class:`ragtrim.serve.hold.Hold`), so no room stays held by a request that is over; a failed call
the upstream had in full is settled at its reservation, as an estimate (:func:`ragtrim.serve.endings.failed`). A request
the gateway's shutdown cuts off before its response started (``--graceful-timeout`` ran out) is
answered a JSON 503 saying what it was charged (:func:`ragtrim.serve.endings.shutdown_failure`, sent by
:class:`ragtrim.serve.cutoff.CutOffAnswer`), not uvicorn's plain-text 500.

Response headers: ``X-Ragtrim-Request-Id``, ``X-Ragtrim-Action`` (``ok``/``degraded``),
``X-Ragtrim-Model``, ``X-Ragtrim-Budget-Asked``, ``X-Ragtrim-Budget-Used``,
``X-Ragtrim-Tokens-Full``, ``X-Ragtrim-Tokens-Sent``, ``X-Ragtrim-Degrade`` (what changed);
non-streaming answers add ``X-Ragtrim-Cost-Micro`` and ``X-Ragtrim-Upstream-Ms`` and a
``ragtrim`` object in the body, whose ``documents`` map the numbers the model cites to the client's
document ids; a streamed answer with documents says the same in ``X-Ragtrim-Documents``
(:mod:`ragtrim.serve.citations`).

The flow (:func:`serve_request`) serves ``POST /v1/responses`` (:mod:`ragtrim.serve.responses`) and Anthropic's
``POST /v1/messages`` (:mod:`ragtrim.serve.messages`) too: a :class:`ragtrim.serve.dialect.Dialect` names what differs
between the APIs (field names, answer shapes, where the prompt items go in the upstream body, the stream's error event).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from optimizer.budget import Budget, budget_label
from optimizer.deadline import OptimizerTimeout
from optimizer.tokenizer import get_tokenizer
from ragtrim.serve.auth import require
from ragtrim.serve.config import Limits, ModelConfig
from ragtrim.serve.errors import ApiError, bad_request, client_gone, optimizer_timeout, pipeline_error
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.hold import Hold, estimated_usage, with_note
from ragtrim.serve.plan import JOIN_SLACK, Attempt, Planned, Refused, model_chain, plan_and_reserve, smallest_context, with_margin
from ragtrim.serve.pricing import ModelPrice, format_usd
from ragtrim.serve.quota import Need, Shortfall
from ragtrim.serve.client_left import ClientLeft, LeftBeforeSent
from ragtrim.serve.endings import IN_FLIGHT_RETRY_SECONDS, refuse  # noqa: F401 (IN_FLIGHT_RETRY_SECONDS: imported from here)
from ragtrim.serve.endings import abandon as _abandon, failed as _failed, finish_rejected as _finish_rejected
from ragtrim.serve.endings import left_unsent as _left_unsent, unit_name as _unit
from ragtrim.serve.bodies import CHAT_BODY, ChatRequest, check_preset, parse_chat, read_json
from ragtrim.serve.dialect import CHAT, Dialect, openai_error_event
from ragtrim.serve.citations import cited_documents, stream_headers
from ragtrim.serve.thinking import cut_before_answering, visible_answer, warn_cut_answer
from ragtrim.serve.upstream import (UpstreamError, billed_fields, count_request_fields, output_texts, prediction_tokens,
                                    cached_count, prompt_bytes, shows_reasoning, sse_event_end, usage_of)


# The roles of a chat's instructions (``developer``: OpenAI's name for them since o1), which stay first
INSTRUCTION_ROLES = ("system", "developer")


def with_documents(messages: Sequence[Mapping[str, Any]], template: str, context: str) -> tuple[Mapping[str, Any], ...]:
    """The messages with a system message holding the documents, after any leading system and developer messages.

    >>> [m["role"] for m in with_documents([{"role": "developer", "content": "be brief"}, {"role": "user", "content": "q"}], "Docs: {context}", "[1] x")]
    ['developer', 'system', 'user']
    """
    at = 0
    while at < len(messages) and messages[at].get("role") in INSTRUCTION_ROLES:
        at += 1
    doc = {"role": "system", "content": template.replace("{context}", context)}
    return tuple(messages[:at]) + (doc,) + tuple(messages[at:])


async def _build(service: Any, req: ChatRequest, model: ModelConfig, budget: Budget | None, done: dict[Any, Any],
                 request_id: str, tenant: str, left: Callable[[], Awaitable[bool]] | None = None) -> Attempt:
    """The attempt for ``model`` at context ``budget``: its optimizer run (once per tokenizer and budget, in
    ``tenant``'s turn for a thread) and counts.

    A client that disconnected (``left``: the request's ``is_disconnected``) while the run waited for a thread or ran
    stops the request there (a running run at its next check: :meth:`ragtrim.serve.service.Service.optimize`), a 499
    before anything is reserved (:func:`ragtrim.serve.errors.client_gone`).
    """
    upstream = service.upstream(model)
    max_out = upstream.max_completion_tokens(asked_completion(req, model, service.config.limits))
    result, messages = None, tuple(req.messages)
    if req.documents:
        key = (model.tokenizer, budget)  # a cheaper model with the same tokenizer reuses the run
        if key not in done:
            if "optimizer clock" not in done:  # one allowance of [limits] optimize_seconds for all the request's runs
                done["optimizer clock"] = service.optimizer_clock()
            run = service.optimize(req.preset, model.tokenizer, req.documents_question, req.documents, tenant=tenant, budget=budget,
                                   clock=done["optimizer clock"], score_direction=req.score_direction, client_left=left)
            done[key] = await _optimizer(run, request_id, req.preset)
            if left is not None and await left():
                raise client_gone("while its documents were optimized, so it was not sent upstream", request_id)
        result = done[key]
        messages = with_documents(req.messages, service.config.template, result.text)
    context = result.text if result is not None else ""
    prompt = await _prompt_tokens(upstream, req, messages, model.tokenizer, context, done, left)
    prompt += await _field_tokens(upstream, req, model.tokenizer, done) + tool_prompt(req, model)
    return Attempt(model=model, price=price_of(service, model, req), budget_tokens=result.budget if result is not None else None,
                   result=result, messages=messages, prompt_tokens=int(prompt), max_tokens=max_out,
                   predicted_tokens=await _predicted_tokens(upstream, req, model.tokenizer, done))


def price_of(service: Any, model: ModelConfig, req: ChatRequest) -> ModelPrice:
    """The model's price for ``req``: one whose worst case prices a prompt token at the 1-hour cache-write price when the
    request asks for a 1-hour cache (:attr:`ChatRequest.cache_1h`)."""
    price = service.prices[model.name]
    return price.with_1h_writes() if req.cache_1h else price


def asked_completion(req: ChatRequest, model: ModelConfig, limits: Limits) -> int:
    """The completion tokens a request asks of ``model``: the client's cap, else the model's ``max_tokens_default``
    (``[limits] max_tokens_default`` for a model without one: :meth:`ragtrim.serve.config.ModelConfig.completion_default`).

    >>> from ragtrim.serve.bodies import parse_chat
    >>> req = parse_chat({"messages": [{"role": "user", "content": "q"}]}, {}, Limits(), default_preset="p", default_budget=None)
    >>> [asked_completion(req, m, Limits()) for m in (ModelConfig(name="o3", max_tokens_default=4000), ModelConfig(name="m"))]
    [4000, 256]
    """
    return req.max_tokens if req.caps else model.completion_default(limits)


async def _optimizer(run: Awaitable[Any], request_id: str, preset: str) -> Any:
    """``await run`` (an optimizer call); what it raises is the input's fault (a 400) or the optimizer's (a 500), said
    with the stage that failed (:func:`ragtrim.serve.errors.pipeline_error`), or a run stopped at ``[limits]
    optimize_seconds`` (a 503 ``optimizer_timeout``, before anything is reserved: :func:`ragtrim.serve.errors.optimizer_timeout`)."""
    try:
        return await run
    except ClientLeft as exc:  # before its run had a thread (not run) or during it (stopped): never sent upstream
        raise client_gone(f"{exc.when}, and the request was not sent upstream", request_id) from None
    except OptimizerTimeout as exc:
        raise optimizer_timeout(exc, request_id, preset) from None
    except Exception as exc:
        raise pipeline_error(exc, request_id) from None


async def _field_tokens(upstream: Any, req: ChatRequest, tokenizer: str, memo: dict[Any, Any]) -> int:
    """Input tokens of the forwarded fields besides the messages (tools, response format, ...; see
    :func:`ragtrim.serve.upstream.count_request_fields`), once per tokenizer; 0 where the upstream gets none."""
    if not getattr(upstream, "forwards_request_fields", True) or not billed_fields(req.passthrough, req.dialect.billed):
        return 0
    key = ("request fields", tokenizer)
    if key not in memo:
        memo[key] = int(await run_in_threadpool(count_request_fields, req.passthrough, tokenizer, req.dialect.billed))
    return memo[key]


async def _prompt_tokens(upstream: Any, req: ChatRequest, messages: Sequence[Any], tokenizer: str, context: str,
                         memo: dict[Any, Any], left: Callable[[], Awaitable[bool]] | None) -> int:
    """The prompt's tokens as ``upstream`` counts them (``messages``, with ``context`` for a model that counts its own
    prompt). Without documents the smallest reservation (:func:`_smallest`) and every attempt (:func:`_build`) count the
    request's own messages: counted once per upstream and tokenizer (an 8 MiB transcript takes seconds to count)."""
    key = ("prompt", id(upstream), tokenizer) if not req.documents else None
    if key is not None and key in memo:
        return int(memo[key])
    n = int(await upstream.count_prompt_tokens(req.dialect.count_view(messages), tokenizer, req.question, context,
                                               client_left=left))
    if key is not None:
        memo[key] = n
    return n


def tool_prompt(req: ChatRequest, model: ModelConfig) -> int:
    """The input the upstream adds to a request with a non-empty ``tools`` (the model's ``tool_prompt_tokens``:
    Anthropic's tool-use system prompt), 0 without tools."""
    return model.tool_prompt_tokens if req.passthrough.get("tools") else 0


async def _predicted_tokens(upstream: Any, req: ChatRequest, tokenizer: str, memo: dict[Any, Any]) -> int:
    """Completion tokens a ``prediction`` can add above the cap (:func:`ragtrim.serve.upstream.prediction_tokens`), once per
    tokenizer; 0 where the upstream gets none."""
    if not getattr(upstream, "forwards_request_fields", True) or req.passthrough.get("prediction") is None:
        return 0
    key = ("prediction", tokenizer)
    if key not in memo:
        memo[key] = int(await run_in_threadpool(prediction_tokens, req.passthrough, tokenizer))
    return memo[key]


async def _smallest(service: Any, req: ChatRequest, chain: Sequence[ModelConfig], memo: dict[Any, Any], request_id: str,
                    left: Callable[[], Awaitable[bool]] | None = None) -> list[Need]:
    """Per model, what the smallest attempt reserves, so a budget with less room is refused before optimizing.

    That is ``max_tokens`` out and the prompt with the least context the plan degrades to
    (:func:`ragtrim.serve.plan.smallest_context`), each with the model's ``count_margin``. The
    prompt is counted with no context, plus that many context tokens, less ``JOIN_SLACK``.
    Where the upstream counts prompts with a tokenizer of its own (the local model), only the
    prompt around the context is counted.
    """
    full: dict[str, int] = {}
    bare: dict[tuple[int, str], int] = {}  # models on one upstream and tokenizer count the same prompt
    messages = with_documents(req.messages, service.config.template, "") if req.documents else tuple(req.messages)
    out = []
    for m in chain:
        upstream = service.upstream(m)
        asked = upstream.max_completion_tokens(asked_completion(req, m, service.config.limits))
        n_out = with_margin(asked + await _predicted_tokens(upstream, req, m.tokenizer, memo), m.count_margin)
        context = 0
        if req.documents and getattr(upstream, "counts_with_model_tokenizer", False):
            if m.tokenizer not in full:
                full[m.tokenizer] = await _optimizer(run_in_threadpool(service.full_tokens, req.preset, m.tokenizer, req.documents),
                                                     request_id, req.preset)
            context = smallest_context(service.config.degrade.floor, req.budget, full[m.tokenizer])
        key = (id(upstream), m.tokenizer)
        if key not in bare:
            bare[key] = await _prompt_tokens(upstream, req, messages, m.tokenizer, "", memo, left)
            bare[key] += await _field_tokens(upstream, req, m.tokenizer, memo)
        counted = (max(0, bare[key] + context - JOIN_SLACK) if context else bare[key]) + tool_prompt(req, m)
        prompt = with_margin(counted, m.count_margin)
        out.append(Need(tokens=prompt + n_out, micro=price_of(service, m, req).worst_micro(prompt_tokens=prompt, completion_tokens=n_out)))
    return out


def _entry_for(base: LedgerEntry, attempt: Attempt, action: str, steps: tuple[str, ...]) -> LedgerEntry:
    saved_tokens = max(0, attempt.tokens_full - attempt.tokens_sent)
    need = attempt.need()
    return replace(base, action=action, model_used=attempt.model.name, tokens_full=attempt.tokens_full,
                   tokens_sent=attempt.tokens_sent, prompt_tokens=attempt.prompt_tokens, price_ref=attempt.price.ref,
                   saved_micro=attempt.price.saved_micro(tokens_not_sent=saved_tokens), reserved_micro=need.micro,
                   reserved_tokens=need.tokens, budget_used=attempt.budget_tokens, detail="; ".join(steps))


def _headers(rid: str, planned: Attempt, action: str, asked: Budget | None, steps: tuple[str, ...]) -> dict[str, str]:
    h = {
        "X-Ragtrim-Request-Id": rid,
        "X-Ragtrim-Action": action,
        "X-Ragtrim-Model": planned.model.name,
        "X-Ragtrim-Budget-Asked": budget_label(asked),
        "X-Ragtrim-Budget-Used": str(planned.budget_tokens) if planned.budget_tokens is not None else "full",
        "X-Ragtrim-Tokens-Full": str(planned.tokens_full),
        "X-Ragtrim-Tokens-Sent": str(planned.tokens_sent),
    }
    if steps:
        h["X-Ragtrim-Degrade"] = "; ".join(steps)
    return h


async def chat_endpoint(request: Request) -> Any:
    """``POST /v1/chat/completions``."""
    return await serve_request(request, CHAT, _parse_chat)


def _parse_chat(body: Mapping[str, Any], headers: Mapping[str, str], config: Any) -> ChatRequest:
    return parse_chat(body, headers, config.limits, default_preset=config.preset, default_budget=config.budget)


Parse = Callable[[Mapping[str, Any], Mapping[str, str], Any], ChatRequest]


async def serve_request(request: Request, dialect: Dialect, parse: Parse) -> Any:
    """Serve one request of either route (``dialect``): its body read and checked (``parse(body, headers, config)``),
    planned and reserved within the tenant's budgets, sent upstream (:func:`_answer`), and its ledger row written
    however it ends."""
    service = request.app.state.service
    start = time.perf_counter()
    principal = await require(request, tenant=True)
    rid = uuid.uuid4().hex
    base = LedgerEntry(id=rid, ts=service.clock(), tenant_id=str(principal.tenant_id), endpoint=dialect.endpoint,
                       action="failed", key_id=principal.key_id)
    try:
        body = await read_json(request, service.config.limits, dialect.body_limit or CHAT_BODY)
        # a route that reads more than the chat's 1 MiB checks its body on a thread: a walk of 8 MiB would stall the loop
        req = await run_in_threadpool(parse, body, request.headers, service.config) if dialect.body_limit else \
            parse(body, request.headers, service.config)
        base = replace(base, user=req.tags.user, feature=req.tags.feature, model_asked=req.model or service.config.default_model,
                       preset=req.preset, budget_asked=budget_label(req.budget), stream=req.stream)
        chain = served_chain(service, req)
        check_preset(req.preset)
        budgets = await run_in_threadpool(service.quota.budgets_for, base.tenant_id, user=req.tags.user, feature=req.tags.feature)
        check_stored_context(req, budgets)
        done: dict[Any, Any] = {}
        try:
            # documents take one of the tenant's optimizer slots until the reservation ([limits] tenant_optimizer_runs)
            with service.tenant_runs.slot(base.tenant_id, rid) if req.documents else nullcontext():
                smallest = await _smallest(service, req, chain, done, rid, request.is_disconnected) if budgets else []
                outcome = await plan_and_reserve(
                    quota=service.quota, run=run_in_threadpool, budgets=budgets, request_id=rid, smallest_needs=smallest,
                    chain=chain, asked_budget=req.budget, floor=service.config.degrade.floor,
                    build=lambda m, b: _build(service, req, m, b, done, rid, base.tenant_id, request.is_disconnected),
                    pending=lambda a, action, steps: replace(_entry_for(base, a, action, steps), action="pending"),
                )
        except ValueError as exc:  # the request's own content (e.g. a message part the gateway cannot count)
            raise bad_request(str(exc)) from None
        except LeftBeforeSent as exc:  # its prompt's count waited for the local model: not counted, nothing reserved
            raise client_gone(f"{exc.when}, and the request was not sent upstream", rid) from None
        except UpstreamError as exc:
            raise ApiError(502, "upstream_error", str(exc)) from None
    except ApiError as exc:
        await _finish_rejected(service, base, exc, start)
        raise
    except BaseException as exc:  # a bug or a cancellation: the request still gets its row (and frees any hold)
        await _abandon(request, Hold(service, base, start), exc, when="before it was answered")
        raise
    if isinstance(outcome, Refused):
        raise await _refuse(service, base, req, outcome, start)
    assert isinstance(outcome, Planned)
    return await _send_planned(request, service, req, outcome, Hold(service, base, start), start)


async def _send_planned(request: Request, service: Any, req: ChatRequest, outcome: Planned, hold: Hold, start: float) -> Any:
    """Answer a reserved request (:func:`_answer`); whatever ends it, its ``hold`` ends in a settle or a release."""
    try:
        if await request.is_disconnected():  # gone while it was planned: not sent upstream, its hold released
            hold.entry = _entry_for(hold.entry, outcome.attempt, outcome.action, outcome.steps)
            gone = client_gone("before it was sent upstream (it was not sent)", hold.entry.id)
            await hold.release(gone.status, gone.message)
            raise gone
        return await _answer(service, req, outcome, hold, start, request.is_disconnected)
    except BaseException as exc:  # whatever ends the request, the hold ends in a settle or a release
        await _abandon(request, hold, exc)
        raise


def served_chain(service: Any, req: ChatRequest) -> list[ModelConfig]:
    """The asked model and its cheaper ones (:func:`ragtrim.serve.plan.model_chain`) that the request's route can send
    to: a 400 naming the model when the route cannot send to the asked one (an embedding model, or its ``refuses``),
    and the chain cut before the first cheaper one it cannot."""
    try:
        model = service.model(req.model, route=req.dialect.route)
    except ValueError as exc:
        raise bad_request(str(exc), "model") from None
    why = req.dialect.refuses(service.upstream(model))
    if why:
        raise bad_request(f"model {model.name!r} {why}", "model")
    chain = model_chain(service.config.models, model)
    cut = next((i for i, m in enumerate(chain) if req.dialect.refuses(service.upstream(m))), len(chain))
    return chain[:cut]


def check_stored_context(req: ChatRequest, budgets: Sequence[Any]) -> None:
    """A 400 for a request whose upstream would add context the gateway never sees (``req.stored_context``: Responses'
    ``previous_response_id``, ``conversation``, ``prompt``, an ``item_reference`` or id-only ``reasoning`` item) while it holds room in a budget: that context is billed
    as input, so the worst case reserved would not be one, and the budget could be overrun by any amount. Without a
    budget it is served (and charged the usage reported)."""
    if req.uncounted and budgets:
        raise bad_request(
            f"{req.uncounted} is billed by tokens this gateway cannot count, and this request holds room in a budget "
            f"({len(budgets)} of the tenant's budgets apply), whose worst case must be counted before it is sent; send its "
            f"text instead (a document's text as a text block, or as documents) or leave it out, or send it under a "
            f"tenant, user or feature without a budget", req.dialect.items_key)
    if req.stored_context and budgets:
        raise bad_request(
            f"{req.stored_context} makes the upstream add stored context (earlier turns, a stored prompt or reasoning) that "
            f"this gateway cannot see or count, and this request holds room in a budget ({len(budgets)} of the tenant's "
            f"budgets apply), whose worst case must be counted before it is sent; send the whole conversation in input "
            f"instead (with store: false if you keep it yourself; a reasoning item with its encrypted_content, which "
            f"include: [\"reasoning.encrypted_content\"] with store: false returns), or send it under a tenant, user or "
            f"feature without a budget",
            req.stored_context)


async def _answer(service: Any, req: ChatRequest, planned: Planned, hold: Hold, start: float,
                  left: Callable[[], Awaitable[bool]] | None = None) -> Any:
    """Call the upstream for a reserved request; the answer, streamed or not, settles or releases ``hold``.

    The upstream gets the client's fields as they came, with the attempt's model and messages, and
    the client's completion cap under the name it used; a cap the client did not give is added only
    when the request holds room in a budget (:func:`ragtrim.serve.bodies.upstream_caps`). A client
    that disconnects (``left``) while the call still waits (for the local model, or a connection to a
    full upstream pool), before any of it is written, is not sent: :func:`_left_unsent`.
    """
    from ragtrim.serve.bodies import upstream_caps

    attempt = planned.attempt
    if planned.steps:
        service.metrics.observe_degrade(tenant=hold.entry.tenant_id, steps=planned.steps)
    hold.entry = _entry_for(hold.entry, attempt, planned.action, planned.steps)
    headers = _headers(hold.entry.id, attempt, planned.action, req.budget, planned.steps)
    caps = upstream_caps(req, attempt.max_tokens, forwarded=getattr(service.upstream(attempt.model), "forwards_request_fields", True),
                         held=bool(planned.reservation.budget_ids))
    upstream_body = {**req.passthrough, "model": attempt.model.upstream_model or attempt.model.name,
                     **req.dialect.items_body(attempt.messages), **caps}
    try:
        if req.stream:
            return await _stream(service, req, planned, hold, upstream_body, headers, left)
        return await _complete(service, req, planned, hold, upstream_body, headers, start, left)
    except LeftBeforeSent as exc:
        raise await _left_unsent(hold, exc) from None


async def _refuse(service: Any, base: LedgerEntry, req: ChatRequest, outcome: Refused, start: float) -> ApiError:
    """The 429 for a request no budget can take, its ``refused`` row written (:func:`ragtrim.serve.endings.refuse`)."""
    if outcome.attempt is None:
        entry = replace(base, detail="refused before optimizing: budget exhausted")
    else:
        entry = _entry_for(base, outcome.attempt, "refused", outcome.steps)
    cap = cap_named(req, service.model(req.model, route=req.dialect.route), service.config.limits)
    return await refuse(service, entry, outcome.shortfall, start,
                        lambda s, retry: _spent_message(s, cap if outcome.attempt is None else "", retry))


def cap_named(req: ChatRequest, model: ModelConfig, limits: Limits) -> str:
    """The completion cap a request reserves, under the name the client sent it (its largest, when it sent two), else the
    dialect's name with ``model``'s default (:func:`asked_completion`).

    >>> from ragtrim.serve.bodies import parse_chat
    >>> def ask(**caps):
    ...     body = {"messages": [{"role": "user", "content": "q"}], **caps}
    ...     return parse_chat(body, {}, Limits(), default_preset="p", default_budget=None)
    >>> cap_named(ask(max_tokens=90, max_completion_tokens=120), ModelConfig(name="m"), Limits())
    'max_completion_tokens 120'
    >>> cap_named(ask(), ModelConfig(name="o3", max_tokens_default=4000), Limits())
    "max_completion_tokens 4000 (the model's default: the request sent none)"
    """
    if req.caps:
        name = max(req.caps, key=lambda k: req.caps[k])
        return f"{name} {req.caps[name]}"
    return f"{req.dialect.added_cap} {model.completion_default(limits)} (the model's default: the request sent none)"


def _spent_message(s: Shortfall, cap: str, retry: int) -> str:
    """Why a spent budget refuses the request: the smallest form of it (``cap``, the completion cap it holds, and the
    prompt at the smallest context) when refused before optimizing, else ("" for ``cap``) its worst case."""
    unit = _unit(s)
    if cap:
        return (f"quota exceeded: budget {s.budget.label()} (limit {s.budget.limit} {unit}) has less left than the smallest "
                f"form of this request ({s.needed} {unit}: {cap} and the prompt at the smallest context); "
                f"it resets in {retry} s")
    return (f"quota exceeded: budget {s.budget.label()} (limit {s.budget.limit} {unit}) cannot pay for this request "
            f"even at the smallest context budget (worst case {s.needed} {unit}); it resets in {retry} s")


# A reported count is a count of the text it is for unless it is below one token per BYTES_PER_TOKEN UTF-8 bytes of
# that text (an upstream that reports 0 tokens for a 200-word answer): then the gateway's own count is charged. The
# floor does not depend on a tokenizer: a model whose vocabulary is not the configured one (Gemma, Llama, ... counted
# with cl100k_base) reports far fewer tokens for Hindi or Chinese than cl100k counts, and that count is right. No
# tokenizer in use spends more than a few bytes per token on text; 32 leaves room for long runs of spaces or symbols.
# A count above the gateway's is trusted (reasoning tokens are billed but not seen).
BYTES_PER_TOKEN = 32


def trusted_count(name: str, reported: int | None, counted: int, size: int, bound: int | None = None) -> tuple[int, str]:
    """The tokens to charge for ``name``: the upstream's ``reported`` count unless it is missing or below one token per
    :data:`BYTES_PER_TOKEN` of the text's ``size`` in UTF-8 bytes; else the gateway's ``counted``, at most ``bound`` (the
    completion tokens reserved, when the upstream was sent a cap: it cannot have written more); and the note the row
    gets when the count replaced it or was capped ("" otherwise).

    >>> trusted_count("completion_tokens", 0, 263, 1100)
    (263, "upstream reported completion_tokens 0 for 1100 bytes of text, below 1 token per 32 bytes: charged the gateway's count, 263")
    >>> trusted_count("completion_tokens", 381, 1741, 4500), trusted_count("prompt_tokens", None, 190, 800)
    ((381, ''), (190, ''))
    >>> trusted_count("completion_tokens", 3, 1741, 4500, bound=1000)[1]
    "upstream reported completion_tokens 3 for 4500 bytes of text, below 1 token per 32 bytes: charged the gateway's count, 1000 (it counted 1741, capped at the 1000 completion tokens reserved)"
    """
    if reported is not None and reported * BYTES_PER_TOKEN >= size:
        return reported, ""
    charged = counted if bound is None else min(counted, bound)
    capped = f" (it counted {counted}, capped at the {bound} completion tokens reserved)" if charged < counted else ""
    if reported is None:
        return charged, (f"no {name} reported: charged the gateway's count, {charged}{capped}" if capped else "")
    return charged, (f"upstream reported {name} {reported} for {size} bytes of text, below 1 token per {BYTES_PER_TOKEN} "
                     f"bytes: charged the gateway's count, {charged}{capped}")


def hidden_reasoning(model: ModelConfig, req: ChatRequest) -> bool:
    """Whether the answer may hold reasoning tokens the upstream bills but never shows: the model's config says so
    (``reasoning = true``) or the request asks for reasoning (``reasoning_effort``, ``reasoning``; Anthropic's
    ``thinking`` enabled, which Claude 4 models bill in full and show summarized)."""
    thinking = req.passthrough.get("thinking")
    return (model.reasoning or any(req.passthrough.get(k) is not None for k in ("reasoning_effort", "reasoning"))
            or (isinstance(thinking, Mapping) and thinking.get("type") not in (None, "disabled")))


REASONING_UNKNOWN = ("the model reasons (its reasoning tokens are billed, and may never be shown) and its usage never came, "
                     "so the text it carried is not what it cost")


def split_writes(written: int, written_1h: int | None, asked_1h: bool) -> int:
    """Of the ``written`` cache writes charged, those to charge the 1-hour write price: the upstream's ``written_1h``
    (at most ``written``); with no split reported (None), all of them when the request asked for a 1-hour cache
    (``asked_1h``: the most they can cost), else none.

    >>> split_writes(100, 70, False), split_writes(100, 170, False), split_writes(100, None, True), split_writes(100, None, False)
    (70, 100, 100, 0)
    """
    if written_1h is None:
        return written if asked_1h else 0
    return min(written_1h, written)


def _settle_values(attempt: Attempt, req: ChatRequest, prompt: int | None, completion: int | None, cached: int, text: str, *,
                   fields: Any, capped: bool, written: int = 0, written_1h: int | None = 0) -> tuple[int, int, int, int, str, int, str]:
    """``(prompt, completion, cached, written, usage_source, cost, note)`` to charge for an answer: the upstream's counts
    (:func:`trusted_count`), else the gateway's (the counted prompt, the answer's ``text`` counted, at most the
    completion reserved when a cap was sent: ``capped``), and of the prompt, the ``cached`` tokens the upstream read
    from its prompt cache (:func:`cached_prompt`) and the ``written`` ones it wrote to it (charged the cache-write price,
    at most the rest of the prompt; none when the prompt charged is not the upstream's count), ``written_1h`` of them to
    its 1-hour cache (:func:`split_writes`). ``fields`` are the request
    fields the upstream bills as input."""
    # the prompt's size is measured (its JSON written out) only for a reported count below the gateway's own
    size = prompt_bytes(attempt.messages, fields, req.dialect.billed) if prompt is not None and prompt < attempt.prompt_tokens else 0
    p, p_note = trusted_count("prompt_tokens", prompt, attempt.prompt_tokens, size)
    bound = with_margin(attempt.completion_tokens, attempt.model.count_margin) if capped else None
    c, c_note = trusted_count("completion_tokens", completion, get_tokenizer(attempt.model.tokenizer).count(text),
                              len(text.encode("utf-8", "replace")), bound)
    k, k_note = cached_prompt(cached, p if p == prompt else None)
    w = min(written, p - k) if p == prompt else 0
    w1 = split_writes(w, written_1h, req.cache_1h)
    source = "upstream" if (p, c) == (prompt, completion) else "counted"
    note = "; ".join(n for n in (p_note, c_note, k_note) if n)
    cost = attempt.price.cost_micro(prompt_tokens=p, completion_tokens=c, cached_tokens=k, cache_write_tokens=w, cache_write_1h_tokens=w1)
    return p, c, k, w, source, cost, note


def cached_prompt(reported: int, prompt: int | None) -> tuple[int, str]:
    """The prompt tokens to charge at the cached-input price: the upstream's ``reported`` count (0 when it was not a
    count: :func:`ragtrim.serve.upstream.cached_count`), at most the ``prompt`` charged; none when the prompt charged is
    not the upstream's own count (None: it reported none, or one the gateway did not trust), whose cache count is not
    trusted either. And the note the row gets when the count was cut to the prompt ("" otherwise).

    >>> cached_prompt(1920, 2006), cached_prompt(5, None)
    ((1920, ''), (0, ''))
    >>> cached_prompt(3000, 2006)
    (2006, 'upstream reported cached_tokens 3000 above its prompt_tokens 2006: charged 2006 as cached')
    """
    if prompt is None or reported <= prompt:
        return (reported if prompt is not None else 0), ""
    return prompt, f"upstream reported cached_tokens {reported} above its prompt_tokens {prompt}: charged {prompt} as cached"


def wire_of(req: ChatRequest) -> Any:
    """The request's :class:`ragtrim.serve.upstream.Wire`: its dialect's, with the headers the client sends upstream."""
    return replace(req.dialect.wire, headers=req.upstream_headers) if req.upstream_headers else req.dialect.wire


def _billed_fields_of(upstream: Any, req: ChatRequest) -> Any:
    """The request fields ``upstream`` gets besides the messages (none for the in-process model)."""
    return req.passthrough if getattr(upstream, "forwards_request_fields", True) else {}


def _capped(body: Mapping[str, Any], req: ChatRequest) -> bool:
    """True when the upstream ``body`` carries a completion cap (the hold's reserved completion then bounds the answer)."""
    return any(body.get(k) is not None for k in req.dialect.caps)


async def _complete(service: Any, req: ChatRequest, planned: Planned, hold: Hold, body: dict[str, Any],
                    headers: dict[str, str], start: float, left: Callable[[], Awaitable[bool]] | None = None) -> JSONResponse:
    attempt = planned.attempt
    upstream = service.upstream(attempt.model)
    reply = await upstream.complete(body, req.question, attempt.context, on_sent=hold.mark_sent, client_left=left,
                                    wire=wire_of(req))
    if reply.error is not None:
        raise await _failed(hold, reply.error, reply.refusal, reply.started, reply.upstream_ms)
    if reply.completion_tokens is None and hidden_reasoning(attempt.model, req):
        await hold.charge_reserved(200, REASONING_UNKNOWN, upstream_ms=reply.upstream_ms)
        p, c, cost = estimated_usage(hold.entry)
        final = replace(hold.entry, cost_micro=cost)
    else:
        p, c, k, w, source, cost, note = await run_in_threadpool(  # off the loop: it may measure a long prompt
            _settle_values, attempt, req, reply.prompt_tokens, reply.completion_tokens, reply.cached_tokens, reply.text,
            fields=_billed_fields_of(upstream, req), capped=_capped(body, req),
            written=reply.cache_write_tokens, written_1h=reply.cache_write_1h_tokens)
        ms = (time.perf_counter() - start) * 1000
        final = replace(hold.entry, prompt_tokens=p, completion_tokens=c, cached_tokens=k, cache_write_tokens=w, usage_source=source,
                        cost_micro=cost, status=200, latency_ms=ms, upstream_ms=reply.upstream_ms, error=note)
        await hold.settle(final, p, c, cost)
    if attempt.model.reasoning and cut_before_answering(reply.body):
        _warn_cut(service, req, attempt, final, body)
    out = dict(reply.body or {})
    out["ragtrim"] = {"request_id": final.id, "action": planned.action, "model": attempt.model.name, "degrade": list(planned.steps),
                      "tokens_full": attempt.tokens_full, "tokens_sent": attempt.tokens_sent,
                      "cached_tokens": final.cached_tokens, "cost_micro": cost,
                      "cost_usd": format_usd(cost)[1:], "saved_micro": final.saved_micro, "price": attempt.price.ref,
                      "documents": cited_documents(attempt.result)}
    headers = {**headers, "X-Ragtrim-Cost-Micro": str(cost), "X-Ragtrim-Upstream-Ms": f"{reply.upstream_ms:.3f}"}
    return JSONResponse(out, headers=headers)


def _warn_cut(service: Any, req: ChatRequest, attempt: Attempt, entry: LedgerEntry, body: Mapping[str, Any]) -> None:
    """Log that ``attempt``'s reasoning model spent the whole cap the upstream ``body`` carried and answered nothing
    (:mod:`ragtrim.serve.thinking`); nothing when it carried none (the upstream's own limit cut it, no setting here)."""
    name = max((k for k in req.dialect.caps if body.get(k) is not None), key=lambda k: body[k], default=None)
    if name is not None:
        warn_cut_answer(service.log, model=attempt.model.name, request_id=entry.id, tenant=entry.tenant_id, cap=int(body[name]),
                        client_caps=req.caps, own_default=attempt.model.max_tokens_default, cap_name=name)


class SseTally:
    """Split an SSE byte stream into events; keep the output text (content, tool calls) and the usage it carries.

    An event ends at a blank line, and a line in CRLF, LF or CR (the SSE spec; OpenAI ends events in
    "\\n\\n", sse-starlette in "\\r\\n\\r\\n"): :func:`ragtrim.serve.upstream.sse_event_end`. Events are
    relayed as the bytes they came in. An event whose blank line is a CR that is the last byte so far
    is cut there, not held back for the next byte: the LF of a CRLF that follows then begins the next
    event's bytes, which changes nothing for a client reading them.

    At most ``max_event_bytes`` of one event are held (the upstream's ``max_event_bytes``). An event
    longer than that, ended or not, is a protocol error: ``error`` says so, that event is dropped (never
    relayed), and nothing more is read. The tally keeps what the events before it carried.

    >>> tally = SseTally(max_event_bytes=16)
    >>> tally.feed(b"data: 1\\n\\ndata: " + b"x" * 20), tally.error
    ([(b'data: 1\\n\\n', False)], 'an event longer than 16 bytes (max_event_bytes)')
    >>> tally.feed(b"\\n\\n"), tally.rest()
    ([], None)
    """

    def __init__(self, max_event_bytes: int, body: Mapping[str, Any] | None = None) -> None:
        """``body``: the request sent upstream (unused here; a dialect whose events repeat it sizes them by it)."""
        self.max_event_bytes = max_event_bytes
        self.read_bytes = 0  # of the events read whole so far
        self._buf = bytearray()  # appended to in place: an event that comes a byte at a time is not copied per byte
        self._scan = 0  # no event ends before this offset of the buffer
        self.text: list[str] = []
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.cached_tokens = 0  # of prompt_tokens, those read from the upstream's prompt cache (cached_count)
        self.cache_write_tokens = 0  # of prompt_tokens, those written to it (Anthropic's cache_creation_input_tokens)
        self.cache_write_1h_tokens: int | None = None  # of those, written to its 1-hour cache (None: no split reported)
        self.reasoned = False  # a delta carried a reasoning field (reasoning_content, reasoning)
        self.finished = False  # a choice carried its finish_reason: the answer is whole
        self.cut_at_cap = False  # a choice finished at the completion cap (finish_reason "length")
        self.answered = False  # a delta carried an answer the client sees (text, a refusal, a tool call: visible_answer)
        self.error = ""  # the upstream broke the event stream (an event too long): nothing more is read
        self.upstream_error = ""  # an error the upstream reported in the stream (relayed as it came), for the row's error

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """Complete events in ``data`` as ``(raw event, is_usage_only)``, each tallied; none once :attr:`error` is set."""
        if self.error:
            return []
        self._buf += data
        events = []
        while (cut := sse_event_end(self._buf, self._scan)) >= 0:
            if cut > self.event_cap():
                return self._too_long(events)
            raw, self._scan = bytes(self._buf[:cut]), 0
            del self._buf[:cut]
            self.read_bytes += cut
            events.append((raw, self._inspect(raw)))
        if len(self._buf) > self.event_cap():
            return self._too_long(events)
        self._scan = max(0, len(self._buf) - 3)  # an event end (at most 4 bytes) may begin in the last 3 bytes
        return events

    def rest(self) -> tuple[bytes, bool] | None:
        """The last event of a stream that ended before its blank line, as :meth:`feed` gives one (tallied too);
        None when the stream ended at an event's end, or on :attr:`error`."""
        raw, self._buf, self._scan = bytes(self._buf), bytearray(), 0
        if not raw or self.error:
            return None
        return raw, self._inspect(raw)

    def event_cap(self) -> int:
        """The longest event held whole: ``max_event_bytes``."""
        return self.max_event_bytes

    def _too_long(self, events: list[tuple[bytes, bool]]) -> list[tuple[bytes, bool]]:
        """Set :attr:`error` and drop the event being read; ``events`` (those before it) are still relayed."""
        self._buf, self._scan = bytearray(), 0
        self.error = f"an event longer than {self.event_cap()} bytes ({self._cap_name()})"
        return events

    def _cap_name(self) -> str:
        return "max_event_bytes"

    def error_event(self, message: str) -> bytes:
        """The event that ends a stream the upstream broke after the answer had begun: a chat completion's, a 502's error."""
        return openai_error_event(message)

    def _inspect(self, raw: bytes) -> bool:
        """Tally one event's chunk; True when it carries usage and no choices."""
        obj = event_json(raw)
        if not isinstance(obj, Mapping):  # [DONE], a comment, or not a chunk (e.g. `data: 1`): relayed as it came, not read
            return False
        usage_only = False
        if isinstance(obj.get("usage"), Mapping):
            self.prompt_tokens, self.completion_tokens = usage_of(obj)
            self.cached_tokens = cached_count(obj)
            usage_only = not obj.get("choices")
        self.text.extend(_delta_texts(obj.get("choices")))
        choices = [c for c in obj.get("choices") or () if isinstance(c, Mapping)] if isinstance(obj.get("choices"), list) else []
        self.reasoned = self.reasoned or any(shows_reasoning(c.get("delta")) for c in choices)
        self.finished = self.finished or any(c.get("finish_reason") is not None for c in choices)
        self.cut_at_cap = self.cut_at_cap or any(c.get("finish_reason") == "length" for c in choices)
        self.answered = self.answered or any(visible_answer(c.get("delta")) for c in choices)
        return usage_only


def event_json(raw: bytes) -> Any:
    """The JSON value an SSE event carries, or None (no data, ``[DONE]``, not JSON).

    Its data is its ``data:`` lines (a line may end in CRLF, LF or CR), each without the one space
    after the colon, joined by newlines: what a client's SSE parser reads.
    """
    values = [line[5:] for line in raw.splitlines() if line.startswith(b"data:")]
    data = b"\n".join(v[1:] if v.startswith(b" ") else v for v in values).strip()
    if not data or data == b"[DONE]":
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _delta_texts(choices: Any) -> list[str]:
    """The output texts of a chunk's ``choices``: content, refusal, tool-call names and arguments
    (:func:`ragtrim.serve.upstream.output_texts`); anything not shaped like OpenAI's is skipped."""
    out = []
    for choice in choices if isinstance(choices, list) else []:
        out.extend(output_texts(choice.get("delta") if isinstance(choice, Mapping) else None))
    return out


async def _relay(events: AsyncIterator[bytes], tally: SseTally, include_usage: bool, settle: Callable[[str], Awaitable[None]],
                 upstream: str, departure: _Departure) -> AsyncIterator[bytes]:
    """The upstream's events as they come, tallied (its usage-only events only when ``include_usage``), down to a
    last one that ended with the stream; then ``settle(error)``, ``error`` saying what cut the stream short ("" if nothing:
    a stream cut from outside was cut by its client leaving or the gateway's shutdown, as ``departure`` tells).

    An upstream that fails mid-stream, or breaks the event stream (:attr:`SseTally.error`), ends it with an
    ``upstream_error`` event in the route's shape (:meth:`SseTally.error_event`): the client hears why the answer
    stopped (the ledger's ``error``, from ``settle``, also says what the operator can do about it).
    """
    error = ""
    try:
        async for piece in events:
            for raw, usage_only in tally.feed(piece):
                if include_usage or not usage_only:
                    yield raw
            if tally.error:
                break
        last = tally.rest()
        if last is not None and (include_usage or not last[1]):
            yield last[0]
        if tally.error:
            cut = f"upstream stream cut: {tally.error}"
            error = (f"{cut}; the rest was not read, and the charge is for what came before (raise max_event_bytes "
                     f"under [upstreams.{upstream}] if its events are that long)")
            yield tally.error_event(cut)
    except (anyio.get_cancelled_exc_class(), GeneratorExit) as exc:
        error = with_note(error, departure.why(cancelled=not isinstance(exc, GeneratorExit)))
        raise
    except Exception as exc:  # the upstream broke mid-stream: tell the client in-band
        error = f"upstream stream failed: {type(exc).__name__}"
        yield tally.error_event(error)
    finally:
        with anyio.CancelScope(shield=True):
            await settle(error)


CLIENT_LEFT_NOTE = "client disconnected during the stream"
SHUTDOWN_STREAM_NOTE = "stream cut off by the gateway's shutdown (its --graceful-timeout ran out)"


def stalled_note(seconds: float) -> str:
    """What a stream's row says when its client stopped reading it (:class:`ClientStalled`)."""
    return (f"client stopped reading the stream: a write waited {seconds:g} s ([limits] stream_idle_seconds), so the "
            "stream was cut and its upstream call closed")


class ClientStalled(Exception):
    """A write to a stream's client waited past ``[limits] stream_idle_seconds`` (it stopped reading). Not an OSError,
    which Starlette would take for a disconnect."""


class _Departure:
    """Whether a stream's client disconnected (:meth:`watch` its ``receive``) or stopped reading (:meth:`bound` its
    ``send``): a stream cancelled without either was cut by the server, at its shutdown (uvicorn cancels a request for
    nothing else).

    >>> d = _Departure(60)
    >>> d.why(cancelled=True), d.why(cancelled=False)
    ("stream cut off by the gateway's shutdown (its --graceful-timeout ran out)", 'client disconnected during the stream')
    """

    def __init__(self, idle_seconds: float) -> None:
        self.client_left = False
        self.stalled = False
        self.idle_seconds = idle_seconds

    def bound(self, send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """``send``, each call given at most ``idle_seconds``: past that the client stopped reading (a full socket
        buffer holds the write), :class:`ClientStalled` is raised and the stream is cut (the upstream call closed
        with it) instead of holding the upstream's connection for as long as the client keeps its socket open."""

        async def bounded(message: Any) -> None:
            try:
                with anyio.fail_after(self.idle_seconds):
                    await send(message)
            except TimeoutError:
                self.stalled = True
                raise ClientStalled(stalled_note(self.idle_seconds)) from None

        return bounded

    def watch(self, receive: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        async def watched() -> Any:
            message = await receive()
            if message.get("type") == "http.disconnect":
                self.client_left = True
            return message

        return watched

    def why(self, *, cancelled: bool) -> str:
        """What cut a stream from outside: its client stopping reading (:meth:`bound`) or leaving, or (``cancelled`` with no
        disconnect) the shutdown. A stream closed without a cancellation (its response ended, the client gone, before the
        relay did) is the client's."""
        if self.stalled:
            return stalled_note(self.idle_seconds)
        return SHUTDOWN_STREAM_NOTE if cancelled and not self.client_left else CLIENT_LEFT_NOTE


class _HeldStream(StreamingResponse):
    """A streamed answer that runs ``finish`` once it is over, however it ends (sent, the client gone, an error), and
    tells ``departure`` when its client disconnects."""

    def __init__(self, content: AsyncIterator[bytes], finish: Callable[[], Awaitable[None]], departure: _Departure,
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._finish = finish
        self._departure = departure

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, self._departure.watch(receive), self._departure.bound(send))
        except Exception:
            if not self._departure.stalled:
                raise
            # the client stopped reading: the answer is cut and settled in finish (the upstream call is closed; uvicorn
            # closes the client's socket only once what is already written drains: a proxy's send timeout ends that)
        finally:
            await self._finish()


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def _stream(service: Any, req: ChatRequest, planned: Planned, hold: Hold, body: dict[str, Any],
                  headers: dict[str, str], left: Callable[[], Awaitable[bool]] | None = None) -> StreamingResponse:
    attempt = planned.attempt
    upstream = service.upstream(attempt.model)
    # the client's stream_options as it sent them, with the usage the settle charges asked for (the relay hides it
    # from a client that did not ask: req.include_usage)
    body = {**body, "stream": True}
    if req.dialect.asks_usage:
        body["stream_options"] = {**req.stream_options, "include_usage": True}
    t_up = time.perf_counter()
    try:
        events = await upstream.stream(body, req.question, attempt.context, on_sent=hold.mark_sent, client_left=left,
                                       wire=wire_of(req))
    except UpstreamError as exc:
        raise await _failed(hold, str(exc), exc.refusal, exc.started, (time.perf_counter() - t_up) * 1000) from None
    tally = (req.dialect.tally or SseTally)(service.config.upstreams[attempt.model.upstream].max_event_bytes, body)

    async def settle(error: str) -> None:
        """Charge what the stream carried (the upstream's usage, else the counted prompt and streamed text), once."""
        if hold.done:
            return
        error = with_note(getattr(upstream, "scrub", str)(tally.upstream_error)[:400], error)  # scrubbed whole, then cut
        if attempt.model.reasoning and tally.cut_at_cap and not tally.answered:
            _warn_cut(service, req, attempt, hold.entry, body)
        up_ms = (time.perf_counter() - t_up) * 1000
        # a reasoning model's usage never came: its hidden reasoning (or, cut short, the reasoning it went on
        # writing after the cut) is billed but not in the text, so the reservation is charged as an estimate
        if tally.completion_tokens is None and (hidden_reasoning(attempt.model, req) or (tally.reasoned and not tally.finished)):
            await hold.charge_reserved(200, with_note(error, REASONING_UNKNOWN), upstream_ms=up_ms)
            return
        p, c, k, w, source, cost, note = await run_in_threadpool(  # off the loop: it may measure a long prompt
            _settle_values, attempt, req, tally.prompt_tokens, tally.completion_tokens, tally.cached_tokens,
            "".join(tally.text), fields=_billed_fields_of(upstream, req), capped=_capped(body, req),
            written=tally.cache_write_tokens, written_1h=tally.cache_write_1h_tokens)
        final = replace(hold.entry, prompt_tokens=p, completion_tokens=c, cached_tokens=k, cache_write_tokens=w, usage_source=source,
                        cost_micro=cost, status=200, latency_ms=(time.perf_counter() - hold.start) * 1000, upstream_ms=up_ms,
                        error=with_note(error, note))
        await hold.settle(final, p, c, cost)

    departure = _Departure(service.config.limits.stream_idle_seconds)
    relayed = _relay(events, tally, req.include_usage, settle, attempt.model.upstream, departure)

    async def finish() -> None:
        """Close the relay and the upstream stream; settle if the relay never ran, release if settling failed."""
        with anyio.CancelScope(shield=True):
            try:
                await relayed.aclose()
                await _aclose(events)
                await settle("the response ended before its stream was relayed")  # nothing when already settled
            except Exception as exc:
                await hold.abandon(exc)

    if req.documents:  # a stream has no body of ours: the header says which document each cited number is
        headers = {**headers, **stream_headers(cited_documents(attempt.result))}
    return _HeldStream(relayed, finish, departure, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})

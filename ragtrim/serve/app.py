"""The ASGI application (FastAPI, so ``/openapi.json`` and ``/docs`` describe every route).

>>> from ragtrim.serve.config import ServeConfig
>>> app = create_app(Service(ServeConfig(), db_url="sqlite://", pepper=b"x" * 32))
>>> sorted(r.path for r in app.routes if r.path.startswith("/v1/"))[:3]
['/v1/admin/budgets', '/v1/admin/budgets', '/v1/admin/budgets/{budget_id}']
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import optimizer
from optimizer.lazy import lazy_import
from optimizer.score_reading import SCORE_DIRECTIONS
from ragtrim.serve import admin, chat, count_tokens, embeddings, messages, model_list, optimize, page, responses
from ragtrim.serve.auth import presented_key, require
from ragtrim.serve.bodies import CAP_FIELDS, RAGTRIM_FIELDS
from ragtrim.serve.config import Limits, ServeConfig
from ragtrim.serve.embedding_inputs import embeddings_schema
from ragtrim.serve.cutoff import CutOffAnswer
from ragtrim.serve.db import is_unreachable
from ragtrim.serve.errors import ApiError, body_for, database_unavailable
from ragtrim.serve.lease import LeaseKeeper, settle_cancelled
from ragtrim.serve.logs import log_event
from ragtrim.serve.recycle import ConnectionRecycler
from ragtrim.serve.service import Service

def _chunk_schema() -> dict[str, Any]:
    return {"oneOf": [{"type": "string"}, {"type": "object", "required": ["id", "text"], "properties": {
        "id": {"type": "string"}, "text": {"type": "string"}, "title": {"type": "string"}, "score": {"type": "number"},
        "metadata": {"type": "object"}}}]}


def _budget_schema() -> dict[str, Any]:
    return {"oneOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 1}, {"type": "integer", "minimum": 1}, {"type": "string"}],
            "description": "share of the full context in (0, 1] or a number of tokens"}


def optimize_schema() -> dict[str, Any]:
    """The JSON schema of a ``POST /v1/optimize`` body (for the OpenAPI spec)."""
    return {"type": "object", "required": ["query", "chunks"], "properties": {
        "query": {"type": "string"}, "chunks": {"type": "array", "items": _chunk_schema()}, "budget": _budget_schema(),
        "preset": {"type": "string"}, "tokenizer": {"type": "string"}, "model": {"type": "string"},
        "score_direction": {"type": "string", "enum": list(SCORE_DIRECTIONS), "default": "auto",
                            "description": "how to read the chunks' score; auto reads scores rising along the given order as distances"},
        "user": {"type": "string"}, "feature": {"type": "string"}}}


def chat_schema(limits: Limits) -> dict[str, Any]:
    """The JSON schema of a ``POST /v1/chat/completions`` body: OpenAI's, plus ``documents`` and friends.

    It lists every field the gateway reads itself (:func:`ragtrim.serve.bodies.parse_chat`), each
    completion cap (:data:`ragtrim.serve.bodies.CAP_FIELDS`) among them, up to ``limits.max_tokens_limit``;
    any other field is forwarded as it came.
    """
    caps = {name: {"type": ["integer", "null"], "minimum": 1, "maximum": limits.max_tokens_limit,
                   "description": "completion cap (limits.max_tokens_limit at most), forwarded under this name"}
            for name in CAP_FIELDS}
    ours, holder = _ragtrim_fields(), _holder()
    return {"type": "object", "required": ["messages"], "additionalProperties": True, "properties": {
        "model": {"type": "string"}, "messages": {"type": "array", "items": {"type": "object"}}, **ours,
        "user": {"type": "string"}, "safety_identifier": {"type": "string", "description": "the user, when user is not given"},
        **caps,
        "n": {"type": ["integer", "null"], "enum": [1, None], "description": "one completion per request"},
        "stream": {"type": ["boolean", "null"]},
        "stream_options": {"type": ["object", "null"], "properties": {"include_usage": {"type": "boolean"}},
                           "description": "forwarded with include_usage set (the usage chunk reaches only a client that asked)"},
        "extra_body": holder, "ragtrim": holder}}


def responses_schema(limits: Limits) -> dict[str, Any]:
    """The JSON schema of a ``POST /v1/responses`` body: OpenAI's, plus ``documents`` and friends
    (:func:`ragtrim.serve.responses.parse_responses`); any other field is forwarded as it came."""
    ours, holder = _ragtrim_fields(), _holder()
    return {"type": "object", "additionalProperties": True, "properties": {
        "model": {"type": "string"}, "input": {"type": ["string", "array"], "items": {"type": "object"}},
        "instructions": {"type": ["string", "null"]}, **ours,
        "max_output_tokens": {"type": ["integer", "null"], "minimum": 1, "maximum": limits.max_tokens_limit,
                              "description": "output cap, reasoning included (limits.max_tokens_limit at most)"},
        "stream": {"type": ["boolean", "null"]}, "user": {"type": "string"}, "safety_identifier": {"type": "string"},
        "previous_response_id": {"type": ["string", "null"],
                                 "description": "a 400 when the request holds room in a budget (send the whole input)"},
        "extra_body": holder, "ragtrim": holder}}


def messages_schema(limits: Limits) -> dict[str, Any]:
    """The JSON schema of a ``POST /v1/messages`` body: Anthropic's, plus ``documents`` and friends
    (:func:`ragtrim.serve.messages.parse_messages`); any other field is forwarded as it came."""
    ours, holder = _ragtrim_fields(), _holder()
    return {"type": "object", "required": ["model", "max_tokens", "messages"], "additionalProperties": True, "properties": {
        "model": {"type": "string"}, "messages": {"type": "array", "items": {"type": "object"}},
        "system": {"type": ["string", "array"]}, **ours,
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": limits.max_tokens_limit,
                       "description": "output cap, thinking included (limits.max_tokens_limit at most)"},
        "stream": {"type": ["boolean", "null"]}, "extra_body": holder, "ragtrim": holder}}


def count_tokens_schema(limits: Limits) -> dict[str, Any]:
    """The JSON schema of a ``POST /v1/messages/count_tokens`` body: a Messages body without ``max_tokens``
    (:func:`ragtrim.serve.count_tokens.parse_count`)."""
    schema = messages_schema(limits)
    props = {k: v for k, v in schema["properties"].items() if k not in ("max_tokens", "stream")}
    return {**schema, "required": ["model", "messages"], "properties": props}


def _holder() -> dict[str, Any]:
    """The schema of a ``ragtrim`` or ``extra_body`` object: ragtrim's own fields alone."""
    return {"type": "object", "additionalProperties": False, "properties": _ragtrim_fields(),
            "description": f"ragtrim's own fields may go here ({', '.join(RAGTRIM_FIELDS)}); any other key is a 400"}


def _ragtrim_fields() -> dict[str, Any]:
    """The schemas of ragtrim's own chat fields (:data:`ragtrim.serve.bodies.RAGTRIM_FIELDS`)."""
    fields = {
        "documents": {"type": "array", "items": _chunk_schema()}, "budget": _budget_schema(), "preset": {"type": "string"},
        "feature": {"type": "string"},
        "query": {"type": "string", "description": "the question the documents are optimized for (default: the last user message)"},
        "score_direction": {"type": "string", "enum": list(SCORE_DIRECTIONS), "default": "auto",
                            "description": "how to read the documents' score, as on /v1/optimize"}}
    return fields


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def create_app(service: Service | None = None, *, config: ServeConfig | None = None) -> Any:
    """The app around ``service`` (built from ``config`` when not given)."""
    fastapi = lazy_import("fastapi", extra="serve", purpose="ragtrim serve")
    service = service if service is not None else Service(config if config is not None else ServeConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await service.start()
        keeper = LeaseKeeper(service.quota, log=service.log, metrics=service.metrics)
        keeper.start()
        log_event(service.log, "worker_started", worker=service.worker_id, pid=os.getpid(), db=service.engine.dialect.name)
        try:
            yield
        finally:
            await settle_cancelled(service.quota)
            await run_in_threadpool(keeper.stop)
            await service.stop()
            log_event(service.log, "worker_stopped", worker=service.worker_id, pid=os.getpid())

    app = fastapi.FastAPI(title="ragtrim serve", version=optimizer.__version__, lifespan=lifespan,
                          description="Optimizes RAG context per request and enforces per-tenant token and $ budgets.")
    app.state.service = service
    app.add_middleware(ConnectionRecycler, max_age=service.config.connection_max_age)
    app.add_middleware(CutOffAnswer)  # a request the shutdown cancels gets its endpoint's JSON error, not uvicorn's 500
    _routes(app, service.config.limits)
    _handlers(app)
    return app


def _routes(app: Any, limits: Limits) -> None:
    add = app.add_api_route
    add("/v1/optimize", optimize.optimize_endpoint, methods=["POST"], openapi_extra=_body(optimize_schema()), tags=["optimize"],
        summary="Optimize chunks into a budget (what `ragtrim optimize --format json` prints, plus savings)")
    add("/v1/chat/completions", chat.chat_endpoint, methods=["POST"], openapi_extra=_body(chat_schema(limits)), tags=["chat"],
        summary="OpenAI-compatible chat with documents optimized into the prompt, within the tenant's budgets")
    add("/v1/responses", responses.responses_endpoint, methods=["POST"], openapi_extra=_body(responses_schema(limits)),
        tags=["chat"], summary="OpenAI's Responses API with documents optimized into the input, within the tenant's budgets")
    add("/v1/messages", messages.messages_endpoint, methods=["POST"], openapi_extra=_body(messages_schema(limits)),
        tags=["chat"], summary="Anthropic's Messages API with documents optimized into the system prompt, within the tenant's budgets")
    add("/v1/messages/count_tokens", count_tokens.count_tokens_endpoint, methods=["POST"],
        openapi_extra=_body(count_tokens_schema(limits)), tags=["chat"],
        summary="Anthropic's token count of a Messages request as /v1/messages would send it (never charged)")
    add("/v1/embeddings", embeddings.embeddings_endpoint, methods=["POST"], openapi_extra=_body(embeddings_schema()),
        tags=["embeddings"], summary="OpenAI-compatible embeddings, every input token accounted within the tenant's budgets")
    add("/v1/models", model_list.models_list, methods=["GET"], tags=["chat"],
        summary="The models this gateway serves (OpenAI's list)")
    add("/v1/models/{model:path}", model_list.model_get, methods=["GET"], tags=["chat"],
        summary="One model this gateway serves (OpenAI's model object), or a 404 model_not_found")
    add("/v1/usage", admin.usage_endpoint, methods=["GET"], tags=["usage"], summary="Usage grouped by user, feature, model, day")
    add("/v1/usage/page-link", page.page_link_endpoint, methods=["POST"], tags=["usage"], summary="A 15-minute link to the usage page")
    add("/usage", page.page_endpoint, methods=["GET"], tags=["usage"], summary="The read-only usage page (HTML)")
    add("/v1/admin/tenants", admin.tenants_create, methods=["POST"], tags=["admin"], summary="Create a tenant")
    add("/v1/admin/tenants", admin.tenants_list, methods=["GET"], tags=["admin"], summary="List tenants")
    add("/v1/admin/tenants/{tenant}/disable", admin.tenants_disable, methods=["POST"], tags=["admin"],
        summary="Disable a tenant (its keys are refused; none is revoked)")
    add("/v1/admin/tenants/{tenant}/enable", admin.tenants_enable, methods=["POST"], tags=["admin"],
        summary="Enable a disabled tenant (its keys work again)")
    add("/v1/admin/keys", admin.keys_create, methods=["POST"], tags=["admin"], summary="Create a key (shown once)")
    add("/v1/admin/keys", admin.keys_list, methods=["GET"], tags=["admin"], summary="List keys (ids only)")
    add("/v1/admin/keys/{key_id}", admin.keys_revoke, methods=["DELETE"], tags=["admin"], summary="Revoke a key")
    add("/v1/admin/budgets", admin.budgets_set, methods=["PUT"], tags=["admin"], summary="Create or change a budget")
    add("/v1/admin/budgets", admin.budgets_list, methods=["GET"], tags=["admin"], summary="List budgets")
    add("/v1/admin/budgets/{budget_id}", admin.budgets_delete, methods=["DELETE"], tags=["admin"], summary="Delete a budget")
    add("/healthz", _healthz, methods=["GET"], tags=["ops"], summary="Liveness and database check")
    for path, endpoint in (("/v1/models", model_list.models_list), ("/v1/models/{model:path}", model_list.model_get),
                           ("/healthz", _healthz)):  # HEAD as GET (health checks, proxies), one operation each in the schema
        add(path, endpoint, methods=["HEAD"], include_in_schema=False)
    add("/metrics", _metrics, methods=["GET"], tags=["ops"], summary="Prometheus metrics")


async def _healthz(request: Request) -> JSONResponse:
    service = request.app.state.service

    def ping() -> None:
        with service.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    try:
        await run_in_threadpool(ping)
    except Exception as exc:
        return JSONResponse({"status": "error", "db": service.engine.dialect.name, "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "db": service.engine.dialect.name, "pid": os.getpid(),
                         "models": sorted(service.config.models), "default_model": service.config.default_model})


async def _metrics(request: Request) -> Response:
    """Prometheus metrics: every tenant's tokens and dollars, so only for an admin key or the metrics token."""
    await require_metrics_reader(request)
    data, content_type = request.app.state.service.metrics.exposition()
    return Response(data, media_type=content_type)


def metrics_token(config: ServeConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The scrapers' token: the environment variable ``metrics_token_env`` names (None when unset or empty)."""
    env = os.environ if env is None else env
    return env.get(config.metrics_token_env) or None


async def require_metrics_reader(request: Request) -> None:
    """Pass ``Authorization: Bearer <metrics token>`` or an admin key; else a 401 (no key, a wrong one) or a 403 (a tenant key)."""
    service = request.app.state.service
    token = metrics_token(service.config)
    presented = presented_key(request.headers)
    if token and presented and hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8")):
        return
    how = (f"send 'Authorization: Bearer <the token in ${service.config.metrics_token_env}>' or an admin key"
           if token else f"send an admin key as 'Authorization: Bearer rtk_...' (or set ${service.config.metrics_token_env} "
           "for scrapers)")
    try:
        await require(request, admin=True)
    except ApiError as exc:
        raise ApiError(exc.status, exc.type, f"/metrics shows every tenant's usage: {how}", headers=exc.headers) from None


def _handlers(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body_for(exc, request.url.path), status_code=exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":  # Starlette's: no route has this path
            message = no_route_message(request)
        elif exc.status_code == 405 and (exc.headers or {}).get("Allow"):
            message = f"{request.method} {request.url.path} is not served: this route takes {exc.headers['Allow']}"
        return await api_error(request, ApiError(exc.status_code, kind, message, headers=exc.headers))

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await api_error(request, ApiError(400, "invalid_request_error", json.dumps(exc.errors(), default=str)[:500]))

    async def crash(request: Request, exc: Exception) -> JSONResponse:
        service = request.app.state.service
        log_event(service.log, "internal_error", level=logging.ERROR, path=request.url.path, error=f"{type(exc).__name__}: {exc}"[:500])
        if is_unreachable(exc):
            return await api_error(request, database_unavailable(service.engine.dialect.name))
        return await api_error(request, ApiError(500, "server_error", "internal error; see the server log"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, crash)


def _served(app: Any) -> list[tuple[str, str, Any]]:
    """``(method, path, route)`` of each API route of ``app`` (OpenAPI's own and /docs aside)."""
    routes = [r for r in app.routes if getattr(r, "include_in_schema", False) and getattr(r, "methods", None)]
    return [(method, re.sub(r":\w+}", "}", r.path), r) for r in routes for method in sorted(r.methods) if method != "HEAD"]


def no_route_message(request: Request) -> str:
    """The 404 message of a request no route takes: the routes a client calls (the admin ones are at /docs); for a path
    that is a route under ``/v1`` (``POST /chat/completions``: a client whose base URL lacks ``/v1``), that route.

    The request is not served at the ``/v1`` path it meant: a client whose base URL is wrong would else send every
    other route wrong too.
    """
    from starlette.routing import Match

    asked = f"{request.method} {request.url.path}"
    served = _served(request.app)
    if not request.url.path.startswith("/v1/"):
        meant = {**request.scope, "path": "/v1" + request.url.path, "method": request.method}
        for method, path, route in served:
            if method == request.method and route.matches(meant)[0] == Match.FULL:
                return (f"{asked} is not a route of this gateway; did you mean {method} /v1{request.url.path}? An OpenAI "
                        "client's base_url must end in /v1, e.g. http://127.0.0.1:8080/v1")
    listed = ", ".join(f"{method} {path}" for method, path, _ in served
                       if path.startswith("/v1/") and not path.startswith("/v1/admin/"))
    return (f"{asked} is not a route of this gateway; it serves {listed} (the admin routes under /v1/admin/ and all "
            "of them at /docs)")


def app_from_env() -> Any:
    """The uvicorn factory for ``ragtrim serve --workers N``: config path and database from ``RAGTRIM_SERVE_CONFIG`` / ``RAGTRIM_SERVE_DB``."""
    from ragtrim.serve.logs import setup_json_logging

    setup_json_logging()
    path = os.environ.get("RAGTRIM_SERVE_CONFIG") or None
    config = ServeConfig.load(path)
    return create_app(Service(config, db_url=os.environ.get("RAGTRIM_SERVE_DB") or None))

"""The one error shape every endpoint returns, OpenAI's: ``{"error": {"type", "message", "param", "code"}}``.

>>> e = ApiError(400, "invalid_request_error", "budget must be ...", param="budget")
>>> e.body()
{'error': {'type': 'invalid_request_error', 'message': 'budget must be ...', 'param': 'budget', 'code': None}}

``code`` is None for the gateway's own errors; an upstream's refusal passed on to the client keeps
the upstream's (:class:`ragtrim.serve.upstream.Refusal`), e.g. ``"rate_limit_exceeded"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An error answered to the client with ``status``, a JSON body and optional headers."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        param: str | None = None,
        code: str | int | None = None,
        headers: Mapping[str, str] | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.detail = detail  # for the ledger row's ``detail`` (the client gets ``message``)

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "message": self.message, "param": self.param, "code": self.code}}


# Anthropic's error types, by the HTTP status (its API's own pairs; 529 is its "overloaded")
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}
# An error type an Anthropic client knows: an upstream's refusal of one of these keeps it (a 503 overloaded_error)
ANTHROPIC_KINDS = frozenset({*ANTHROPIC_TYPES.values(), "api_error", "billing_error", "timeout_error"})
ANTHROPIC_ROUTE = "/v1/messages"  # the route (and what is under it) that answers errors in Anthropic's shape


def anthropic_body(exc: ApiError) -> dict[str, Any]:
    """``exc`` in Anthropic's error shape, with the message the OpenAI routes give: its type when it is one of
    Anthropic's (:data:`ANTHROPIC_KINDS`: an upstream's refusal passed on), else by the status (:data:`ANTHROPIC_TYPES`;
    any other 4xx an ``invalid_request_error``, a 5xx an ``api_error``).

    >>> anthropic_body(ApiError(429, "insufficient_quota", "quota exceeded"))
    {'type': 'error', 'error': {'type': 'rate_limit_error', 'message': 'quota exceeded'}}
    >>> anthropic_body(ApiError(502, "upstream_error", "upstream failed"))["error"]["type"]
    'api_error'
    """
    kind = exc.type if exc.type in ANTHROPIC_KINDS else \
        ANTHROPIC_TYPES.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


def body_for(exc: ApiError, path: str) -> dict[str, Any]:
    """The error body a request to ``path`` is answered: Anthropic's shape on :data:`ANTHROPIC_ROUTE`, else OpenAI's."""
    return anthropic_body(exc) if path == ANTHROPIC_ROUTE or path.startswith(ANTHROPIC_ROUTE + "/") else exc.body()


def database_unavailable(dialect: str) -> ApiError:
    """The 503 for a database that cannot be reached (:func:`ragtrim.serve.db.is_unreachable`): the
    client may retry (``x-should-retry: true``, which the OpenAI SDKs obey); the server log has the error.

    >>> e = database_unavailable("sqlite"); e.status, e.code, e.headers["x-should-retry"]
    (503, 'database_unavailable', 'true')
    """
    return ApiError(503, "server_error", f"the gateway's {dialect} database cannot be reached just now; retry in a "
                    "moment (the server log has the error)", code="database_unavailable",
                    headers={"x-should-retry": "true", "Retry-After": "1"})


CLIENT_LEFT = 499  # the status of a request whose client left before its answer (nginx's; no client reads it)


def client_gone(when: str, request_id: str) -> ApiError:
    """The 499 of a request whose client disconnected ``when`` (no client reads it; its ledger row does).

    >>> e = client_gone("while its chunks were optimized", "r1"); e.status, e.type
    (499, 'client_closed_request')
    >>> e.message
    'the client disconnected while its chunks were optimized; nothing was charged (request id r1)'
    """
    return ApiError(CLIENT_LEFT, "client_closed_request", f"the client disconnected {when}; nothing was charged "
                    f"(request id {request_id})", headers={"X-Ragtrim-Request-Id": request_id})


def body_timeout(seconds: float, read: int, declared: str | None, *, stalled: bool = True) -> ApiError:
    """The 408 of a request whose body stalled: no bytes of it for ``[limits] body_seconds`` (``read`` bytes of it
    had, of ``declared``: its Content-Length, or None for a chunked body).

    >>> e = body_timeout(30, 20, "310"); e.status, e.code
    (408, 'request_timeout')
    >>> e.message
    'the request body stalled: no bytes of it for 30 s ([limits] body_seconds), 20 bytes of 310 read; nothing was charged. Send the body without pausing, or ask the operator to raise [limits] body_seconds'
    """
    how = (f"stalled: no bytes of it for {seconds:g} s ([limits] body_seconds)" if stalled else
           f"came too slowly: past {seconds:g} s ([limits] body_seconds) a body must average 1 KiB/s")
    return ApiError(408, "invalid_request_error", f"the request body {how}, {read} bytes of {declared or 'a chunked body'} "
                    "read; nothing was charged. Send the body without pausing, or ask the operator to raise [limits] "
                    "body_seconds", code="request_timeout")


def bad_request(message: str, param: str | None = None) -> ApiError:
    """A 400 ``invalid_request_error``."""
    return ApiError(400, "invalid_request_error", message, param=param)


def too_large(message: str, param: str | None = None) -> ApiError:
    """A 413 ``request_too_large``."""
    return ApiError(413, "request_too_large", message, param=param)


def names_stage(exc: BaseException) -> bool:
    """True when ``exc`` came from a pipeline stage: raised in it (the pipeline adds a note ``in stage 'name' (...)``)
    or by the pipeline's check of what it returned (a message that begins ``stage 'name'``)."""
    from optimizer.pipeline import notes_of

    return any(note.startswith("in stage ") for note in notes_of(exc)) or str(exc).startswith("stage '")


def pipeline_error(exc: Exception, request_id: str) -> ApiError:
    """The client's error for an optimizer run that raised ``exc``, its message with its notes (which stage).

    A ValueError about the request's input, raised before any stage ran (a budget, a chunk), is the
    client's: a 400. A stage's own failure (:func:`names_stage`), or any other exception (a TypeError,
    a missing file), is the gateway's: a 500 naming the request id, which the ledger row and the log share.

    >>> err = TypeError("unsupported operand"); err.add_note("in stage 'mine' (my.Stage)")
    >>> e = pipeline_error(err, "r1"); e.status, e.message
    (500, "the optimizer failed on this request (request id r1): TypeError: unsupported operand; in stage 'mine' (my.Stage)")
    >>> pipeline_error(ValueError("budget must be > 0, got -1"), "r1").status
    400
    """
    from optimizer.pipeline import with_notes

    text = with_notes(exc) or repr(exc)
    if isinstance(exc, ValueError) and not names_stage(exc):
        return bad_request(text)
    return ApiError(500, "server_error", f"the optimizer failed on this request (request id {request_id}): {type(exc).__name__}: {text}",
                    headers={"X-Ragtrim-Request-Id": request_id})


OPTIMIZER_TIMEOUT = "optimizer_timeout"
"""The ``code`` of the 503 for a request whose optimizer runs went past ``[limits] optimize_seconds``."""


def optimizer_timeout(exc: Any, request_id: str, preset: str) -> ApiError:
    """The client's 503 for an optimizer run stopped at its time limit (``exc``, an :class:`optimizer.OptimizerTimeout`).

    Nothing was reserved or charged (the optimizer runs before the reservation). It names the
    limit and the ways out, and carries ``x-should-retry: false``: the same request would run into
    the same limit, and the OpenAI SDKs would otherwise send a 503 twice more, each holding an
    optimizer thread for the whole limit again.

    >>> from optimizer import OptimizerTimeout
    >>> e = optimizer_timeout(OptimizerTimeout(20, 20.04, "in stage 'compress-sentences'"), "r1", "quality")
    >>> e.status, e.code, e.headers["x-should-retry"]
    (503, 'optimizer_timeout', 'false')
    >>> print(e.message)
    the optimizer (preset 'quality') stopped at this gateway's time limit of 20 s per request ([limits] optimize_seconds), after 20.04 s; nothing was charged (request id r1). Send a smaller context (fewer or shorter documents), use a faster preset (e.g. "preset": "bm25-pack", linear in the input), or ask the operator to raise [limits] optimize_seconds
    """
    message = (f"the optimizer (preset {preset!r}) stopped at this gateway's time limit of {exc.seconds:g} s per request "
               f"([limits] optimize_seconds), after {exc.elapsed:.2f} s; nothing was charged (request id {request_id}). "
               "Send a smaller context (fewer or shorter documents), use a faster preset (e.g. \"preset\": \"bm25-pack\", "
               "linear in the input), or ask the operator to raise [limits] optimize_seconds")
    from optimizer.pipeline import notes_of

    where = "; ".join([exc.where, *notes_of(exc)])
    detail = f"{OPTIMIZER_TIMEOUT}: preset {preset}, limit {exc.seconds:g} s, stopped after {exc.elapsed:.2f} s ({where})"
    return ApiError(503, "server_error", message, code=OPTIMIZER_TIMEOUT, detail=detail,
                    headers={"X-Ragtrim-Request-Id": request_id, "x-should-retry": "false"})

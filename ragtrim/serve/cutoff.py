"""The answer to a request the server cancelled before its response started: its shutdown cut it off.

When ``--graceful-timeout`` runs out, uvicorn cancels the requests still running (it cancels a
request for nothing else) and sends one whose response had not started its own plain-text ``500
Internal Server Error``: no request id, no ``x-should-retry: false``, so the OpenAI SDKs send it
again. A chat request cut off so may have been charged its reservation (the upstream had it), and
each resend would be charged again. So the endpoint ends the request's hold and leaves the client's
error in the request's scope (:func:`leave_answer`); :class:`CutOffAnswer`, around the app, sends
that error (shielded from the cancellation) and lets the cancellation go on, as uvicorn expects.

>>> import anyio
>>> from ragtrim.serve.errors import ApiError
>>> async def app(scope, receive, send):  # an endpoint cut off after it left its answer
...     leave_answer(scope, ApiError(503, "server_error", "cut off", headers={"x-should-retry": "false"}))
...     raise anyio.get_cancelled_exc_class()()
>>> sent = []
>>> async def send(message): sent.append(message)
>>> async def main():
...     try:
...         await CutOffAnswer(app)({"type": "http"}, None, send)
...     except anyio.get_cancelled_exc_class():
...         return "cancelled"
>>> anyio.run(main)
'cancelled'
>>> sent[0]["status"], (b"x-should-retry", b"false") in sent[0]["headers"], sent[1]["body"]
(503, True, b'{"error":{"type":"server_error","message":"cut off","param":null,"code":null}}')
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import anyio

from ragtrim.serve.errors import ApiError, body_for

SCOPE_KEY = "ragtrim.cut_off_answer"
SHUTDOWN_CUT = "request cut off by the gateway's shutdown (its --graceful-timeout ran out)"


def shutdown_error(request_id: str, charge: str, *, retry: bool) -> ApiError:
    """The client's 503 for a request the gateway's shutdown cut off: ``charge`` says what it was charged, and
    ``x-should-retry`` says whether sending it again is safe (``retry``: nothing was charged).

    >>> e = shutdown_error("r1", "nothing was charged: send it again", retry=True)
    >>> e.status, e.code, e.headers["x-should-retry"]
    (503, 'gateway_shutdown', 'true')
    >>> e.message
    'the gateway shut down before answering this request (its --graceful-timeout ran out; request id r1): nothing was charged: send it again'
    """
    message = f"the gateway shut down before answering this request (its --graceful-timeout ran out; request id {request_id}): {charge}"
    return ApiError(503, "server_error", message, code="gateway_shutdown",
                    headers={"X-Ragtrim-Request-Id": request_id, "x-should-retry": "true" if retry else "false"})


def leave_answer(scope: MutableMapping[str, Any], error: ApiError) -> None:
    """Have :class:`CutOffAnswer` answer ``error`` should this request be cancelled before its response starts."""
    scope[SCOPE_KEY] = error


class CutOffAnswer:
    """ASGI middleware: a request cancelled before its response started gets the error its endpoint left (:func:`leave_answer`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except anyio.get_cancelled_exc_class():
            error = scope.get(SCOPE_KEY)
            if error is not None and not started:
                with anyio.CancelScope(shield=True):
                    await _send_error(error, send, str(scope.get("path", "")))
            raise


async def _send_error(error: ApiError, send: Any, path: str = "") -> None:
    """``error`` as the JSON response the endpoint at ``path`` answers errors with (:func:`ragtrim.serve.errors.body_for`)."""
    from starlette.responses import JSONResponse

    response = JSONResponse(body_for(error, path), status_code=error.status, headers=error.headers)
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body, "more_body": False})

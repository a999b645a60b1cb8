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
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "message": self.message, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None) -> ApiError:
    """A 400 ``invalid_request_error``."""
    return ApiError(400, "invalid_request_error", message, param=param)


def too_large(message: str, param: str | None = None) -> ApiError:
    """A 413 ``request_too_large``."""
    return ApiError(413, "request_too_large", message, param=param)

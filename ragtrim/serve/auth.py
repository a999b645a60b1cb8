"""Who is calling: ``Authorization: Bearer <key>`` (or ``X-Api-Key``) to a :class:`Principal`."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from ragtrim.serve.errors import ApiError
from ragtrim.serve.keys import TENANT_DISABLED, Principal, check_key, key_id
from ragtrim.serve.logs import log_event


def presented_key(headers: Any) -> str | None:
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key")


async def require(request: Any, *, admin: bool = False, tenant: bool = False) -> Principal:
    """The caller's principal, or a 401/403 ``ApiError``."""
    service = request.app.state.service
    key = presented_key(request.headers)
    if not key:
        raise ApiError(401, "authentication_error", "missing API key; send 'Authorization: Bearer rtk_...' (or 'x-api-key: "
                       "rtk_...', as the anthropic SDK does)", headers={"WWW-Authenticate": "Bearer"})
    principal = await run_in_threadpool(check_key, service.engine, service.pepper, key)
    if not isinstance(principal, Principal):  # the key id (not secret) helps spot a revoked key still in use; the key never goes to the log
        why, tenant_id = principal
        log_event(service.log, "auth_failed", path=request.url.path, key_id=key_id(key) or "malformed", reason=why,
                  client=request.client.host if request.client else "", **({"tenant": tenant_id} if tenant_id else {}))
        raise refusal(why, tenant_id)
    if admin and not principal.admin:
        raise ApiError(403, "permission_error", "this route needs an admin key (ragtrim keys create --admin)")
    if tenant and principal.tenant_id is None:
        raise ApiError(403, "permission_error", "admin keys make no model calls; use a tenant key (ragtrim keys create --tenant NAME)")
    return principal


def refusal(why: str, tenant_id: str | None) -> ApiError:
    """The 401 for a key :func:`check_key` refused. A key of a disabled tenant (told only to the holder of its secret)
    says so, with ``code: tenant_disabled``, so its owner asks the operator rather than rotating keys; any other
    refusal says no more than "invalid or revoked".

    >>> refusal("tenant_disabled", "acme").message
    "this key's tenant 'acme' is disabled by the gateway's operator, so its keys are refused; ask the operator to enable it again"
    """
    headers = {"WWW-Authenticate": "Bearer"}
    if why == TENANT_DISABLED:
        return ApiError(401, "authentication_error", f"this key's tenant {tenant_id!r} is disabled by the gateway's operator, so its "
                        "keys are refused; ask the operator to enable it again", code=TENANT_DISABLED, headers=headers)
    return ApiError(401, "authentication_error", "invalid or revoked API key", headers=headers)

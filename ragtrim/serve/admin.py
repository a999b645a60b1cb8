"""Admin routes (admin key only): tenants (created, listed, disabled and enabled), keys (shown once), budgets; and
``GET /v1/usage``.

A budget's ``limit`` is a number of tokens (``unit = "tokens"``) or dollars (``unit = "usd"``,
e.g. ``"5.00"``; stored as micro-dollars).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ragtrim.serve.auth import require
from ragtrim.serve.budgets import (check_limit, check_period, check_scope, check_scope_value, check_unit, delete_budget, list_budgets,
                                   set_budget)
from ragtrim.serve.errors import ApiError, bad_request
from ragtrim.serve.keys import (UnknownTenant, create_key, create_tenant, id_of, list_keys, list_tenants, revoke_key,
                               set_tenant_disabled, tenant_disabled)
from ragtrim.serve.pricing import parse_usd
from ragtrim.serve.bodies import body_text, read_json, url_param
from ragtrim.serve.usage import quota_status, usage_summary


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except ValueError as exc:
        raise bad_request(str(exc)) from None


async def tenants_create(request: Request) -> JSONResponse:
    await require(request, admin=True)
    body = await read_json(request, request.app.state.service.config.limits)
    t = await _call(create_tenant, request.app.state.service.engine, body.get("name"))
    return JSONResponse({"id": t.id, "name": t.name, "created": t.created}, status_code=201)


async def tenants_list(request: Request) -> JSONResponse:
    await require(request, admin=True)
    ts = await _call(list_tenants, request.app.state.service.engine)
    return JSONResponse({"data": [t.as_json() for t in ts]})


async def tenants_disable(request: Request) -> JSONResponse:
    """``POST /v1/admin/tenants/{tenant}/disable``: the tenant's keys are refused until it is enabled (none is revoked).

    An optional body ``{"reason": "..."}`` is kept for the operators (listed with the tenant, never told its callers)."""
    return await _set_disabled(request, True)


async def tenants_enable(request: Request) -> JSONResponse:
    """``POST /v1/admin/tenants/{tenant}/enable``: the tenant's keys (those not revoked) work again."""
    return await _set_disabled(request, False)


async def _set_disabled(request: Request, disabled: bool) -> JSONResponse:
    """Disable or enable the tenant in the path; idempotent (``changed`` says whether this call changed it), a 404 naming
    an unknown tenant. A request of the tenant's already past its key check finishes and is charged."""
    await require(request, admin=True)
    name = url_param(request, "tenant", path=True) or ""
    body = await _optional_body(request)
    reason = body.get("reason")
    reason = "" if reason is None else body_text(reason, "reason", "a reason") if isinstance(reason, str) else reason
    try:
        t, changed = await run_in_threadpool(set_tenant_disabled, request.app.state.service.engine, name, disabled, reason)
    except UnknownTenant:
        raise ApiError(404, "not_found_error", f"unknown tenant {name!r}; GET /v1/admin/tenants lists them") from None
    except ValueError as exc:
        raise bad_request(str(exc), "reason") from None
    return JSONResponse({**t.as_json(), "changed": changed})


async def _optional_body(request: Request) -> dict[str, Any]:
    """The JSON object of a request whose body may be left out (``{}`` then)."""
    if request.headers.get("content-length", "0") == "0" and "transfer-encoding" not in request.headers:
        return {}
    return await read_json(request, request.app.state.service.config.limits)


def bool_field(body: Any, name: str, default: bool = False) -> bool:
    """``body[name]`` as a JSON boolean (``default`` when left out or null); anything else is a 400 naming the field.

    >>> bool_field({"admin": True}, "admin"), bool_field({}, "admin")
    (True, False)
    >>> bool_field({"admin": "false"}, "admin")
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: admin must be true or false (a JSON boolean, not a string or number), got 'false'
    """
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false (a JSON boolean, not a string or number), got {value!r:.80}", name)
    return value


def str_field(body: Any, name: str, *, required: bool, what: str = "") -> str | None:
    """``body[name]`` as a string (None when left out or null and not ``required``); a 400 naming the field
    when it is missing but ``required``, not a string, or holds a control character (:func:`body_text`).
    ``what`` says what to give.

    >>> str_field({}, "tenant", required=True, what="the tenant's name, e.g. acme")
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: tenant is missing: give the tenant's name, e.g. acme
    """
    value = body.get(name)
    if value is None or (required and value == ""):
        if required:
            raise bad_request(f"{name} is missing: give {what or 'it'}", name)
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string{f' ({what})' if what else ''}, got {value!r:.80}", name)
    return body_text(value, name)


async def keys_create(request: Request) -> JSONResponse:
    await require(request, admin=True)
    service = request.app.state.service
    body = await read_json(request, service.config.limits)
    admin = bool_field(body, "admin")
    tenant = str_field(body, "tenant", required=False, what="the tenant's name")
    kid, key = await _call(create_key, service.engine, service.pepper, tenant_id=tenant, admin=admin,
                           label=str_field(body, "label", required=False) or "")
    suspended = tenant is not None and await _call(tenant_disabled, service.engine, tenant)
    note = "store this key now: it is shown once and only its hash is kept"
    if suspended:
        note += f"; tenant {tenant!r} is disabled: its keys, this one included, are refused until it is enabled"
    return JSONResponse({"id": kid, "key": key, "tenant": tenant, "admin": admin, "tenant_disabled": suspended, "note": note},
                        status_code=201)


async def keys_list(request: Request) -> JSONResponse:
    await require(request, admin=True)
    return JSONResponse({"data": await _call(list_keys, request.app.state.service.engine, url_param(request, "tenant"))})


async def keys_revoke(request: Request) -> JSONResponse:
    """``DELETE /v1/admin/keys/{key_id}``: the id, or the whole key pasted in its place (:func:`id_of`)."""
    await require(request, admin=True)
    kid = id_of(url_param(request, "key_id", path=True) or "")
    if not await _call(revoke_key, request.app.state.service.engine, kid):
        raise ApiError(404, "not_found_error", f"no active key {kid!r}")
    return JSONResponse({"id": kid, "revoked": True})


def budget_limit(unit: Any, raw: Any) -> int:
    """A budget limit in its storage unit: tokens, or micro-dollars from a dollar amount."""
    check_unit(unit)
    if unit == "usd":
        limit = parse_usd(raw)
    elif isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ValueError(f"a tokens budget limit must be a non-negative integer, got {raw!r}")
    else:
        limit = raw
    check_limit(unit, limit)
    return limit


def checked(param: str, check: Any, *args: Any) -> Any:
    """``check(*args)``; its ValueError is a 400 naming the field ``param``.

    >>> checked("unit", check_unit, "euro")
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: unit must be one of tokens, usd, got 'euro'
    """
    try:
        return check(*args)
    except ValueError as exc:
        raise bad_request(str(exc), param) from None


async def budgets_set(request: Request) -> JSONResponse:
    """``PUT /v1/admin/budgets``: create a budget or change its limit (see :func:`ragtrim.serve.budgets.set_budget`)."""
    await require(request, admin=True)
    service = request.app.state.service
    body = await read_json(request, service.config.limits)
    tenant = str_field(body, "tenant", required=True, what='the tenant\'s name, e.g. "acme"')
    period, scope = body.get("period", "month"), body.get("scope", "tenant")
    scope_value = str_field(body, "scope_value", required=False, what="the user's or feature's name; none for a tenant budget") or ""
    checked("scope", check_scope, scope)
    checked("scope_value", check_scope_value, scope, scope_value)
    checked("unit", check_unit, body.get("unit"))
    checked("period", check_period, period)
    limit = checked("limit", budget_limit, body.get("unit"), body.get("limit"))
    b = await _call(set_budget, service.engine, tenant_id=tenant, unit=body.get("unit"), period=period, limit=limit, scope=scope,
                    scope_value=scope_value, now=service.clock())
    return JSONResponse(b.__dict__, status_code=200)


async def budgets_list(request: Request) -> JSONResponse:
    await require(request, admin=True)
    service = request.app.state.service
    tenant = url_param(request, "tenant")
    return JSONResponse({"data": [b.__dict__ for b in await _call(list_budgets, service.engine, tenant)]})


async def budgets_delete(request: Request) -> JSONResponse:
    await require(request, admin=True)
    bid = url_param(request, "budget_id", path=True)
    if not await _call(delete_budget, request.app.state.service.engine, bid):
        raise ApiError(404, "not_found_error", f"no budget {bid!r}")
    return JSONResponse({"id": bid, "deleted": True})


async def usage_endpoint(request: Request) -> JSONResponse:
    """``GET /v1/usage?by=user,day&since=YYYY-MM-DD&until=...``; a tenant key sees only its tenant."""
    principal = await require(request)
    service = request.app.state.service
    asked = url_param(request, "tenant")
    if principal.admin:
        tenant = asked
    else:
        if asked is not None and asked != principal.tenant_id:
            raise ApiError(403, "permission_error", "a tenant key sees only its own tenant's usage")
        tenant = principal.tenant_id
    by = [b for b in (url_param(request, "by") or "day").split(",") if b]
    out = await _call(usage_summary, service.engine, tenant_id=tenant, by=by, since=url_param(request, "since"),
                      until=url_param(request, "until"))
    out["budgets"] = await _call(quota_status, service.engine, tenant, time.time())
    return JSONResponse(out)

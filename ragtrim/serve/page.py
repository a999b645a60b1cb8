"""The read-only usage page: spend, savings and quota over time, server-rendered with an inline SVG chart.

No script, no CDN: the HTML and the chart are built here. The page is opened with a
short-lived signed link (``POST /v1/usage/page-link`` with a tenant or admin key, or
``ragtrim usage --page-link``), so an API key never appears in a URL. The link names the key
that made it and ends when that key is revoked; the operator's (command line) link has none.

>>> tok = sign_page_token(b"pepper" * 4, "acme", expires=2_000_000_000.0, key_id="0123456789ab")
>>> verify_page_token(b"pepper" * 4, tok, now=1_000_000_000.0)
('acme', '0123456789ab')
>>> verify_page_token(b"other" * 5, tok, now=1_000_000_000.0) is None
True
>>> svg = daily_chart_svg([{"day": "2025-06-01", "cost_micro": 2_000_000, "saved_micro": 1_000_000}])
>>> svg.startswith("<svg") and "2025-06-01" in svg
True
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from ragtrim.serve.auth import require
from ragtrim.serve.errors import ApiError
from ragtrim.serve.keys import key_active
from ragtrim.serve.pricing import format_usd
from ragtrim.serve.usage import quota_status, usage_summary

PAGE_TTL = 900.0
_ALL = "*"
OPERATOR = "operator"  # the key id of a link made by ``ragtrim usage --page-link``: no key, valid until it expires


def _page_mac(pepper: bytes, tenant: str, key_id: str, expires: int) -> str:
    return hmac.new(pepper, f"page|{tenant}|{key_id}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def sign_page_token(pepper: bytes, tenant: str, *, expires: float, key_id: str = OPERATOR) -> str:
    """``tenant|key_id|expiry|mac``, url-safe; ``tenant`` ``*`` means all tenants (admin); ``key_id`` the key that asked
    for the link (:data:`OPERATOR` from the command line), so the page can refuse it once that key is revoked."""
    signed = f"{tenant}|{key_id}|{int(expires)}"
    return base64.urlsafe_b64encode(f"{signed}|{_page_mac(pepper, tenant, key_id, int(expires))}".encode()).decode().rstrip("=")


def verify_page_token(pepper: bytes, token: str, *, now: float) -> tuple[str, str] | None:
    """The tenant and the issuing key id of a valid, unexpired token, else None."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        tenant, kid, expires, mac = raw.rsplit("|", 3)
        good = _page_mac(pepper, tenant, kid, int(expires))
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(good, mac) or int(expires) < now:
        return None
    return tenant, kid


def daily_chart_svg(rows: Sequence[Mapping[str, Any]], *, limit_micro: int | None = None, width: int = 720, height: int = 240) -> str:
    """Bars of spend and savings per day, the running total of spend (a line) and a dollar budget (dashed), as an inline SVG."""
    pad_l, pad_b, pad_t = 70, 40, 20
    days = [r["day"] for r in rows]
    running, total = [], 0
    for r in rows:
        total += int(r["cost_micro"])
        running.append(total)
    top = max([1, limit_micro or 0] + running + [int(r["saved_micro"]) for r in rows])
    plot_w, plot_h = width - pad_l - 10, height - pad_b - pad_t
    slot = plot_w / max(1, len(days))
    bar = min(36.0, max(2.0, slot * 0.38))
    parts = [f'<svg id="usage-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="Daily spend and savings">']
    for i in range(5):
        y = pad_t + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{pad_l}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{html.escape(format_usd(top * i // 4))}</text>')
    for i, r in enumerate(rows):
        x = pad_l + i * slot + slot * 0.1
        for j, (key, colour) in enumerate((("cost_micro", "#c0392b"), ("saved_micro", "#27ae60"))):
            h = plot_h * int(r[key]) / top
            parts.append(f'<rect class="bar-{key[:-6]}" data-day="{html.escape(r["day"])}" x="{x + j * bar:.1f}" '
                         f'y="{pad_t + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                         f'<title>{html.escape(r["day"])} {key[:-6]} {format_usd(int(r[key]))}</title></rect>')
        if len(rows) <= 16 or i % max(1, len(rows) // 8) == 0:
            parts.append(f'<text x="{x + bar:.1f}" y="{height - pad_b + 16}" font-size="10" text-anchor="middle">{html.escape(r["day"][5:])}</text>')
    if rows:
        points = " ".join(f"{pad_l + i * slot + slot * 0.1 + bar:.1f},{pad_t + plot_h - plot_h * v / top:.1f}" for i, v in enumerate(running))
        parts.append(f'<polyline id="running-spend" points="{points}" fill="none" stroke="#2c3e50" stroke-width="2"/>')
    if limit_micro:
        y = pad_t + plot_h - plot_h * limit_micro / top
        parts.append(f'<line id="budget-line" x1="{pad_l}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" stroke="#e67e22" stroke-dasharray="6 4"/>')
    parts.append(f'<text x="{pad_l + 260}" y="{height - 6}" font-size="11" fill="#2c3e50">— spent so far</text>')
    if limit_micro:
        parts.append(f'<text x="{pad_l + 360}" y="{height - 6}" font-size="11" fill="#e67e22">- - monthly $ budget</text>')
    parts.append(f'<text x="{pad_l}" y="{height - 6}" font-size="11" fill="#c0392b">■ spent</text>')
    parts.append(f'<text x="{pad_l + 70}" y="{height - 6}" font-size="11" fill="#27ae60">■ saved by optimization</text>')
    parts.append("</svg>")
    return "".join(parts)


def _month_usd_limit(budgets: Sequence[Mapping[str, Any]], tenant: str | None) -> int | None:
    """The tenant's monthly dollar budget, the chart's dashed line; None on the all-tenants page (``tenant`` None),
    whose running total is every tenant's spend: one tenant's limit is no line for it."""
    if tenant is None:
        return None
    limits = [b["limit"] for b in budgets if b["unit"] == "usd" and b["period"] == "month" and b["scope"] == "tenant"]
    return min(limits) if len(limits) == 1 else None


def _quota_rows(budgets: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for b in budgets:
        used = b["spent"] + b["reserved"]
        share = min(1.0, used / b["limit"]) if b["limit"] else 1.0
        fmt = (lambda v: format_usd(v)) if b["unit"] == "usd" else (lambda v: f"{v:,} tok")
        who = "tenant" if b["scope"] == "tenant" else f'{b["scope"]} {html.escape(b["scope_value"])}'
        reset = dt.datetime.fromtimestamp(b["resets_at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        out.append(
            f'<tr class="quota" data-unit="{b["unit"]}"><td>{html.escape(b["tenant"])}</td><td>{who}</td><td>{b["unit"]}/{b["period"]}</td>'
            f'<td>{fmt(b["spent"])}</td><td>{fmt(b["reserved"])}</td><td>{fmt(b["limit"])}</td>'
            f'<td><div class="meter"><div style="width:{share * 100:.1f}%"></div></div> {share * 100:.1f}%</td><td>{reset}</td></tr>')
    return "".join(out) or '<tr><td colspan="8">no budgets set</td></tr>'


def _group_rows(rows: Sequence[Mapping[str, Any]], key: str) -> str:
    return "".join(
        f'<tr><td>{html.escape(str(r[key]) or "(none)")}</td><td>{r["requests"]:,}</td><td>{r["degraded"]:,}</td><td>{r["refused"]:,}</td>'
        f'<td>{r["tokens_sent"]:,}</td><td>{r["prompt_tokens"]:,}</td><td>{r["completion_tokens"]:,}</td>'
        f'<td>{format_usd(r["cost_micro"])}</td><td>{format_usd(r["saved_micro"])}</td></tr>'
        for r in rows) or '<tr><td colspan="9">no requests yet</td></tr>'


def render_page(tenant: str | None, daily: Sequence[Mapping[str, Any]], totals: Mapping[str, int],
                budgets: Sequence[Mapping[str, Any]], by_user: Sequence[Mapping[str, Any]], by_feature: Sequence[Mapping[str, Any]]) -> str:
    who = html.escape(tenant) if tenant else "all tenants"
    t = {k: int(totals.get(k, 0)) for k in ("requests", "degraded", "refused", "tokens_full", "tokens_sent", "prompt_tokens",
                                            "completion_tokens", "cached_tokens", "cache_write_tokens", "cost_micro", "saved_micro")}
    head = "<tr><th>{}</th><th>requests</th><th>degraded</th><th>refused</th><th>context tokens sent</th><th>prompt tokens</th><th>completion tokens</th><th>spent</th><th>saved</th></tr>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ragtrim usage: {who}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:980px}}
h1{{font-size:22px}} h2{{font-size:17px;margin-top:28px}}
.cards{{display:flex;gap:12px;flex-wrap:wrap}} .card{{border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:130px}}
.card b{{display:block;font-size:20px}} table{{border-collapse:collapse;width:100%;font-size:13px}}
td,th{{border-bottom:1px solid #eee;padding:4px 8px;text-align:left}}
.meter{{display:inline-block;width:120px;height:10px;background:#eee;vertical-align:middle}} .meter div{{height:10px;background:#e67e22}}
</style></head><body>
<h1>ragtrim usage: <span id="tenant">{who}</span></h1>
<p>Read-only. Money in US dollars from integer micro-dollars at the dated price table; generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.</p>
<div class="cards">
<div class="card">spent<b id="total-spent">{format_usd(t["cost_micro"])}</b></div>
<div class="card">saved by optimization<b id="total-saved">{format_usd(t["saved_micro"])}</b></div>
<div class="card">requests<b id="total-requests">{t["requests"]:,}</b></div>
<div class="card">degraded<b id="total-degraded">{t["degraded"]:,}</b></div>
<div class="card">refused<b id="total-refused">{t["refused"]:,}</b></div>
<div class="card">billed tokens, prompt / completion<b id="total-billed">{t["prompt_tokens"]:,} / {t["completion_tokens"]:,}</b></div>
<div class="card">context tokens sent / full<b id="total-tokens">{t["tokens_sent"]:,} / {t["tokens_full"]:,}</b></div>
<div class="card">prompt tokens from the model's cache
<b id="total-cached">{t["cached_tokens"]:,} / {t["prompt_tokens"]:,}</b></div>
<div class="card">prompt tokens written to the model's cache
<b id="total-cache-written">{t["cache_write_tokens"]:,} / {t["prompt_tokens"]:,}</b></div>
</div>
<h2>Spend and savings per day (this month)</h2>
{daily_chart_svg(daily, limit_micro=_month_usd_limit(budgets, tenant))}
<h2>Quota (current period)</h2>
<table id="quota"><tr><th>tenant</th><th>scope</th><th>unit/period</th><th>spent</th><th>reserved</th><th>limit</th><th>used</th><th>resets</th></tr>{_quota_rows(budgets)}</table>
<h2>By user</h2><table id="by-user">{head.format("user")}{_group_rows(by_user, "user")}</table>
<h2>By feature</h2><table id="by-feature">{head.format("feature")}{_group_rows(by_feature, "feature")}</table>
</body></html>"""


async def page_link_endpoint(request: Request) -> JSONResponse:
    """``POST /v1/usage/page-link``: a link to the usage page valid for 15 minutes, or until the calling key is revoked."""
    principal = await require(request)
    service = request.app.state.service
    tenant = _ALL if principal.admin else str(principal.tenant_id)
    expires = time.time() + PAGE_TTL
    token = sign_page_token(service.pepper, tenant, expires=expires, key_id=principal.key_id)
    return JSONResponse({"url": f"/usage?token={token}", "expires": expires})


async def page_endpoint(request: Request) -> HTMLResponse:
    """``GET /usage?token=...``: the page, while the link is unexpired and the key that made it still active."""
    service = request.app.state.service
    signed = verify_page_token(service.pepper, request.query_params.get("token", ""), now=time.time())
    if signed is not None and signed[1] != OPERATOR and not await run_in_threadpool(key_active, service.engine, signed[1]):
        signed = None  # its key was revoked (or its tenant disabled): the link ends with it
    if signed is None:
        raise ApiError(401, "authentication_error", "the usage page link is invalid or expired, or its key was revoked (or its "
                       "tenant disabled); get a new one with POST /v1/usage/page-link or 'ragtrim usage --page-link'")
    tenant = signed[0]
    scope = None if tenant == _ALL else tenant
    since = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-01")  # this month: the chart's running total meets the monthly budget
    daily = await run_in_threadpool(usage_summary, service.engine, tenant_id=scope, by=["day"], since=since)
    users = await run_in_threadpool(usage_summary, service.engine, tenant_id=scope, by=["user"], since=since)
    features = await run_in_threadpool(usage_summary, service.engine, tenant_id=scope, by=["feature"], since=since)
    budgets = await run_in_threadpool(quota_status, service.engine, scope, time.time())
    body = render_page(scope, daily["rows"], daily["totals"], budgets, users["rows"], features["rows"])
    return HTMLResponse(body, headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                                       "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})

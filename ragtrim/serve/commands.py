"""The command line of the service: ``serve``, ``usage`` and the admin groups ``tenants``, ``keys``, ``budgets``.

The functions are plain typer commands; :func:`register` adds them to a ``typer.Typer``
(the ``ragtrim`` command line, or ``python -m ragtrim.serve``). Admin commands talk to the
database directly (``--db`` or the config's ``db``, else the SQLite file in the cache dir),
so the first admin key can be made before the server runs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import typer

CONFIG_OPT = typer.Option(None, "--config", help="serve.toml: preset, budget, [degrade], [upstreams.NAME], [models.NAME], [limits] (README, 'Run it as a service'); default: built-in settings.")
DB_OPT = typer.Option(None, "--db", help="Database URL: sqlite:////path/serve.sqlite or postgresql://user@host/db. Default: the config's, else a SQLite file in the cache dir.")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _setup(config: Optional[Path], db: Optional[str]) -> tuple[Any, Any, bytes]:
    """Config, engine and pepper for an admin command."""
    from ragtrim.serve.config import ServeConfig
    from ragtrim.serve.db import make_engine
    from ragtrim.serve.keys import load_pepper
    from ragtrim.serve.paths import cache_dir, default_db_url

    try:
        cfg = ServeConfig.load(config)
        engine = make_engine(db if db is not None else (cfg.db if cfg.db is not None else default_db_url()))
        return cfg, engine, load_pepper(cfg.pepper_env, cache_dir())
    except (ValueError, FileNotFoundError, ImportError) as exc:
        _fail(str(exc))
        raise


def serve(
    config: Optional[Path] = CONFIG_OPT,
    db: Optional[str] = DB_OPT,
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Worker processes (default: the config's, 1)."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default 8080)."),
    graceful: float = typer.Option(30.0, "--graceful-timeout", help="Seconds to finish in-flight requests on SIGTERM/SIGINT."),
    keep_alive: float = typer.Option(30.0, "--keep-alive", help="Seconds an idle client connection stays open (above the clients' own idle expiry, so a reused connection is not closed under them)."),
) -> None:
    """Run the gateway: optimize RAG context per request and enforce per-tenant token and $ budgets."""
    import uvicorn

    from ragtrim.serve.config import ServeConfig
    from ragtrim.serve.logs import setup_json_logging

    try:
        cfg = ServeConfig.load(config)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    n = workers if workers is not None else cfg.workers
    bind_host = host if host is not None else cfg.host
    bind_port = port if port is not None else cfg.port
    if n < 1:
        _fail(f"--workers must be at least 1, got {n}")
    setup_json_logging()
    common = dict(host=bind_host, port=bind_port, timeout_graceful_shutdown=graceful, timeout_keep_alive=keep_alive,
                  access_log=False, log_level="info")
    if n == 1:
        from ragtrim.serve.app import create_app
        from ragtrim.serve.service import Service

        try:
            app = create_app(Service(cfg, db_url=db))
        except (ValueError, FileNotFoundError, ImportError) as exc:
            _fail(str(exc))
            return
        uvicorn.run(app, **common)
        return
    # several workers: each process builds its own app from these variables (set here, in the command's own process,
    # so the spawned workers inherit them); metrics are summed across workers through a shared directory
    os.environ["RAGTRIM_SERVE_CONFIG"] = str(config) if config is not None else ""
    os.environ["RAGTRIM_SERVE_DB"] = db or ""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="ragtrim-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    uvicorn.run("ragtrim.serve.app:app_from_env", factory=True, workers=n, **common)


def usage(
    config: Optional[Path] = CONFIG_OPT,
    db: Optional[str] = DB_OPT,
    tenant: Optional[str] = typer.Option(None, "--tenant", help="One tenant (default: all)."),
    by: str = typer.Option("day", "--by", help="Comma-separated groups: user, feature, model, day, tenant, endpoint."),
    since: Optional[str] = typer.Option(None, "--since", help="First day, YYYY-MM-DD (UTC)."),
    until: Optional[str] = typer.Option(None, "--until", help="Last day, YYYY-MM-DD (UTC)."),
    output_format: str = typer.Option("table", "--format", "-f", help="table or json."),
    page_link: Optional[str] = typer.Option(None, "--page-link", help="Print a 15-minute link to the usage page on this server base URL (e.g. http://127.0.0.1:8080) instead."),
) -> None:
    """Usage from the ledger: requests, tokens, $ spent and saved, grouped; and each budget's standing."""
    from ragtrim.serve.pricing import format_usd
    from ragtrim.serve.usage import quota_status, usage_summary

    cfg, engine, pepper = _setup(config, db)
    if page_link is not None:
        from ragtrim.serve.page import PAGE_TTL, sign_page_token

        token = sign_page_token(pepper, tenant if tenant is not None else "*", expires=time.time() + PAGE_TTL)
        typer.echo(f"{page_link.rstrip('/')}/usage?token={token}")
        return
    if output_format not in ("table", "json"):
        _fail(f"--format must be table or json, got {output_format!r}")
    try:
        out = usage_summary(engine, tenant_id=tenant, by=[b.strip() for b in by.split(",") if b.strip()], since=since, until=until)
    except ValueError as exc:
        _fail(str(exc))
        return
    out["budgets"] = quota_status(engine, tenant, time.time())
    if output_format == "json":
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    groups = out["by"]
    head = groups + ["requests", "degraded", "refused", "failed", "tokens_full", "tokens_sent", "spent", "saved"]
    rows = [[str(r[g]) for g in groups] + [str(r["requests"]), str(r["degraded"]), str(r["refused"]), str(r["failed"]),
            str(r["tokens_full"]), str(r["tokens_sent"]), format_usd(r["cost_micro"]), format_usd(r["saved_micro"])] for r in out["rows"]]
    _table(head, rows)
    if out["budgets"]:
        typer.echo("")
        _table(["tenant", "scope", "unit/period", "spent", "reserved", "limit"],
               [[b["tenant"], b["scope"] + (f"={b['scope_value']}" if b["scope_value"] else ""), f"{b['unit']}/{b['period']}",
                 *(format_usd(b[k]) if b["unit"] == "usd" else str(b[k]) for k in ("spent", "reserved", "limit"))] for b in out["budgets"]])


def _table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def tenants_create(name: str = typer.Argument(..., help="Tenant name (letters, digits, . - _)."),
                   config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Create a tenant."""
    from ragtrim.serve.keys import create_tenant

    _, engine, _ = _setup(config, db)
    try:
        create_tenant(engine, name)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(f"tenant {name} created")


def tenants_list(config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """List tenants."""
    from ragtrim.serve.keys import list_tenants

    _, engine, _ = _setup(config, db)
    for t in list_tenants(engine):
        typer.echo(f"{t.id}{'  (disabled)' if t.disabled else ''}")


def keys_create(tenant: Optional[str] = typer.Option(None, "--tenant", help="The tenant the key belongs to."),
                admin: bool = typer.Option(False, "--admin", help="An admin key (no tenant; admin routes only)."),
                label: str = typer.Option("", "--label", help="A note to recognise the key by."),
                config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Create an API key. It is printed once; only its hash is stored."""
    from ragtrim.serve.keys import create_key

    _, engine, pepper = _setup(config, db)
    try:
        kid, key = create_key(engine, pepper, tenant_id=tenant, admin=admin, label=label)
    except ValueError as exc:
        _fail(str(exc))
        return
    typer.echo(key)
    typer.echo(f"key id {kid} ({'admin' if admin else 'tenant ' + str(tenant)}); store the key now, it is not shown again", err=True)


def keys_list(tenant: Optional[str] = typer.Option(None, "--tenant"), config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """List key ids (never the keys)."""
    from ragtrim.serve.keys import list_keys

    _, engine, _ = _setup(config, db)
    for k in list_keys(engine, tenant):
        state = "revoked" if k["revoked"] else "active"
        typer.echo(f"{k['id']}  {'admin' if k['admin'] else k['tenant']}  {state}  {k['label']}")


def keys_revoke(key_id: str = typer.Argument(..., help="The key id (the 12 hex characters after rtk_)."),
                config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Revoke a key."""
    from ragtrim.serve.keys import revoke_key

    _, engine, _ = _setup(config, db)
    if not revoke_key(engine, key_id):
        _fail(f"no active key {key_id!r}")
    typer.echo(f"key {key_id} revoked")


def budgets_set(tenant: str = typer.Option(..., "--tenant"),
                unit: str = typer.Option(..., "--unit", help="tokens or usd."),
                limit: str = typer.Option(..., "--limit", help="Tokens (e.g. 2000000) or dollars (e.g. 25.00)."),
                period: str = typer.Option("month", "--period", help="day or month (UTC)."),
                user: Optional[str] = typer.Option(None, "--user", help="Limit one user of the tenant instead."),
                feature: Optional[str] = typer.Option(None, "--feature", help="Limit one feature of the tenant instead."),
                config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Create or change a budget."""
    from ragtrim.serve.admin import budget_limit
    from ragtrim.serve.budgets import set_budget
    from ragtrim.serve.pricing import format_usd

    if user is not None and feature is not None:
        _fail("pass --user or --feature, not both (make two budgets)")
    _, engine, _ = _setup(config, db)
    scope, value = ("user", user) if user is not None else (("feature", feature) if feature is not None else ("tenant", ""))
    try:
        amount = budget_limit(unit, int(limit) if unit == "tokens" and limit.isdigit() else limit)
        b = set_budget(engine, tenant_id=tenant, unit=unit, period=period, limit=amount, scope=scope, scope_value=str(value))
    except ValueError as exc:
        _fail(str(exc))
        return
    shown = format_usd(b.limit) if unit == "usd" else f"{b.limit} tokens"
    typer.echo(f"budget {b.id}: {b.label()} limit {shown}")


def budgets_list(tenant: Optional[str] = typer.Option(None, "--tenant"), config: Optional[Path] = CONFIG_OPT,
                 db: Optional[str] = DB_OPT) -> None:
    """List budgets with their current standing."""
    usage(config=config, db=db, tenant=tenant, by="tenant", since=time.strftime("%Y-%m-%d", time.gmtime()), until=None,
          output_format="table", page_link=None)


def budgets_delete(budget_id: str = typer.Argument(...), config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Delete a budget."""
    from ragtrim.serve.budgets import delete_budget

    _, engine, _ = _setup(config, db)
    if not delete_budget(engine, budget_id):
        _fail(f"no budget {budget_id!r}")
    typer.echo(f"budget {budget_id} deleted")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``usage``, ``tenants``, ``keys`` and ``budgets`` to ``app``."""
    app.command("serve")(serve)
    app.command("usage")(usage)
    for name, helptext, commands in (
        ("tenants", "Create and list tenants.", (("create", tenants_create), ("list", tenants_list))),
        ("keys", "Create, list and revoke API keys (stored hashed, shown once).", (("create", keys_create), ("list", keys_list), ("revoke", keys_revoke))),
        ("budgets", "Token and $ budgets per tenant, user or feature, per day or month.", (("set", budgets_set), ("list", budgets_list), ("delete", budgets_delete))),
    ):
        group = typer.Typer(help=helptext, no_args_is_help=True, add_completion=False)
        for cmd, fn in commands:
            group.command(cmd)(fn)
        app.add_typer(group, name=name)

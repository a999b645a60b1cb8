"""The command line of the service: ``serve``, ``usage`` and the admin groups ``tenants``, ``keys``, ``budgets``.

The functions are plain typer commands; :func:`register` adds them to a ``typer.Typer``
(the ``ragtrim`` command line, or ``python -m ragtrim.serve``). Admin commands talk to the
database directly (``--db`` or the config's ``db``, else the SQLite file in the cache dir),
so the first admin key can be made before the server runs.

The ``serve`` extra is imported only once :func:`_need` has checked it (the modules that use
SQLAlchemy or starlette are imported after :func:`_setup`), so a missing extra is one line
naming ``pip install 'ragtrim[serve]'``, not a traceback. So is a database or a pepper file that
cannot be used: the line names the path and how to put it elsewhere (``--db``, ``RAGTRIM_CACHE``).

Commands that only read (``usage``, ``tenants list``, ``keys list``, ``budgets list``) open the
database read-only (:func:`ragtrim.serve.db.make_engine` with ``readonly``): no tables made, a SQLite
file opened with ``mode=ro``, no pepper needed, so they work on a database this user cannot write.
Only ``keys create`` and ``usage --page-link`` load the pepper (they hash a key or sign a link).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from optimizer.lazy import MissingDependency, lazy_import
from ragtrim.commands.common import fail, warn, with_notes

# help texts are rich markup: a literal "[" is written "\\[" (else "[degrade]" is taken for a style and vanishes)
CONFIG_OPT = typer.Option(None, "--config", help="serve.toml: preset, budget, \\[degrade], \\[upstreams.NAME], \\[models.NAME], \\[limits] (README, 'Run it as a service'); default: built-in settings.")
DB_OPT = typer.Option(None, "--db", help="Database URL: sqlite:////path/serve.sqlite or postgresql://user@host/db. Default: the config's, else a SQLite file in the cache dir.")
FORMAT_OPT = typer.Option("table", "--format", "-f", help="table or json.")


SERVE_MODULES = ("uvicorn", "fastapi", "sqlalchemy", "alembic", "httpx", "prometheus_client")
"""What ``ragtrim serve`` imports from the ``serve`` extra (psycopg too, for PostgreSQL only: :func:`ragtrim.serve.db.make_engine`)."""
ADMIN = "this command (part of ragtrim serve)"
"""Who needs a missing module, in the message of an admin or usage command."""


def one_line(exc: BaseException) -> str:
    """:func:`with_notes` of ``exc`` (its repr when that is empty) with the message cut to its first line (a child
    process's traceback may follow it).

    >>> exc = RuntimeError("building failed (exit 1)\\nTraceback ...")
    >>> exc.add_note("in stage 'dense'")
    >>> one_line(exc), one_line(KeyError())
    ("building failed (exit 1); in stage 'dense'", 'KeyError()')
    """
    text, message = with_notes(exc) or repr(exc), str(exc)
    return text.replace(message, message.splitlines()[0], 1) if "\n" in message else text


def _need(*modules: str, purpose: str = ADMIN) -> list[Any]:
    """``modules`` of the ``serve`` extra, imported; a missing one is a clean exit 2 naming ``pip install 'ragtrim[serve]'``."""
    try:
        return [lazy_import(module, extra="serve", purpose=purpose) for module in modules]
    except MissingDependency as exc:
        fail(with_notes(exc))


def _db_url(cfg: Any, db: Optional[str]) -> str:
    """The database a command uses: ``--db``, else the config's ``db``, else the SQLite file in the cache dir."""
    from ragtrim.serve.paths import default_db_url

    return db if db is not None else (cfg.db if cfg.db is not None else default_db_url())


def masked_url(url: str) -> str:
    """``url`` with its password shown as ``***``.

    >>> masked_url("postgresql://ragtrim:s3cret@db:5432/ragtrim")
    'postgresql://ragtrim:***@db:5432/ragtrim'
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the --db URL"


SQLITE_UNWRITABLE = ("unable to open database file", "readonly database")
"""SQLite's words for a database file it cannot create, open or write (its folder is read-only or missing)."""


def db_error(url: str, exc: BaseException, *, readonly: bool = False) -> str:
    """One line for a database that cannot be used (unreachable, refused, ...), naming it without its password.

    For a SQLite file that cannot be created or written, the line says how to put it elsewhere;
    ``readonly`` (a command that only reads): one that cannot be read says what reading it needs.
    """
    from sqlalchemy.engine import make_url

    if isinstance(exc, OSError) and exc.filename and str(exc.filename).endswith("-writelock"):
        text = f"cannot open its write lock {exc.filename} ({exc.strerror})"
    elif isinstance(exc, OSError):
        text = f"cannot create its folder {exc.filename} ({exc.strerror})" if exc.filename else str(exc)
    else:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        text = reason[0] if reason else type(exc).__name__
    password = make_url(url).password if "://" in url else None
    if password:
        text = text.replace(str(password), "***")
    path = sqlite_path(url)
    if path is not None and readonly and any(words in text for words in SQLITE_UNWRITABLE):
        folder = Path(path).absolute().parent
        text += f"; {path} must be a file this user can read"
        if not os.access(folder, os.W_OK):  # a WAL database: SQLite must open (or make) its -shm and -wal there
            text += (f", and its {path}-shm and {path}-wal too, as {folder} is read-only for this user: let this user "
                     f"write to {folder}, or run the command as the user that runs the server")
    elif path is not None and (isinstance(exc, OSError) or any(words in text for words in SQLITE_UNWRITABLE)):
        text += (f"; {path} must be a file this user can write, in a folder it can write: pass --db "
                 "sqlite:////writable/folder/serve.sqlite (or db in the config), or set RAGTRIM_CACHE to a writable folder")
    return f"cannot use the database {masked_url(url)}: {text}"


def sqlite_path(url: str) -> Optional[str]:
    """The file of a SQLite ``url``; None for another database, an in-memory one, or a URL that does not parse.

    >>> sqlite_path("sqlite:////srv/serve.sqlite"), sqlite_path("sqlite://"), sqlite_path("postgresql://h/db")
    ('/srv/serve.sqlite', None, None)
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from ragtrim.serve.db import normalize_url

    try:
        parsed = make_url(normalize_url(url))
    except (ArgumentError, ValueError):
        return None
    path = parsed.database
    return path if parsed.get_backend_name() == "sqlite" and path and path != ":memory:" else None


def pepper_error(env_name: str, folder: Path, exc: OSError) -> str:
    """One line for a pepper file that cannot be made or read in ``folder``, with the two ways round it."""
    where = exc.filename or folder / "serve-pepper"
    return (f"cannot use the server pepper file {where} ({exc.strerror or exc}): set {env_name} to a secret of 16+ "
            f"characters (the same on every replica), or set RAGTRIM_CACHE to a folder this user can write")


def check_db_exists(url: str) -> None:
    """For a command that only reads (or changes what is there): a SQLite file must exist already.

    Opening a SQLite path creates it, so a mistyped ``--db`` would report an empty new database.
    """
    path = sqlite_path(url)
    if path is not None and not Path(path).is_file():
        raise ValueError(f"no database at {path}; start the server first (ragtrim serve) or check the path (--db, or db in the config)")


def _load_config(config: Optional[Path]) -> Any:
    """The serve config at ``config`` (built-in settings when None), or a clean exit 2 with its error."""
    from ragtrim.serve.config import ServeConfig

    try:
        return ServeConfig.load(config)
    except (ValueError, FileNotFoundError) as exc:
        fail(with_notes(exc))


def check_tables(engine: Any, url: str) -> None:
    """For a read-only engine: the service's tables must be there (nothing makes them), else a ValueError."""
    from sqlalchemy import inspect

    from ragtrim.serve.schema import lease_epochs, metadata

    needed = set(metadata.tables) - {lease_epochs.name}  # only the server's leases read it (an older database has none)
    missing = sorted(needed - set(inspect(engine).get_table_names()))
    if missing:
        raise ValueError(f"the database {masked_url(url)} has no {', '.join(missing)} table{'s' if len(missing) > 1 else ''}: "
                         "start the server on it once (ragtrim serve) or check the path (--db, or db in the config)")


def check_schema(engine: Any) -> None:
    """For a read-only engine: the database must be at this ragtrim's schema revision (a ValueError names the fix)."""
    from ragtrim.serve.migrate import check

    check(engine)


def _open_db(url: str, *, existing: bool = False, readonly: bool = False, schema: bool = True) -> Any:
    """The engine for ``url``, its tables made; ``existing``: the database must be there already (never created).

    ``schema``: the database must be at this ragtrim's schema revision (:mod:`ragtrim.serve.migrate`); False
    for ``ragtrim db``, which reads or changes the revision itself (no tables made, nothing checked).

    ``readonly`` (a command that only reads): the database must be there with its tables, and is opened
    read-only (no tables made; SQLite ``mode=ro``, with a note on stderr when that is a snapshot).
    A database that cannot be used (unreachable, or a SQLite file that cannot be created) is a clean exit 2.
    """
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from ragtrim.serve.db import make_engine

    try:
        if existing or readonly:
            check_db_exists(url)
        engine = make_engine(url, readonly=readonly, create=schema)
        engine.info_db_url = url  # for _db_errors
        engine.info_readonly = readonly
        if readonly and schema:
            check_tables(engine, url)
            check_schema(engine)
            if getattr(engine, "info_snapshot", False):
                path = Path(str(sqlite_path(url))).absolute()
                typer.echo(f"note: {path.parent} is read-only for this user and no server has {path} open (no -shm file), "
                           "so it is read as a snapshot (SQLite immutable=1): changes a server makes while this command "
                           "runs are not seen", err=True)
        return engine
    except (ValueError, ImportError) as exc:
        fail(with_notes(exc))
    except ArgumentError:  # not echoed: an unparsable URL may still carry a password
        fail(f"the database URL (--db, or db in the config) does not parse ({url.split('://')[0]}://...); "
             "write it as sqlite:////path/serve.sqlite or postgresql://user:password@host/db")
    except (OSError, DBAPIError) as exc:
        fail(db_error(url, exc, readonly=readonly))


@contextlib.contextmanager
def _db_errors(engine: Any) -> Iterator[None]:
    """Around a command's use of the database: a database error (say, a write to a read-only SQLite file) is one line, exit 2."""
    from sqlalchemy.exc import DBAPIError

    try:
        yield
    except (OSError, DBAPIError) as exc:
        fail(db_error(engine.info_db_url, exc, readonly=engine.info_readonly))


def _load_pepper(cfg: Any) -> bytes:
    """The server pepper (``$RAGTRIM_SERVE_PEPPER``, else the file in the cache folder), or a clean exit 2."""
    from ragtrim.serve.keys import load_pepper
    from ragtrim.serve.paths import cache_dir

    folder = cache_dir()
    try:
        return load_pepper(cfg.pepper_env, folder)
    except ValueError as exc:
        fail(with_notes(exc))
    except OSError as exc:
        fail(pepper_error(cfg.pepper_env, folder, exc))


def _setup(config: Optional[Path], db: Optional[str], *, existing: bool = False, readonly: bool = False,
           pepper: bool = False) -> tuple[Any, Any, bytes]:
    """Config, engine and pepper for an admin command; ``existing``: the database must be there already (never created).

    ``readonly``: a command that only reads (the database must be there; opened read-only). ``pepper``: a command that
    hashes a key or signs a link loads the pepper (making its file on first use); the others get ``b""``, so a pepper
    file that cannot be made or read does not stop them.
    """
    _need("sqlalchemy", "alembic")
    cfg = _load_config(config)
    engine = _open_db(_db_url(cfg, db), existing=existing, readonly=readonly)
    return cfg, engine, _load_pepper(cfg) if pepper else b""


def _build_service(cfg: Any, db: Optional[str]) -> Any:
    """The service ``cfg`` describes (database reached and its tables made, every model priced), or a clean exit 2."""
    from sqlalchemy.exc import DBAPIError

    from ragtrim.serve.service import Service

    url = _db_url(cfg, db)
    engine = _open_db(url)
    try:
        return Service(cfg, db_url=url, engine=engine, pepper=_load_pepper(cfg))
    except (ValueError, FileNotFoundError, ImportError) as exc:
        fail(with_notes(exc))
    except DBAPIError as exc:
        fail(db_error(url, exc))


def serve(
    config: Optional[Path] = CONFIG_OPT,
    db: Optional[str] = DB_OPT,
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Worker processes (default: the config's, 1)."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, "--port", min=0, max=65535, help="Port, 0-65535 (default 8080)."),
    graceful: float = typer.Option(30.0, "--graceful-timeout", help="Seconds to finish in-flight requests on SIGTERM/SIGINT; one still running then is cut off (a 503; charged its reservation if the upstream had it). Raise it for long answers; keep the orchestrator's grace period 10 s above it."),
    keep_alive: float = typer.Option(30.0, "--keep-alive", help="Seconds an idle client connection stays open (above the clients' own idle expiry, so a reused connection is not closed under them)."),
) -> None:
    """Run the gateway: optimize RAG context per request and enforce per-tenant token and $ budgets."""
    uvicorn = _need(*SERVE_MODULES, purpose="ragtrim serve")[0]  # all of them now, not in a worker that then dies at start

    from ragtrim.serve.logs import setup_json_logging

    cfg = _load_config(config)
    _prepare_preset(cfg.preset)
    n = workers if workers is not None else cfg.workers
    bind_host = host if host is not None else cfg.host
    bind_port = port if port is not None else cfg.port
    if n < 1:
        fail(f"--workers must be at least 1, got {n}")
    setup_json_logging()
    common = dict(host=bind_host, port=bind_port, timeout_graceful_shutdown=graceful, timeout_keep_alive=keep_alive,
                  access_log=False, log_level="info")
    if n == 1:
        from ragtrim.serve.app import create_app

        uvicorn.run(create_app(_build_service(cfg, db)), **common)
        return
    # the workers build the same service: one that cannot be built (a model with no price, a database that cannot be
    # reached) is a clean exit here, once, not workers that die at start and are restarted forever
    _build_service(cfg, db).engine.dispose()
    # several workers: each process builds its own app from these variables (set here, in the command's own process,
    # so the spawned workers inherit them); metrics are summed across workers through a shared directory
    os.environ["RAGTRIM_SERVE_CONFIG"] = str(config) if config is not None else ""
    os.environ["RAGTRIM_SERVE_DB"] = db or ""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="ragtrim-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    uvicorn.run("ragtrim.serve.app:app_from_env", factory=True, workers=n, **common)


def _prepare_preset(preset: str) -> None:
    """Build (offline, once) and load the models the gateway's default ``preset`` needs, before any worker starts.

    A fresh install has no built static model: without this the first request that names no preset
    got a 500. A preset that cannot run here (a missing extra, a model that cannot be built) is one
    line and exit 2, naming what to install or build.
    """
    from optimizer.models import ModelNotBuiltError
    from optimizer.pipeline import Pipeline

    try:
        Pipeline.preset(preset).warm_up()
    except (MissingDependency, ModelNotBuiltError, RuntimeError, OSError, ValueError) as exc:
        fail(f"the gateway's preset {preset!r} cannot run on this install: {one_line(exc)} "
             "(install what it names, or set another `preset` in the config, e.g. bm25-pack, which needs no model)")


def usage(
    config: Optional[Path] = CONFIG_OPT,
    db: Optional[str] = DB_OPT,
    tenant: Optional[str] = typer.Option(None, "--tenant", help="One tenant (default: all)."),
    by: str = typer.Option("day", "--by", help="Comma-separated groups: user, feature, model, day, tenant, endpoint, key (the API key's id)."),
    since: Optional[str] = typer.Option(None, "--since", help="First day, YYYY-MM-DD (UTC)."),
    until: Optional[str] = typer.Option(None, "--until", help="Last day, YYYY-MM-DD (UTC)."),
    output_format: str = FORMAT_OPT,
    page_link: Optional[str] = typer.Option(None, "--page-link", help="Print a 15-minute link to the usage page on this server base URL (e.g. http://127.0.0.1:8080) instead."),
) -> None:
    """Usage from the ledger: requests, tokens, $ spent and saved, grouped; and each budget's standing."""
    # the page link only signs a token with the pepper; a report only reads the database
    cfg, engine, pepper = _setup(config, db, pepper=True) if page_link is not None else _setup(config, db, readonly=True)
    from ragtrim.serve.pricing import format_usd
    from ragtrim.serve.usage import quota_status, usage_summary

    if page_link is not None:
        _need("fastapi")  # the page module answers HTTP (starlette)
        from ragtrim.serve.page import PAGE_TTL, sign_page_token

        token = sign_page_token(pepper, tenant if tenant is not None else "*", expires=time.time() + PAGE_TTL)
        typer.echo(f"{page_link.rstrip('/')}/usage?token={token}")
        return
    _check_format(output_format)
    try:
        with _db_errors(engine):
            out = usage_summary(engine, tenant_id=tenant, by=[b.strip() for b in by.split(",") if b.strip()], since=since, until=until)
            out["budgets"] = quota_status(engine, tenant, time.time())
    except ValueError as exc:
        fail(with_notes(exc))
    if output_format == "json":
        _print_json(out)
        return
    groups = out["by"]
    # tokens_full/tokens_sent are the optimized context's; prompt_tokens + completion_tokens are what was billed (what a
    # token budget counts: an embeddings call or a chat without documents has billed tokens and no context)
    counts = ("requests", "degraded", "refused", "failed", "tokens_full", "tokens_sent", "prompt_tokens", "completion_tokens",
              "cached_tokens", "cache_write_tokens")
    head = groups + [*counts, "spent", "saved"]
    rows = [[str(r[g]) for g in groups] + [str(r[k]) for k in counts] + [format_usd(r["cost_micro"]), format_usd(r["saved_micro"])]
            for r in out["rows"]]
    _table(head, rows)
    if out["budgets"]:
        typer.echo("")
        _budget_table(out["budgets"])


def _check_format(output_format: str) -> None:
    """``--format`` is table or json, else a clean exit 2 (before the database is read)."""
    if output_format not in ("table", "json"):
        fail(f"--format must be table or json, got {output_format!r}")


def _print_json(out: Any) -> None:
    """``out`` as indented JSON on stdout (what ``--format json`` prints)."""
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _budget_table(budgets: list[dict[str, Any]]) -> None:
    """The budgets' standing (``quota_status`` rows), one line each under a header; ``id`` is what ``budgets delete`` takes."""
    from ragtrim.serve.pricing import format_usd

    _table(["id", "tenant", "scope", "unit/period", "spent", "reserved", "limit"],
           [[b["id"], b["tenant"], b["scope"] + (f"={b['scope_value']}" if b["scope_value"] else ""), f"{b['unit']}/{b['period']}",
             *(format_usd(b[k]) if b["unit"] == "usd" else str(b[k]) for k in ("spent", "reserved", "limit"))] for b in budgets])


def _table(head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def tenants_create(name: str = typer.Argument(..., help="Tenant name (letters, digits, . - _)."),
                   config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Create a tenant."""
    _, engine, _ = _setup(config, db)
    from ragtrim.serve.keys import create_tenant
    try:
        with _db_errors(engine):
            create_tenant(engine, name)
    except ValueError as exc:
        fail(with_notes(exc))
    typer.echo(f"tenant {name} created")


def tenants_list(config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT, output_format: str = FORMAT_OPT) -> None:
    """List tenants (json: as GET /v1/admin/tenants answers)."""
    _check_format(output_format)
    _, engine, _ = _setup(config, db, readonly=True)
    from ragtrim.serve.keys import list_tenants

    with _db_errors(engine):
        found = list_tenants(engine)
    if output_format == "json":
        _print_json({"data": [t.as_json() for t in found]})
        return
    for t in found:
        typer.echo(f"{t.id}{'  (disabled' + (': ' + t.disabled_reason if t.disabled_reason else '') + ')' if t.disabled else ''}")


def tenants_disable(name: str = typer.Argument(..., help="The tenant to suspend."),
                    reason: str = typer.Option("", "--reason", help="Why (kept for operators: tenants list shows it; never told to the tenant's callers)."),
                    config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Disable a tenant: its keys are refused (401) until it is enabled; none is revoked, and a request already running finishes."""
    _set_disabled(name, True, config, db, reason)


def tenants_enable(name: str = typer.Argument(..., help="The disabled tenant."),
                   config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Enable a disabled tenant: its keys (those not revoked) work again."""
    _set_disabled(name, False, config, db)


def _set_disabled(name: str, disabled: bool, config: Optional[Path], db: Optional[str], reason: str = "") -> None:
    """Disable or enable tenant ``name``; doing what is already done says so and exits 0; an unknown tenant exits 2."""
    _, engine, _ = _setup(config, db, existing=True)
    from ragtrim.serve.keys import UnknownTenant, set_tenant_disabled

    try:
        with _db_errors(engine):
            _, changed = set_tenant_disabled(engine, name, disabled, reason)
    except UnknownTenant:
        fail(f"unknown tenant {name!r}; see the tenants there with 'ragtrim tenants list'")
    except ValueError as exc:
        fail(with_notes(exc))
    state = "disabled" if disabled else "enabled"
    if not changed:
        typer.echo(f"tenant {name} was already {state}")
    elif disabled:
        typer.echo(f"tenant {name} disabled: its keys are refused until 'ragtrim tenants enable {name}'")
    else:
        typer.echo(f"tenant {name} enabled")


def keys_create(tenant: Optional[str] = typer.Option(None, "--tenant", help="The tenant the key belongs to."),
                admin: bool = typer.Option(False, "--admin", help="An admin key (no tenant; admin routes only)."),
                label: str = typer.Option("", "--label", help="A note to recognise the key by."),
                config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Create an API key. It is printed once; only its hash is stored."""
    _, engine, pepper = _setup(config, db, pepper=True)
    from ragtrim.serve.keys import create_key, tenant_disabled
    try:
        with _db_errors(engine):
            kid, key = create_key(engine, pepper, tenant_id=tenant, admin=admin, label=label)
            suspended = tenant is not None and tenant_disabled(engine, tenant)
    except ValueError as exc:
        fail(with_notes(exc))
    typer.echo(key)
    typer.echo(f"key id {kid} ({'admin' if admin else 'tenant ' + str(tenant)}); store the key now, it is not shown again", err=True)
    if suspended:
        warn(f"tenant {tenant} is disabled: its keys, this one included, are refused (401) until 'ragtrim tenants enable {tenant}'")


def keys_list(tenant: Optional[str] = typer.Option(None, "--tenant"), config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT,
              output_format: str = FORMAT_OPT) -> None:
    """List key ids (never the keys; json: as GET /v1/admin/keys answers)."""
    _check_format(output_format)
    _, engine, _ = _setup(config, db, readonly=True)
    from ragtrim.serve.keys import list_keys

    with _db_errors(engine):
        found = list_keys(engine, tenant)
    if output_format == "json":
        _print_json({"data": found})
        return
    for k in found:
        state = "revoked" if k["revoked"] else "active"
        typer.echo(f"{k['id']}  {'admin' if k['admin'] else k['tenant']}  {state}  {k['label']}")


def keys_revoke(key_id: str = typer.Argument(..., help="The key id (the 12 hex characters after rtk_), or the whole key."),
                config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Revoke a key."""
    _, engine, _ = _setup(config, db, existing=True)
    from ragtrim.serve.keys import id_of, revoke_key

    key_id = id_of(key_id)  # a pasted whole key: its id, so the secret is never echoed
    with _db_errors(engine):
        revoked = revoke_key(engine, key_id)
    if not revoked:
        fail(f"no active key {key_id!r}")
    typer.echo(f"key {key_id} revoked")


def budgets_set(tenant: str = typer.Option(..., "--tenant"),
                unit: str = typer.Option(..., "--unit", help="tokens or usd."),
                limit: str = typer.Option(..., "--limit", help="Tokens (e.g. 2000000) or dollars (e.g. 25.00)."),
                period: str = typer.Option("month", "--period", help="day or month (UTC)."),
                user: Optional[str] = typer.Option(None, "--user", help="Limit one user of the tenant instead."),
                feature: Optional[str] = typer.Option(None, "--feature", help="Limit one feature of the tenant instead."),
                config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Create or change a budget."""
    if user is not None and feature is not None:
        fail("pass --user or --feature, not both (make two budgets)")
    _, engine, _ = _setup(config, db)
    _need("fastapi")  # budget_limit lives with the admin routes (starlette)
    from ragtrim.serve.admin import budget_limit
    from ragtrim.serve.budgets import set_budget
    from ragtrim.serve.pricing import format_usd

    scope, value = ("user", user) if user is not None else (("feature", feature) if feature is not None else ("tenant", ""))
    try:
        amount = budget_limit(unit, int(limit) if unit == "tokens" and limit.isdigit() else limit)
        with _db_errors(engine):
            b = set_budget(engine, tenant_id=tenant, unit=unit, period=period, limit=amount, scope=scope, scope_value=str(value))
    except ValueError as exc:
        fail(with_notes(exc))
    shown = format_usd(b.limit) if unit == "usd" else f"{b.limit} tokens"
    typer.echo(f"budget {b.id}: {b.label()} limit {shown}")


def budgets_list(tenant: Optional[str] = typer.Option(None, "--tenant"), config: Optional[Path] = CONFIG_OPT,
                 db: Optional[str] = DB_OPT, output_format: str = FORMAT_OPT) -> None:
    """List budgets, with the id 'budgets delete' takes, and their current standing (spent and reserved in the current
    day or month; json: the rows of 'usage --format json' under budgets)."""
    _check_format(output_format)
    _, engine, _ = _setup(config, db, readonly=True)
    from ragtrim.serve.usage import quota_status

    with _db_errors(engine):
        budgets = quota_status(engine, tenant, time.time())
    if output_format == "json":
        _print_json({"data": budgets})
        return
    if not budgets:
        typer.echo(f"no budgets{' for tenant ' + repr(tenant) if tenant is not None else ''} (add one: ragtrim budgets set)", err=True)
        return
    _budget_table(budgets)


def budgets_delete(budget_id: str = typer.Argument(...), config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Delete a budget."""
    _, engine, _ = _setup(config, db, existing=True)
    from ragtrim.serve.budgets import delete_budget

    with _db_errors(engine):
        deleted = delete_budget(engine, budget_id)
    if not deleted:
        fail(f"no budget {budget_id!r}")
    typer.echo(f"budget {budget_id} deleted")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``usage``, ``tenants``, ``keys`` and ``budgets`` to ``app``."""
    app.command("serve")(serve)
    app.command("usage")(usage)
    for name, helptext, commands in (
        ("tenants", "Create, list, disable and enable tenants.", (("create", tenants_create), ("list", tenants_list),
                                                                  ("disable", tenants_disable), ("enable", tenants_enable))),
        ("keys", "Create, list and revoke API keys (stored hashed, shown once).", (("create", keys_create), ("list", keys_list), ("revoke", keys_revoke))),
        ("budgets", "Token and $ budgets per tenant, user or feature, per day or month.", (("set", budgets_set), ("list", budgets_list), ("delete", budgets_delete))),
    ):
        group = typer.Typer(help=helptext, no_args_is_help=True, add_completion=False)
        for cmd, fn in commands:
            group.command(cmd)(fn)
        app.add_typer(group, name=name)

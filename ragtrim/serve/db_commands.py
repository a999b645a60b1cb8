"""``ragtrim db status`` and ``ragtrim db upgrade``: the gateway database's schema revision.

A gateway or an admin command refuses a database an older ragtrim made until it is upgraded
(:mod:`ragtrim.serve.migrate`); these two commands are how. Both take the same ``--db`` /
``--config`` as the others, and neither needs the pepper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ragtrim.commands.common import fail, with_notes
from ragtrim.serve.commands import CONFIG_OPT, DB_OPT, FORMAT_OPT, _check_format, _db_errors, _db_url, _load_config, _need, _open_db, _print_json


def _engine(config: Optional[Path], db: Optional[str], *, existing: bool) -> Any:
    _need("sqlalchemy", "alembic")
    cfg = _load_config(config)
    return _open_db(_db_url(cfg, db), existing=existing, schema=False)


def db_status(config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT, output_format: str = FORMAT_OPT) -> None:
    """The database's schema revision, this ragtrim's, and the migrations `ragtrim db upgrade` would run."""
    _check_format(output_format)
    engine = _engine(config, db, existing=True)
    from ragtrim.serve.migrate import current, head, pending

    try:
        with _db_errors(engine):
            out = {"revision": current(engine) or None, "head": head(), "pending": [{"revision": r, "change": c} for r, c in pending(engine)]}
    except ValueError as exc:
        fail(with_notes(exc))
    out["up_to_date"] = out["revision"] in (None, out["head"])
    if output_format == "json":
        _print_json(out)
        return
    if out["revision"] is None:
        typer.echo(f"empty database: the first gateway or admin command makes it at revision {out['head']}")
        return
    typer.echo(f"revision {out['revision']}, this ragtrim's is {out['head']}" + ("" if out["pending"] else ": up to date"))
    for step in out["pending"]:
        typer.echo(f"  to run: {step['revision']}  {step['change']}")


def db_upgrade(config: Optional[Path] = CONFIG_OPT, db: Optional[str] = DB_OPT) -> None:
    """Bring the database to this ragtrim's schema (back it up first); safe to run again, and while older gateways run."""
    engine = _engine(config, db, existing=False)
    from ragtrim.serve.migrate import head, upgrade

    try:
        with _db_errors(engine):
            ran = upgrade(engine)
    except ValueError as exc:
        fail(with_notes(exc))
    if ran:
        typer.echo(f"upgraded to revision {head()}: ran {', '.join(ran)}")
    else:
        typer.echo(f"at revision {head()}: nothing to do")


def register(app: typer.Typer) -> None:
    """Add the ``db`` group (``status``, ``upgrade``) to ``app``."""
    group = typer.Typer(help="The gateway database's schema: its revision, and upgrades after a ragtrim update.",
                        no_args_is_help=True, add_completion=False)
    group.command("status")(db_status)
    group.command("upgrade")(db_upgrade)
    app.add_typer(group, name="db")

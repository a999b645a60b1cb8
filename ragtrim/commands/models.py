"""``ragtrim models build`` and ``ragtrim models list``: the models ragtrim builds once from packaged weights."""

from __future__ import annotations

from typing import Optional

import typer

from ragtrim.commands.common import fail, with_notes

models_app = typer.Typer(help="The models ragtrim builds once from packaged weights (static, int8 MiniLM).", no_args_is_help=True)


@models_app.command("build")
def models_build(
    only: Optional[list[str]] = typer.Option(None, "--only", help="Build just this model (repeatable): static, static-distilled, minilm-int8."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the model is already in the cache."),
) -> None:
    """Build the static models (trained, distilled) and the int8 MiniLM into the cache, offline (idempotent; ~30 s the first time)."""
    from optimizer.embeddings import build_models

    try:
        for built in build_models(only, force=force):
            typer.echo(f"{built.name:<17} {built.status:<8} {built.seconds:>5.1f} s  {built.path}")
    except (ValueError, RuntimeError) as exc:
        fail(with_notes(exc), code=1)


@models_app.command("list")
def models_list() -> None:
    """Where each model lives and whether it is built (set RAGTRIM_CACHE to move the cache)."""
    from optimizer.cache import cache_dir
    from optimizer.embeddings import BUILT

    typer.echo(f"cache: {cache_dir()}")
    for name, where in BUILT.items():
        path = where()
        typer.echo(f"{name:<17} {'built' if path.is_dir() else 'missing':<8} {path}")


def register(app: typer.Typer) -> None:
    """Add the ``models`` group to ``app``."""
    app.add_typer(models_app, name="models")

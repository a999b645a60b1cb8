"""The ``ragtrim`` command line: ``optimize`` here; ``eval`` and ``tune`` come from :mod:`evals.cli`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(
    name="ragtrim",
    help="Rerank, deduplicate and compress retrieved chunks into a hard token budget, and measure what it costs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print an error for a user and exit (no traceback)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def optimize(
    query: str = typer.Option(..., "--query", "-q", help="The user's question."),
    chunks: str = typer.Option(..., "--chunks", "-c", help="JSONL file of chunks (id, text, optional title, score, metadata); '-' reads stdin."),
    budget: Optional[str] = typer.Option(None, "--budget", "-b", help="Tokens (e.g. 300) or a share of the full context (e.g. 0.25). Default: the preset's or config's."),
    preset: str = typer.Option("default", "--preset", "-p", help="Preset name (see 'ragtrim presets')."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipeline config file (.yaml, .toml, .json); overrides --preset."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="cl100k_base, o200k_base, a model name such as gpt-4o, or hf:/path. Default cl100k_base."),
    output_format: str = typer.Option("text", "--format", "-f", help="text (the context), json (context, spans, trace) or trace (the context, then the trace table)."),
) -> None:
    """Optimize retrieved chunks for a query into a token budget."""
    from optimizer.budget import parse_budget
    from optimizer.jsonl import read_chunks
    from optimizer.pipeline import Pipeline

    if output_format not in ("text", "json", "trace"):
        fail(f"--format must be text, json or trace, got {output_format!r}")
    try:
        parsed_budget = parse_budget(budget)
        items = read_chunks(chunks)
        if config is not None:
            pipeline = Pipeline.load(config, budget=parsed_budget, tokenizer=tokenizer)
        else:
            pipeline = Pipeline.preset(preset, budget=parsed_budget, tokenizer=tokenizer or "cl100k_base")
        result = pipeline.warm_up().run(query, items)
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as exc:
        fail(str(exc))
        return
    if output_format == "json":
        json.dump(result.to_dict(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.text + "\n")
        if output_format == "trace":
            typer.echo("")
            typer.echo(f"tokens {result.tokens} of {result.tokens_full} (budget {result.budget}, {result.tokenizer})", err=False)
            typer.echo(result.trace_table())


@app.command()
def presets() -> None:
    """List the pipeline presets."""
    from optimizer.presets import list_presets, preset_description

    for name in list_presets():
        typer.echo(f"{name:<16} {preset_description(name)}")


@app.command()
def stages() -> None:
    """List the registered stages."""
    from optimizer.registry import list_stages

    for name in list_stages():
        typer.echo(name)


models_app = typer.Typer(help="The models ragtrim builds once from packaged weights (static, int8 MiniLM).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("build")
def models_build(
    only: Optional[list[str]] = typer.Option(None, "--only", help="Build just this model (repeatable): static, minilm-int8."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if the model is already in the cache."),
) -> None:
    """Build the static and int8 MiniLM models into the cache, offline (idempotent; ~30 s the first time)."""
    from optimizer.embeddings import build_models

    try:
        for built in build_models(only, force=force):
            typer.echo(f"{built.name:<12} {built.status:<8} {built.seconds:>5.1f} s  {built.path}")
    except (ValueError, RuntimeError) as exc:
        fail(str(exc), code=1)


@models_app.command("list")
def models_list() -> None:
    """Where each model lives and whether it is built (set RAGTRIM_CACHE to move the cache)."""
    from optimizer.cache import cache_dir
    from optimizer.embeddings import BUILT

    typer.echo(f"cache: {cache_dir()}")
    for name, where in BUILT.items():
        path = where()
        typer.echo(f"{name:<12} {'built' if path.is_dir() else 'missing':<8} {path}")


def _register_optional_commands() -> None:
    try:
        import evals.cli  # noqa: F401  (adds 'eval' and 'tune' to the app)
        import evals.tune_cli  # noqa: F401  (adds 'tune')
    except ModuleNotFoundError as exc:
        if exc.name not in ("evals", "evals.cli"):
            raise


def main() -> None:
    _register_optional_commands()
    app()


if __name__ == "__main__":
    # run the module's canonical copy, so that evals.cli registers its commands on the same app
    from optimizer.cli import main as _main

    _main()

"""``ragtrim optimize``, ``ragtrim presets`` and ``ragtrim stages``: the library's commands (no eval harness)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ragtrim.commands.common import fail, user_errors

FORMATS = ("text", "json", "trace")


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

    if output_format not in FORMATS:
        fail(f"--format must be text, json or trace, got {output_format!r}")
    with user_errors(RuntimeError):  # RuntimeError: a model that could not be built or loaded
        parsed_budget = parse_budget(budget)
        items = read_chunks(chunks)
        if config is not None:
            pipeline = Pipeline.load(config, budget=parsed_budget, tokenizer=tokenizer)
        else:
            pipeline = Pipeline.preset(preset, budget=parsed_budget, tokenizer=tokenizer or "cl100k_base")
        result = pipeline.warm_up().run(query, items)
    if output_format == "json":
        json.dump(result.to_dict(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    sys.stdout.write(result.text + "\n")
    if output_format == "trace":
        typer.echo("")
        typer.echo(f"tokens {result.tokens} of {result.tokens_full} (budget {result.budget}, {result.tokenizer})")
        typer.echo(result.trace_table())


def presets() -> None:
    """List the pipeline presets."""
    from optimizer.presets import list_presets, preset_description

    for name in list_presets():
        typer.echo(f"{name:<16} {preset_description(name)}")


def stages() -> None:
    """List the registered stages."""
    from optimizer.registry import list_stages

    for name in list_stages():
        typer.echo(name)


def register(app: typer.Typer) -> None:
    """Add ``optimize``, ``presets`` and ``stages`` to ``app``."""
    app.command()(optimize)
    app.command()(presets)
    app.command()(stages)

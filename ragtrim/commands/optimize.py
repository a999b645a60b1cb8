"""``ragtrim optimize``, ``ragtrim presets`` and ``ragtrim stages``: the library's commands (no eval harness)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer

from ragtrim.commands.common import fail, one_line_warnings, parse_budget_option, user_errors, warn

FORMATS = ("text", "json", "trace")


def optimize(
    query: str = typer.Option(..., "--query", "-q", help="The user's question."),
    chunks: str = typer.Option(..., "--chunks", "-c", help="JSONL file of chunks (id, text, optional title, score, metadata); '-' reads stdin."),
    budget: Optional[str] = typer.Option(None, "--budget", "-b", help="Tokens (e.g. 300, at least 2) or a share of the full context (e.g. 0.25; 1.0 = all of it). Default: the preset's or config's; with none, the sentence stage keeps about half (its ratio)."),
    preset: str = typer.Option("default", "--preset", "-p", help="Preset name (see 'ragtrim presets')."),
    config: Optional[Path] = typer.Option(None, "--config", help="Pipeline config file (.yaml, .toml, .json); overrides --preset."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="cl100k_base, o200k_base, a model name such as gpt-4o, or hf:/path. Default cl100k_base."),
    score_direction: Optional[str] = typer.Option(None, "--score-direction", help="How to read the chunks' 'score': auto (distances when they rise along the given order), similarity or distance. Default: the config's, else auto."),
    output_format: str = typer.Option("text", "--format", "-f", help="text (the context), json (context, spans, trace) or trace (the context, then the trace table)."),
) -> None:
    """Optimize retrieved chunks for a query into a token budget."""
    from optimizer.jsonl import read_chunks
    from optimizer.pipeline import Pipeline

    if output_format not in FORMATS:
        fail(f"--format must be text, json or trace, got {output_format!r}")
    check_utf8_argument("--query", query)
    if tokenizer is not None and not tokenizer.strip():
        fail("--tokenizer is empty; give cl100k_base, o200k_base, a model name such as gpt-4o, or hf:/path (or leave it out for cl100k_base)")
    # RuntimeError: a model that could not be built or loaded; warnings print as one line each
    with user_errors(RuntimeError), warnings.catch_warnings(record=True) as caught:
        parsed_budget = parse_budget_option("--budget", budget)
        items = read_chunks(chunks)
        if not items:
            raise ValueError(f"{'<stdin>' if chunks == '-' else repr(chunks)} holds no chunks (no non-blank line); pass a JSON Lines file "
                 "with one chunk object per line, e.g. {\"id\": \"a\", \"text\": \"...\"}")
        if config is not None:
            pipeline = Pipeline.load(config, budget=parsed_budget, tokenizer=tokenizer, score_direction=score_direction)
        else:
            pipeline = Pipeline.preset(preset, budget=parsed_budget, tokenizer=tokenizer or "cl100k_base",
                                       score_direction=score_direction or "auto")
        result = pipeline.warm_up().run(query, items)
    for w in caught:
        warn(str(w.message))
    _warn_if_empty(result, budget)
    if output_format == "json":
        json.dump(result.to_dict(), sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    sys.stdout.write(result.text + "\n")
    if output_format == "trace":
        typer.echo("")
        typer.echo(f"tokens {result.tokens} of {result.tokens_full} (budget {result.budget}, {result.tokenizer})")
        typer.echo(result.trace_table())


def _warn_if_empty(result: object, budget: str | None) -> None:
    """Say so when the chunks had text but the budget held none of it (an empty context is rarely what was meant)."""
    if getattr(result, "tokens", 0) == 0 and getattr(result, "tokens_full", 0) > 0:
        given = f"--budget {budget}" if budget is not None else "the budget"
        warn(f"{given} holds no block: the context is empty (the full context has {result.tokens_full} tokens, "
             "and a block needs its header and some text); raise --budget, e.g. 0.25 for a quarter of the context")


def check_utf8_argument(flag: str, value: str) -> None:
    """Fail naming ``flag`` when ``value`` holds bytes that were not UTF-8 (Python keeps them as lone surrogates)."""
    from optimizer.records import lone_surrogate

    pos = lone_surrogate(value)
    if pos is not None and 0xDC80 <= ord(value[pos]) <= 0xDCFF:
        fail(
            f"{flag} is not valid UTF-8: byte 0x{ord(value[pos]) - 0xDC00:02x} at character {pos}; "
            "pass UTF-8 text (check the encoding of the terminal or of the program that calls ragtrim)"
        )


def presets() -> None:
    """List the pipeline presets."""
    from optimizer.presets import list_presets, preset_description

    for name in list_presets():
        typer.echo(f"{name:<16} {preset_description(name)}")


def stages() -> None:
    """List the registered stages."""
    from optimizer.registry import list_stages

    with one_line_warnings():  # a plugin skipped for a name clash: one line
        names = list_stages()
    for name in names:
        typer.echo(name)


def register(app: typer.Typer) -> None:
    """Add ``optimize``, ``presets`` and ``stages`` to ``app``."""
    app.command()(optimize)
    app.command()(presets)
    app.command()(stages)

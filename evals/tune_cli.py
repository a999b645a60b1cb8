"""``ragtrim tune``: the smallest budget that keeps a metric within a target of the full context.

Registered on :data:`optimizer.cli.app` (imported by ``optimizer.cli._register_optional_commands``).
The search itself is :func:`evals.tune.tune_budget`; this module only parses options and prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from optimizer.cli import app, fail


@app.command("tune")
def tune_command(
    data: str = typer.Option(..., "--data", "-d", help="Bundled set (hotpotqa, 2wiki, squad2-pools, nq-multidoc) or a .jsonl file in the common schema."),
    pipeline: str = typer.Option("default", "--pipeline", "-p", help="Preset to tune (see 'ragtrim presets')."),
    config: Optional[Path] = typer.Option(None, "--config", help="Tune a custom pipeline (.yaml/.toml/.json) instead of a preset."),
    metric: str = typer.Option("answer_recall", "--metric", "-m", help="answer_recall or evidence_recall (reader-free), or accuracy, em, f1 (need --reader)."),
    target_retention: float = typer.Option(0.98, "--target-retention", help="Keep metric >= this share of its full-context value, in (0, 1]."),
    reader: str = typer.Option("none", "--reader", "-r", help="none, local, openai or fake (only used for reader metrics)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Use only the first N examples."),
    tokenizer: str = typer.Option("cl100k_base", "--tokenizer", "-t", help="Tokenizer the budget and costs count with."),
    resolution: float = typer.Option(0.005, "--resolution", help="Stop bisecting when the bracket is below this share of the budget (0.005 = 0.5 %)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Reader cache file; pass the one of an earlier 'ragtrim eval' to reuse its answers."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai reader: endpoint base URL."),
    model: Optional[str] = typer.Option(None, "--model", help="openai reader: model name; local reader: path of a GGUF file."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="openai reader: environment variable holding the API key."),
    prices: Optional[Path] = typer.Option(None, "--prices", help="A TOML price table adding to or replacing evals/prices.toml."),
    price_model: Optional[str] = typer.Option(None, "--price-model", help="Model whose input price gives the $ saved (default: the table's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples for the 95% intervals."),
    output_format: str = typer.Option("text", "--format", "-f", help="text (a summary) or json."),
    progress: bool = typer.Option(False, "--progress/--no-progress", help="Progress bars on stderr."),
) -> None:
    """Find the smallest budget whose metric stays within --target-retention of the full context."""
    from evals.cli import build_reader
    from evals.cost import load_prices
    from evals.datasets import load_dataset
    from evals.readers import default_cache_path
    from evals.tune import tune_budget

    if output_format not in ("text", "json"):
        fail(f"--format must be text or json, got {output_format!r}")
    try:
        if limit is not None and limit < 1:
            raise ValueError(f"--limit must be a positive number of examples, got {limit}")
        table = load_prices(prices)
        table.price(price_model)
        chosen: object = pipeline
        if config is not None:
            from optimizer.pipeline import Pipeline

            custom = Pipeline.load(config, tokenizer=tokenizer)
            if custom.name == "custom":
                custom.name = config.stem
            chosen = custom
        else:
            from optimizer.presets import preset_config

            preset_config(pipeline)  # unknown names fail here, listing the presets
        cache_path = cache if cache is not None else default_cache_path()
        if reader != "none":
            cache_path.parent.mkdir(parents=True, exist_ok=True)
        reader_obj, _ = build_reader(reader, cache_path.parent, cache_path, base_url=base_url, model=model, api_key_env=api_key_env)
        dataset = load_dataset(data, limit=limit)
        result = tune_budget(
            dataset,
            chosen,  # type: ignore[arg-type]
            metric=metric,
            target_retention=target_retention,
            reader=reader_obj,
            tokenizer=tokenizer,
            resolution=resolution,
            prices=table,
            price_model=price_model,
            resamples=resamples,
            seed=seed,
            progress=progress,
        )
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        fail(str(exc))
        return
    if output_format == "json":
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(result.summary())
    if not result.met:
        raise typer.Exit(1)

"""``ragtrim tune``: the smallest budget that keeps a metric within a target of the full context.

The search is :func:`evals.tune.tune_budget`; this module only parses options and prints. By
default half of the examples (drawn with ``--seed``) are held out of the search and the chosen
budget is checked on them (``--holdout``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ragtrim.commands.common import (
    ApiKeyEnv,
    BaseUrl,
    ChunkScores,
    CustomConfig,
    Data,
    Limit,
    Model,
    PriceModel,
    Prices,
    ReaderChoice,
    Resamples,
    Seed,
    Tokenizer,
    check_bootstrap,
    check_positive,
    check_reader,
    load_reader_model,
    fail,
    load_custom_pipeline,
    load_price_table,
    one_line_warnings,
    user_errors,
    warn,
)


def tune_command(
    data: Data,
    pipeline: str = typer.Option("default", "--pipeline", "-p", help="Preset to tune (see 'ragtrim presets')."),
    config: CustomConfig = None,
    metric: str = typer.Option("answer_recall", "--metric", "-m", help="answer_recall or evidence_recall (reader-free), or accuracy, em, f1 (need --reader)."),
    target_retention: float = typer.Option(0.98, "--target-retention", help="Keep metric >= this share of its full-context value, in (0, 1]."),
    reader: str = typer.Option("none", "--reader", "-r", help="none, local, openai or fake (only used for reader metrics)."),
    limit: Limit = None,
    chunk_scores: ChunkScores = False,
    tokenizer: Tokenizer = "cl100k_base",
    resolution: float = typer.Option(0.005, "--resolution", help="Stop bisecting when the bracket is below this share of the budget (0.005 = 0.5 %)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Reader cache file; pass the one of an earlier 'ragtrim eval' to reuse its answers."),
    base_url: BaseUrl = None,
    model: Model = None,
    api_key_env: ApiKeyEnv = None,
    prices: Prices = None,
    price_model: PriceModel = None,
    seed: Seed = 0,
    resamples: Resamples = 1000,
    output_format: str = typer.Option("text", "--format", "-f", help="text (a summary) or json."),
    progress: bool = typer.Option(False, "--progress/--no-progress", help="Progress bars on stderr."),
    holdout: float = typer.Option(
        0.5, "--holdout",
        help="Share of the examples (drawn with --seed) held out of the search to check the chosen budget on; "
        "0 = choose and report on the same examples (in-sample). Needs at least 40 examples, else in-sample (said so).",
    ),
    confidence: Optional[float] = typer.Option(
        None, "--confidence",
        help="A level in (0, 1), e.g. 0.9: choose the smallest budget whose retention's one-sided bootstrap lower bound "
        "at this level (--resamples, --seed) reaches the target on the examples that choose it, a margin that holds "
        "more often on new examples. Unset: the point estimate alone (no margin).",
    ),
) -> None:
    """Find the smallest budget whose metric stays within --target-retention of the full context.

    The budget is chosen on part of the examples and checked on the held-out rest (--holdout);
    the numbers of the part that chose it are labelled in-sample.
    """
    from evals.datasets import load_dataset
    from evals.readers import default_cache_path
    from evals.tune import READER_METRICS, tune_budget
    from evals.tune_rule import check_confidence

    if output_format not in ("text", "json"):
        fail(f"--format must be text or json, got {output_format!r}")
    with user_errors():
        check_positive("--limit", limit)
        check_bootstrap(resamples, seed)
        _check_holdout(holdout)
        _check_target(target_retention, resolution)
        check_confidence(confidence, "--confidence")
        table = load_price_table(prices, price_model)
        chosen = _pipeline(pipeline, config, tokenizer)
        choice = ReaderChoice(reader, base_url, model, api_key_env)
        reader_obj, _ = choice.build(cache if cache is not None else default_cache_path())
        if metric in READER_METRICS:  # the reader is only called for these: check it before any work
            check_reader(reader_obj, key_named=api_key_env is not None)  # an endpoint answers
            load_reader_model(reader_obj, model)  # a local GGUF loads (seconds), not after the sweep's pipeline runs
        with one_line_warnings():
            result = tune_budget(
                load_dataset(data, limit=limit, chunk_scores=chunk_scores), chosen, metric=metric, target_retention=target_retention,
                reader=reader_obj, tokenizer=tokenizer, resolution=resolution, prices=table, price_model=price_model,
                resamples=resamples, seed=seed, progress=progress, holdout=holdout, confidence=confidence,
            )
    if output_format == "json":
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(result.summary())
    _warn_about(result)
    if not result.met:
        raise typer.Exit(1)


def _warn_about(result: Any) -> None:
    """Warnings after the output: failed reader calls, a held-out miss, a held-out check that could not be made."""
    failures = result.failure_warning()
    if failures:
        warn(failures)
    held = result.held_out
    if not result.met or held is None:
        return
    if not held.checked:
        warn(f"the budget was not checked on the {held.n} held-out examples ({held.note}); it is in-sample only "
             "(exit status 0: not a miss)")
    elif not held.met:
        warn(
            f"the budget chosen on {result.n_tune} examples misses the target on the {held.n} held-out ones "
            f"(retention {held.retention}); expect it to miss on new data too: aim higher "
            "(--target-retention), tune on more examples"
            + (" or choose with a margin (--confidence 0.9)" if result.confidence is None else "")
        )


def _check_holdout(holdout: float) -> None:
    """``--holdout`` in [0, 1): a share of the examples."""
    if not 0 <= holdout < 1:
        raise ValueError(f"--holdout must be a share of the examples in [0, 1), e.g. 0.5 (0 = no held-out check), got {holdout!r}")


def _check_target(target_retention: float, resolution: float) -> None:
    """``--target-retention`` in (0, 1] and ``--resolution`` in (0, 1), named as the user typed them."""
    if not 0 < target_retention <= 1:
        raise ValueError(f"--target-retention must be a share of the full-context metric in (0, 1], e.g. 0.98 (keep 98 % "
                         f"of it), got {target_retention!r}")
    if not 0 < resolution < 1:
        raise ValueError(f"--resolution must be a relative step of the budget in (0, 1), e.g. 0.005 for 0.5 %, got {resolution!r}")


def _pipeline(name: str, config: Path | None, tokenizer: str) -> object:
    """The custom pipeline of ``--config``, else the preset's name (unknown names fail here, listing the presets)."""
    if config is not None:
        return load_custom_pipeline(config, tokenizer)
    from optimizer.presets import preset_config

    preset_config(name)
    return name


def register(app: typer.Typer) -> None:
    """Add ``tune`` to ``app``."""
    app.command("tune")(tune_command)

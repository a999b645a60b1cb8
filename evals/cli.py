"""``ragtrim eval`` and ``ragtrim demo``, registered on :data:`optimizer.cli.app`.

Heavy imports (matplotlib, llama_cpp, torch) happen inside the commands, so ``ragtrim
--help`` stays fast.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from optimizer.cli import app, fail


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``.

    >>> split_list("default, truncate,,bm25-topk")
    ['default', 'truncate', 'bm25-topk']
    """
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_budgets(text: str) -> list[Any]:
    """Budgets from ``"0.125,0.25,300"``; a bad one raises ValueError naming it.

    >>> parse_budgets("0.125, 0.25,300")
    [0.125, 0.25, 300]
    """
    from optimizer.budget import parse_budget

    out = []
    for part in split_list(text):
        try:
            value = parse_budget(part)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad budget {part!r} in --budgets {text!r}: {exc}") from None
        if value is None:
            raise ValueError(f"bad budget {part!r} in --budgets {text!r}: the full context always runs as the reference; list only cut budgets")
        out.append(value)
    if not out:
        raise ValueError(f"--budgets needs at least one budget, e.g. 0.125,0.25,0.5; got {text!r}")
    return out


def parse_reader_arms(text: str) -> list[tuple[str, Any]]:
    """``"default@0.25, bm25-topk@300"`` → ``[("default", 0.25), ("bm25-topk", 300)]``.

    >>> parse_reader_arms("default@0.25, bm25-topk@300")
    [('default', 0.25), ('bm25-topk', 300)]
    """
    from optimizer.budget import parse_budget

    out = []
    for part in split_list(text):
        name, sep, budget = part.rpartition("@")
        if not sep or not name:
            raise ValueError(f"--reader-on takes PIPELINE@BUDGET items such as default@0.25, got {part!r}")
        try:
            out.append((name, parse_budget(budget)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad budget in --reader-on item {part!r}: {exc}") from None
    return out


def machine() -> str:
    """``Linux x86_64, 2 cores, Python 3.12.3`` (for the report)."""
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def run_meta(started: float, **extra: Any) -> dict[str, Any]:
    """What varies between identical runs: date, command, machine, wall time (results.json's ``meta``)."""
    return {
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "command": shlex.join(["ragtrim", *sys.argv[1:]]),
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
        **extra,
    }


def resolve_pipeline_names(text: str) -> list[str]:
    """Names from ``--pipelines`` (``all`` = every preset); unknown names raise, listing the presets."""
    from optimizer.presets import list_presets

    names = split_list(text)
    if names == ["all"]:
        return list_presets()
    if not names:
        raise ValueError(f"--pipelines needs at least one preset name; presets: {', '.join(list_presets())}")
    unknown = [n for n in names if n not in list_presets()]
    if unknown:
        raise ValueError(f"unknown pipeline(s) {', '.join(map(repr, unknown))}; presets: {', '.join(list_presets())} (or 'all')")
    return names


def finish(run: Any, out: Path, started: float, cache: Any = None, **extra: Any) -> Path:
    """Write the outputs, print the table, the report path and the cache counts."""
    import json

    from evals.report import print_summary, write_report

    meta = run_meta(started, **extra)
    if cache is not None:
        meta["reader_cache"] = {"path": str(cache.path), "hits": cache.hits, "misses": cache.misses}
    html = write_report(run, out, meta=meta)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    print_summary(results)
    if cache is not None:
        typer.echo(f"reader cache {cache.path}: {cache.hits} hits, {cache.misses} new calls")
    failures = sum(r["metrics"]["reader_failures"] for r in results["runs"])
    if failures:
        typer.secho(f"{failures} reader calls failed (see reader_error in examples.jsonl); rerun to retry them", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"report: {html} (and {out / 'report.md'}, results.json, examples.jsonl)")
    return html


@app.command("eval")
def eval_command(
    data: str = typer.Option(..., "--data", "-d", help="Bundled set (hotpotqa, 2wiki, squad2-pools, nq-multidoc) or a .jsonl file in the common schema."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: results.json, examples.jsonl, report.md, report.html."),
    pipelines: str = typer.Option("all", "--pipelines", "-p", help="Comma-separated presets, or 'all'. 'full' always runs once as the reference."),
    budgets: str = typer.Option("0.125,0.25,0.5", "--budgets", "-b", help="Comma-separated budgets: shares in (0,1] of each example's full context, or token counts."),
    reader: str = typer.Option("none", "--reader", "-r", help="none, local (packaged Gemma-3-270M), openai (any OpenAI-compatible endpoint) or fake."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Use only the first N examples."),
    sample: Optional[int] = typer.Option(None, "--sample", help="Ask the reader only on the first N examples (all arms see the same ones)."),
    reader_on: Optional[str] = typer.Option(None, "--reader-on", help="Ask the reader only for these arms, e.g. 'default@0.25,default@0.125' (full is always included). Default: every arm."),
    tokenizer: str = typer.Option("cl100k_base", "--tokenizer", "-t", help="Tokenizer the budget and costs count with."),
    config: Optional[Path] = typer.Option(None, "--config", help="An extra custom pipeline (.yaml/.toml/.json) swept at the same budgets."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="openai reader: endpoint base URL, e.g. http://127.0.0.1:8000/v1."),
    model: Optional[str] = typer.Option(None, "--model", help="openai reader: model name; local reader: path of a GGUF file."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="openai reader: name of the environment variable holding the API key."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Reader cache file (default OUT/reader-cache.sqlite)."),
    prices: Optional[Path] = typer.Option(None, "--prices", help="A TOML price table adding to or replacing evals/prices.toml."),
    price_model: Optional[str] = typer.Option(None, "--price-model", help="Model whose input price gives $ per 1k queries (default: the table's)."),
    retrieve: Optional[str] = typer.Option(None, "--retrieve", help="Retrieve chunks first from a corpus of all the dataset's passages: 'faiss' (dense) or 'bm25'."),
    top_k: int = typer.Option(10, "--top-k", help="With --retrieve: chunks retrieved per question."),
    embedder: str = typer.Option("minilm", "--embedder", help="With --retrieve faiss: 'minilm' or 'static' (model2vec distilled from MiniLM)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resampling."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples for the 95% intervals."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
) -> None:
    """Sweep pipelines x budgets over a dataset; write results.json, examples.jsonl and a report."""
    started = time.perf_counter()
    from evals.cost import load_prices

    try:
        names = resolve_pipeline_names(pipelines)
        parsed_budgets = parse_budgets(budgets)
        if limit is not None and limit < 1:
            raise ValueError(f"--limit must be a positive number of examples, got {limit}")
        if sample is not None and sample < 1:
            raise ValueError(f"--sample must be a positive number of examples, got {sample}")
        arms_for_reader = parse_reader_arms(reader_on) if reader_on is not None else None
        table = load_prices(prices)
        table.price(price_model)
        from evals.datasets import load_dataset

        dataset = load_dataset(data, limit=limit)
        if retrieve is not None:
            dataset = retrieve_chunks(dataset, retrieve, top_k, embedder)
        chosen: list[Any] = list(names)
        if config is not None:
            from optimizer.pipeline import Pipeline

            custom = Pipeline.load(config, tokenizer=tokenizer)
            if custom.name == "custom":
                custom.name = config.stem
            chosen.append(custom)
        reader_obj, cache_obj = build_reader(reader, out, cache, base_url=base_url, model=model, api_key_env=api_key_env)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as exc:
        fail(str(exc))
        return
    from evals.sweep import run_eval

    try:
        run = run_eval(
            dataset,
            chosen,
            parsed_budgets,
            reader=reader_obj,
            tokenizer=tokenizer,
            sample=sample,
            reader_arms=arms_for_reader,
            prices=table,
            price_model=price_model,
            resamples=resamples,
            seed=seed,
            progress=progress,
        )
    except KeyboardInterrupt:
        if cache_obj is not None:
            typer.secho(
                f"interrupted: {len(cache_obj)} reader answers are saved in {cache_obj.path}; "
                "run the same command again to resume without repeating them",
                fg=typer.colors.YELLOW,
                err=True,
            )
        raise typer.Exit(130) from None
    except (ValueError, TypeError, ImportError) as exc:
        fail(str(exc))
        return
    finish(run, out, started, cache_obj, retrieval={"retriever": retrieve, "top_k": top_k, "embedder": embedder} if retrieve else None)


def retrieve_chunks(dataset: Any, retriever: str, top_k: int, embedder: str = "minilm") -> Any:
    """Replace each example's chunks by the top-k retrieved from all the dataset's passages."""
    if top_k < 1:
        raise ValueError(f"--top-k must be a positive number of chunks, got {top_k}")
    try:
        from evals.retrieval import retrieve_dataset
    except ImportError as exc:
        raise ImportError(
            f"--retrieve {retriever} needs evals.retrieval.retrieve_dataset, which could not be imported ({exc}); "
            "install ragtrim[embeddings,llama-index] or run without --retrieve"
        ) from None
    return retrieve_dataset(dataset, top_k=top_k, retriever=retriever, embedder=embedder)


def build_reader(
    name: str,
    out: Path,
    cache: Path | None,
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
) -> tuple[Any, Any]:
    """The reader and its SQLite cache (``OUT/reader-cache.sqlite`` unless ``cache`` is given)."""
    from evals.readers import READER_NAMES, ReaderCache, make_reader

    if name not in READER_NAMES:
        raise ValueError(f"unknown reader {name!r}; choose one of: {', '.join(READER_NAMES)}")
    if name == "none":
        given = [flag for flag, v in (("--base-url", base_url), ("--model", model), ("--api-key-env", api_key_env)) if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --reader openai or local; got --reader none")
        return None, None
    options: dict[str, Any] = {}
    if name == "openai":
        for key, value in (("base_url", base_url), ("model", model), ("api_key_env", api_key_env)):
            if value is not None:
                options[key] = value
    elif name == "local":
        if base_url is not None or api_key_env is not None:
            raise ValueError("--base-url and --api-key-env apply to --reader openai, not local")
        if model is not None:
            options["model_path"] = model
    cache_obj = ReaderCache(cache if cache is not None else out / "reader-cache.sqlite")
    return make_reader(name, cache=cache_obj, **options), cache_obj


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Output folder."),
    sample: int = typer.Option(30, "--sample", help="Questions the local reader answers (full vs default at 25% and 12.5%)."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Use only the first N questions for the reader-free sweep."),
    reader: bool = typer.Option(True, "--reader/--no-reader", help="Run the local reader on the sample (needs ragtrim[reader])."),
) -> None:
    """The bundled HotpotQA set: reader-free sweep of the presets, plus the local reader on a sample."""
    from evals.demo import run_demo

    try:
        run_demo(out, sample=sample, limit=limit, use_reader=reader)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        fail(str(exc))

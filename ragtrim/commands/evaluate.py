"""``ragtrim eval`` (sweep presets x budgets over a dataset) and ``ragtrim demo``.

Heavy imports (matplotlib, llama_cpp, torch) happen inside the commands, so ``ragtrim
--help`` stays fast. The work is :func:`evals.sweep.run_eval`; this module parses options,
builds the inputs and writes the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from ragtrim.commands.common import (
    ApiKeyEnv,
    BaseUrl,
    ChunkScores,
    CustomConfigs,
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
    check_out_dir,
    check_positive,
    check_reader,
    load_reader_model,
    fail,
    finish,
    load_custom_pipeline,
    load_price_table,
    one_line_warnings,
    parse_budgets,
    parse_reader_arms,
    resolve_pipeline_names,
    user_errors,
    warn,
)


@dataclass(frozen=True)
class EvalPlan:
    """Everything ``ragtrim eval`` checked and built before the sweep starts."""

    dataset: Any
    pipelines: list[Any]
    budgets: list[Any]
    reader: Any
    cache: Any
    reader_arms: list[tuple[str, Any]] | None
    prices: Any
    out: Path | None = None


def eval_command(
    data: Data,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: results.json, examples.jsonl, report.md, report.html."),
    pipelines: str = typer.Option("all", "--pipelines", "-p", help="Comma-separated presets, or 'all' (every preset but 'thorough', which takes seconds per question: name it to run it). 'full' always runs once as the reference."),
    budgets: str = typer.Option("0.125,0.25,0.5", "--budgets", "-b", help="Comma-separated budgets: shares in (0,1] of each example's full context, or token counts."),
    reader: str = typer.Option("none", "--reader", "-r", help="none, local (packaged Gemma-3-270M), openai (any OpenAI-compatible endpoint) or fake."),
    limit: Limit = None,
    chunk_scores: ChunkScores = False,
    sample: Optional[int] = typer.Option(None, "--sample", help="Ask the reader only on the first N examples (all arms see the same ones)."),
    reader_on: Optional[str] = typer.Option(None, "--reader-on", help="Ask the reader only for these arms, e.g. 'default@0.25,default@0.125' (full is always included). Default: every arm."),
    tokenizer: Tokenizer = "cl100k_base",
    config: CustomConfigs = None,
    base_url: BaseUrl = None,
    model: Model = None,
    api_key_env: ApiKeyEnv = None,
    cache: Optional[Path] = typer.Option(None, "--cache", help="Reader cache file (default OUT/reader-cache.sqlite)."),
    prices: Prices = None,
    price_model: PriceModel = None,
    retrieve: Optional[str] = typer.Option(None, "--retrieve", help="Retrieve chunks first from a corpus of every passage of the whole dataset (whatever --limit): 'faiss' (dense) or 'bm25'."),
    top_k: int = typer.Option(10, "--top-k", help="With --retrieve: chunks retrieved per question (clipped to the corpus size, with a warning)."),
    embedder: str = typer.Option("minilm", "--embedder", help="With --retrieve faiss: 'minilm' or 'static' (model2vec, from MiniLM)."),
    seed: Seed = 0,
    resamples: Resamples = 1000,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
) -> None:
    """Sweep pipelines x budgets over a dataset; write results.json, examples.jsonl and a report."""
    from evals.report import OutDirBusy, lock_out_dir

    started = time.perf_counter()
    with ExitStack() as held:
        with user_errors(OutDirBusy):
            check_positive("--limit", limit)
            check_positive("--sample", sample)
            check_bootstrap(resamples, seed)
            names, parsed_budgets = _pipelines(pipelines, config, tokenizer), parse_budgets(budgets)
            arms = parse_reader_arms(reader_on) if reader_on is not None else None
            sample, arms = _reader_only_options(reader, sample, arms)
            table = load_price_table(prices, price_model)
            _check_retrieval_options(retrieve, top_k)
            _check_data(data)
            check_out_dir(out)  # last of the checks: it creates the folder
            held.enter_context(lock_out_dir(out))  # held until the outputs are written: one eval per folder
            _warn_if_no_plot()
            reader_obj, cache_obj = ReaderChoice(reader, base_url, model, api_key_env).build(_cache_path(out, cache))
            check_reader(reader_obj, key_named=api_key_env is not None)  # before loading (or retrieving) the data
            with on_ctrl_c(out, cache_obj):
                load_reader_model(reader_obj, model)  # a GGUF that does not load stops here, in seconds
            dataset = _load_data(data, limit, retrieve, top_k, embedder, chunk_scores)
            plan = EvalPlan(dataset, names, parsed_budgets, reader_obj, cache_obj, arms, table, out)
        run = _sweep(plan, tokenizer=tokenizer, sample=sample, price_model=price_model, resamples=resamples, seed=seed, progress=progress)
        with user_errors(OSError):
            finish(run, out, started, plan.cache, retrieval=_retrieval_meta(dataset, retrieve, top_k, embedder))
    report_pipeline_failures(run, out)
    _fail_if_every_reader_call_failed(run, out)


def _check_data(data: str) -> None:
    """``--data`` names a bundled set or an existing file, checked before ``--out`` (its lock and reader cache) is
    created: a typo leaves nothing behind."""
    from evals.datasets import check_source

    check_source(data)


def _check_retrieval_options(retrieve: str | None, top_k: int) -> None:
    """``--retrieve`` and ``--top-k`` checked before ``--out`` is created (nothing is left behind on a typo)."""
    if retrieve is None:
        return
    retrievers = _retrieval_module(retrieve).RETRIEVERS
    if retrieve not in retrievers:
        raise ValueError(f"--retrieve must be one of {', '.join(retrievers)}, got {retrieve!r}")
    check_positive("--top-k", top_k, what="chunks")


def _retrieval_module(retrieve: str) -> Any:
    """:mod:`evals.retrieval`, or an ImportError saying what to install (or to run without ``--retrieve``)."""
    try:
        import evals.retrieval as module
    except ImportError as exc:
        raise ImportError(
            f"--retrieve {retrieve} needs evals.retrieval.retrieve_dataset, which could not be imported ({exc}); "
            "install ragtrim[embeddings,llama-index] or run without --retrieve"
        ) from None
    return module


def _retrieval_meta(dataset: Any, retrieve: str | None, top_k: int, embedder: str) -> dict[str, Any] | None:
    """``results.json``'s ``meta.retrieval``: how chunks were retrieved (the embedder only for faiss), recall@k, the
    corpus size (``corpus_passages``) and the k each question got (``top_k_used``: ``top_k`` clipped to the corpus)."""
    if not retrieve:
        return None
    from evals.retrieval import retrieval_summary

    return {"retriever": retrieve, "top_k": top_k, "embedder": embedder if retrieve == "faiss" else None,
            **retrieval_summary(dataset)}


def _warn_if_no_plot() -> None:
    """Say before the sweep, not after it, that the report will have no plot (matplotlib missing) and how to get one."""
    from evals.report import plot_dependency_missing

    note = plot_dependency_missing()
    if note:
        warn(f"the report will have {note}")


def report_pipeline_failures(run: Any, out: Path) -> None:
    """Warn (one line, the first error) when a pipeline raised on some examples; exit 1 (the outputs are written)
    when it raised on every example of an arm, as :func:`_fail_if_every_reader_call_failed` does for the reader."""
    failed = [r for r in run.rows if getattr(r, "pipeline_error", None)]
    if not failed:
        return
    first = failed[0]
    error = first.pipeline_error if len(first.pipeline_error) <= 200 else first.pipeline_error[:200] + "..."
    where = f"{first.arm.label} on example {first.id!r}"
    dead = [r.label for r in run.runs if r.metrics.n and r.metrics.pipeline_failures == r.metrics.n]
    if dead:
        fail(f"the pipeline raised on every example of {', '.join(dead)}, so {out} has no numbers for "
             f"{'it' if len(dead) == 1 else 'them'}; the first error ({where}): {error}; fix the pipeline or its config "
             "and rerun", code=1)
    warn(f"{len(failed)} of {len(run.rows)} pipeline runs raised an error and are left out of the means (pipeline_failures "
         f"in results.json, pipeline_error in examples.jsonl); the first ({where}): {error}")


def _fail_if_every_reader_call_failed(run: Any, out: Path) -> None:
    """Exit 1 (the outputs are written) when the reader was called and no call of the run succeeded; some failures
    are reported by :func:`finish` and leave the exit status 0."""
    calls = sum(r.metrics.reader_calls for r in run.runs)
    failures = sum(r.metrics.reader_failures for r in run.runs)
    if calls and failures == calls:
        first = next((r.reader_error for r in run.rows if r.reader_error), "no error recorded")
        first = first if len(first) <= 200 else first[:200] + "..."
        fail(f"all {calls} reader calls failed, so {out} has no reader metrics; the first error: {first}", code=1)


def _reader_only_options(reader: str, sample: int | None, arms: list[tuple[str, Any]] | None) -> tuple[int | None, Any]:
    """``--sample`` and ``--reader-on`` only steer a reader: with ``--reader none`` say so and drop them."""
    if reader != "none":
        return sample, arms
    given = [flag for flag, value in (("--sample", sample), ("--reader-on", arms)) if value is not None]
    if given:
        verb = "apply" if len(given) > 1 else "applies"
        warn(f"{' and '.join(given)} only {verb} with a reader (--reader local, openai or fake); ignored with --reader none, "
             "every example and arm gets the reader-free metrics")
    return None, None


def _cache_path(out: Path, cache: Path | None) -> Path:
    from evals.reader_options import CACHE_FILE

    return cache if cache is not None else out / CACHE_FILE


def _load_data(data: str, limit: int | None, retrieve: str | None, top_k: int, embedder: str,
               chunk_scores: bool = False) -> Any:
    """The examples to run: the first ``limit``; with ``--retrieve``, their chunks retrieved from every passage of the
    whole file (the corpus does not shrink with ``--limit``). ``--chunk-scores`` reads the file's chunk scores and
    vectors; with ``--retrieve`` the retriever scores the chunks, so it is ignored (with a warning)."""
    from evals.datasets import load_dataset

    if retrieve is None:
        return load_dataset(data, limit=limit, chunk_scores=chunk_scores)
    if chunk_scores:
        warn(f"--chunk-scores is ignored with --retrieve {retrieve}: the retriever scores the chunks it returns")
    dataset = load_dataset(data)
    retrieve_dataset = _retrieval_module(retrieve).retrieve_dataset
    with one_line_warnings():  # e.g. a read-only embedding cache or a top-k above the corpus: said once, the run goes on
        return retrieve_dataset(dataset, top_k=top_k, retriever=retrieve, embedder=embedder, limit=limit)


def _pipelines(names: str, configs: list[Path] | None, tokenizer: str) -> list[Any]:
    chosen: list[Any] = list(resolve_pipeline_names(names))
    for config in configs or []:
        chosen.append(load_custom_pipeline(config, tokenizer))
    return chosen


def _sweep(plan: EvalPlan, **options: Any) -> Any:
    """Run the sweep; Ctrl-C says where the reader's answers are kept."""
    from evals.sweep import run_eval

    with on_ctrl_c(plan.out, plan.cache), user_errors(), one_line_warnings():
        return run_eval(plan.dataset, plan.pipelines, plan.budgets, reader=plan.reader,
                        reader_arms=plan.reader_arms, prices=plan.prices, **options)


@contextmanager
def on_ctrl_c(out: Path | None, cache: Any) -> Iterator[None]:
    """Ctrl-C inside the block ends the command (exit 130) saying what was kept, with no traceback (eval and demo)."""
    try:
        yield
    except KeyboardInterrupt:
        typer.secho(_interrupted_note(out, cache), fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None


def _interrupted_note(out: Path | None, cache: Any) -> str:
    """What an interrupted sweep kept and what it did not write."""
    where = f" to {out}" if out is not None else ""
    if cache is not None:
        return (f"interrupted: nothing was written{where} (no results, no report); {len(cache)} reader answers "
                f"are saved in {cache.path}; run the same command again to resume without repeating them")
    return (f"interrupted: nothing was written{where} (no results, no report) and nothing was kept (no reader, so no "
            "cache); run the command again, with --limit N for a shorter sweep")


def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Output folder."),
    sample: int = typer.Option(30, "--sample", help="Questions the local reader answers (full vs default at 25% and 12.5%)."),
    limit: Limit = None,
    reader: bool = typer.Option(True, "--reader/--no-reader", help="Run the local reader on the sample (needs ragtrim\\[reader])."),
) -> None:
    """The bundled HotpotQA set: reader-free sweep of the presets, plus the local reader on a sample."""
    from evals import demo
    from evals.report import OutDirBusy, lock_out_dir

    started = time.perf_counter()
    with user_errors(OSError, OutDirBusy), ExitStack() as held:
        check_positive("--limit", limit)  # before --out is created
        check_out_dir(out)
        held.enter_context(lock_out_dir(out))
        _warn_if_no_plot()
        dataset = demo.load_demo_dataset(limit)
        reader_obj = cache = None
        if reader and not demo.reader_available():
            typer.secho(demo.NO_READER_HINT, fg=typer.colors.YELLOW, err=True)
        elif reader:
            reader_obj, cache = ReaderChoice("local").build(_cache_path(out, None))
        typer.echo(demo.demo_banner(len(dataset.examples), sample=sample, with_reader=reader_obj is not None), err=True)
        with on_ctrl_c(out, cache):
            load_reader_model(reader_obj, None)
            run = demo.run_demo(dataset, reader=reader_obj, sample=sample)
        finish(run, out, started, cache, demo=True)
    report_pipeline_failures(run, out)


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``demo`` to ``app``."""
    app.command("eval")(eval_command)
    app.command("demo")(demo_command)


__all__ = ["EvalPlan", "demo_command", "eval_command", "register"]

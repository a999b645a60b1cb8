"""Optimizer latency per question (models loaded and warmed), p50/p95 over the first N questions.

    python bench/latency.py --data hotpotqa --pipelines default,quality --budget 0.25 --n 100
    python bench/latency.py --data runs/long/nq-multidoc-x4.jsonl --ab compress-sentences.paragraphs=false

``--ab stage.param=value`` times each preset beside itself with that override (``bench/stages.py``'s
``--set`` syntax), question by question in one process (each arm with a model store of its own),
the order of the two alternating, so a noisy machine slows both alike; it prints each arm and the
paired median CPU difference.

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
import sys
import time
from pathlib import Path

# this checkout's code, not whichever one the environment has installed (a worktree of an old commit times its own)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.datasets import load_dataset  # noqa: E402
from optimizer import Pipeline  # noqa: E402
from optimizer.models import ModelStore, use_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="hotpotqa")
    ap.add_argument("--pipelines", default="default")
    ap.add_argument("--budget", type=float, default=0.25)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--ab", default=None, metavar="STAGE.PARAM=VALUE", help="time each preset beside itself with this override")
    args = ap.parse_args()
    ds = load_dataset(args.data, limit=args.n + 5)
    warm, timed = ds.examples[:5], ds.examples[5 : 5 + args.n]
    if args.ab:
        for name in args.pipelines.split(","):
            paired(name, args.ab, args.budget, warm, timed, args.data)
        return
    for name in args.pipelines.split(","):
        with ModelStore() as store, use_store(store):
            ms, cpu = timings(Pipeline.preset(name, budget=args.budget).warm_up(), warm, timed)
        ms.sort()
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        print(f"{args.data} {name} budget={args.budget:g} n={len(ms)}: p50 {statistics.median(ms):.1f} ms, "
              f"p95 {p95:.1f} ms; CPU p50 {statistics.median(cpu):.1f} ms")


def paired(name: str, override: str, budget: float, warm: list, timed: list, data: str) -> None:
    """Print ``name`` and ``name`` with ``override``, timed question by question in alternating order.

    Each arm has a model store of its own, entered for each of its calls, so neither reads the
    other's memo of a question's sentence vectors.
    """
    from contextlib import ExitStack

    from stages import build

    with ExitStack() as stack:
        stores = {key: stack.enter_context(ModelStore()) for key in (name, override)}
        arms = {}
        for key, store in stores.items():
            with use_store(store):
                steps = Pipeline.preset(name).steps if key == name else build(name, [override]).steps
                arms[key] = Pipeline(steps, budget=budget).warm_up()
                timings(arms[key], warm, [])
        cpu: dict[str, list[float]] = {k: [] for k in arms}
        wall: dict[str, list[float]] = {k: [] for k in arms}
        for i, ex in enumerate(timed):
            for key in (list(arms) if i % 2 == 0 else list(arms)[::-1]):
                with use_store(stores[key]):
                    ms, c = timings(arms[key], [], [ex])
                wall[key] += ms
                cpu[key] += c
    for key in arms:
        print(f"{data} {name}{'' if key == name else ' with ' + key} budget={budget:g} n={len(timed)}: "
              f"p50 {statistics.median(wall[key]):.1f} ms; CPU p50 {statistics.median(cpu[key]):.1f} ms")
    diff = statistics.median(a - b for a, b in zip(cpu[name], cpu[override]))
    print(f"  paired median CPU difference ({name} minus with {override}): {diff:+.2f} ms")


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

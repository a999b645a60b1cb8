"""Time against the number of chunks a run keeps: many short multi-line chunks at a large share.

The scaling bench (``bench/scaling.py``) holds the budget in tokens, so a run keeps a few dozen
chunks whatever the input; here the budget is a share, so the kept chunks grow with the input
(each chunk tried is counted against every chunk taken before it when that cost is recounted).

    python bench/many_kept.py --sizes 200,400,800,1600 --preset default --share 0.5
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def chunks(n: int, titles: int = 0) -> list[dict[str, str]]:
    """``n`` four-line chunks, a running header each (as a PDF's pages have); with ``titles``, each titled
    ``Doc k`` for one of that many documents (many chunks from few documents: titles repeat)."""
    texts = [f"ACME Annual Report 2023\nPart {k} text is here and goes on.\nMore {k}.\nDone {k}" for k in range(n)]
    return [{"id": f"c{k}", "text": t, **({"title": f"Doc {(k * 7919) % titles}"} if titles else {})} for k, t in enumerate(texts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200,400,800,1600", help="chunks per run, comma-separated")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--share", type=float, default=0.5, help="the budget, a share of the full context's tokens")
    parser.add_argument("--repeat", type=int, default=2, help="runs per size (the best is printed)")
    parser.add_argument("--titles", type=int, default=0, help="titles the chunks share (0: none)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from optimizer import Pipeline

    pipeline = Pipeline.preset(args.preset)
    pipeline.run("warm up", ["a b c."], budget=5)
    print(f"| chunks | kept | best of {args.repeat} (s) |\n|---|---|---|")
    for n in map(int, args.sizes.split(",")):
        given = chunks(n, args.titles)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = pipeline.run("what did part 7 say", given, budget=args.share)
            times.append(time.perf_counter() - start)
        print(f"| {n} | {len(result.chunks)} | {min(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()

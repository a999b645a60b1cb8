"""Dump what presets return on many cases, to check that a speed-up changed no output.

    PYTHONPATH=/path/to/checkout-a python bench/same_output.py dump --out a.jsonl
    PYTHONPATH=/path/to/checkout-b python bench/same_output.py dump --out b.jsonl
    python bench/same_output.py diff a.jsonl b.jsonl

``dump`` runs each preset (``--pipelines``) on (1) the large cases of ``bench/scaling.py``
(``--sizes`` chunks, ``--n`` per size, at ``--budget`` tokens, plus ``--extra-budgets``) and
(2) the first ``--limit`` questions of each bundled set at shares ``--shares`` of the full
context, and writes one JSON line per run: the rendered text, its token count, the kept
chunks with their pieces, and every trace step without its timing (tokens in and out, chunks
in and out, each dropped range with its reason, the notes). ``--near-copies`` adds, to each
large case, near-copies of some of its passages (a word changed), so near-dedupe's MinHash
LSH path has duplicates to find. ``diff`` compares two dumps line by line and exits 1 on
any difference (printing the first ones). ``changes`` says, per preset and budget, how many
runs' text differs and the answer recall of the changed bundled-set runs before and after:

    python bench/same_output.py changes a.jsonl b.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
# this checkout's code, not whichever one the environment has installed (a worktree of an old commit times its own)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling import build_cases  # noqa: E402

from evals.datasets import load_dataset  # noqa: E402
from optimizer import Pipeline  # noqa: E402
from optimizer.records import Chunk  # noqa: E402

SETS = ("hotpotqa", "2wiki", "squad2-pools", "nq-multidoc")


def record(result: Any) -> dict[str, Any]:
    """Everything a run returns that must not change, without timings."""
    trace = [{k: v for k, v in t.to_dict().items() if k != "ms"} for t in result.trace]
    chunks = [[c.id, list(map(list, c.kept_pieces)), c.relevance] for c in result.chunks]
    return {"text": result.text, "tokens": result.tokens, "budget": result.budget, "tokens_full": result.tokens_full,
            "chunks": chunks, "trace": trace}


def near_copies(chunks: Sequence[Chunk], every: int) -> list[Chunk]:
    """``chunks`` plus, for every ``every``-th one with enough words, a copy with its last word changed."""
    out = list(chunks)
    for k, c in enumerate(chunks):
        words = c.text.split()
        if k % every == 0 and len(words) >= 30:
            out.append(replace(c, id=f"{c.id}~copy", text=" ".join(words[:-1] + ["changed"]), score=None))
    return out


def scaling_cases(args: argparse.Namespace) -> Iterator[tuple[str, str, Sequence[Chunk], list[int]]]:
    _, timed = build_cases(args.sizes, args.n, 0)
    budgets = [args.budget, *args.extra_budgets]
    for k, case in enumerate(timed):
        chunks: Sequence[Chunk] = case.chunks
        if args.near_copies:
            chunks = near_copies(chunks, args.near_copies)
        yield f"scaling-{case.size}-{k}", case.question, chunks, budgets


def dataset_cases(args: argparse.Namespace) -> Iterator[tuple[str, str, Sequence[Chunk], list[Any]]]:
    for name in args.sets:
        for ex in load_dataset(name).examples[: args.limit]:
            yield f"{name}-{ex.id}", ex.question, ex.chunks, args.shares


def dump(args: argparse.Namespace) -> None:
    pipelines = {name: Pipeline.preset(name).warm_up() for name in args.pipelines}
    cases = list(scaling_cases(args)) if args.sizes else []
    if args.limit:
        cases += list(dataset_cases(args))
    with open(args.out, "w", encoding="utf-8") as fh:
        for case_id, question, chunks, budgets in cases:
            for name, pipe in pipelines.items():
                for budget in budgets:
                    result = pipe.run(question, chunks, budget=budget)
                    row = {"case": case_id, "pipeline": name, "budget_arg": budget, **record(result)}
                    fh.write(json.dumps(row, sort_keys=True, default=repr) + "\n")
    print(f"{len(cases)} cases x {len(pipelines)} pipelines written to {args.out}")


def diff(a: Path, b: Path, show: int = 5) -> int:
    rows_a = a.read_text(encoding="utf-8").splitlines()
    rows_b = b.read_text(encoding="utf-8").splitlines()
    if len(rows_a) != len(rows_b):
        print(f"different numbers of rows: {len(rows_a)} vs {len(rows_b)}")
        return 1
    bad = [k for k, (x, y) in enumerate(zip(rows_a, rows_b)) if x != y]
    for k in bad[:show]:
        x, y = json.loads(rows_a[k]), json.loads(rows_b[k])
        fields = sorted(f for f in set(x) | set(y) if x.get(f) != y.get(f))
        print(f"row {k} ({x['case']} {x['pipeline']} @ {x['budget_arg']}) differs in {fields}")
    print(f"{len(rows_a) - len(bad)} of {len(rows_a)} rows identical")
    return 1 if bad else 0


def changes(a: Path, b: Path) -> None:
    """Print, per preset and budget, how many runs' text differs between dumps ``a`` and ``b``, and the
    answer recall (:func:`evals.metrics.answer_recall`) of the changed bundled-set runs before and after."""
    from collections import Counter, defaultdict

    from evals.metrics import answer_recall

    answers: dict[str, Sequence[str]] = {}
    rows = list(zip(map(json.loads, a.read_text(encoding="utf-8").splitlines()), map(json.loads, b.read_text(encoding="utf-8").splitlines())))
    for name in (s for s in SETS if any(x["case"].startswith(s + "-") for x, _ in rows)):
        answers.update({f"{name}-{ex.id}": ex.answers for ex in load_dataset(name).examples})
    total, changed, recall = Counter(), Counter(), defaultdict(lambda: [0, 0, 0])
    for x, y in rows:
        key = (x["pipeline"], x["budget_arg"])
        total[key] += 1
        if x["text"] == y["text"]:
            continue
        changed[key] += 1
        before = answer_recall(x["text"], answers[x["case"]]) if x["case"] in answers else None
        if before is not None:
            r = recall[key]
            r[0], r[1], r[2] = r[0] + 1, r[1] + before, r[2] + answer_recall(y["text"], answers[x["case"]])
    print(f"{sum(changed.values())} of {len(rows)} runs' text differs")
    for key in sorted(changed, key=str):
        n, before, after = recall.get(key, (0, 0, 0))
        print(f"{key[0]} @ {key[1]}: {changed[key]} of {total[key]} changed; answer recall on the {n} that count: {before} -> {after}")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--pipelines", type=lambda s: [p for p in s.split(",") if p], default=["default"])
    d.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[100, 400, 1000])
    d.add_argument("--n", type=int, default=5)
    d.add_argument("--budget", type=int, default=500)
    d.add_argument("--extra-budgets", type=lambda s: [int(x) for x in s.split(",") if x], default=[150, 2000])
    d.add_argument("--near-copies", type=int, default=0, help="add a near-copy of every N-th passage (0: none)")
    d.add_argument("--sets", type=lambda s: [x for x in s.split(",") if x], default=list(SETS))
    d.add_argument("--limit", type=int, default=0, help="questions per bundled set (0: none)")
    d.add_argument("--shares", type=lambda s: [float(x) for x in s.split(",") if x], default=[0.125, 0.25, 0.5])
    c = sub.add_parser("diff")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    ch = sub.add_parser("changes", help="runs whose text differs, per preset and budget, with answer recall before and after")
    ch.add_argument("a", type=Path)
    ch.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "dump":
        dump(args)
    elif args.cmd == "changes":
        changes(args.a, args.b)
    else:
        raise SystemExit(diff(args.a, args.b))


if __name__ == "__main__":
    main()

"""Each arm of an eval run minus the best baseline at each budget, paired over the same questions.

    python bench/paired.py runs/bench/hotpotqa --arms default,quality
    python bench/paired.py runs/ret/nq --arms default --base runs/base/nq --also default-noretr

Reads ``examples.jsonl`` (one row per example, pipeline and budget; ``ragtrim eval`` writes
it). For every budget and arm, the best baseline is the one with the highest mean answer
recall on the arm's questions; the difference and its 95 % interval come from
:func:`evals.bootstrap.paired_bootstrap` (1,000 resamples) over the questions both have.
``--base`` takes the baselines' rows from another run of the same questions; ``--also``
adds comparisons against named arms. Prints a Markdown table; ``--json`` writes it too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.bootstrap import paired_bootstrap  # noqa: E402
from evals.records import is_reference  # noqa: E402

BASELINES = ("truncate", "bm25-topk", "bm25-pack", "dense-topk", "sentence-dense")


def load_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def recall_rows(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, float], dict[str, int]]:
    """``{(pipeline, budget): {example id: answer recall}}`` from per-example rows (countable examples only)."""
    out: dict[tuple[str, float], dict[str, int]] = {}
    for r in rows:
        if is_reference(r) or r["answer_recall"] is None:  # the full context: written 1.0 now, null before
            continue
        out.setdefault((r["pipeline"], float(r["budget"])), {})[r["id"]] = int(r["answer_recall"])
    return out


def _mean_on(own: dict[str, int], ref: dict[str, int]) -> float:
    ids = [i for i in own if i in ref]
    return sum(ref[i] for i in ids) / max(1, len(ids))


def paired_table(mine: dict, base: dict, arms: Sequence[str], baselines: Sequence[str], also: Sequence[str] = (),
                 budgets: Sequence[float] | None = None) -> dict[str, Any]:
    """Each arm minus the best baseline at each budget (best by mean recall on the same questions), paired.

    ``also`` adds comparisons against named reference arms (e.g. ``default``); ``budgets``
    defaults to every budget the arms ran at.
    """
    if budgets is None:
        budgets = sorted({b for (a, b) in mine if a in arms})
    out: dict[str, Any] = {}
    for budget in budgets:
        present = [b for b in baselines if (b, budget) in base]
        for arm in arms:
            own = mine[(arm, budget)]
            refs = [r for r in also if (r, budget) in base]
            if present:
                best = max(present, key=lambda b: (_mean_on(own, base[(b, budget)]), b))
                refs = [best, *refs]
            for i, ref_name in enumerate(refs):
                ref = base[(ref_name, budget)]
                ids = sorted(x for x in own if x in ref)
                d = paired_bootstrap([ref[x] for x in ids], [own[x] for x in ids])
                label = "best baseline" if present and i == 0 else ref_name
                out[f"{arm}@{budget} vs {label}"] = {
                    "arm": arm, "budget": budget, "recall": sum(own[x] for x in ids) / max(1, len(ids)),
                    "versus": ref_name, "versus_recall": sum(ref[x] for x in ids) / max(1, len(ids)), **d.to_dict()}
    return out


def paired_markdown(table: dict[str, Any]) -> str:
    lines = ["| arm | budget | recall | versus | its recall | Δ points [95% CI] | n |", "|---|---|---|---|---|---|---|"]
    for v in table.values():
        lo, hi = v["ci95"]
        budget = f"{v['budget']:.1%}" if v["budget"] <= 1 else f"{v['budget']:g} tokens"
        lines.append(f"| {v['arm']} | {budget} | {v['recall']:.3f} | {v['versus']} | {v['versus_recall']:.3f} | "
                     f"{100 * v['delta']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {v['n']} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="an eval output folder (with examples.jsonl)")
    ap.add_argument("--arms", required=True, help="comma-separated pipelines to compare")
    ap.add_argument("--base", type=Path, default=None, help="take the baselines' rows from this run (default: RUN)")
    ap.add_argument("--baselines", default=",".join(BASELINES))
    ap.add_argument("--also", default="", help="comma-separated arms to compare against as well")
    ap.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)
    mine = recall_rows(load_rows(args.run / "examples.jsonl"))
    base = recall_rows(load_rows(args.base / "examples.jsonl")) if args.base else mine
    if args.base:
        base = {**mine, **base}
    arms = [a for a in args.arms.split(",") if a]
    missing = [a for a in arms if not any(k[0] == a for k in mine)]
    if missing:
        raise SystemExit(f"paired: no rows for {missing} in {args.run}; pipelines there: {sorted({k[0] for k in mine})}")
    table = paired_table(mine, base, arms, [b for b in args.baselines.split(",") if b], [a for a in args.also.split(",") if a])
    print(paired_markdown(table), end="")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

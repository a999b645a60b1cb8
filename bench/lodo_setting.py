"""Choose one preset setting by leave-one-dataset-out, from ``bench/stages.py`` runs.

    for v in 0 0.25 0.5 1.0; do for d in hotpotqa 2wiki squad2-pools nq-multidoc \\
        runs/fit-extra/nq-extra.jsonl runs/fit-extra/squad-extra.jsonl; do
      python bench/stages.py --data $d --pipelines default --set compress-sentences.chunk_dense=$v --label cd$v --out runs/cd.jsonl
    done; done
    python bench/lodo_setting.py runs/cd.jsonl --incumbent cd0.25

Groups weigh the same: ``hotpotqa``, ``2wiki``, ``squad`` (squad2-pools and the fit-only
squad-extra, averaged) and ``nq`` (nq-multidoc and nq-extra). A value's score on some groups
is the mean over them of its mean answer recall at the run's budgets. For each bundled set H
the value is chosen on the other groups (H's group, its fit-only set included, left out) and
H is reported at that value; the value to ship is chosen on all groups. Ties within 0.001 go
to ``--incumbent``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

GROUPS = {"hotpotqa": ("hotpotqa",), "2wiki": ("2wiki",), "squad": ("squad2-pools", "squad-extra"),
          "nq": ("nq-multidoc", "nq-extra")}
TIE = 0.001


def set_name(data: str) -> str:
    return Path(data).name.removesuffix(".gz").removesuffix(".jsonl")


def load(path: Path) -> dict[str, dict[str, list[float]]]:
    """``{label: {set: [answer recall per budget]}}`` (the last run of a label and set wins)."""
    out: dict[str, dict[str, list[float]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r: dict[str, Any] = json.loads(line)
                out.setdefault(r["pipeline"], {})[set_name(r["data"])] = [row["answer_recall"] for row in r["rows"]]
    return out


def score(runs: dict[str, list[float]], groups: list[str]) -> float:
    per_group = []
    for g in groups:
        sets = [sum(runs[s]) / len(runs[s]) for s in GROUPS[g]]
        per_group.append(sum(sets) / len(sets))
    return sum(per_group) / len(per_group)


def choose(results: dict[str, dict[str, list[float]]], groups: list[str], incumbent: str | None) -> str:
    scores = {label: score(runs, groups) for label, runs in results.items()}
    best = max(scores.values())
    if incumbent in scores and scores[incumbent] >= best - TIE:
        return incumbent
    return max(scores, key=lambda k: scores[k])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--incumbent", default=None, help="the label that wins ties (today's setting)")
    args = ap.parse_args(argv)
    results = load(args.runs)
    needed = {s for sets in GROUPS.values() for s in sets}
    for label, runs in results.items():
        missing = needed - set(runs)
        if missing:
            sys.exit(f"{label} has no run on {sorted(missing)}: run bench/stages.py on every set first")
    print("| value | " + " | ".join(GROUPS) + " | all groups |")
    print("|---|" + "---|" * (len(GROUPS) + 1))
    for label, runs in results.items():
        print(f"| {label} | " + " | ".join(f"{score(runs, [g]):.4f}" for g in GROUPS) + f" | {score(runs, list(GROUPS)):.4f} |")
    print()
    print("| held out | chosen without it | its answer recall per budget |")
    print("|---|---|---|")
    for g, sets in GROUPS.items():
        label = choose(results, [x for x in GROUPS if x != g], args.incumbent)
        print(f"| {sets[0]} | {label} | {' / '.join(f'{v:.3f}' for v in results[label][sets[0]])} |")
    print(f"\nto ship (chosen on all groups): {choose(results, list(GROUPS), args.incumbent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

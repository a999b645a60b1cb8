"""How much answer recall owes to citation markers: recompute it on stored runs with the markers taken out.

    python bench/marker_artefact.py RUN_DIR [RUN_DIR ...]

Answer recall is DESIGN.md's substring test on the rendered context, markers included, so a short
numeric answer (``2``) is found in ``[2] ...``. For each run folder (``ragtrim eval --out``) this
prints the arms whose recall would change with the ``[n]`` markers at the start of each block
removed, and by how many questions. Nothing is re-run; only ``examples.jsonl`` and the dataset are read.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evals.datasets import load_dataset  # noqa: E402
from evals.metrics import answer_recall  # noqa: E402

MARKER = re.compile(r"(^|\n\n)\[\d+\][ \n]")


def changed_arms(run_dir: Path) -> list[tuple[str, object, int, float, float]]:
    """``(pipeline, budget, questions, recall, recall without markers)`` for each arm where they differ."""
    rows = [json.loads(line) for line in (run_dir / "examples.jsonl").open()]
    answers = {e.id: e.answers for e in load_dataset(json.loads((run_dir / "results.json").read_text())["dataset"]).examples}
    totals: dict[tuple[str, object], list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for r in rows:
        if r.get("answer_recall") is None:
            continue
        t = totals[(r["pipeline"], r["budget"])]
        t[0] += 1
        t[1] += r["answer_recall"]
        t[2] += answer_recall(MARKER.sub(r"\1", r["context"]), answers[r["id"]])
    return [(p, b, x - y, x / n, y / n) for (p, b), (n, x, y) in sorted(totals.items(), key=str) if x != y]


def main(argv: list[str]) -> None:
    for run in argv:
        print(run)
        for pipeline, budget, diff, before, after in changed_arms(Path(run)):
            print(f"  {pipeline:15s} {budget}  {before:.3f} -> {after:.3f}  ({diff} questions)")


if __name__ == "__main__":
    main(sys.argv[1:])

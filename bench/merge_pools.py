"""Bigger candidate pools: each question's passages plus another question's (a stand-in for "20 paragraphs, 2-4 hops").

    python bench/merge_pools.py 2wiki              # writes runs/merged/2wiki-20.jsonl
    python bench/merge_pools.py hotpotqa --seed 3  # another pairing

Issue 11's unseen multi-hop set has 20 paragraphs per question and 2-4 hops; the bundled
multi-hop sets have 10 (2Wiki's bridge-comparison questions need 4). This doubles each pool
with the passages of another question of the same set (a seeded derangement), leaving out any
added passage that holds one of the question's answers or repeats one of its titles, and
shuffles the order (seeded). Gold marks and answers are the question's own. A measurement
aid only: the sets are the bundled ones, so numbers on them are not held out from anything
the bundled sets chose.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "datasets"))

from _common import validate_rows, write_jsonl  # noqa: E402

from evals.datasets import load_dataset  # noqa: E402
from evals.metrics import contains_answer  # noqa: E402


def merged(data: str, seed: int = 0) -> list[dict]:
    """Rows of ``data`` with another question's passages added (see the module doc)."""
    rows = [e.to_dict() for e in load_dataset(data).examples]
    rng = random.Random(seed)
    partner = list(range(len(rows)))
    while any(i == p for i, p in enumerate(partner)):
        rng.shuffle(partner)
    out = []
    for i, row in enumerate(rows):
        titles = {c.get("title") for c in row["chunks"]}
        extra = [
            {**{k: v for k, v in c.items() if k != "gold_spans"}, "id": f"{row['id']}+{c['id']}", "gold": False}
            for c in rows[partner[i]]["chunks"]
            if c.get("title") not in titles and not contains_answer(f"{c.get('title') or ''}\n{c['text']}", row["answers"])
        ]
        chunks = row["chunks"] + extra
        rng.shuffle(chunks)
        out.append({**row, "id": f"{row['id']}-m", "chunks": chunks, "meta": {**row.get("meta", {}), "merged_with": rows[partner[i]]["id"]}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = merged(args.data, args.seed)
    out = args.out or ROOT / "runs" / "merged" / f"{Path(args.data).stem}-20.jsonl"
    validate_rows(out.name, rows)
    write_jsonl(out, rows)
    sizes = sorted(len(r["chunks"]) for r in rows)
    print(f"wrote {out}: {len(rows)} questions, {sizes[len(sizes) // 2]} passages (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

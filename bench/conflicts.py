"""Stress set: a wrong-fact copy of the passage that holds the answer, placed before it.

Real retrieval results hold near-copies that disagree: a syndicated story before and after
an update, an edited or vandalised page, a counterfactual passage in a robustness test. For
each question this takes the chunk that holds a gold answer (a gold chunk if one does),
copies it with every gold answer replaced by another question's answer, and inserts the copy
just before it (``--place before``: a deduper that keeps the earlier of two equal copies
keeps the wrong one) or just after it (``--place after``). Questions whose answer no chunk
holds verbatim, yes/no and unanswerable ones are left out; the count is printed.

    python bench/conflicts.py squad2-pools                 # writes runs/conflicts/squad2-pools-wrong-before.jsonl
    python bench/conflicts.py runs/fit-extra/nq-extra.jsonl --place after
    ragtrim eval --data runs/conflicts/squad2-pools-wrong-before.jsonl --out runs/conflicts/squad2-pools \\
        --pipelines default,quality,truncate,bm25-pack,dense-topk,sentence-dense \\
        --config bench/configs/default-dropdups.json --budgets 0.125,0.25,0.5,1.0

Deterministic (seeded); the wrong answer never contains a gold one or is contained by one.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evals.metrics import contains_answer, counts_for_recall, normalize  # noqa: E402

SEED = 11
OUT = ROOT / "runs" / "conflicts"


def _source(data: str) -> tuple[str, Path]:
    path = Path(data)
    if path.suffix == ".jsonl" and path.exists():
        return path.stem, path
    bundled = ROOT / "datasets" / f"{data}.jsonl"
    if not bundled.exists():
        raise SystemExit(f"no dataset {data!r}: pass a bundled name (datasets/*.jsonl) or a .jsonl path")
    return data, bundled


def _holder(row: dict[str, Any]) -> int | None:
    """Index of the chunk that holds a gold answer verbatim, a gold chunk first."""
    chunks = row["chunks"]
    order = sorted(range(len(chunks)), key=lambda i: (not chunks[i].get("gold"), i))
    for i in order:
        if any(a and re.search(re.escape(a), chunks[i]["text"], re.IGNORECASE) for a in row["answers"]):
            return i
    return None


def _wrong_answer(answers: list[str], pool: list[str], rng: random.Random) -> str | None:
    gold = [normalize(a) for a in answers]
    for _ in range(50):
        cand = rng.choice(pool)
        n = normalize(cand)
        if n and n not in ("yes", "no") and not any(g in n or n in g for g in gold):
            return cand
    return None


def wrong_copies(rows: list[dict[str, Any]], place: str, seed: int = SEED) -> list[dict[str, Any]]:
    """The stress rows (see the module docstring); the input rows are not changed."""
    rng = random.Random(seed)
    pool = [a for r in rows if counts_for_recall(r["answers"]) for a in r["answers"][:1]]
    out = []
    for row in rows:
        if not counts_for_recall(row["answers"]):
            continue
        i = _holder(row)
        wrong = _wrong_answer(row["answers"], pool, rng)
        if i is None or wrong is None:
            continue
        text = row["chunks"][i]["text"]
        for a in sorted((a for a in row["answers"] if a), key=len, reverse=True):
            text = re.sub(re.escape(a), lambda _m: wrong, text, flags=re.IGNORECASE)
        if contains_answer(text, row["answers"]):
            continue  # an alias we could not replace: the copy would not be wrong
        fake = {k: v for k, v in row["chunks"][i].items() if k != "gold_spans"}  # not evidence: no gold spans
        fake.update(id=f"{fake['id']}-wrong", text=text, gold=False)
        chunks = list(row["chunks"])
        chunks.insert(i if place == "before" else i + 1, fake)
        meta = {**row.get("meta", {}), "stress": f"wrong-fact copy {place} the answer's passage", "wrong_answer": wrong}
        out.append({**row, "id": f"{row['id']}-wrong", "chunks": chunks, "meta": meta})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="a bundled set name or a .jsonl file in the common schema")
    ap.add_argument("--place", choices=("before", "after"), default="before")
    ap.add_argument("--out", type=Path, default=None, help="output file (default runs/conflicts/NAME-wrong-PLACE.jsonl)")
    args = ap.parse_args()
    name, path = _source(args.data)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    stressed = wrong_copies(rows, args.place)
    out = args.out or OUT / f"{name}-wrong-{args.place}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in stressed), encoding="utf-8")
    print(f"{out}: {len(stressed)} of {len(rows)} questions (the others have no countable answer held verbatim)")


if __name__ == "__main__":
    main()

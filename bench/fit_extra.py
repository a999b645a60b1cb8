"""Fit-only examples from the raw data that are NOT in the bundled eval sets (more training data, no eval data).

    python bench/fit_extra.py          # writes runs/fit-extra/{nq-extra,squad-extra}.jsonl (deterministic)

- ``nq-extra``: 500 NQ-Open questions of the Lost-in-the-Middle oracle file whose line is
  not one of nq-multidoc's 500, built the way nq-multidoc is (19 BM25-nearest other gold
  passages without a normalized answer, the gold passage at a cycled position).
- ``squad-extra``: 500 answerable SQuAD 2.0 questions (CS224N half of dev) whose id is not
  one of squad2-pools' 500, built the way squad2-pools is (own paragraph plus the 9
  BM25-nearest paragraphs of the same article, at a seeded position).

HotpotQA and 2Wiki have no raw questions beyond the bundled ones. In the
leave-one-dataset-out protocol an extra set belongs to its source's group: when
nq-multidoc is held out, nq-extra is left out too (and squad-extra with squad2-pools).
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "datasets"))

from _common import bm25_rank_with, bm25_tokens, unique  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402

from evals.datasets import load_dataset  # noqa: E402
from evals.metrics import contains_answer  # noqa: E402

RAW = ROOT.parent / "shared" / "datasets"  # as datasets/build.py: ../shared/datasets
SEED = 7  # another seed than the bundled sets' builds
N = 500
GROUP = {"nq-extra": "nq-multidoc", "squad-extra": "squad2-pools"}
OUT = ROOT / "runs" / "fit-extra"


def nq_extra(raw: Path, taken_lines: set[int]) -> list[dict[str, Any]]:
    with gzip.open(raw / "lost_in_the_middle" / "nq-open-oracle.jsonl.gz", "rt", encoding="utf-8") as f:
        source = [json.loads(line) for line in f]
    passages = [next(c for c in ex["ctxs"] if c.get("isgold")) for ex in source]
    text = lambda p: f"{p['title']}\n{p['text']}"  # noqa: E731
    index = BM25Okapi([bm25_tokens(text(p)) or ["<empty>"] for p in passages])
    free = [i for i in range(len(source)) if i + 1 not in taken_lines]
    picked = sorted(random.Random(SEED).sample(free, N))
    rows = []
    for n, i in enumerate(picked):
        answers = unique(source[i]["answers"])
        seen = {passages[i]["text"].strip()}
        distractors: list[int] = []
        for j in bm25_rank_with(index, source[i]["question"], len(passages)):
            key = passages[j]["text"].strip()
            if j == i or key in seen or contains_answer(text(passages[j]), answers):
                continue
            seen.add(key)
            distractors.append(j)
            if len(distractors) == 19:
                break
        position = (0, 4, 9, 14, 19)[n % 5]
        order = distractors[:position] + [i] + distractors[position:]
        qid = f"nqx-{i:04d}"
        chunks = [{"id": f"{qid}-{k}", "title": passages[j]["title"], "text": passages[j]["text"], "gold": j == i}
                  for k, j in enumerate(order)]
        rows.append({"id": qid, "question": source[i]["question"], "answers": answers, "chunks": chunks,
                     "meta": {"source": "nq-open", "line": i + 1, "fit_only": True}})
    return rows


def squad_extra(raw: Path, taken_ids: set[str]) -> list[dict[str, Any]]:
    with open(raw / "squad_v2" / "dev-v2.0.cs224n_half.json", encoding="utf-8") as f:
        data = json.load(f)["data"]
    questions = [(a, p, qa) for a, art in enumerate(data) for p, para in enumerate(art["paragraphs"]) for qa in para["qas"]
                 if not qa["is_impossible"] and qa["id"] not in taken_ids]
    rng = random.Random(SEED)
    picked = sorted(rng.sample(range(len(questions)), N))
    indexes: dict[int, BM25Okapi] = {}
    rows = []
    for k in picked:
        a, p, qa = questions[k]
        paragraphs = [para["context"] for para in data[a]["paragraphs"]]
        if a not in indexes:
            indexes[a] = BM25Okapi([bm25_tokens(t) or ["<empty>"] for t in paragraphs])
        distractors = [i for i in bm25_rank_with(indexes[a], qa["question"], len(paragraphs)) if i != p][:9]
        position = rng.randrange(len(distractors) + 1)
        order = distractors[:position] + [p] + distractors[position:]
        title = data[a]["title"].replace("_", " ")
        chunks = [{"id": f"{qa['id']}-{j}", "title": title, "text": paragraphs[i], "gold": i == p} for j, i in enumerate(order)]
        rows.append({"id": f"sqx-{qa['id']}", "question": qa["question"], "answers": unique(x["text"] for x in qa["answers"]),
                     "chunks": chunks, "meta": {"source": "squad_v2", "fit_only": True}})
    return rows


def build(raw: Path = RAW, out: Path = OUT) -> dict[str, Path]:
    """Write both extra sets; check that no question of a bundled eval set is among them."""
    needed = [raw / "lost_in_the_middle" / "nq-open-oracle.jsonl.gz", raw / "squad_v2" / "dev-v2.0.cs224n_half.json"]
    missing = [str(f) for f in needed if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"the fit-only extras are built from raw data that is not here: {', '.join(missing)}; "
                                "put the raw data in ../shared/datasets (see datasets/README.md)")
    nq_lines = {int(e.meta["line"]) for e in load_dataset("nq-multidoc").examples}
    squad_ids = {e.id for e in load_dataset("squad2-pools").examples}
    source_ids = _squad_source_ids(raw, squad_ids)
    sets = {"nq-extra": nq_extra(raw, nq_lines), "squad-extra": squad_extra(raw, source_ids)}
    assert not {r["meta"]["line"] for r in sets["nq-extra"]} & nq_lines
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in sets.items():
        paths[name] = out / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return paths


def _squad_source_ids(raw: Path, bundled_ids: set[str]) -> set[str]:
    """SQuAD question ids behind squad2-pools (its example ids are the source ids)."""
    with open(raw / "squad_v2" / "dev-v2.0.cs224n_half.json", encoding="utf-8") as f:
        data = json.load(f)["data"]
    all_ids = {qa["id"] for art in data for para in art["paragraphs"] for qa in para["qas"]}
    missing = bundled_ids - all_ids
    if missing:
        raise RuntimeError(f"{len(missing)} squad2-pools ids are not SQuAD ids; cannot exclude them safely")
    return bundled_ids


def main(argv: Sequence[str] | None = None) -> int:
    for name, path in build().items():
        print(f"wrote {path} ({GROUP[name]} group)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

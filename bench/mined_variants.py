"""nq-multidoc's 500 questions rebuilt with distractors mined another way: BM25, MiniLM or both.

    python bench/mined_variants.py                      # writes runs/mined/nq-{bm25,dense,hybrid}.jsonl
    python bench/mined_variants.py --raw /path/to/raw   # raw data elsewhere (default: ../shared/datasets)

The bundled nq-multidoc gives each question its gold passage and the 19 other passages BM25
ranks highest against the question (``datasets/build_nq_multidoc.py``). Distractors chosen by
BM25 are the ones a lexical scorer finds hardest to tell from the gold passage, and so are
adversarial to BM25 and, less so, to the static model (a bag of words); a dense ranker such as
``dense-topk`` is not what chose them. Real pools come from the user's retriever, which is
often dense or hybrid. This rebuilds the same questions, gold passages and gold positions with
the distractors mined by:

- ``bm25``: the bundled ranking (the file must equal ``datasets/nq-multidoc.jsonl``; checked);
- ``dense``: cosine of the full-precision all-MiniLM-L6-v2 (the model ``dense-topk`` and
  ``quality`` use, so this variant is adversarial to them in the same way);
- ``hybrid``: reciprocal rank fusion (k = 60, Cormack et al. 2009) of the two rankings, as a
  hybrid retriever would mine them.

The passages of a question are any of the 2,655 oracle passages, so all three variants draw
from the same pool. A measurement aid: no setting of any preset was chosen on these files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "datasets"))

import build_nq_multidoc as nq  # noqa: E402
from _common import validate_rows, write_jsonl  # noqa: E402

RRF_K = 60


def dense_ranker(passages: Sequence[Mapping[str, Any]], questions: Sequence[str]) -> Callable[[str], list[int]]:
    """All passages ranked by MiniLM cosine against a question (ties by index)."""
    from optimizer.embeddings import MiniLMEmbedder

    model = MiniLMEmbedder()
    docs = model.encode([nq.passage_text(p["title"], p["text"]) for p in passages])
    qvecs = dict(zip(questions, model.encode(list(questions))))
    order = np.arange(len(passages))

    def rank(question: str) -> list[int]:
        scores = np.round(docs @ qvecs[question], 6)
        return [int(i) for i in np.lexsort((order, -scores))]

    return rank


def fused(*rankers: Callable[[str], list[int]], k: int = RRF_K) -> Callable[[str], list[int]]:
    """Reciprocal rank fusion of full rankings: sum of 1 / (k + rank), ties by index.

    >>> fused(lambda q: [0, 1, 2], lambda q: [2, 1, 0])("q")  # 1/61 + 1/63 beats 2/62
    [0, 2, 1]
    """

    def rank(question: str) -> list[int]:
        score: dict[int, float] = {}
        for r in rankers:
            for pos, i in enumerate(r(question)):
                score[i] = score.get(i, 0.0) + 1.0 / (k + pos + 1)
        return sorted(score, key=lambda i: (-round(score[i], 12), i))

    return rank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "mined")
    args = ap.parse_args()
    source, passages = nq.load_source(args.raw)
    bm25 = nq.bm25_ranker(passages)
    dense = dense_ranker(passages, sorted({ex["question"] for ex in source}))
    variants = {"bm25": bm25, "dense": dense, "hybrid": fused(bm25, dense)}
    bundled = (ROOT / "datasets" / "nq-multidoc.jsonl").read_bytes()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rank in variants.items():
        rows = nq.assemble(source, passages, rank)
        validate_rows(f"nq-{name}", rows)
        path = args.out / f"nq-{name}.jsonl"
        write_jsonl(path, rows)
        if name == "bm25" and path.read_bytes() != bundled:
            raise SystemExit(f"{path} differs from datasets/nq-multidoc.jsonl: the bundled build changed")
        print(f"{path}: {len(rows)} questions; distractors shared with bm25: {_overlap(rows, nq.assemble(source, passages, bm25)):.1%}")


def _overlap(rows: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]]) -> float:
    """Share of distractor passages (by text) that the BM25-mined set also gives the question."""
    same = total = 0
    for r, b in zip(rows, base):
        mine = {c["text"] for c in r["chunks"] if not c["gold"]}
        theirs = {c["text"] for c in b["chunks"] if not c["gold"]}
        same += len(mine & theirs)
        total += len(mine)
    return same / max(total, 1)


if __name__ == "__main__":
    main()

"""Chunked documents: each passage cut into two chunks of one document (same title), as a retriever over split documents returns them.

    python bench/split_pools.py hotpotqa          # writes runs/split/hotpotqa-split.jsonl
    python bench/split_pools.py 2wiki --parts 3

Real retrievers index documents cut into chunks, so several retrieved chunks often share a
title and only the first holds the document's opening sentence. The bundled sets give one
passage per title. This cuts every passage of ``data`` at the sentence boundaries nearest to
equal thirds/halves (``--parts``), keeps the title on every piece, marks every piece of a gold
passage gold, and keeps the order (piece ``k`` of a passage right after piece ``k-1``).
A measurement aid for robustness: the questions and texts are the bundled ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "datasets"))
sys.path.insert(0, str(ROOT / "bench"))

from variants import save_variant  # noqa: E402

from evals.datasets import load_dataset  # noqa: E402
from optimizer.sentences import split_sentences  # noqa: E402


def cut(text: str, parts: int) -> list[str]:
    """``text`` in at most ``parts`` pieces of whole sentences, cut nearest to equal character shares.

    >>> cut("One. Two. Three. Four.", 2)
    ['One. Two.', 'Three. Four.']
    >>> cut("Only one sentence.", 2)
    ['Only one sentence.']
    """
    spans = split_sentences(text)
    if len(spans) < 2 or parts < 2:
        return [text.strip()]
    ends = [e for _, e in spans[:-1]]
    cuts: list[int] = []
    for k in range(1, parts):
        target = len(text) * k / parts
        best = min((i for i in range(len(ends)) if not cuts or i > cuts[-1]), key=lambda i: abs(ends[i] - target), default=None)
        if best is not None:
            cuts.append(best)
    bounds = [0] + [spans[i + 1][0] for i in cuts] + [len(text)]
    return [text[a:b].strip() for a, b in zip(bounds, bounds[1:]) if text[a:b].strip()]


def split_rows(data: str, parts: int = 2) -> list[dict]:
    out = []
    for e in load_dataset(data).examples:
        gold = set(e.gold_ids)
        chunks = [
            {"id": f"{c.id}#{k}", "title": c.title, "text": piece, "gold": c.id in gold}
            for c in e.chunks
            for k, piece in enumerate(cut(c.text, parts))
        ]
        out.append({"id": f"{e.id}-split", "question": e.question, "answers": list(e.answers), "chunks": chunks,
                    "meta": {**dict(e.meta or {}), "split_parts": parts}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--parts", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = split_rows(args.data, args.parts)
    out = args.out or ROOT / "runs" / "split" / f"{Path(args.data).stem}-split{args.parts}.jsonl"
    print(save_variant(rows, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

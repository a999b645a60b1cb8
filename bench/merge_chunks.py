"""Long chunks: every ``--per`` consecutive passages of a question merged into one untitled chunk.

    python bench/merge_chunks.py hotpotqa            # writes runs/long/hotpotqa-x4.jsonl
    python bench/merge_chunks.py nq-multidoc --per 5

Retrievers built with a document splitter hand over chunks of 256-1,024 tokens (LlamaIndex's
``SentenceSplitter`` defaults to 1,024), often text that ran together in the source: a PDF page,
a web page with several sections. The bundled sets give one short titled passage per chunk. This
joins each run of ``--per`` passages, in the given order, into one chunk with no title; each
passage keeps its title as a line of the text (``Title\\ntext``, passages separated by a blank
line), so nothing the full context held is lost. A merged chunk is gold when any of its passages
is. A measurement aid for robustness: the questions and texts are the bundled ones, so numbers
on these files are not held out from anything the bundled sets chose.
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


def passage_block(title: str | None, text: str) -> str:
    """One passage as a block of a merged chunk: its title on a line of its own, then its text.

    >>> passage_block("Paris", "Paris is big.")
    'Paris\\nParis is big.'
    >>> passage_block(None, "Untitled.")
    'Untitled.'
    """
    return f"{title}\n{text}" if title else text


def merge_rows(data: str, per: int = 4) -> list[dict]:
    if per < 1:
        raise ValueError(f"--per must be at least 1, got {per}")
    out = []
    for e in load_dataset(data).examples:
        gold = set(e.gold_ids)
        chunks = []
        for k in range(0, len(e.chunks), per):
            group = e.chunks[k : k + per]
            chunks.append({
                "id": "+".join(c.id for c in group),
                "text": "\n\n".join(passage_block(c.title, c.text) for c in group),
                "gold": any(c.id in gold for c in group),
            })
        out.append({"id": f"{e.id}-x{per}", "question": e.question, "answers": list(e.answers), "chunks": chunks,
                    "meta": {**dict(e.meta or {}), "merged_per": per}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--per", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = merge_rows(args.data, args.per)
    out = args.out or ROOT / "runs" / "long" / f"{Path(args.data).stem}-x{args.per}.jsonl"
    print(save_variant(rows, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

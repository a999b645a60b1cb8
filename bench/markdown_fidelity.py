"""Does a trimmed Markdown context still read as Markdown? Fences, lines and indentation, measured.

    python bench/markdown_fidelity.py --pipelines default,quality --out runs/md.jsonl
    PYTHONPATH=/path/to/old-checkout python /path/to/old-checkout/bench/markdown_fidelity.py ...

The documents are the Markdown READMEs (``Description-Content-Type: text/markdown``, with at
least one fenced code block) of the packages installed next to ragtrim: real technical prose
with code, read from the environment at run time (nothing is shipped). Each README is cut into
sections by LlamaIndex's ``MarkdownNodeParser`` (a chunk per section, titled by the package's
file name, as the LlamaIndex wrapper titles file nodes); with ``--split N`` the sections are cut
further by ``SentenceSplitter(chunk_size=N)``, which cuts inside code blocks too. The queries are
the headings of the sections that hold code (``Installation``, ``Usage``, ...), up to
``--per-doc`` per README; the first ``--chunks`` chunks of the README are the retrieved chunks.

Per rendered context it counts, over the kept chunks whose original text has balanced fences:
- **broken fences**: a kept chunk whose fence lines no longer pair up (an opening fence without
  its closing one turns everything after it into code);
- **merged lines**: of the gaps between kept pieces that hold a line break in the original,
  those the kept text joins without one (two lines run together: a heading or a list item lost);
- **lost indentation**: kept code lines (inside a fence) whose leading white space is not the
  original line's (the kept text is read line by line: a piece that starts mid-line has none);
and the tokens used. No answer key is involved: these are properties of the output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# this checkout's code, not whichever one the environment has installed (a worktree of an old commit runs its own)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optimizer import Chunk, Pipeline  # noqa: E402

_FENCE_LINE = re.compile(r"^[ \t]{0,3}(```|~~~)")


def readmes(limit: int) -> Iterator[tuple[str, str]]:
    """``(package, markdown)`` of installed packages whose long description is Markdown with a fenced block."""
    import importlib.metadata as md

    seen: set[str] = set()
    found = []
    for dist in md.distributions():
        name = (dist.metadata.get("Name") or "").lower()
        if not name or name in seen:
            continue
        seen.add(name)
        if "markdown" not in (dist.metadata.get("Description-Content-Type") or ""):
            continue
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""  # type: ignore[attr-defined]
        if "```" in body or "~~~" in body:
            found.append((name, body))
    yield from sorted(found)[:limit]


def chunks_of(name: str, text: str, split: int, keep: int) -> list[Chunk]:
    from llama_index.core import Document
    from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

    nodes = MarkdownNodeParser().get_nodes_from_documents([Document(text=text)])
    if split:
        nodes = SentenceSplitter(chunk_size=split, chunk_overlap=0).get_nodes_from_documents(
            [Document(text=n.text) for n in nodes])
    title = f"{name}/README.md"
    return [Chunk(id=f"{name}-{k}", text=n.text, title=title) for k, n in enumerate(nodes) if n.text.strip()][:keep]


def queries_of(chunks: Sequence[Chunk], per_doc: int) -> list[str]:
    """The headings (``#`` lines) of chunks that hold a fence, in order, at most ``per_doc``."""
    out: list[str] = []
    for c in chunks:
        if "```" not in c.text and "~~~" not in c.text:
            continue
        first = c.text.strip().split("\n", 1)[0]
        if first.startswith("#"):
            q = first.lstrip("#").strip()
            if q and q not in out:
                out.append(q)
    return out[:per_doc]


def fence_lines(text: str) -> int:
    return sum(1 for ln in text.split("\n") if _FENCE_LINE.match(ln))


def code_lines(text: str) -> dict[str, set[str]]:
    """Stripped line -> the indentations it is written with, for every line inside a fence of ``text``."""
    out: dict[str, set[str]] = {}
    inside = False
    for ln in text.split("\n"):
        if _FENCE_LINE.match(ln):
            inside = not inside
        elif inside and ln.strip():
            out.setdefault(ln.strip(), set()).add(ln[: len(ln) - len(ln.lstrip())])
    return out


def line_joins(chunk: Chunk) -> tuple[int, int]:
    """``(gaps, merged)``: of the gaps between a kept chunk's pieces that hold a line break in the
    original, how many the kept text joins without one (two lines run together)."""
    original, text = chunk.original_text, chunk.text
    pieces = chunk.kept_pieces
    gaps = merged = 0
    pos = 0
    for k, (s, e) in enumerate(pieces):
        at = text.find(original[s:e], pos)
        if k and "\n" in original[pieces[k - 1][1] : s]:
            gaps += 1
            merged += "\n" not in text[pos:at]
        pos = at + (e - s)
    return gaps, merged


def measure(result: Any, given: dict[str, Chunk]) -> dict[str, int]:
    counts = {"chunks": 0, "broken": 0, "lines": 0, "merged": 0, "code": 0, "unindented": 0}
    for c in result.chunks:
        original = given[c.id].text
        if fence_lines(original) % 2:
            continue  # the input itself is cut mid-block: nothing to keep whole
        counts["chunks"] += 1
        counts["broken"] += fence_lines(c.text) % 2
        breaks, merged = line_joins(c)
        counts["lines"] += breaks
        counts["merged"] += merged
        code = code_lines(original)
        for ln in c.text.split("\n"):
            s = ln.strip()
            if s in code and not _FENCE_LINE.match(ln):
                counts["code"] += 1
                counts["unindented"] += ln[: len(ln) - len(ln.lstrip())] not in code[s]
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--pipelines", default="default,quality")
    ap.add_argument("--budgets", default="0.125,0.25,0.5")
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--per-doc", type=int, default=3)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--split", type=int, default=0, help="SentenceSplitter chunk size after the Markdown sections (0: none)")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cases = []
    for name, text in readmes(args.docs):
        chunks = chunks_of(name, text, args.split, args.chunks)
        cases += [(q, chunks) for q in queries_of(chunks, args.per_doc)]
    print(f"{len({c[1][0].title for c in cases})} READMEs, {len(cases)} queries", file=sys.stderr)
    for name in args.pipelines.split(","):
        for share in (float(b) for b in args.budgets.split(",")):
            pipeline, total, tokens, t0 = Pipeline.preset(name), {}, 0, time.perf_counter()
            for q, chunks in cases:
                result = pipeline.run(q, chunks, budget=share)
                tokens += result.tokens
                for k, v in measure(result, {c.id: c for c in chunks}).items():
                    total[k] = total.get(k, 0) + v
            row = {"pipeline": name, "label": args.label, "budget": share, "split": args.split, "queries": len(cases),
                   **total, "tokens_mean": round(tokens / max(1, len(cases)), 1), "seconds": round(time.perf_counter() - t0, 1)}
            print(f"{args.label or name:10s} {share:5.3f}: kept chunks {total['chunks']:5d}, broken fences {total['broken']:4d} "
                  f"({100 * total['broken'] / max(1, total['chunks']):.1f} %), merged lines {total['merged']:5d} of {total['lines']:6d} line-break gaps "
                  f"({100 * total['merged'] / max(1, total['lines']):.1f} %), code lines unindented {total['unindented']:4d} of "
                  f"{total['code']:5d}, tokens {row['tokens_mean']}")
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

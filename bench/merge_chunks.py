"""Long chunks: every ``--per`` consecutive passages of a question merged into one untitled chunk.

    python bench/merge_chunks.py hotpotqa            # writes runs/long/hotpotqa-x4.jsonl
    python bench/merge_chunks.py nq-multidoc --per 5
    python bench/merge_chunks.py nq-multidoc --splitter 256   # runs/long/nq-multidoc-s256.jsonl
    python bench/merge_chunks.py hotpotqa --title file         # runs/long/hotpotqa-x4-file.jsonl
    python bench/merge_chunks.py nq-multidoc --files 4 --splitter 128 --title file   # nodes of 5 files
    python bench/merge_chunks.py hotpotqa --per 1 --title first --sections   # titled, under "History" etc.

Retrievers built with a document splitter hand over chunks of 256-1,024 tokens (LlamaIndex's
``SentenceSplitter`` defaults to 1,024), often text that ran together in the source: a PDF page,
a web page with several sections. The bundled sets give one short titled passage per chunk. This
joins each run of ``--per`` passages, in the given order, into one chunk with no title; each
passage keeps its title as a line of the text (``Title\\ntext``, passages separated by a blank
line), so nothing the full context held is lost. A merged chunk is gold when any of its passages
is. With ``--splitter N``, the question's passages are written as one such document and cut by
LlamaIndex's ``SentenceSplitter(chunk_size=N, chunk_overlap=0)`` instead, as a LlamaIndex
retriever's index would hold them: chunks then start and end where the splitter chose, often
inside a passage; one is gold when it overlaps a gold passage. ``--title`` titles the chunks (see
:data:`TITLES`), as a loader that sets ``title`` or ``file_name`` metadata does. A measurement aid for robustness: the questions and texts are the bundled ones, so numbers
on these files are not held out from anything the bundled sets chose.
"""

from __future__ import annotations

import argparse
import sys
import zlib
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


TITLES = ("none", "first", "file")
"""How merged or re-cut chunks are titled: ``none`` (untitled), ``first`` (the title of the passage the chunk
starts in, as a node of an article carries the article's title), ``file`` (a neutral file name, as
LlamaIndex's ``SimpleDirectoryReader`` titles every node of a file)."""


def chunk_title(mode: str, passage_title: str | None, file_name: str) -> str | None:
    """The title a chunk gets under ``--title mode``.

    >>> chunk_title("none", "Paris", "doc-q1-0.txt"), chunk_title("first", "Paris", "x"), chunk_title("file", "Paris", "doc.txt")
    (None, 'Paris', 'doc.txt')
    """
    if mode not in TITLES:
        raise ValueError(f"--title must be one of {', '.join(TITLES)}, got {mode!r}")
    return None if mode == "none" else passage_title if mode == "first" else file_name


SECTIONS = ("Overview", "History", "Background", "Description", "Details", "Summary")
"""Generic section headings for ``--sections``: they say nothing about the passage."""


def section_heading(chunk_id: str) -> str:
    """A generic heading for a passage, fixed by its id (so a file is rebuilt byte for byte).

    >>> section_heading("nqx-0001-0"), section_heading("q1-0")
    ('Background', 'Summary')
    """
    return SECTIONS[zlib.crc32(chunk_id.encode()) % len(SECTIONS)]


def merge_rows(data: str, per: int = 4, title: str = "none", sections: bool = False) -> list[dict]:
    chunk_title(title, None, "")  # validate before reading the data
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
                "text": "\n\n".join(passage_block(section_heading(c.id) if sections else c.title, c.text) for c in group),
                "gold": any(c.id in gold for c in group),
                **_titled(chunk_title(title, group[0].title, f"doc-{e.id}-{k // per}.txt")),
            })
        out.append({"id": f"{e.id}-x{per}", "question": e.question, "answers": list(e.answers), "chunks": chunks,
                    "meta": {**dict(e.meta or {}), "merged_per": per}})
    return out


def passage_document(chunks) -> tuple[str, list[tuple[int, int]]]:
    """The passages as one document (blocks joined by a blank line) and each passage's character span in it.

    >>> from optimizer import Chunk
    >>> passage_document([Chunk(id="a", text="A is.", title="A"), Chunk(id="b", text="B.")])
    ('A\\nA is.\\n\\nB.', [(0, 7), (9, 11)])
    """
    spans, parts, at = [], [], 0
    for c in chunks:
        block = passage_block(c.title, c.text)
        spans.append((at, at + len(block)))
        parts.append(block)
        at += len(block) + 2
    return "\n\n".join(parts), spans


def _titled(title: str | None) -> dict:
    return {"title": title} if title else {}


def split_rows(data: str, chunk_size: int = 256, title: str = "none", files: int | None = None) -> list[dict]:
    """Each question's passages as one document, cut by LlamaIndex's ``SentenceSplitter`` (no overlap).

    With ``title="file"`` every chunk of a question gets the question's one file name. With
    ``files=K`` the passages are written as several documents of ``K`` passages each, every one
    cut alone, so a question's nodes come from several files (``doc-Q-0.txt``, ``doc-Q-1.txt``, ...).
    """
    chunk_title(title, None, "")
    if files is not None and files < 1:
        raise ValueError(f"--files must be at least 1, got {files}")
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=0)
    out = []
    for e in load_dataset(data).examples:
        per_file = files or len(e.chunks) or 1
        chunks = []
        for f, k0 in enumerate(range(0, len(e.chunks), per_file)):
            passages = e.chunks[k0 : k0 + per_file]
            doc, spans = passage_document(passages)
            gold = [span for c, span in zip(passages, spans) if c.id in set(e.gold_ids)]
            file_name = f"doc-{e.id}-{f}.txt" if files else f"doc-{e.id}.txt"
            for node in splitter.get_nodes_from_documents([Document(text=doc)]):
                start, end = node.start_char_idx, node.end_char_idx
                if doc[start:end] != node.get_content():
                    raise ValueError(f"{e.id}: the splitter's node {len(chunks)} is not the text at its offsets")
                first = next((c.title for c, (s, t) in zip(passages, spans) if s <= start < t + 2), None)
                chunks.append({"id": f"{e.id}-s{len(chunks)}", "text": node.get_content(),
                               "gold": any(s < end and start < t for s, t in gold),
                               **_titled(chunk_title(title, first, file_name))})
        out.append({"id": f"{e.id}-s{chunk_size}", "question": e.question, "answers": list(e.answers), "chunks": chunks,
                    "meta": {**dict(e.meta or {}), "splitter_chunk_size": chunk_size}})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--per", type=int, default=4)
    ap.add_argument("--splitter", type=int, default=None, metavar="N",
                    help="cut with LlamaIndex's SentenceSplitter(chunk_size=N) instead of merging --per passages")
    ap.add_argument("--files", type=int, default=None, metavar="K",
                    help="with --splitter: write the passages as files of K passages, each cut alone (nodes of several files)")
    ap.add_argument("--title", choices=TITLES, default="none",
                    help="none: untitled chunks; first: the title of the passage a chunk starts in; file: a neutral file name")
    ap.add_argument("--sections", action="store_true",
                    help="lead each passage with a generic section heading (Overview, History, ...) instead of its title")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.sections and args.splitter:
        ap.error("--sections goes with --per, not --splitter")
    if args.files and not args.splitter:
        ap.error("--files goes with --splitter")
    if args.splitter:
        rows = split_rows(args.data, args.splitter, args.title, args.files)
    else:
        rows = merge_rows(args.data, args.per, args.title, args.sections)
    suffix = (f"f{args.files}-" if args.files else "") + (f"s{args.splitter}" if args.splitter else f"x{args.per}") + ("" if args.title == "none" else f"-{args.title}") + ("-sections" if args.sections else "")
    out = args.out or ROOT / "runs" / "long" / f"{Path(args.data).stem}-{suffix}.jsonl"
    print(save_variant(rows, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

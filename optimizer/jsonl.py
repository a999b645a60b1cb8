"""Reading JSON Lines with errors that name the file and the line.

>>> import io
>>> list(iter_jsonl(io.StringIO('{"id": "a", "text": "x"}\\n\\n{"id": "b", "text": "y"}\\n'), name="chunks.jsonl"))
[(1, {'id': 'a', 'text': 'x'}), (3, {'id': 'b', 'text': 'y'})]
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from optimizer.records import Chunk


def open_text(path: str | Path) -> IO[str]:
    """Open ``path`` for reading text; ``-`` is stdin and ``.gz`` files are decompressed.

    A UTF-8 byte order mark at the start (as some Windows editors write) is skipped.
    """
    if str(path) == "-":
        return sys.stdin
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {str(p)!r}")
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig")
    return open(p, encoding="utf-8-sig")


def iter_jsonl(stream: IO[str], *, name: str = "<stdin>") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line raises ValueError naming it."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}, line {number}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object") from None


def read_chunks(path: str | Path) -> list[Chunk]:
    """Read chunk objects (``id``, ``text``, optional ``title``, ``score``, ``metadata``) from a JSONL file or ``-``."""
    name = "<stdin>" if str(path) == "-" else str(path)
    stream = open_text(path)
    chunks = []
    try:
        for number, obj in iter_jsonl(stream, name=name):
            try:
                chunks.append(Chunk.from_dict(obj))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}, line {number}: {exc}") from None
    finally:
        if stream is not sys.stdin:
            stream.close()
    return chunks

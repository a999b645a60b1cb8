"""Build a folder or a file under a temporary name, then rename it into place.

A crash never leaves half a model or half a cache file at the final path, and when two
processes build the same thing at once, the first rename wins and the other's copy is
thrown away (the results are the same, so either is fine).

>>> import tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> with build_dir(root / "model") as tmp:
...     _ = (tmp / "weights.txt").write_text("1 2 3")
>>> sorted(p.name for p in (root / "model").iterdir())
['weights.txt']
>>> with build_file(root / "cache.npy") as tmp:
...     _ = tmp.write_bytes(b"data")
>>> (root / "cache.npy").read_bytes(), sorted(p.name for p in root.iterdir())
(b'data', ['cache.npy', 'model'])
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def build_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; on success rename it to ``target``.

    If ``target`` appeared meanwhile (another process finished first), the new copy is
    dropped. On an exception nothing is left behind and the exception propagates.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        yield tmp
        if not target.exists():
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def build_file(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path next to ``target``; on success rename it over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


__all__ = ["build_dir", "build_file"]

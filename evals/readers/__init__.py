"""Readers: the LLMs that answer from the optimized context, behind one cache.

``make_reader(name)`` builds one by name: ``"none"`` (no reader), ``"local"`` (the
packaged Gemma-3-270M via llama-cpp-python), ``"openai"`` (any OpenAI-compatible
chat-completions endpoint), ``"fake"`` (model-free, for tests and demos).

>>> make_reader("none") is None
True
>>> make_reader("fake").name
'fake'
>>> make_reader("gpt")
Traceback (most recent call last):
...
ValueError: unknown reader 'gpt'; choose one of: none, local, openai, fake
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evals.readers.base import BaseReader, Reader, ReaderOutput
from evals.readers.cache import ReaderCache, default_cache_path
from evals.readers.prompt import DEFAULT_TEMPLATE, format_prompt, postprocess

READER_NAMES = ("none", "local", "openai", "fake")

__all__ = [
    "DEFAULT_TEMPLATE",
    "READER_NAMES",
    "BaseReader",
    "Reader",
    "ReaderCache",
    "ReaderOutput",
    "default_cache_path",
    "format_prompt",
    "make_reader",
    "postprocess",
]


def make_reader(name: str, *, cache: ReaderCache | str | Path | None = None, **options: Any) -> Reader | None:
    """Build the reader called ``name`` with its keyword ``options``; ``"none"`` gives None.

    ``cache`` is a :class:`ReaderCache` or a path to its SQLite file (created if missing).
    """
    if not isinstance(name, str) or name not in READER_NAMES:
        raise ValueError(f"unknown reader {name!r}; choose one of: {', '.join(READER_NAMES)}")
    if name == "none":
        if options:
            raise ValueError(f"reader 'none' takes no options, got {sorted(options)}")
        return None
    if isinstance(cache, (str, Path)):
        cache = ReaderCache(cache)
    elif cache is not None and not isinstance(cache, ReaderCache):
        raise TypeError(f"cache must be a ReaderCache, a path or None, got {type(cache).__name__}: {cache!r}")
    if name == "local":
        from evals.readers.local import LocalReader

        return LocalReader(cache=cache, **options)
    if name == "openai":
        from evals.readers.openai import OpenAIReader

        return OpenAIReader(cache=cache, **options)
    from evals.readers.fake import FakeReader

    return FakeReader(cache=cache, **options)

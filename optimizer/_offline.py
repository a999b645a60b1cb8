"""tiktoken offline, without touching the environment.

tiktoken downloads an encoding's BPE file on first use, unless its cache folder already
holds it (``$TIKTOKEN_CACHE_DIR``, else ``$DATA_GYM_CACHE_DIR``, else
``<tmp>/data-gym-cache``), under the sha1 of the file's URL. ``llama-index-core`` ships
the files for ``cl100k_base`` and ``o200k_base`` under exactly those names.
:func:`seed_tiktoken_cache` copies them into whichever cache folder tiktoken will read, when
missing; tiktoken then finds them and checks their sha256 itself. No environment variable
is set, and a user's own cache setting is honoured (their folder gets the copies).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from optimizer.cache import build_file_atomically


def packaged_tiktoken_cache() -> Path | None:
    """Return the folder of BPE files that llama-index-core ships, or None if absent."""
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        candidate = Path(base) / "_static" / "tiktoken_cache"
        if candidate.is_dir():
            return candidate
    return None


def tiktoken_cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder tiktoken reads its cache from (None when the user disabled caching with ``""``).

    >>> str(tiktoken_cache_dir({"TIKTOKEN_CACHE_DIR": "/my/cache"}))
    '/my/cache'
    >>> tiktoken_cache_dir({"TIKTOKEN_CACHE_DIR": ""}) is None
    True
    """
    env = os.environ if environ is None else environ
    for name in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if name in env:
            return Path(env[name]) if env[name] else None
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def seed_tiktoken_cache() -> Path | None:
    """Copy the packaged BPE files into tiktoken's cache folder where missing; return that folder."""
    source = packaged_tiktoken_cache()
    target = tiktoken_cache_dir()
    if source is None or target is None:
        return target
    for bpe in source.iterdir():
        dest = target / bpe.name
        if bpe.is_file() and not dest.exists():
            with build_file_atomically(dest) as tmp:  # a reader never sees half a file
                shutil.copyfile(bpe, tmp)
    return target

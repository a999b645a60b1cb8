"""Offline defaults, applied once when :mod:`optimizer` is imported.

tiktoken downloads its BPE files on first use unless ``TIKTOKEN_CACHE_DIR`` points at a
folder that already holds them. ``llama-index-core`` ships the files for ``cl100k_base``
and ``o200k_base``; we point tiktoken there **only when the user has not set the
variable themselves**.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


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


def apply_offline_defaults() -> None:
    """Set ``TIKTOKEN_CACHE_DIR`` to the packaged BPE files unless already set."""
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        return
    cache = packaged_tiktoken_cache()
    if cache is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)

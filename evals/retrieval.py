"""Retrieval mode for the eval: replace each example's given chunks by the top-k retrieved from one corpus.

The corpus is every passage of the dataset, deduplicated by text (HotpotQA paragraphs
recur across questions). Each question retrieves ``top_k`` passages from the whole corpus,
so the optimizer meets what a real retriever returns: distractors from other questions,
and gold passages that may be missing. A retrieved passage keeps ``gold: true`` when its
text is one of *that* question's gold passages; ``score`` is the retriever's similarity.

Dense retrieval is exact inner product (``faiss.IndexFlatIP``) over L2-normalized
embeddings (``get_embedder("minilm")`` or ``"static"``, or any object with
``.encode(texts) -> float32 array``). Corpus embeddings of a named embedder are cached on
disk under ``$RAGTRIM_CACHE`` or ``~/.cache/ragtrim/corpus/``, keyed by the embedder name and
a hash of the texts, so a rerun is instant. ``retriever="bm25"`` needs no model (Robertson
and Zaragoza, *The Probabilistic Relevance Framework: BM25 and Beyond*, 2009; ``rank_bm25``).

With ``limit``, only the first ``limit`` questions are retrieved for (and kept), but the corpus is
still every passage of the whole dataset: a smaller run sees the same distractors as the full one.
A ``top_k`` above the corpus size is clipped to it, with a warning.

Each new example's ``retrieval`` attribute (:attr:`evals.datasets.Example.retrieval`, kept apart from
``meta``, the dataset's own data, which may hold a ``retrieval`` key of its own) records the retriever,
``top_k`` (as asked), the k used
(``top_k_used``, clipped to the corpus), the corpus size (``corpus_passages``), how many of the
question's gold passages were retrieved (``gold_retrieved`` of ``gold_total``) and the ids of
the gold chunks that were not (``gold_missed``), so :func:`retrieval_recall` can report
recall@k and evidence recall downstream keeps every gold passage in its denominator: gold that
was never retrieved counts as lost (:func:`all_gold_ids`), and a question none of whose gold
was retrieved scores 0 instead of dropping out.

>>> from evals.datasets import Dataset, parse_example
>>> ex = [parse_example({"id": f"q{i}", "question": q, "answers": [a], "chunks": [
...     {"id": f"q{i}-0", "text": t, "gold": True}, {"id": f"q{i}-1", "text": "Filler text about nothing."}]})
...     for i, (q, a, t) in enumerate([("Where is Paris?", "France", "Paris is in France."),
...                                    ("Where is Rome?", "Italy", "Rome is in Italy.")])]
>>> out = retrieve_dataset(Dataset("tiny", Path("tiny.jsonl"), tuple(ex)), top_k=2, retriever="bm25")
>>> [(c.text, c.metadata["gold"]) for c in out.examples[1].chunks][0]
('Rome is in Italy.', True)
>>> retrieval_recall(out)
1.0
>>> one = retrieve_dataset(Dataset("tiny", Path("tiny.jsonl"), tuple(ex)), top_k=1, retriever="bm25")
>>> one.examples[0].retrieval["gold_missed"], all_gold_ids(one.examples[0])
([], ('q0-0',))
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from optimizer.cache import build_file_atomically, cache_dir
from optimizer.lazy import lazy_import
from optimizer.records import Chunk
from optimizer.scoring import titled_text
from optimizer.validate import positive_int

logger = logging.getLogger(__name__)

RETRIEVERS = ("faiss", "bm25")
_DROP_META = ("gold", "gold_spans")


@dataclass(frozen=True)
class Passage:
    """One corpus entry: a distinct text, with the chunk it was first seen as."""

    id: str
    text: str
    title: str | None
    metadata: dict[str, Any]


def build_corpus(examples: Sequence[Any]) -> list[Passage]:
    """All chunks of all examples, deduplicated by text; ids are the first occurrence's, made unique.

    >>> from evals.datasets import parse_example
    >>> exs = [parse_example({"id": "a", "question": "q?", "answers": [], "chunks": [{"id": "0", "text": "x"}, {"id": "1", "text": "y"}]}),
    ...        parse_example({"id": "b", "question": "q?", "answers": [], "chunks": [{"id": "0", "text": "y"}, {"id": "1", "text": "z"}]})]
    >>> [(p.id, p.text) for p in build_corpus(exs)]
    [('0', 'x'), ('1', 'y'), ('1~2', 'z')]
    """
    by_text: dict[str, Passage] = {}
    used: set[str] = set()
    for ex in examples:
        for c in ex.chunks:
            text = c.original_text
            if not text.strip() or text in by_text:
                continue
            pid, n = c.id, 1
            while pid in used:
                n += 1
                pid = f"{c.id}~{n}"
            used.add(pid)
            meta = {k: v for k, v in c.metadata.items() if k not in _DROP_META}
            by_text[text] = Passage(pid, text, c.title, meta)
    return list(by_text.values())


def passage_text(p: Passage) -> str:
    """What the retriever indexes: ``"Title. text"`` when there is a title."""
    return titled_text(p.title, p.text)


def retrieve_dataset(
    dataset: Any,
    *,
    top_k: int,
    retriever: str = "faiss",
    embedder: Any = "minilm",
    cache: bool = True,
    attach_embeddings: bool = True,
    limit: int | None = None,
) -> Any:
    """A new dataset whose examples' chunks are the ``top_k`` passages retrieved for each question.

    Parameters
    ----------
    dataset:
        An :class:`evals.datasets.Dataset` (or any frozen dataclass with ``examples``).
    top_k:
        Passages per question (clipped to the corpus size, with a warning).
    retriever:
        ``"faiss"`` (dense, exact inner product) or ``"bm25"`` (no model).
    embedder:
        For ``faiss``: a name for :func:`optimizer.embeddings.get_embedder` (``"minilm"``,
        ``"static"``) or an object with ``encode(texts) -> np.ndarray``.
    cache:
        Cache the corpus embeddings of a *named* embedder on disk.
    attach_embeddings:
        For ``faiss``: put each passage's vector on its chunk (``Chunk.embedding``), as a
        vector-store retriever would, so dense stages with the same model reuse it.
    limit:
        Keep (and retrieve for) only the first ``limit`` questions; the corpus is still built from
        every example of ``dataset``.
    """
    positive_int(top_k, "top_k", what="passages per question")
    if limit is not None:
        positive_int(limit, "limit", what="questions")
    if retriever not in RETRIEVERS:
        raise ValueError(f"unknown retriever {retriever!r}; use one of {', '.join(RETRIEVERS)}")
    examples = getattr(dataset, "examples", None)
    if examples is None:
        raise TypeError(
            f"dataset must be an evals.datasets.Dataset (from load_dataset), got {type(dataset).__name__}: {dataset!r:.80}"
        )
    corpus = build_corpus(examples)
    if not corpus:
        raise ValueError(f"dataset {getattr(dataset, 'name', '?')!r} has no passage text to index")
    k = _clipped_k(top_k, len(corpus))
    examples = tuple(examples)[:limit] if limit is not None else tuple(examples)
    questions = [ex.question for ex in examples]
    vectors = None
    if retriever == "bm25":
        scores, ids = _bm25_search(corpus, questions, k)
        label = "bm25"
    else:
        model = _embedder(embedder)
        scores, ids, vectors = _faiss_search(corpus, questions, k, model, cache=cache and isinstance(embedder, str))
        label = f"faiss:{getattr(model, 'name', type(model).__name__)}"
        if not attach_embeddings:
            vectors = None
    sizes = {"top_k": top_k, "top_k_used": k, "corpus_passages": len(corpus)}
    new_examples = tuple(
        _retrieved_example(ex, corpus, ids[i], scores[i], vectors, label=label, sizes=sizes)
        for i, ex in enumerate(examples)
    )
    return replace(dataset, examples=new_examples)


def _clipped_k(top_k: int, corpus_size: int) -> int:
    """``top_k`` clipped to the corpus size, with a warning when it is larger."""
    if top_k > corpus_size:
        warnings.warn(f"top-k {top_k} is larger than the corpus ({corpus_size} distinct passages): each question gets "
                      f"all {corpus_size}; pass a top-k of {corpus_size} or less to silence this", UserWarning, stacklevel=3)
    return min(top_k, corpus_size)


def _retrieved_example(
    ex: Any,
    corpus: list[Passage],
    ids: np.ndarray,
    scores: np.ndarray,
    vectors: np.ndarray | None,
    *,
    label: str,
    sizes: dict[str, int],
) -> Any:
    gold_by_text = {c.original_text: c for c in ex.chunks if c.metadata.get("gold") is True}
    chunks = []
    for rank, (j, score) in enumerate(zip(ids, scores)):
        if j < 0:  # faiss pads with -1 when fewer hits exist
            continue
        p = corpus[int(j)]
        gold_chunk = gold_by_text.get(p.text)
        meta = dict(p.metadata)
        meta["gold"] = gold_chunk is not None
        if gold_chunk is not None and "gold_spans" in gold_chunk.metadata:
            meta["gold_spans"] = gold_chunk.metadata["gold_spans"]
        meta["rank"] = rank
        embedding = vectors[int(j)] if vectors is not None else None
        chunks.append(Chunk(id=p.id, text=p.text, title=p.title, score=float(score), metadata=meta, embedding=embedding))
    found = {c.text for c in chunks if c.metadata["gold"]}
    missed = [c.id for text, c in gold_by_text.items() if text not in found]
    info = {"retriever": label, **sizes, "gold_total": len(gold_by_text), "gold_retrieved": len(found),
            "gold_missed": missed}
    return replace(ex, chunks=tuple(chunks), retrieval=MappingProxyType(info))


MISSED_SUFFIX = " (not retrieved)"
"""Appended to the id of a gold chunk that was not retrieved, in :func:`all_gold_ids` (kept apart from retrieved ids)."""


def retrieval_info(ex: Any) -> Mapping[str, Any]:
    """What :func:`retrieve_dataset` recorded for ``ex`` (its ``retrieval`` attribute), ``{}`` without retrieval.

    Never the example's ``meta``: that is the dataset's own data, and a ``"retrieval": "bm25 top-10"`` there
    is a note, not the harness's record.

    >>> from evals.datasets import parse_example
    >>> retrieval_info(parse_example({"id": "q", "question": "q?", "answers": [], "chunks": [],
    ...                               "meta": {"retrieval": "bm25 top-10"}}))
    {}
    """
    info = getattr(ex, "retrieval", None)
    return info if isinstance(info, Mapping) else {}


def all_gold_ids(ex: Any) -> tuple[str, ...]:
    """The example's gold chunk ids, plus one id per gold passage its retriever missed (:func:`retrieval_info`).

    Evidence recall over these counts unretrieved gold as lost: no kept span can carry a missed id.
    Without retrieval this is ``ex.gold_ids``.
    """
    missed = retrieval_info(ex).get("gold_missed") or ()
    return tuple(ex.gold_ids) + tuple(f"{cid}{MISSED_SUFFIX}" for cid in missed)


def retrieval_summary(dataset: Any) -> dict[str, Any]:
    """Recall@k of a retrieved dataset for ``results.json``: the mean share, the gold counts, questions with none found,
    and (when recorded) the corpus size and the k used.

    >>> from types import SimpleNamespace as S
    >>> retrieval_summary(S(examples=[S(retrieval={"gold_total": 2, "gold_retrieved": 1}),
    ...                               S(retrieval={"gold_total": 1, "gold_retrieved": 0})]))
    {'retrieval_recall': 0.25, 'gold_total': 3, 'gold_retrieved': 1, 'questions_with_gold': 2, 'questions_without_gold_retrieved': 1}
    """
    infos = [retrieval_info(ex) for ex in dataset.examples]
    with_gold = [i for i in infos if i.get("gold_total")]
    sizes = {key: infos[0][key] for key in ("corpus_passages", "top_k_used") if infos and key in infos[0]}
    return {
        "retrieval_recall": retrieval_recall(dataset),
        "gold_total": sum(i["gold_total"] for i in with_gold),
        "gold_retrieved": sum(i.get("gold_retrieved", 0) for i in with_gold),
        "questions_with_gold": len(with_gold),
        "questions_without_gold_retrieved": sum(1 for i in with_gold if not i.get("gold_retrieved")),
        **sizes,
    }


def retrieval_recall(dataset: Any) -> float | None:
    """Mean share of each question's gold passages that were retrieved (recall@k); None without gold."""
    values = []
    for ex in dataset.examples:
        info = retrieval_info(ex)
        if info.get("gold_total"):
            values.append(info["gold_retrieved"] / info["gold_total"])
    return float(np.mean(values)) if values else None


# -- retrievers --------------------------------------------------------------------------
def _embedder(embedder: Any) -> Any:
    if isinstance(embedder, str):
        from optimizer.embeddings import get_embedder

        return get_embedder(embedder)
    if not callable(getattr(embedder, "encode", None)):
        raise TypeError(
            f"embedder must be a name ('minilm', 'static') or an object with encode(texts), got {type(embedder).__name__}"
        )
    return embedder


def _encode(model: Any, texts: Sequence[str]) -> np.ndarray:
    vecs = np.asarray(model.encode(list(texts)), dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(texts):
        raise ValueError(f"embedder returned shape {vecs.shape} for {len(texts)} texts; expected (n, dim)")
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vecs / norms)


def corpus_cache_path(embedder_name: str, texts: Sequence[str]) -> Path:
    """Where the corpus embeddings of ``texts`` by ``embedder_name`` are cached."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return cache_dir() / "corpus" / f"{embedder_name}-{len(texts)}-{h.hexdigest()[:20]}.npy"


def corpus_embeddings(model: Any, texts: Sequence[str], *, cache: bool) -> np.ndarray:
    """Normalized embeddings of ``texts``, from the disk cache when present."""
    name = str(getattr(model, "name", "")) or None
    path = corpus_cache_path(name, texts) if cache and name else None
    if path is not None and path.is_file():
        try:
            vecs = np.load(path)
        except (OSError, ValueError) as exc:  # unreadable or damaged: embed again
            _cache_warning(path, f"cannot read it ({exc})")
        else:
            if vecs.shape[0] == len(texts):
                return vecs
    logger.info("embedding %d corpus passages with %s", len(texts), name)
    vecs = _encode(model, texts)
    if path is not None:
        try:
            with build_file_atomically(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, vecs)
        except OSError as exc:  # a read-only or full cache: the vectors stay in memory for this run
            _cache_warning(path, f"cannot write it ({exc.strerror or exc})")
    return vecs


_CACHE_WARNED: set[Path] = set()


def _cache_warning(path: Path, problem: str) -> None:
    """Warn once per cache folder that the corpus vectors are not cached (the run goes on with them in memory)."""
    if path.parent in _CACHE_WARNED:
        return
    _CACHE_WARNED.add(path.parent)
    warnings.warn(
        f"corpus embedding cache {str(path)!r}: {problem}; the vectors are kept in memory for this run only, so the "
        "next run embeds the corpus again (set RAGTRIM_CACHE to a writable folder to cache them)",
        RuntimeWarning,
        stacklevel=3,
    )


def _faiss_search(
    corpus: list[Passage], questions: Sequence[str], k: int, model: Any, *, cache: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    faiss = lazy_import("faiss", extra="embeddings", purpose="dense retrieval (--retrieve faiss)")
    vecs = corpus_embeddings(model, [passage_text(p) for p in corpus], cache=cache)
    index = faiss.IndexFlatIP(vecs.shape[1])
    index.add(vecs)
    scores, ids = index.search(_encode(model, questions), k)
    return scores, ids, vecs


def _bm25_search(corpus: list[Passage], questions: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Okapi BM25 over the whole corpus (:class:`optimizer.scoring.BM25Index`), top ``k`` per question."""
    lazy_import("rank_bm25", extra="eval", purpose="BM25 retrieval (--retrieve bm25)")
    from optimizer.scoring import BM25Index
    from optimizer.text import content_words, words

    def terms(text: str) -> list[str]:
        return content_words(text) or words(text) or [""]

    index = BM25Index([terms(passage_text(p)) for p in corpus], variant="okapi")
    all_scores, all_ids = [], []
    for q in questions:
        s = np.asarray(index.scores(terms(q)), dtype=np.float32)
        top = np.argsort(-s, kind="stable")[:k]
        all_ids.append(top)
        all_scores.append(s[top])
    return np.stack(all_scores), np.stack(all_ids)


__all__ = [
    "RETRIEVERS", "all_gold_ids", "build_corpus", "corpus_embeddings", "retrieval_info", "retrieval_recall",
    "retrieval_summary", "retrieve_dataset",
]

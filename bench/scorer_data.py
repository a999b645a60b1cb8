"""Fit data for the sentence scorer: features and labels per sentence, and a fast replay of the pipeline.

Used by ``bench/fit_scorer.py`` (the shipped weights) and ``bench/lodo.py`` (the
leave-one-dataset-out protocol). For each example the replay runs the preset's steps before
the sentence stage (near-dedupe) exactly as :meth:`optimizer.Pipeline.run` does, splits
sentences and computes :func:`optimizer.stages.sentence_features.sentence_features` once;
any scorer and selector settings can then be tried at every budget without recomputing.

**Labels.** A sentence is positive when it holds a normalized gold answer
(:func:`evals.metrics.contains_answer`, SQuAD normalization, the answer-recall test) in its
own text. Examples whose answers do not count for answer recall (yes/no, unanswerable) or
where no sentence holds the answer give no labels and are left out of the fit.

**Two passes.** The cheap pass (static embeddings only) feeds the ``plain`` model of the
``default`` scorer and covers every example. The MiniLM pass (int8 MiniLM sentence vectors
too) feeds the ``quality`` scorer and both ``retriever`` models; it is costly on a shared
2-core machine, so it covers the first examples of each set (``MINILM_EXAMPLES``). Its
retriever signal is simulated: ``retr_score`` = the cosine of the chunk's mean MiniLM
sentence vector and the question, what a dense retriever hands over.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pickle
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from evals.metrics import answer_recall, contains_answer, counts_for_recall  # noqa: E402
from optimizer.budget import resolve_budget  # noqa: E402
from optimizer.packer import pack  # noqa: E402
from optimizer.pipeline import Pipeline  # noqa: E402
from optimizer.records import Chunk  # noqa: E402
from optimizer.stage import StageContext, StageOutput  # noqa: E402
from optimizer.stages.sentence_features import BASE, SentenceFeatures, derived_columns, sentence_features, split_chunks  # noqa: E402
from optimizer.stages.sentence_select import SentenceSelector  # noqa: E402
from optimizer.stages.sentence_signals import Sentence  # noqa: E402

SETS = ("hotpotqa", "2wiki", "squad2-pools", "nq-multidoc")
# fit-only sets built by bench/fit_extra.py, and the bundled set (group) each belongs to
EXTRA = {"nq-extra": "nq-multidoc", "squad-extra": "squad2-pools"}
BUDGETS = (0.125, 0.25, 0.5)
MINILM_EXAMPLES = 150  # per set (bundled and fit-only), for the MiniLM pass


@dataclass(frozen=True)
class Prepared:
    """One example ready for scoring: chunks after the pre-steps, sentences, features, labels, budgets."""

    dataset: str
    id: str
    query: str
    answers: tuple[str, ...]
    chunks: tuple[Chunk, ...]
    sents: tuple[Sentence, ...]
    features: SentenceFeatures
    labels: np.ndarray  # 1 = the sentence holds a normalized answer
    budgets: dict[float, int]  # share -> tokens, as Pipeline.run resolves it
    counts: bool  # counts for answer recall


def simulated_retriever(features: SentenceFeatures, chunk_of: np.ndarray) -> SentenceFeatures:
    """``features`` with the retriever columns filled from the int8 MiniLM chunk cosine (``mini_chunk``).

    A stand-in for a dense retriever's score: the cosine of the chunk's mean MiniLM sentence
    vector and the question (scaled per question), and the chunk's rank by it.
    """
    score = features.column("mini_chunk")
    per_chunk = {int(c): float(v) for c, v in zip(chunk_of, score)}
    order = sorted(per_chunk, key=lambda c: (-per_chunk[c], c))
    rank = {c: r for r, c in enumerate(order, start=1)}
    values = features.values.copy()
    values[:, features.names.index("retr_score")] = score
    values[:, features.names.index("retr_rank")] = [1.0 / (1 + rank[int(c)]) for c in chunk_of]
    return SentenceFeatures(features.names, values, True)


def _context(pipe: Pipeline, chunks: Sequence[Chunk]) -> tuple[StageContext, int]:
    """A context as :meth:`optimizer.Pipeline.run` makes one (no budget yet), and the full context's tokens."""
    overhead = functools.partial(pipe.renderer.overhead, tokenizer=pipe.tokenizer, counts={})
    context = StageContext.for_chunks(chunks, tokenizer=pipe.tokenizer, render_overhead=overhead)
    return context, context.count(pipe.renderer.render(list(chunks)).text)


def prepare(dataset: str, example: Any, pipe: Pipeline, *, static: str | None, dense: str | None) -> Prepared:
    """Run ``pipe``'s steps before its ``sentences`` step, then compute the sentence features.

    With ``dense`` (the MiniLM pass) the retriever columns are simulated from it
    (:func:`simulated_retriever`); without, they stay empty.
    """
    chunks = tuple(example.chunks)
    context, full = _context(pipe, chunks)
    current: tuple[Chunk, ...] = chunks
    for name, stage in pipe.steps:
        if name in ("sentences", "compress-sentences"):
            break
        out = stage(example.question, current, context)
        current = tuple(out.chunks if isinstance(out, StageOutput) else out)
    sents = split_chunks(current, context)
    feats = sentence_features(example.question, current, sents, context, static=static, dense=dense, retriever="ignore")
    if dense is not None and sents:
        feats = simulated_retriever(feats, np.array([s.chunk for s in sents]))
    answers = tuple(example.answers)
    counts = counts_for_recall(answers)
    labels = np.array([contains_answer(s.text, answers) if counts else 0 for s in sents], dtype=np.int8)
    budgets = {b: resolve_budget(b, full) for b in BUDGETS}
    return Prepared(dataset, example.id, example.question, answers, current, tuple(sents), feats, labels, budgets, counts)


def upgraded(p: Prepared) -> Prepared:
    """A cached example with any :data:`~optimizer.stages.sentence_features.BASE` column it lacks derived again."""
    missing = [n for n in BASE if n not in p.features.names]
    if not missing:
        return p
    cols = {n: p.features.column(n) for n in p.features.names}
    cols.update(derived_columns(cols, np.array([s.chunk for s in p.sents], dtype=int)))
    names = tuple(p.features.names) + tuple(missing)
    values = np.stack([cols[n] for n in names], axis=1) if len(p.sents) else np.zeros((0, len(names)))
    return replace(p, features=SentenceFeatures(names, values, p.features.retriever))


def replay(p: Prepared, pipe: Pipeline, score: np.ndarray, selector: SentenceSelector, share: float,
           contexts: dict[str, StageContext] | None = None) -> int:
    """Answer recall of the rendered context at ``share`` for ``score`` and ``selector`` (pipeline-exact).

    ``contexts`` keeps one context per example across calls, so token counts are memoized.
    """
    key = f"{p.dataset}/{p.id}"
    context = contexts.get(key) if contexts is not None else None
    if context is None:
        context, _ = _context(pipe, p.chunks)
        if contexts is not None:
            contexts[key] = context
    context = dataclasses.replace(context, budget=p.budgets[share])
    if p.sents:
        out = selector(p.query, p.chunks, p.sents, score, context)
        chosen = out.chunks
    else:
        chosen = [c for c in p.chunks if c.text.strip()]
    packed = pack(chosen, context.budget, pipe.renderer, context)
    return int(answer_recall(packed.rendered.text, p.answers) or 0)


def load_prepared(dataset: str, examples: Iterable[Any], pipe: Pipeline, *, static: str | None, dense: str | None,
                  cache_dir: Path, tag: str) -> list[Prepared]:
    """:func:`prepare` every example, cached on disk by dataset, tag and the example ids."""
    examples = list(examples)
    key = hashlib.sha256("|".join(e.id for e in examples).encode()).hexdigest()[:12]
    path = cache_dir / f"{dataset}-{tag}-{key}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            return [upgraded(p) for p in pickle.load(f)]
    out = [prepare(dataset, e, pipe, static=static, dense=dense) for e in examples]
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(out, f)
    return out


def group_of(dataset: str) -> str:
    """The bundled set a (possibly fit-only) dataset belongs to."""
    return EXTRA.get(dataset, dataset)


def stack(prepared: Sequence[Prepared], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Rows of the examples that carry labels: ``(x, y, group index, dataset of each group)``."""
    xs, ys, gs, sets = [], [], [], []
    for p in prepared:
        if not p.counts or not p.labels.any() or len(p.sents) < 2:
            continue
        xs.append(p.features.matrix(names))
        ys.append(p.labels)
        gs.append(np.full(len(p.sents), len(sets)))
        sets.append(group_of(p.dataset))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), sets


def balanced_weights(group_sets: Sequence[str]) -> np.ndarray:
    """One weight per question so that every dataset weighs the same in total."""
    sets = np.array(group_sets)
    out = np.zeros(len(sets))
    names = sorted(set(group_sets))
    for name in names:
        mask = sets == name
        out[mask] = 1.0 / mask.sum() / len(names)
    return out

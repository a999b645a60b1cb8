"""Rerank the best candidates by a small local LM's likelihood of the question (optional, ``ragtrim[reader]``).

Each candidate passage is scored by how likely the packaged Gemma-3-270M (llama.cpp) finds
the question after it: the mean log-probability of the question's tokens given ``"Passage:
<title. text>"`` and an instruction to write a question about it. A passage that answers the
question makes that question likely even when it shares few words with it, which is where
BM25 and static embeddings fail (Sachan et al., *Improving Passage Retrieval with Zero-Shot
Question Generation*, EMNLP 2022: UPR).

Only the ``candidates`` best chunks by a cheap first ranking (BM25 plus static-embedding
cosine, as ``default``'s chunk prior, plus the retriever's ``Chunk.score`` when chunks carry
one) reach the LM; each costs about one prompt of ``passage_tokens`` tokens (BENCHMARKS.md,
"thorough", gives the seconds per question). The others follow, in the first ranking's
order. Sets ``Chunk.relevance``: the LM score for candidates, just below the worst candidate for
the rest (a tenth of the candidates' spread at most, so a later min-max scaling keeps it); the caller's ``score`` is untouched. A later ``compress-sentences`` reads that
relevance as its chunk prior.

>>> LMRerank(candidates=0)
Traceback (most recent call last):
...
ValueError: rerank-lm: candidates must be a positive integer, got 0
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.embeddings import get_embedder
from optimizer.gguf import stored_llama, using_llama
from optimizer.lazy import lazy_import
from optimizer.models import default_store
from optimizer.records import Chunk
from optimizer.scoring import best_first, chunk_texts, minmax, with_relevance
from optimizer.stage import Stage, StageContext
from optimizer.stages.rerank import HybridRerank
from optimizer.stages.sentence_signals import retriever_signal
from optimizer.validate import positive_int

PROMPT_HEAD = "Passage: "
PROMPT_TAIL = "\nPlease write a question based on this passage.\nQuestion:"
QUESTION_TOKENS = 96  # a longer question is cut (it only needs to rank passages)
_PURPOSE = "LM reranking (rerank-lm)"


def _load(model_path: str | None, n_ctx: int) -> Any:
    """The scoring model, last position's logits only (AMX-safe, see :func:`optimizer.gguf.load_llama`)."""
    return stored_llama(model_path, n_ctx=n_ctx, purpose=_PURPOSE, logits_all=False)


def _log_softmax_at(logits: np.ndarray, token: int) -> float:
    x = logits.astype(np.float64)
    top = float(x.max())
    return float(x[token] - top - np.log(np.exp(x - top).sum()))


def question_likelihood(llm: Any, passage: str, question: str, *, passage_tokens: int) -> float:
    """Mean log-probability (nats per token) of ``question`` after ``passage`` under ``llm``.

    The passage is cut to its first ``passage_tokens`` tokens. Only the last position's
    logits are computed per step (the prompt in one batch, then the question token by
    token), so the vocabulary projection runs once per question token, not per prompt token.
    """
    llama_cpp = lazy_import("llama_cpp", extra="reader", purpose="LM reranking (rerank-lm)")
    head = llm.tokenize((PROMPT_HEAD + passage).encode("utf-8"), add_bos=False, special=False)[:passage_tokens]
    tail = llm.tokenize(PROMPT_TAIL.encode("utf-8"), add_bos=False, special=False)
    asked = llm.tokenize((" " + question.strip()).encode("utf-8"), add_bos=False, special=False)[:QUESTION_TOKENS]
    if not asked:
        return 0.0
    llm.reset()
    llm.eval([llm.token_bos(), *head, *tail])
    total = 0.0
    for i, token in enumerate(asked):
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(llm.n_vocab(),))
        total += _log_softmax_at(logits, token)
        if i < len(asked) - 1:
            llm.eval([token])
    return total / len(asked)


def first_ranking(query: str, chunks: Sequence[Chunk], context: StageContext, *, dense_weight: float = 0.25) -> list[float]:
    """The cheap ranking that picks the candidates: BM25 + ``dense_weight`` x static cosine (+ the retriever's score)."""
    hybrid = HybridRerank(methods=("bm25", "static"), fusion="weighted", weights=(1.0, dense_weight))
    fused = hybrid.scores(query, chunks, context)
    retrieved = retriever_signal(chunks, "auto", context)
    if retrieved is not None:
        fused = [f + r for f, r in zip(fused, minmax(retrieved))]
    return fused


class LMRerank(Stage):
    """Rerank the ``candidates`` best chunks by the packaged Gemma's likelihood of the question (UPR).

    Parameters
    ----------
    candidates:
        How many chunks (the best by :func:`first_ranking`) the LM scores; the cost grows
        with it (one prompt each).
    passage_tokens:
        Each passage is cut to this many model tokens before scoring.
    model_path:
        A GGUF file; ``None`` uses the packaged Gemma-3-270M.
    """

    name = "rerank-lm"

    def __init__(self, *, candidates: int = 8, passage_tokens: int = 128, model_path: str | None = None) -> None:
        self.candidates = positive_int(candidates, "rerank-lm: candidates")
        if positive_int(passage_tokens, "rerank-lm: passage_tokens", what="tokens") < 16:
            raise ValueError(f"rerank-lm: passage_tokens must be at least 16, got {passage_tokens!r}")
        self.passage_tokens = passage_tokens
        self.model_path = None if model_path is None else str(Path(model_path))

    @property
    def _n_ctx(self) -> int:
        return self.passage_tokens + QUESTION_TOKENS + 64

    def warm_up(self) -> None:
        _load(self.model_path, self._n_ctx)
        get_embedder("static")

    def _likelihood(self, passage: str, question: str) -> float:
        """:func:`question_likelihood`, memoized in the model store (a sweep over budgets scores each pair once)."""
        memo = default_store().memo("rerank-lm")
        key = (self.model_path, self.passage_tokens, passage, question)
        found = memo.get(key)
        if found is None:
            with using_llama(self.model_path, n_ctx=self._n_ctx, purpose=_PURPOSE, logits_all=False) as llm:
                found = question_likelihood(llm, passage, question, passage_tokens=self.passage_tokens)
            if len(memo) >= 8192:
                memo.clear()  # other threads only ever .get() from it
            memo[key] = found
        return found

    def scores(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[float]:
        """The LM score of each candidate; the rest ranked below all of them, in the first ranking's order."""
        first = first_ranking(query, chunks, context)
        picked = best_first(first)[: self.candidates]
        texts = chunk_texts(chunks)
        lm = {i: self._likelihood(texts[i], query) for i in picked}
        low, high = min(lm.values()), max(lm.values())
        # every other chunk just below the LM's worst, in the first ranking's order: a later
        # min-max scaling (the sentence stage's chunk prior) keeps the candidates' spread
        gap = 0.05 * (high - low) or 0.05
        scaled = minmax(first)
        return [lm[i] if i in lm else low - gap * (2.0 - scaled[i]) for i in range(len(chunks))]

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> list[Chunk]:
        if not chunks:
            return []
        return with_relevance(chunks, self.scores(query, chunks, context))

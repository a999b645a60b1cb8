"""Token-level pruning by self-information under a small local LM (optional, ``ragtrim[reader]``).

Each chunk's kept text is scored by the packaged Gemma-3-270M (llama.cpp): a word's
self-information is the sum of ``-log p(token | preceding text)`` over its tokens. The least
informative words go first, until the chunk is down to its share of the budget
(``keep_ratio`` without a budget). Numbers, dates, capitalized words (names), words of the
query and whole code/table chunks are never pruned. Kept words map back to character ranges
of the original text through :meth:`Chunk.keep`, so provenance stays exact.

Li et al., *Compressing Context to Enhance Inference Efficiency of Large Language Models*
(Selective Context), EMNLP 2023; Jiang et al., *LLMLingua*, EMNLP 2023.

>>> prunable_words("In 1889, Gustave Eiffel built it quickly.", {"built"})
[(0, 2), (30, 32), (33, 41)]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.gguf import packaged_gguf_path, stored_llama, using_llama
from optimizer.models import default_store
from optimizer.records import Chunk
from optimizer.stage import Stage, StageContext, StageOutput
from optimizer.validate import positive_int, unit_interval
from optimizer.text import STOPWORDS, content_words

_WORD = re.compile(r"\S+")
# code or tables: pruning words would break them
_CODE_HINT = re.compile(r"[{};]\s*$|^\s{4}\S|\t|^\s*\||```|^\s*(def|class|return|import|function)\b", re.MULTILINE)

def _protected(word: str, query_words: set[str]) -> bool:
    core = word.strip(".,;:!?\"'()[]{}")
    if not core:
        return False
    if any(ch.isdigit() for ch in core):  # numbers, dates, ids
        return True
    if core[:1].isupper() and core.lower() not in STOPWORDS:  # names and other entities
        return True
    if not any(ch.isascii() for ch in core):  # scripts without case: keep (no cue for entities)
        return True
    return any(w in query_words for w in content_words(core))


def prunable_words(text: str, query_words: set[str]) -> list[tuple[int, int]]:
    """Character ranges of the words of ``text`` that pruning may remove."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text) if not _protected(m.group(0), query_words)]


def packaged_gguf() -> Path:
    """The packaged Gemma-3-270M GGUF (see :mod:`optimizer.gguf`)."""
    return packaged_gguf_path(purpose="LM pruning (lm-prune)")


_PURPOSE = "LM pruning (lm-prune)"
_UNSCORED = object()


def _load(model_path: str | None, n_ctx: int) -> Any:
    """The scoring model, every position's logits kept (AMX-safe, see :func:`optimizer.gguf.load_llama`)."""
    return stored_llama(model_path, n_ctx=n_ctx, purpose=_PURPOSE, logits_all=True)


class LMPrune(Stage):
    """Drop the least informative words of each chunk, by a small LM's self-information.

    Parameters
    ----------
    keep_ratio:
        Share of each chunk's prunable words to keep when the run has no budget.
    min_keep:
        With a budget, never keep less than this share of a chunk's words.
    model_path:
        A GGUF file; ``None`` uses the packaged Gemma-3-270M.
    window:
        Tokens scored per llama.cpp call (longer texts go in consecutive windows).
    """

    name = "compress-lm-prune"

    def __init__(self, *, keep_ratio: float = 0.6, min_keep: float = 0.3, model_path: str | None = None, window: int = 480) -> None:
        unit_interval(keep_ratio, "compress-lm-prune: keep_ratio")
        unit_interval(min_keep, "compress-lm-prune: min_keep")
        if positive_int(window, "compress-lm-prune: window", what="tokens") < 16:
            raise ValueError(f"compress-lm-prune: window must be at least 16 tokens, got {window!r}")
        self.keep_ratio = keep_ratio
        self.min_keep = min_keep
        self.model_path = model_path
        self.window = window

    def warm_up(self) -> None:
        _load(self.model_path, self.window + 32)

    def _surprisal(self, text: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-token self-information (nats) and each token's end offset in ``text`` (characters).

        Memoized in the model store by (model, window, text): a sweep over budgets scores each text once.
        """
        key = (self.model_path, self.window, text)
        memo = default_store().memo("lm-prune-surprisal")
        found = memo.get(key, _UNSCORED)
        if found is _UNSCORED:
            with using_llama(self.model_path, n_ctx=self.window + 32, purpose=_PURPOSE, logits_all=True) as llm:
                found = self._score(llm, text)
            if len(memo) >= 4096:
                memo.clear()  # other threads only ever .get() from it
            memo[key] = found
        return found  # type: ignore[return-value]

    def _score(self, llm: Any, text: str) -> tuple[np.ndarray, np.ndarray] | None:
        data = text.encode("utf-8")
        tokens = llm.tokenize(data, add_bos=False, special=False)
        if not tokens:
            return None
        ends_b, pos = [], 0
        for t in tokens:
            pos += len(llm.detokenize([t]))
            ends_b.append(pos)
        if pos != len(data):  # the tokenizer changed the bytes (normalization): do not guess offsets
            return None
        char_of_byte = np.zeros(len(data) + 1, dtype=np.int64)
        idx = 0
        for ci, ch in enumerate(text):
            n = len(ch.encode("utf-8"))
            char_of_byte[idx : idx + n] = ci
            idx += n
        char_of_byte[len(data)] = len(text)
        info = np.zeros(len(tokens))
        bos = llm.token_bos()
        for start in range(0, len(tokens), self.window):
            part = [bos] + tokens[start : start + self.window]
            llm.reset()
            llm.eval(part)
            logits = np.asarray(llm.scores[: len(part) - 1], dtype=np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            logz = np.log(np.exp(logits).sum(axis=1))
            picked = logits[np.arange(len(part) - 1), part[1:]]
            info[start : start + len(part) - 1] = logz - picked
        return info, char_of_byte[np.array(ends_b)]

    def _prune(self, query_words: set[str], chunk: Chunk, share: float) -> Chunk:
        text = chunk.text
        if not text.strip() or _CODE_HINT.search(text) or share >= 1.0:
            return chunk
        words = list(_WORD.finditer(text))
        candidates = [i for i, m in enumerate(words) if not _protected(m.group(0), query_words)]
        drop_n = len(words) - int(np.ceil(share * len(words)))
        if drop_n <= 0 or not candidates:
            return chunk
        scored = self._surprisal(text)
        if scored is None:
            return chunk
        info, token_ends = scored
        # a token belongs to the first word that ends at or after the token's end (both sorted)
        word_ends = np.array([m.end() for m in words])
        owner = np.searchsorted(word_ends, token_ends, side="left")
        inside = owner < len(words)
        word_info = np.bincount(owner[inside], weights=info[inside], minlength=len(words))
        order = sorted(candidates, key=lambda i: (word_info[i], i))
        dropped = set(order[:drop_n])
        keep_ranges: list[tuple[int, int]] = []
        for i, m in enumerate(words):
            if i not in dropped:
                keep_ranges.extend(chunk.map_range(m.start(), m.end()))
        return chunk.keep(keep_ranges)

    def __call__(self, query: str, chunks: Sequence[Chunk], context: StageContext) -> StageOutput:
        live = [c for c in chunks if c.text.strip()]
        if not live:
            return StageOutput(list(chunks))
        if context.budget is None:
            share = float(self.keep_ratio)
        else:
            total = sum(context.count(c.text) for c in live) + context.overhead(live)
            share = min(1.0, max(float(self.min_keep), context.budget / max(1, total)))
        query_words = set(content_words(query))
        out = [self._prune(query_words, c, share) for c in chunks]
        reasons = {c.id: "lm-prune: low self-information words removed" for c, o in zip(chunks, out) if o.text != c.text}
        return StageOutput(out, reasons=reasons, notes={"keep_share": round(share, 3)})

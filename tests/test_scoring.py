"""The fast BM25+ of the sentence stage gives rank_bm25's numbers bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.scoring import EMPTY_DOC, bm25_plus_scores, bm25_term_scores


def _docs(rng: np.random.Generator, n: int, vocab: int) -> list[list[str]]:
    words = [f"w{k}" for k in range(vocab)]
    return [list(rng.choice(words, int(rng.integers(0, 30)))) for _ in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_bm25_plus_scores_equal_rank_bm25s_exactly(seed):
    rng = np.random.default_rng(seed)
    docs = _docs(rng, int(rng.integers(1, 300)), int(rng.integers(3, 200)))
    query = [f"w{k}" for k in rng.integers(0, 220, int(rng.integers(0, 12)))]  # repeats, and words in no document
    k1, b = (1.5, 0.75) if seed % 2 else (float(rng.uniform(0.5, 2)), float(rng.uniform(0, 1)))
    assert bm25_plus_scores(query, docs, k1=k1, b=b) == bm25_term_scores(query, docs, k1=k1, b=b)


def test_bm25_plus_scores_edge_cases_match():
    for query, docs in [([], [["a"]]), (["a"], []), (["a"], [[], []]), ([EMPTY_DOC, "a"], [[], ["a", "a"], ["b"]])]:
        assert bm25_plus_scores(query, docs) == bm25_term_scores(query, docs)

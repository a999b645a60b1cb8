"""dedupe-near's pair search: the same chunks as one full sparse product, in bounded memory.

``_similar_pairs`` used to build ``member @ member.T`` over all chunks: one entry for each pair
sharing any shingle, so chunks that share a phrase (a source line, a footer) or are copies
of one another took memory that grew with the square of their number.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from optimizer import Chunk
from optimizer.stage import StageContext
from optimizer.stages import dedupe
from optimizer.stages.dedupe import NearDedupe, _similar_pairs
from optimizer.text import shingles


def _old_similar_pairs(sets, threshold):  # type: ignore[no-untyped-def]
    """The pair finder as it was (one full product): the reference the new one must equal."""
    from scipy import sparse

    sizes = np.array([len(s) for s in sets], dtype=np.int64)
    keys = np.fromiter(map(hash, itertools.chain.from_iterable(sets)), dtype=np.int64, count=int(sizes.sum()))
    if not len(keys):
        return []
    _, cols = np.unique(keys, return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), sizes)
    member = sparse.csr_matrix((np.ones(len(keys), dtype=np.int64), (rows, cols.reshape(-1))), shape=(len(sets), int(cols.max()) + 1))
    shared = sparse.triu(member @ member.T, k=1).tocoo()
    union = sizes[shared.row] + sizes[shared.col] - shared.data
    close = shared.data >= threshold * union - 1e-9 * union
    return sorted(set(shared.row[close].tolist()) | set(shared.col[close].tolist()))


def _random_texts(rnd: random.Random) -> list[str]:
    vocab = [f"w{k}" for k in range(rnd.choice([3, 6, 20, 200]))]
    phrases = [" ".join(rnd.choice(vocab) for _ in range(rnd.randint(1, 6))) for _ in range(3)]
    texts: list[str] = []
    for _ in range(rnd.randint(0, 40)):
        r = rnd.random()
        if texts and r < 0.25:
            texts.append(rnd.choice(texts))  # an exact copy
        elif texts and r < 0.5:
            words = rnd.choice(texts).split()  # a near copy: a word changed, maybe one added
            if words:
                words[rnd.randrange(len(words))] = rnd.choice(vocab)
                if rnd.random() < 0.3:
                    words.append(rnd.choice(vocab))
            texts.append(" ".join(words))
        elif r < 0.55:
            texts.append("")
        else:
            parts = [" ".join(rnd.choice(vocab) for _ in range(rnd.randint(0, 15)))]
            if rnd.random() < 0.6:
                parts.insert(rnd.randint(0, 1), rnd.choice(phrases))  # a shared phrase
            texts.append(" ".join(parts))
    return texts


@pytest.mark.parametrize("seed", range(4))
def test_pair_finder_equals_the_full_product(seed, monkeypatch):
    rnd = random.Random(seed)
    for _ in range(150):
        texts = _random_texts(rnd)
        threshold = rnd.choice([0.3, 0.5, 0.6, 0.7, 0.8, 0.8, 0.9, 1.0, 1 / 3, 2 / 3])
        sets = [shingles(t, rnd.choice([1, 2, 3, 3, 5])) for t in texts]
        # tiny blocks too: many blocks must find what one block finds
        monkeypatch.setattr(dedupe, "_BLOCK_ENTRIES", rnd.choice([1, 3, 50, 1 << 21]))
        monkeypatch.setattr(dedupe, "_ALL_PAIRS_UP_TO", rnd.choice([0, 0, 0, 512]))  # mostly the bounded path
        assert _similar_pairs(sets, threshold) == _old_similar_pairs(sets, threshold), (texts, threshold)


class _Colliding:
    """A shingle whose hash collides with others' (as two strings' hashes might)."""

    def __init__(self, text: str, mod: int) -> None:
        self.text, self.mod = text, mod

    def __hash__(self) -> int:
        return hash(self.text) % self.mod

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Colliding) and self.text == other.text


def test_pair_finder_equals_the_full_product_when_hashes_collide(monkeypatch):
    rnd = random.Random(7)
    for _ in range(300):
        mod = rnd.choice([2, 3, 5, 11, 50])
        vocab = [f"w{k}" for k in range(rnd.choice([5, 20, 100]))]
        sets: list[set] = []
        for _ in range(rnd.randint(0, 30)):
            if sets and rnd.random() < 0.3:
                sets.append(set(rnd.choice(sets)))
            else:
                sets.append({_Colliding(rnd.choice(vocab), mod) for _ in range(rnd.randint(0, 8))})
        threshold = rnd.choice([0.3, 0.5, 0.8, 1.0])
        monkeypatch.setattr(dedupe, "_BLOCK_ENTRIES", rnd.choice([1, 3, 1 << 21]))
        monkeypatch.setattr(dedupe, "_ALL_PAIRS_UP_TO", 0)
        assert _similar_pairs(sets, threshold) == _old_similar_pairs(sets, threshold)


def _largest_product(monkeypatch):  # type: ignore[no-untyped-def]
    """Record the entries of every sparse product the pair finder makes."""
    sizes: list[int] = []
    real = dedupe._product

    def spy(a, b):  # type: ignore[no-untyped-def]
        out = real(a, b)
        sizes.append(out.nnz)
        return out

    monkeypatch.setattr(dedupe, "_product", spy)
    return sizes


def test_a_phrase_every_chunk_shares_makes_no_quadratic_product(monkeypatch):
    n = 3000
    rnd = random.Random(0)
    vocab = [f"w{k}" for k in range(50000)]
    chunks = [Chunk(id=str(i), text="Source: the city archive. " + " ".join(rnd.choice(vocab) for _ in range(25))) for i in range(n)]
    sizes = _largest_product(monkeypatch)
    out = NearDedupe()("q", chunks, StageContext.default())
    assert len(out.chunks) == n and not out.reasons
    assert max(sizes, default=0) <= 10 * n  # one full product had about n * n = 9,000,000 entries


def test_copies_collapse_and_near_copies_are_searched_in_blocks(monkeypatch):
    n = 3000
    base = "The bridge over the river was opened in 1932 by the king. It is 503 metres long and its arch is steel."
    sizes = _largest_product(monkeypatch)
    out = NearDedupe()("q", [Chunk(id=str(i), text=base) for i in range(n)], StageContext.default())
    assert [c.id for c in out.chunks] == ["0"]
    assert max(sizes, default=0) <= 10  # 3,000 identical chunks are one group: nothing to pair

    # near copies (each changes one word) truly pair with one another: blocks bound each product
    monkeypatch.setattr(dedupe, "_BLOCK_ENTRIES", 20_000)
    sizes.clear()
    words = base.split()
    n = 1000
    texts = [" ".join(words[:k % len(words)] + [f"x{k}"] + words[k % len(words) + 1 :]) for k in range(n)]
    sets = [shingles(t, 3) for t in texts]
    found = _similar_pairs(sets, 0.5)
    assert len(found) == n
    assert max(sizes) <= 20_000 + n  # a block holds at least one row (at most n entries)

"""The embedders' memos under runs in several threads: a full memo is replaced, never cleared under a call."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from optimizer.memo import remembered


class _Owner:
    MEMO_SIZE = 3

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return np.array([[float(len(t)), float(ord(t[0]))] for t in texts], dtype=np.float32)


def _want(texts: list[str]) -> list[list[float]]:
    return [[float(len(t)), float(ord(t[0]))] for t in texts]


def test_each_distinct_text_is_embedded_once_and_rows_follow_the_input():
    owner = _Owner()
    out = remembered(owner, ["aa", "b", "aa"], owner.embed)
    assert out.dtype == np.float32 and out.tolist() == _want(["aa", "b", "aa"])
    assert remembered(owner, ["b", "aa"], owner.embed).tolist() == _want(["b", "aa"])
    assert owner.embedded == ["aa", "b"]


def test_a_memo_replaced_by_another_call_in_flight_loses_no_row():
    """Another thread fills the memo past its size while this call embeds: this call still answers."""
    owner = _Owner()
    remembered(owner, ["a", "bb"], owner.embed)  # "a" and "bb" remembered
    first = owner._memo

    def embed_while_another_call_fills_the_memo(texts: list[str]) -> np.ndarray:
        remembered(owner, ["xxx", "yyyy", "zzzzz"], owner.embed)  # past MEMO_SIZE: a new memo
        return owner.embed(texts)

    out = remembered(owner, ["a", "ccc", "bb"], embed_while_another_call_fills_the_memo)
    assert out.tolist() == _want(["a", "ccc", "bb"])
    assert owner._memo is not first and set(owner._memo) == {"xxx", "yyyy", "zzzzz"}  # replaced, not cleared
    assert first["a"].tolist() == _want(["a"])[0]  # what the old memo held is still there for its readers


@pytest.mark.slow
def test_static_memos_reset_in_another_thread_give_the_same_vectors():
    from optimizer.embeddings import get_embedder

    static = get_embedder("static")
    texts = [f"Sentence number {i} about Zürich, (Paris) and word{i % 37}x." for i in range(400)]
    want = static.encode(texts)
    tok = static._model.tokenizer
    learn = type(static)._learn

    def learn_then_reset(self, tokens, known, pieces):  # another thread resets the memos mid-call
        learn(self, tokens, known, pieces)
        self._reset_memos()

    static._reset_memos()
    try:
        type(static)._learn = learn_then_reset
        assert static._word_pieces(texts[:5]) == [tok.encode(t, add_special_tokens=False).ids for t in texts[:5]]
    finally:
        type(static)._learn = learn
    static.MEMO_TOKENS = 50  # an instance attribute: memos start again every few calls
    try:
        results: dict[int, np.ndarray] = {}
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                results[k] = np.concatenate([static.encode(texts[j : j + 7]) for j in range(k * 7, 400, 7 * 4)])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for k in range(4):
            rows = [r for j in range(k * 7, 400, 28) for r in range(j, min(j + 7, 400))]
            assert np.array_equal(results[k], want[rows])
    finally:
        del static.MEMO_TOKENS
        static._reset_memos()

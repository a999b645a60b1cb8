"""Threads that share a stored llama.cpp model take turns (a context serves one call at a time).

No real model here: the store holds a stand-in, and the scoring functions are replaced by ones
that notice when two threads are inside at once.
"""

from __future__ import annotations

import threading
import time

import pytest

from optimizer.models import ModelStore, use_store


class _Overlap:
    """Counts the threads inside; remembers whether two ever were."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.overlapped = False

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.overlapped |= self.inside > 1

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def _run_threads(store: ModelStore, work, n: int = 4) -> list[BaseException]:
    errors: list[BaseException] = []

    def body(k: int) -> None:
        try:
            with use_store(store):
                work(k)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_rerank_lm_threads_take_turns_on_the_model_and_keep_their_scores(monkeypatch):
    from optimizer.stages import lm_rerank

    stage = lm_rerank.LMRerank(candidates=2)
    store, model, seen = ModelStore(), object(), _Overlap()
    store.put(("llama", None, stage._n_ctx, False), model)

    def likelihood(llm, passage, question, *, passage_tokens):  # noqa: ANN001
        assert llm is model
        seen.enter()
        time.sleep(0.005)
        seen.leave()
        return -float(len(passage) + len(question))

    monkeypatch.setattr(lm_rerank, "question_likelihood", likelihood)
    got: dict[tuple[int, int], float] = {}

    def work(k: int) -> None:
        for i in range(6):
            got[k, i] = stage._likelihood("p" * (k * 10 + i), "why?")

    assert not _run_threads(store, work)
    assert not seen.overlapped
    assert got == {(k, i): -float(k * 10 + i + 4) for k in range(4) for i in range(6)}


def test_lm_prune_threads_take_turns_on_the_model_and_a_none_score_is_remembered(monkeypatch):
    from optimizer.stages import lm_prune

    stage = lm_prune.LMPrune(window=64)
    store, model, seen = ModelStore(), object(), _Overlap()
    store.put(("llama", None, 64 + 32, True), model)
    calls: list[str] = []

    def score(self, llm, text):  # noqa: ANN001
        assert llm is model
        seen.enter()
        calls.append(text)
        time.sleep(0.005)
        seen.leave()
        return None  # what _score gives when the tokenizer changed the bytes

    monkeypatch.setattr(lm_prune.LMPrune, "_score", score)

    def work(k: int) -> None:
        for i in range(6):
            assert stage._surprisal(f"text {k} {i}") is None

    assert not _run_threads(store, work)
    assert not seen.overlapped
    with use_store(store):
        assert stage._surprisal("text 0 0") is None
    assert sorted(calls) == sorted(f"text {k} {i}" for k in range(4) for i in range(6))  # each scored once


def test_using_llama_loads_once_and_names_the_model_it_holds():
    from optimizer.gguf import using_llama

    store = ModelStore()
    store.put(("llama", "/m.gguf", 128, False), "the model")
    with use_store(store):
        with using_llama("/m.gguf", n_ctx=128, purpose="a test", logits_all=False) as llm:
            assert llm == "the model"
            held = store.get(("llama-lock", "/m.gguf", 128, False), threading.Lock)
            assert held.locked()
        assert not held.locked()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])

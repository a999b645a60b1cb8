"""run_eval: each pipeline runs with models of its own, so its latency is not another pipeline's memo."""

from __future__ import annotations

import pytest

from evals.datasets import load_dataset
from evals.sweep import run_eval
from optimizer import Pipeline
from optimizer.models import ModelStore, default_store, use_store
from eval_fixtures import write_tiny


class Closable:
    closed = False

    def close(self) -> None:
        self.closed = True


class Probe:
    """A stage that records which store it ran with and what that store had memoized before."""

    def __init__(self, log: list[tuple[str, ModelStore, int]], name: str) -> None:
        self.log, self.name = log, name

    def __call__(self, query, chunks, context):
        store = default_store()
        memo = store.memo("probe-vectors")  # what an embedder remembers between calls
        self.log.append((self.name, store, len(memo)))  # the store itself: ids of freed stores are reused
        memo[query] = True
        self.model = store.get("probe-model", Closable)
        return chunks


@pytest.fixture
def tiny(tmp_path):
    return load_dataset(write_tiny(tmp_path / "tiny.jsonl"))


def probes(log):
    a, b = Probe(log, "a"), Probe(log, "b")
    return a, b, [Pipeline([a], name="a"), Pipeline([b], name="b")]


def test_each_pipeline_starts_with_empty_memos_in_its_own_store_closed_after_it(tiny):
    log: list[tuple[str, ModelStore, int]] = []
    a, b, pipes = probes(log)
    outer = ModelStore()
    with use_store(outer):
        run_eval(tiny, pipes, [0.5, 0.8], progress=False)
    first = {name: next(seen for n, _, seen in log if n == name) for name in ("a", "b")}
    assert first == {"a": 0, "b": 0}  # b does not read what a memoized
    stores = {name: {id(s) for n, s, _ in log if n == name} for name in ("a", "b")}  # all still alive: ids unique
    assert all(len(s) == 2 for s in stores.values()) and not stores["a"] & stores["b"]  # one per budget
    assert id(outer) not in stores["a"] | stores["b"] and "probe-model" not in outer
    # the second budget does not read the memos of the first either (tests/test_eval_latency_and_reader_errors.py)
    assert [seen for n, _, seen in log if n == "a"][len(tiny.examples)] == 0
    assert a.model.closed and b.model.closed and a.model is not b.model


def test_fresh_models_false_shares_the_store_in_use(tiny):
    log: list[tuple[str, ModelStore, int]] = []
    a, b, pipes = probes(log)
    outer = ModelStore()
    with use_store(outer):
        run_eval(tiny, pipes, [0.5], progress=False, fresh_models=False)
    assert all(s is outer for _, s, _ in log)
    assert next(seen for n, _, seen in log if n == "b") == len(tiny.examples)  # b reads a's memo
    assert a.model is b.model and not a.model.closed


def test_a_model_put_into_the_store_in_use_by_hand_is_used_and_left_open(tiny):
    log: list[tuple[str, ModelStore, int]] = []
    a, b, pipes = probes(log)
    outer = ModelStore()
    mine = Closable()
    outer.put("probe-model", mine)  # the user's own model (or a test double)
    outer.memo("probe-vectors")["stale"] = True  # loaded state is not carried over
    with use_store(outer):
        run_eval(tiny, pipes, [0.5], progress=False)
    assert a.model is mine and b.model is mine and not mine.closed
    assert next(seen for n, _, seen in log if n == "b") == 0
    assert outer.memo("probe-vectors") == {"stale": True}

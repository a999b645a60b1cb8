"""What a long-running process (a service, a notebook, an async app) needs from the library:
the event loop stays free during ``aretrieve``, the caller's random generators are left alone,
the sentence cache has a memory bound, and a closed model store loads nothing more."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from optimizer import Chunk, Pipeline
from optimizer.models import ModelStore, default_store, use_store
from optimizer.stage import Stage, StageContext, StageOutput

# --- the LlamaIndex retriever's async path runs the pipeline off the event loop

SLOW_SECONDS = 0.3


class _SlowStage(Stage):
    """Passes chunks through after blocking its thread for SLOW_SECONDS (as a CPU-bound stage would)."""

    name = "slow"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, query, chunks, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        time.sleep(SLOW_SECONDS)
        return StageOutput(list(chunks))


async def _longest_stall(work) -> tuple[object, float, int]:  # type: ignore[no-untyped-def]
    """``await work`` while a heartbeat ticks every 10 ms: its result, the longest gap between ticks, the ticks."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def beat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(beat())
    await asyncio.sleep(0.03)
    try:
        out = await work
    finally:
        done.set()
        await task
    return out, max(gaps), len(gaps)


@pytest.mark.parametrize("entry", ["retriever.aretrieve", "postprocessor.apostprocess_nodes"])
def test_async_llama_index_calls_run_the_pipeline_off_the_event_loop(entry):
    pytest.importorskip("llama_index.core")
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

    from optimizer.integrations.llama_index import RagtrimPostprocessor, RagtrimRetriever

    nodes = [NodeWithScore(node=TextNode(id_=f"n{i}", text=f"Fact number {i} is here."), score=1.0) for i in range(3)]

    class Fixed(BaseRetriever):
        def _retrieve(self, query_bundle):  # type: ignore[no-untyped-def]
            return list(nodes)

    slow = _SlowStage()
    pipeline = Pipeline([slow], budget=1000)
    if entry == "retriever.aretrieve":
        work = RagtrimRetriever(Fixed(), pipeline=pipeline).aretrieve("fact 1")
    else:
        work = RagtrimPostprocessor(pipeline=pipeline).apostprocess_nodes(list(nodes), query_str="fact 1")
    out, stall, ticks = asyncio.run(_longest_stall(work))
    assert slow.calls == 1 and [n.node.id_ for n in out] == ["n0", "n1", "n2"]
    assert stall < 0.1, f"the event loop stalled {stall:.2f} s while the pipeline ran"
    assert ticks >= 10  # the heartbeat kept ticking through the 0.3 s run


# --- near-dedupe's MinHash LSH leaves the caller's random generators alone

CITIES = ["Lyon", "Porto", "Graz", "Turku", "Ghent", "Brno", "Cork", "Bergen", "Split", "Aarhus"]


def _bridge(i: int) -> str:
    return (
        f"Bridge {i} crosses the river Orn near the old mill of {CITIES[i % 10]} district {i}. "
        f"It opened in {1900 + i} after {i + 3} years of work by a crew of {40 + i} people. "
        f"The span is {100 + i} metres long, carries {i % 5 + 2} lanes and a path for bikes. "
        f"Engineers from {CITIES[(i + 3) % 10]} designed its steel arch in {1890 + i} for the town council."
    )


def _with_near_copies() -> list[Chunk]:
    """90 chunks: 40 originals, 20 copies that differ in case and spacing only, 20 with one sentence
    edited (Jaccard 0.93), 10 unrelated; more than near-dedupe's 64, so MinHash LSH finds the pairs."""
    chunks = [Chunk(id=f"a{i}", text=_bridge(i)) for i in range(40)]
    chunks += [Chunk(id=f"same{i}", text=_bridge(i).upper().replace(".", " .")) for i in range(0, 40, 2)]
    chunks += [Chunk(id=f"edit{i}", text=_bridge(i).replace("the town council", "the county council")) for i in range(1, 40, 2)]
    chunks += [Chunk(id=f"other{k}", text=f"A note {k} on apples, pears and {k * 7} plums in a basket.") for k in range(10)]
    return chunks


def _expected_near_reasons() -> dict[str, str]:
    out = {f"same{i}": f"near-duplicate of a{i} (jaccard 1.00)" for i in range(0, 40, 2)}
    out.update({f"edit{i}": f"near-duplicate of a{i} (jaccard 0.93): kept the 1 sentence it adds" for i in range(1, 40, 2)})
    return out


def test_default_on_many_chunks_leaves_random_alone_and_drops_the_same_near_duplicates():
    from optimizer.stages.dedupe import NearDedupe, lsh_bands

    chunks = _with_near_copies()
    pipeline = Pipeline.preset("default", budget=200).warm_up()
    pipeline.run("When did bridge 3 open?", chunks)  # first run: lazy imports
    lsh_bands.cache_clear()  # the band search runs again, inside the runs below
    random.seed(42)
    np.random.seed(42)
    state, np_state = random.getstate(), np.random.get_state()
    results = [pipeline.run(f"When did bridge {k} open?", chunks) for k in range(2)]
    assert random.getstate() == state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state) if isinstance(a, np.ndarray))
    info = lsh_bands.cache_info()
    assert (info.misses, info.hits) == (1, 1)  # searched once, then cached
    for result in results:
        near = next(step for step in result.trace if step.name == "dedupe-near")
        assert {d.chunk_id: d.reason for d in near.dropped} == _expected_near_reasons()
    out = NearDedupe()("q", chunks, StageContext.default())
    assert dict(out.reasons) == _expected_near_reasons()
    assert [c.text for c in out if c.id == "edit7"] == ["Engineers from Lyon designed its steel arch in 1897 for the county council."]
    assert dict(NearDedupe(lsh_above=10_000)("q", chunks, StageContext.default()).reasons) == _expected_near_reasons()


@pytest.mark.parametrize("threshold,num_perm", [(0.8, 128), (0.9, 64), (0.5, 128)])
def test_the_lsh_band_index_finds_the_candidates_minhashlsh_finds(threshold, num_perm):
    from datasketch import MinHash, MinHashLSH

    from optimizer.stages.dedupe import _BandIndex, lsh_bands

    rng = np.random.default_rng(11)
    vocab = [f"w{k}" for k in range(120)]
    sets = [set(rng.choice(vocab, 40)) for _ in range(60)]
    sets += [set(list(s)[: -int(rng.integers(1, 8))]) | {"new"} for s in sets[:60]]  # copies near any threshold
    hashes = MinHash.bulk(([w.encode() for w in s] for s in sets), num_perm=num_perm, seed=1)
    bands = lsh_bands(threshold, num_perm)
    theirs, ours = MinHashLSH(num_perm=num_perm, params=bands), _BandIndex(*bands)
    found = 0
    for i, h in enumerate(hashes):
        expected = {int(k) for k in theirs.query(h)}
        assert ours.query(h.hashvalues) == expected
        found += len(expected)
        theirs.insert(str(i), h)
        ours.insert(i, h.hashvalues)
    assert found > 0


# --- split_sentences' cache: bounded by characters, the same ranges, and clearable


def _prose(rng: random.Random, sentences: int) -> str:
    syllables = ["ka", "lo", "mi", "ter", "son", "ra", "vel", "do"]
    words = lambda: " ".join("".join(rng.choice(syllables) for _ in range(3)) for _ in range(10))  # noqa: E731
    return " ".join(words().capitalize() + "." for _ in range(sentences))


def test_the_split_cache_stays_within_its_character_budget(monkeypatch):
    from optimizer import sentences

    cache = sentences._SplitCache(max_chars=20_000, max_text=3_000)
    monkeypatch.setattr(sentences, "_SPLIT_CACHE", cache)
    rng = random.Random(0)
    for k in range(400):
        text = _prose(rng, rng.randint(1, 8))
        assert sentences.split_sentences(text) == sentences._split(text)
        assert cache.info().chars <= 20_000
    info = cache.info()
    assert 0 < info.currsize < 400 and info.chars > 15_000  # full, and older texts were let go
    assert info.chars == sum(len(t) for t in cache._items)
    long_text = _prose(rng, 60)  # over max_text: split each time, never kept
    assert len(long_text) > 3_000
    before = cache.info().misses
    assert sentences.split_sentences(long_text) == sentences.split_sentences(long_text) == sentences._split(long_text)
    assert cache.info().misses == before + 2 and long_text not in cache._items


def test_the_split_cache_returns_what_splitting_returns_from_many_threads(monkeypatch):
    from optimizer import sentences

    monkeypatch.setattr(sentences, "_SPLIT_CACHE", sentences._SplitCache(max_chars=6_000, max_text=2_000))
    rng = random.Random(1)
    texts = [_prose(rng, rng.randint(1, 6)) + ("\n\n| a | b |\n| 1 | 2 |" if k % 3 == 0 else "") for k in range(60)]
    expected = {t: sentences._split(t) for t in texts}
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(sentences.split_sentences, texts * 20))
    assert got == [expected[t] for t in texts * 20]
    assert sentences.split_cache_info().chars <= 6_000


def test_clear_split_cache_forgets_every_text(monkeypatch):
    from optimizer import sentences

    monkeypatch.setattr(sentences, "_SPLIT_CACHE", sentences._SplitCache())
    texts = [f"Sentence {k} here. Another one {k}." for k in range(5)]
    for t in texts:
        sentences.split_sentences(t)
    assert sentences.split_cache_info().currsize == 5
    sentences.clear_split_cache()
    info = sentences.split_cache_info()
    assert (info.currsize, info.chars, info.hits, info.misses) == (0, 0, 0, 0)
    assert sentences.split_sentences(texts[0]) == ((0, 16), (17, 31))
    assert sentences.split_sentences(texts[0]) == ((0, 16), (17, 31))
    assert sentences.split_cache_info()[:4] == (1, 1, None, 1)
    sentences.split_sentences.cache_clear()  # the name it had as an lru_cache still works
    assert sentences.split_sentences.cache_info().currsize == 0


# --- a closed ModelStore loads nothing more


class _Model:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_closed_store_refuses_get_and_put_and_says_what_to_do():
    from optimizer.models import StoreClosedError

    with ModelStore() as store, use_store(store):
        assert default_store().get("m", _Model) is store.get("m", _Model)
    assert store.closed and store.keys() == []
    with pytest.raises(StoreClosedError, match=r"ModelStore is closed .*'m'.*use_store"):
        store.get("m", _Model)
    with pytest.raises(StoreClosedError):
        store.put("n", _Model())
    with pytest.raises(StoreClosedError):
        store.memo("vectors")
    store.close()  # again: nothing to do


def test_a_model_loading_while_its_store_closes_is_closed_not_kept():
    from optimizer.models import StoreClosedError

    store, loading, release = ModelStore(), threading.Event(), threading.Event()
    made: list[_Model] = []
    errors: list[BaseException] = []

    def load() -> _Model:
        made.append(_Model())
        loading.set()
        release.wait(10)
        return made[-1]

    def get() -> None:
        try:
            store.get("model", load)
        except StoreClosedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=get)
    thread.start()
    assert loading.wait(10)
    store.close()
    release.set()
    thread.join(10)
    assert len(errors) == 1 and made[0].closed
    assert store.keys() == []


def test_the_int8_embedder_starts_no_threads_after_close():
    from optimizer.minilm_int8 import MiniLMInt8Embedder
    from optimizer.models import ModelNotBuiltError

    pytest.importorskip("onnxruntime")
    try:
        emb = MiniLMInt8Embedder(threads=2)
    except ModelNotBuiltError:
        pytest.skip("the int8 MiniLM is not built (ragtrim models build --only minilm-int8)")
    before = set(threading.enumerate())  # other embedders (e.g. the default store's) may have threads of their own
    first = emb.encode(["Paris is in France.", "Lyon is a city."])
    mine = [t for t in threading.enumerate() if t not in before and t.name.startswith("ragtrim-minilm-int8")]
    assert mine  # its pool ran the two texts
    emb.close()
    assert emb._pool is None
    with pytest.raises(RuntimeError, match="closed"):
        emb.encode(["A new sentence.", "And another one."])
    with pytest.raises(RuntimeError, match="closed"):
        emb._executor()
    assert emb._pool is None
    for t in mine:
        t.join(5)
    alive = set(threading.enumerate())
    assert not any(t in alive for t in mine)
    assert not [t for t in alive - before if t.name.startswith("ragtrim-minilm-int8")]  # and no new ones
    assert np.array_equal(emb.encode(["Paris is in France.", "Lyon is a city."]), first)  # from its memo


def test_code_blocks_are_remembered_within_a_character_bound_and_cleared_with_the_split_cache():
    from optimizer import sentences

    text = "Run:\n```sh\nmake\n```\nDone."
    assert sentences.code_blocks(text) == ((5, 19),) and text[5:19] == "```sh\nmake\n```"
    assert sentences.code_blocks("no fence here") == ()
    assert text in sentences._CODE_CACHE._items
    for i in range(2_000):  # far more characters than a small bound
        sentences._CODE_CACHE.put(f"```\n{i}\n```" + "x" * 5_000, ((0, 10),))
    assert sentences._CODE_CACHE.info().chars <= sentences.SPLIT_CACHE_CHARS
    sentences.clear_split_cache()
    assert sentences._CODE_CACHE.info().currsize == 0
    assert sentences.code_blocks(text) == ((5, 19),)

"""Shared test set-up: never reach a model hub; small inline fixtures."""

from __future__ import annotations

import os

# A stray hub call must fail fast, never download.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

from optimizer import Chunk  # noqa: E402


@pytest.fixture
def paris_chunks() -> list[Chunk]:
    return [
        Chunk(id="p1", title="Paris", text="Paris is the capital of France. It has 2.1 million inhabitants.", score=0.4),
        Chunk(id="p2", title="Lyon", text="Lyon is the third-largest city of France. It is known for its cuisine.", score=0.9),
        Chunk(id="p3", title="Seine", text="The Seine flows through Paris. It is 777 km long.", score=0.1),
    ]


@pytest.fixture
def static_as_hashing():
    """A fresh model store, in use for the test, whose "static" embedder is a hashing embedder of the dim you pass."""
    from optimizer.embeddings import HashingEmbedder
    from optimizer.models import ModelStore, use_store

    store = ModelStore()
    with use_store(store):
        yield lambda dim: store.put(("embedder", "static"), HashingEmbedder(dim=dim))


@pytest.fixture(scope="session", autouse=True)
def _close_process_models():
    """Close the models tests loaded into the process store (llama.cpp ones) before the
    interpreter shuts down, where llama-cpp-python's own ``__del__`` fails noisily."""
    yield
    from optimizer.models import default_store

    default_store().close()

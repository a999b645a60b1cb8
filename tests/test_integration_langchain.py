"""The LangChain document compressor: ids, metadata, offsets, budget, no mutation."""

from __future__ import annotations

import importlib
import sys

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402

from optimizer import Chunk, Pipeline  # noqa: E402
from optimizer.integrations.langchain import RagtrimCompressor  # noqa: E402
from optimizer.lazy import MissingDependency  # noqa: E402

QUERY = "Which river flows through Paris?"


def make_docs() -> list[Document]:
    texts = [
        ("Paris", "Paris is the capital of France. The Seine flows through Paris. " * 3),
        ("Lyon", "Lyon is a city in France known for its cuisine and silk. " * 6),
        ("Berlin", "Berlin is the capital of Germany; the Spree flows through it. " * 6),
        (None, "Rome is the capital of Italy and the Tiber flows through it. " * 6),
    ]
    return [
        Document(id=f"d{i}", page_content=text, metadata={"title": title, "source": f"wiki/{i}", "score": 1 - i / 10})
        for i, (title, text) in enumerate(texts)
    ]


@pytest.mark.parametrize("budget", [50, 120, 0.4])
def test_compressor_keeps_ids_metadata_offsets_and_budget(budget):
    docs = make_docs()
    before = [d.model_dump() for d in docs]
    compressor = RagtrimCompressor(budget=budget)
    out = compressor.compress_documents(docs, QUERY)
    result = compressor.last_result

    assert 0 < len(out) <= len(docs)
    assert result.tokens <= result.budget
    pipeline = compressor.active_pipeline
    rendered = pipeline.renderer.render(
        [Chunk(id=d.id, text=d.page_content, title=d.metadata.get("title")) for d in out]
    ).text
    assert pipeline.tokenizer.count(rendered) == result.tokens
    assert [d.id for d in out] == [c.id for c in result.chunks]
    by_id = {d.id: d for d in docs}
    for d in out:
        original = by_id[d.id]
        meta = dict(d.metadata)
        spans = meta.pop("ragtrim_spans")
        assert meta == original.metadata
        assert " ".join(original.page_content[s:e] for s, e in spans) == d.page_content
    assert [d.model_dump() for d in docs] == before


def test_score_key_and_title_key_used():
    docs = make_docs()
    compressor = RagtrimCompressor(pipeline=Pipeline(budget=10_000), render="pipeline")
    compressor.compress_documents(docs, QUERY)
    assert [c.score for c in compressor.last_result.chunks] == pytest.approx([1.0, 0.9, 0.8, 0.7])
    assert "[1] Paris\n" in compressor.last_result.text
    compressor = RagtrimCompressor(pipeline=Pipeline(budget=10_000), title_key="source", score_key=None, render="pipeline")
    compressor.compress_documents(docs, QUERY)
    assert "wiki/0" in compressor.last_result.text
    assert all(c.score is None for c in compressor.last_result.chunks)


@pytest.mark.parametrize("budget", [30, 80, 0.5])
def test_the_budget_holds_in_what_a_stuff_chain_sends(budget):
    """create_stuff_documents_chain joins page_content with a blank line; ragtrim counts exactly that."""
    docs = make_docs()
    compressor = RagtrimCompressor(budget=budget)
    out = compressor.compress_documents(docs, QUERY)
    sent = "\n\n".join(d.page_content for d in out)
    assert sent == compressor.last_result.text
    assert compressor.active_pipeline.tokenizer.count(sent) == compressor.last_result.tokens <= compressor.last_result.budget


def test_a_second_run_maps_its_ranges_back_to_the_original():
    text = " ".join(f"Sentence {i} is about {'the Seine in Paris' if i % 3 == 0 else 'food in Lyon'}." for i in range(30))
    docs = [Document(id="a", page_content=text), Document(id="b", page_content="Berlin is on the Spree. " * 10)]
    first = RagtrimCompressor(budget=100).compress_documents(docs, QUERY)
    second = RagtrimCompressor(budget=35).compress_documents(first, QUERY)
    (a,) = [d for d in second if d.id == "a"]
    assert " ".join(text[s:e] for s, e in a.metadata["ragtrim_spans"]) == a.page_content


def test_changing_the_budget_after_construction_takes_effect():
    compressor = RagtrimCompressor(budget=20)
    compressor.budget = 200
    compressor.compress_documents(make_docs(), QUERY)
    assert compressor.last_result.budget == 200


def test_documents_without_ids_or_text():
    docs = [Document(page_content="The Seine flows through Paris."), Document(page_content=""), Document(page_content="Paris is in France.")]
    compressor = RagtrimCompressor(budget=200)
    out = compressor.compress_documents(docs, QUERY)
    assert sorted(d.page_content for d in out) == ["Paris is in France.", "The Seine flows through Paris."]
    assert all(d.id is None for d in out)
    assert compressor.last_result.trace[0].name == "skip-non-text"
    assert compressor.compress_documents([], QUERY) == []


def test_async_matches_sync():
    import asyncio

    docs = make_docs()
    compressor = RagtrimCompressor(budget=80)
    sync = [d.page_content for d in compressor.compress_documents(docs, QUERY)]
    assert [d.page_content for d in asyncio.run(compressor.acompress_documents(docs, QUERY))] == sync


def test_bad_input_is_clear():
    with pytest.raises(ValueError, match="budget or a pipeline"):
        RagtrimCompressor()
    with pytest.raises(TypeError, match="Document"):
        RagtrimCompressor(budget=100).compress_documents(["plain string"], QUERY)


def test_contextual_compression_retriever():
    retrievers = pytest.importorskip("langchain.retrievers")
    from langchain_core.retrievers import BaseRetriever

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query, *, run_manager=None):
            return make_docs()

    wrapped = retrievers.ContextualCompressionRetriever(base_compressor=RagtrimCompressor(budget=60), base_retriever=Fixed())
    out = wrapped.invoke(QUERY)
    assert out and all("ragtrim_spans" in d.metadata for d in out)


def test_missing_langchain_gives_install_hint(monkeypatch):
    for name in list(sys.modules):
        if name == "langchain_core" or name.startswith("langchain_core."):
            monkeypatch.setitem(sys.modules, name, None)
    import optimizer.integrations as package

    monkeypatch.setattr(package, "langchain", sys.modules["optimizer.integrations.langchain"])  # restored afterwards
    monkeypatch.delitem(sys.modules, "optimizer.integrations.langchain")
    module = importlib.import_module("optimizer.integrations.langchain")  # importing still works
    with pytest.raises(MissingDependency, match=r"ragtrim\[langchain\]"):
        module.RagtrimCompressor  # noqa: B018

"""The LlamaIndex postprocessor and retriever wrapper: provenance, budget, no mutation, odd nodes."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import Document, VectorStoreIndex  # noqa: E402
from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.embeddings import MockEmbedding  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.schema import ImageNode, MetadataMode, NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode  # noqa: E402

from optimizer import Chunk, Pipeline, Stage  # noqa: E402
from optimizer.integrations.llama_index import RagtrimPostprocessor, RagtrimRetriever  # noqa: E402
from optimizer.lazy import MissingDependency  # noqa: E402

QUERY = "Which river flows through Paris?"

TEXTS = {
    "paris": ("Paris", "Paris is the capital of France. The Seine flows through Paris. " * 3),
    "lyon": ("Lyon", "Lyon is a city in France known for its cuisine and silk. " * 6),
    "rhone": ("Rhone", "The Rhone flows through Lyon and into the Mediterranean Sea. " * 6),
    "berlin": ("Berlin", "Berlin is the capital of Germany; the Spree flows through it. " * 6),
    "rome": ("Rome", "Rome is the capital of Italy and the Tiber flows through it. " * 6),
}


def make_nodes() -> list[NodeWithScore]:
    out = []
    for i, (key, (title, text)) in enumerate(TEXTS.items()):
        node = TextNode(
            id_=f"node-{key}",
            text=text,
            metadata={"title": title, "page": i},
            embedding=[float(i), 1.0, 0.5],
            start_char_idx=100 * i,
            end_char_idx=100 * i + len(text),
        )
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"doc-{key}")
        out.append(NodeWithScore(node=node, score=1.0 - 0.1 * i))
    return out


def dump(nodes: list[NodeWithScore]) -> list[dict]:
    return [n.model_dump() for n in nodes]


def render_tokens(post: RagtrimPostprocessor, nodes: list[NodeWithScore]) -> int:
    """Tokens of the returned nodes as LlamaIndex's synthesizers send them: each node's LLM view, a blank line between."""
    return post.active_pipeline.tokenizer.count(sent_text(nodes))


def sent_text(nodes: list[NodeWithScore]) -> str:
    """What a LlamaIndex response synthesizer puts in the prompt for ``nodes`` (as ``PromptHelper.repack`` joins them)."""
    return "\n\n".join(c.strip() for c in (n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes) if c.strip())


class SpyStage(Stage):
    """Records the chunks it saw; keeps them all."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[Chunk] = []

    def __call__(self, query, chunks, context):
        self.seen = list(chunks)
        return list(chunks)


@pytest.mark.parametrize("budget", [60, 150, 0.3])
def test_budget_honoured_and_provenance_kept(budget):
    nodes = make_nodes()
    before = dump(nodes)
    post = RagtrimPostprocessor(budget=budget)
    out = post.postprocess_nodes(nodes, query_str=QUERY)

    result = post.last_result
    limit = result.budget
    assert 0 < len(out) <= len(nodes)
    assert result.tokens <= limit
    assert render_tokens(post, out) <= limit
    assert render_tokens(post, out) == result.tokens
    assert sent_text(out) == result.text  # ragtrim's context is what LlamaIndex will send
    assert dump(nodes) == before  # the caller's nodes are untouched

    by_id = {n.node.id_: n for n in nodes}
    assert [n.node.id_ for n in out] == [c.id for c in result.chunks]  # rendered order
    for n in out:
        original = by_id[n.node.id_]
        assert n.node is not original.node
        assert n.score == original.score
        meta = dict(n.node.metadata)
        spans = meta.pop("ragtrim_spans")
        assert meta == original.node.metadata
        assert n.node.relationships == original.node.relationships
        assert " ".join(original.node.text[s:e] for s, e in spans) == n.node.text
        assert "ragtrim_spans" in n.node.excluded_llm_metadata_keys
        assert "ragtrim_spans" not in n.node.get_content(metadata_mode="llm")


def test_cut_node_updates_char_envelope():
    nodes = make_nodes()
    post = RagtrimPostprocessor(budget=40)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    cut = [n for n in out if n.node.text != TEXTS[n.node.id_.removeprefix("node-")][1]]
    assert cut, "budget 40 must cut at least one node"
    for n in cut:
        original = next(o for o in nodes if o.node.id_ == n.node.id_).node
        spans = n.node.metadata["ragtrim_spans"]
        assert n.node.start_char_idx == original.start_char_idx + spans[0][0]
        assert n.node.end_char_idx == original.start_char_idx + spans[-1][1]


def test_budget_drops_something_when_small():
    post = RagtrimPostprocessor(budget=60)
    out = post.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert post.last_result.tokens_full > 60
    assert post.last_result.dropped  # the trace says what went
    assert sum(len(n.node.text) for n in out) < sum(len(t) for _, t in TEXTS.values())


def test_embeddings_reused_and_switchable():
    nodes = make_nodes()
    spy = SpyStage()
    RagtrimPostprocessor(pipeline=Pipeline([spy], budget=500)).postprocess_nodes(nodes, query_str=QUERY)
    assert [c.id for c in spy.seen] == [n.node.id_ for n in nodes]
    for c, n in zip(spy.seen, nodes):
        assert isinstance(c.embedding, np.ndarray)
        np.testing.assert_allclose(c.embedding, n.node.embedding)
        assert c.title == n.node.metadata["title"]
        assert c.score == pytest.approx(n.score)
    RagtrimPostprocessor(pipeline=Pipeline([spy], budget=500), reuse_embeddings=False).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert all(c.embedding is None for c in spy.seen)


def test_pipeline_budget_override_and_callback():
    seen = []
    pipeline = Pipeline.preset("default", budget=1000)
    post = RagtrimPostprocessor(pipeline=pipeline, budget=50, on_result=seen.append)
    post.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert post.last_result.budget == 50 and post.last_result.tokens <= 50
    assert seen == [post.last_result]
    assert pipeline.budget == 1000  # the caller's pipeline keeps its budget


def test_title_key_configurable():
    nodes = [NodeWithScore(node=TextNode(id_="a", text="Some text here.", metadata={"file_name": "notes.md"}), score=1.0)]
    post = RagtrimPostprocessor(budget=100)
    post.postprocess_nodes(nodes, query_str="text")
    assert "notes.md" in post.last_result.text
    post = RagtrimPostprocessor(budget=100, title_key="heading", render="pipeline")
    post.postprocess_nodes(nodes, query_str="text")
    assert "notes.md" not in post.last_result.text


def test_empty_retrieval_gives_empty_list():
    post = RagtrimPostprocessor(budget=100)
    assert post.postprocess_nodes([], query_str="anything") == []
    assert post.postprocess_nodes([]) == []
    assert post.last_result is not None and post.last_result.tokens == 0


def test_missing_query_is_a_clear_error():
    with pytest.raises(ValueError, match="query_str"):
        RagtrimPostprocessor(budget=100).postprocess_nodes(make_nodes())


def test_non_text_nodes_skipped_with_warning_and_trace(caplog):
    nodes = make_nodes()[:2] + [
        NodeWithScore(node=ImageNode(id_="img", image="aGVsbG8=", metadata={"title": "Pic"}), score=0.99),
        NodeWithScore(node=TextNode(id_="blank", text="   "), score=0.98),
    ]
    before = dump(nodes)
    post = RagtrimPostprocessor(budget=200)
    with caplog.at_level(logging.WARNING, logger="optimizer.integrations"):
        out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.id_ for n in out] == [c.id for c in post.last_result.chunks]
    assert {n.node.id_ for n in out} == {"node-paris", "node-lyon"}  # both text nodes survive
    assert "img" in caplog.text and "blank" in caplog.text
    head = post.last_result.trace[0]
    assert head.name == "skip-non-text" and {d.chunk_id for d in head.dropped} == {"img", "blank"}
    assert dump(nodes) == before

    kept = RagtrimPostprocessor(budget=200, non_text="keep").postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.id_ for n in kept[-2:]] == ["img", "blank"]
    assert kept[-2].node is not nodes[2].node and kept[-2].node.image == "aGVsbG8="


def test_duplicate_node_ids_lose_nothing():
    node = TextNode(id_="same", text="The Seine flows through Paris.")
    nodes = [NodeWithScore(node=node, score=0.5), NodeWithScore(node=node.model_copy(update={"text": "Paris is in France."}), score=0.4)]
    out = RagtrimPostprocessor(budget=200).postprocess_nodes(nodes, query_str=QUERY)
    assert sorted(n.node.text for n in out) == ["Paris is in France.", "The Seine flows through Paris."]
    assert all(n.node.id_ == "same" for n in out)


def test_bad_settings_are_clear():
    with pytest.raises(ValueError, match="budget or a pipeline"):
        RagtrimPostprocessor()
    with pytest.raises(ValueError, match="budget must be"):
        RagtrimPostprocessor(budget=-5)
    with pytest.raises(TypeError, match="optimizer.Pipeline"):
        RagtrimPostprocessor(pipeline="default")
    with pytest.raises(ValueError, match="unknown preset"):
        RagtrimPostprocessor(budget=100, preset="nope")
    with pytest.raises(TypeError, match="NodeWithScore"):
        RagtrimPostprocessor(budget=100).postprocess_nodes([TextNode(text="x")], query_str="q")


class ListRetriever(BaseRetriever):
    """Returns fixed nodes; records whether the async path was used."""

    def __init__(self, nodes):
        super().__init__()
        self.nodes = nodes
        self.calls: list[str] = []

    def _retrieve(self, query_bundle):
        self.calls.append("sync")
        return list(self.nodes)

    async def _aretrieve(self, query_bundle):
        self.calls.append("async")
        return list(self.nodes)


def test_retriever_wrapper_sync_and_async():
    nodes = make_nodes()
    before = dump(nodes)
    inner = ListRetriever(nodes)
    wrapped = RagtrimRetriever(inner, budget=80)
    out = wrapped.retrieve(QUERY)
    assert inner.calls == ["sync"]
    assert wrapped.last_result.tokens <= 80
    assert [n.node.id_ for n in out] == [c.id for c in wrapped.last_result.chunks]
    sync_texts = [n.node.text for n in out]

    out_async = asyncio.run(wrapped.aretrieve(QUERY))
    assert inner.calls == ["sync", "async"]
    assert [n.node.text for n in out_async] == sync_texts
    assert dump(nodes) == before


def test_retriever_wrapper_rejects_non_retriever():
    with pytest.raises(TypeError, match="BaseRetriever"):
        RagtrimRetriever(make_nodes(), budget=100)


def test_query_engine_with_mock_llm():
    docs = [Document(text=text, metadata={"title": title}, id_=f"doc-{key}") for key, (title, text) in TEXTS.items()]
    embed = MockEmbedding(embed_dim=8)
    index = VectorStoreIndex.from_documents(docs, embed_model=embed)
    post = RagtrimPostprocessor(budget=70)
    engine = index.as_query_engine(node_postprocessors=[post], llm=MockLLM(), similarity_top_k=5)
    response = engine.query(QUERY)
    assert post.last_result is not None and post.last_result.tokens <= 70
    assert 0 < len(response.source_nodes) < 5
    prompt = str(response)  # MockLLM echoes the prompt it was given
    for n in response.source_nodes:
        assert n.node.text in prompt
    assert "ragtrim_spans" not in prompt
    dropped_whole = {d.chunk_id for d in post.last_result.dropped if d.start is None}
    kept_ids = {n.node.id_ for n in response.source_nodes}
    assert dropped_whole and not (dropped_whole & kept_ids)
    from llama_index.core import Settings

    assert Settings._llm is None and Settings._embed_model is None  # nothing fell back to a global default model


def test_missing_llama_index_gives_install_hint(monkeypatch):
    for name in list(sys.modules):
        if name == "llama_index" or name.startswith("llama_index."):
            monkeypatch.setitem(sys.modules, name, None)
    import optimizer.integrations as package

    monkeypatch.setattr(package, "llama_index", sys.modules["optimizer.integrations.llama_index"])  # restored afterwards
    monkeypatch.delitem(sys.modules, "optimizer.integrations.llama_index")
    with pytest.raises(MissingDependency, match=r"ragtrim\[llama-index\]"):
        importlib.import_module("optimizer.integrations.llama_index")


@pytest.mark.slow
def test_faiss_quickstart_example_runs_offline(tmp_path):
    """The FAISS example end to end on a few questions (loads MiniLM; no reader), from an empty model cache."""
    import os
    import re
    import subprocess
    from pathlib import Path

    pytest.importorskip("faiss")
    pytest.importorskip("llama_index.vector_stores.faiss")
    pytest.importorskip("llama_index.embeddings.huggingface")
    script = Path(__file__).resolve().parent.parent / "examples" / "faiss_quickstart.py"
    # an empty cache, as on a fresh install: the example's warm_up() builds the static model
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAGTRIM_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(script), "--corpus", "6", "--questions", "2", "--top-k", "8", "--budget", "150", "--reader", "none"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = re.findall(r"tokens: (\d+) retrieved \((\d+) nodes\) -> (\d+) kept \((\d+) nodes\)", proc.stdout)
    assert len(rows) == 2, proc.stdout
    for before, n_retrieved, after, n_kept in map(lambda r: tuple(map(int, r)), rows):
        assert n_retrieved == 8
        assert 0 < after <= 150 and after < before
        assert 0 < n_kept <= n_retrieved
    assert re.search(r"total tokens: \d+ -> \d+", proc.stdout)


def test_node_scores_reach_the_chunk_prior_as_distances_or_similarities():
    """Distances handed over best first (a FAISS L2 store) rise along the list and are read as
    distances: the closest node wins where reading them as similarities would not. Falling
    along the list, the same scores are read as similarities."""
    from llama_index.core.schema import QueryBundle

    from optimizer.presets import preset_config

    cities = {"Paris": 0.2, "Rome": 0.5, "Lyon": 0.7, "Oslo": 1.3}

    def kept(order, mode="auto"):
        config = preset_config("default")
        # lexical only: the four texts differ in a city name, whose static cosine to the question
        # is noise that (at default's 2.0 for a question without a link) would drown the prior
        config["steps"][-1]["params"].update(retriever=mode, model=None)
        nodes = [NodeWithScore(node=TextNode(id_=c, text=f"The capital city is {c}."), score=cities[c]) for c in order]
        post = RagtrimPostprocessor(pipeline=Pipeline.from_config(config), budget=12)
        return [n.node.id_ for n in post.postprocess_nodes(nodes, query_bundle=QueryBundle("Which capital city?"))]

    best_first = list(cities)
    assert kept(best_first) == kept(best_first, "distance") == ["Paris"]
    assert kept(best_first, "similarity") != ["Paris"]
    falling = list(reversed(cities))
    assert kept(falling) == kept(falling, "similarity") != kept(falling, "distance")


@pytest.mark.parametrize("budget", [20, 30, 45])
def test_markdown_nodes_of_a_file_keep_their_section_heading(budget):
    """MarkdownNodeParser nodes (``## Install\n\nbody``) are titled by their file name; the heading reads as the section's title.

    With headings left as text (``titled_headings="off"``), a bare ``## Budgets`` filled the 45-token budget.
    """
    from llama_index.core.node_parser import MarkdownNodeParser

    md = ("# Ragtrim guide\n\nRagtrim trims retrieved context to a token budget.\n\n"
          "## Install\n\nRun pip install ragtrim in a fresh environment. It needs Python 3.10 or newer.\n\n"
          "## Budgets\n\nA budget caps the tokens sent to the model. Shares of the context work too.\n\n"
          "## Service\n\nThe gateway accounts for every token per tenant and refuses spend over a budget.\n")
    nodes = [NodeWithScore(node=n, score=1.0) for n in
             MarkdownNodeParser().get_nodes_from_documents([Document(text=md, metadata={"file_name": "guide.md"})])]
    before = dump(nodes)
    post = RagtrimPostprocessor(budget=budget, render="pipeline")  # the budget of ragtrim's layout: the heading test, not the metadata
    kept = post.postprocess_nodes(nodes, query_str="Which Python version is needed?")
    assert dump(nodes) == before
    assert post.last_result.tokens <= budget
    texts = [n.node.get_content() for n in kept]
    (install,) = [t for t in texts if "Python 3.10" in t]
    assert install.startswith("## Install\n"), install  # printed with its heading, on a line of its own
    headings = {line for line in md.splitlines() if line.startswith("#")}
    assert not [t for t in texts if t.strip() in headings], texts  # no heading kept without its section


@pytest.mark.parametrize("budget", [40, 70])
def test_a_markdown_node_with_code_keeps_its_fences_and_lines(budget):
    """A README section with a shell block, through MarkdownNodeParser and the postprocessor: the answering
    command comes with both fences, each line on its own, as written."""
    from llama_index.core.node_parser import MarkdownNodeParser

    commands = "\n".join(f"ragtrim option{i} --flag{i}  # sets thing {i}" for i in range(20))
    md = (f"# Ragtrim\n\nRagtrim trims context.\n\n## Flags\n\nEvery flag of the command line:\n\n```bash\n{commands}\n```\n\n"
          "The defaults suit most users.\n\n## Service\n\nThe gateway accounts for every token per tenant.\n")
    nodes = [NodeWithScore(node=n, score=1.0) for n in
             MarkdownNodeParser().get_nodes_from_documents([Document(text=md, metadata={"file_name": "README.md"})])]
    post = RagtrimPostprocessor(budget=budget)
    kept = post.postprocess_nodes(nodes, query_str="What does option13 set?")
    assert post.last_result.tokens <= budget
    (flags,) = [n.node.get_content() for n in kept if "option13" in n.node.get_content()]
    lines = flags.split("\n")
    assert "ragtrim option13 --flag13  # sets thing 13" in lines, flags
    assert lines.count("```bash") == 1 and lines.count("```") == 1 and lines.index("```bash") < lines.index("```"), flags


def test_nodes_of_two_files_come_back_grouped_by_file_with_each_name_printed_once():
    """A retriever interleaves the nodes of two files; the kept ones come back file by file, each file name printed once."""
    from llama_index.core.node_parser import SentenceSplitter

    quotas = " ".join(f"Tenant plan {i} caps the monthly spend at {100 * i} dollars and refuses requests above it." for i in range(1, 9))
    deploy = " ".join(f"Gateway worker {i} listens on port {8080 + i} and reports its health every {i} seconds." for i in range(1, 9))
    splitter = SentenceSplitter(chunk_size=40, chunk_overlap=0)
    by_file = [splitter.get_nodes_from_documents([Document(text=t, metadata={"file_name": f})])
               for t, f in ((quotas, "reference/tenant-quotas.md"), (deploy, "guides/deploying-the-gateway.md"))]
    assert min(len(n) for n in by_file) >= 3
    interleaved = [n for pair in zip(*by_file) for n in pair]
    nodes = [NodeWithScore(node=n, score=1.0 - k / 100) for k, n in enumerate(interleaved)]
    post = RagtrimPostprocessor(budget=120, render="pipeline")
    kept = post.postprocess_nodes(nodes, query_str="Which plan caps spend at 300 dollars, and which port does worker 3 use?")
    text = post.last_result.text
    assert post.last_result.tokens <= 120 and "300 dollars" in text and "port 8083" in text
    files = [n.node.metadata["file_name"] for n in kept]
    assert len(files) >= 3 and files == sorted(files, key=files.index)  # each file's nodes together
    assert text.count("tenant-quotas.md") == 1 and text.count("deploying-the-gateway.md") == 1

"""The LlamaIndex wrapper's budget, checked on the prompt a real query engine sends to the LLM.

Each test runs a ``RetrieverQueryEngine`` with a recording ``MockLLM`` and counts the context
(``{context_str}``) of the prompt it got: at most the budget, and exactly ``last_result.tokens``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("llama_index.core")

from llama_index.core import Document, PromptTemplate  # noqa: E402
from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import RetrieverQueryEngine  # noqa: E402
from llama_index.core.schema import (  # noqa: E402
    ImageNode,
    IndexNode,
    MetadataMode,
    Node,
    NodeRelationship,
    NodeWithScore,
    RelatedNodeInfo,
    TextNode,
)

from optimizer.integrations.llama_index import RagtrimPostprocessor  # noqa: E402
from optimizer.tokenizer import get_tokenizer  # noqa: E402

COUNT = get_tokenizer("cl100k_base").count
QA = PromptTemplate("<<CTX>>{context_str}<</CTX>>\nQ: {query_str}\nA: ")
QUERY = "Which river flows through Rome?"
CITIES = ["Rome", "Paris", "Berlin", "Madrid", "Vienna", "Lisbon"]
RIVERS = ["Tiber", "Seine", "Spree", "Manzanares", "Danube", "Tagus"]


PROMPTS: list[str] = []


class Recorder(MockLLM):
    """A MockLLM that keeps every prompt it is sent (in ``PROMPTS``)."""

    def complete(self, prompt, formatted=False, **kwargs):
        PROMPTS.append(prompt)
        return super().complete(prompt, formatted=formatted, **kwargs)


class Fixed(BaseRetriever):
    def __init__(self, nodes):
        super().__init__()
        self.nodes = nodes

    def _retrieve(self, query_bundle):
        return list(self.nodes)


def prompt_context(nodes, post, query=QUERY, **engine_args) -> str:
    """The context of the prompt a real query engine sends with ``post`` as its postprocessor."""
    PROMPTS.clear()
    engine = RetrieverQueryEngine.from_args(Fixed(nodes), llm=Recorder(), node_postprocessors=[post], text_qa_template=QA, **engine_args)
    engine.query(query)
    (prompt,) = PROMPTS
    return re.search(r"<<CTX>>(.*?)<</CTX>>", prompt, re.S).group(1)


def assert_fits(ctx: str, post: RagtrimPostprocessor) -> None:
    result = post.last_result
    assert COUNT(ctx) == result.tokens <= result.budget
    assert ctx == result.text
    for span in result.spans:  # every provenance span still points at the same characters
        assert result.text[span.context_start:span.context_end]


# 1. LlamaIndex strips each node's view: " Zurich" (1 token) is sent as "Zurich" (3 tokens)
SPACED = [" Zurich lies on the Limmat river.", " Zurich Seine Rhone river banks."]


@pytest.mark.parametrize("preset", ["full", "truncate", "bm25-pack", "default"])
@pytest.mark.parametrize("budget", [1.0, 8, 14])
def test_a_text_starting_with_a_space_is_counted_as_llama_index_sends_it(preset, budget):
    """Before: 16 tokens counted, 20 in the prompt (full/truncate/bm25-pack at budget 1.0)."""
    nodes = [NodeWithScore(node=TextNode(id_=f"n{i}", text=t), score=1.0 - i / 10) for i, t in enumerate(SPACED)]
    post = RagtrimPostprocessor(preset=preset, budget=budget)
    ctx = prompt_context(nodes, post, query="Which river is the Seine?")
    assert_fits(ctx, post)
    texts = {f"n{i}": t for i, t in enumerate(SPACED)}
    for span in post.last_result.spans:  # the spans are exact: the stripped space is no longer in them
        assert texts[span.chunk_id][span.start:span.end] == ctx[span.context_start:span.context_end]
    assert not ctx.startswith(" ")


# 2. Document / Node keep white space at the end of their metadata string; TextNode strips it
def documents(cls=Document):
    return [NodeWithScore(node=cls(id_=c, text=f"{c} is on the {r} river. {c} has many bridges.",
                                   metadata={"file_path": f"/d/{c.lower()}.txt", "section_summary": f"{c} and the {r}.\n \n "}),
                          score=1.0 - i / 10) for i, (c, r) in enumerate(zip(CITIES, RIVERS))]


@pytest.mark.parametrize("cls", [Document, Node, TextNode])
@pytest.mark.parametrize("preset,budget", [("full", 1.0), ("bm25-topk", 150), ("default", 60)])
def test_document_metadata_white_space_is_counted_as_sent(cls, preset, budget):
    """Before: Document nodes at preset full counted 200 tokens, the prompt had 212 (+2 per node)."""
    nodes = documents(cls) if cls is not Node else [
        NodeWithScore(node=Node(id_=n.node.id_, metadata=n.node.metadata, text_resource=n.node.text_resource), score=n.score)
        for n in documents()]
    post = RagtrimPostprocessor(preset=preset, budget=budget)
    assert_fits(prompt_context(nodes, post), post)


# 3. non_text="keep": an image node's LLM metadata reaches the prompt and is counted
def with_image(path="/data/photos/rome_tiber_bridge_2024.png"):
    img = NodeWithScore(node=ImageNode(id_="img", image_url="http://x/rome.png", text="",
                                       metadata={"file_path": path, "caption_source": "camera"}), score=0.95)
    txt = [NodeWithScore(node=TextNode(id_=f"t{i}", text=f"{c} is on the {r} river. " * 3), score=0.9 - i / 10)
           for i, (c, r) in enumerate(zip(CITIES, RIVERS))]
    return [img] + txt


@pytest.mark.parametrize("budget", [40, 100, 0.3])
def test_a_kept_image_nodes_metadata_counts_in_the_budget(budget):
    """Before: budget 40, ragtrim counted 33, the prompt had 53 (the image node's file_path and caption_source)."""
    post = RagtrimPostprocessor(budget=budget, non_text="keep")
    nodes = with_image()
    ctx = prompt_context(nodes, post)
    assert "rome_tiber_bridge_2024.png" in ctx  # passed through, and paid for
    assert_fits(ctx, post)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert out[-1].node.id_ == "img" and out[-1].node.image_url == "http://x/rome.png"
    step = post.last_result.trace[0]
    assert step.name == "skip-non-text" and step.notes["passed_through"] == ["img"] and step.notes["tokens"] > 0


def test_a_kept_image_node_whose_metadata_cannot_fit_is_dropped(caplog):
    post = RagtrimPostprocessor(budget=12, non_text="keep")
    nodes = with_image(path="/data/" + "/".join(f"folder{i}" for i in range(20)) + "/rome.png")
    with caplog.at_level(logging.WARNING, logger="optimizer.integrations"):
        ctx = prompt_context(nodes, post)
    assert "folder" not in ctx and "does not fit" in caplog.text
    assert_fits(ctx, post)
    assert [d.chunk_id for d in post.last_result.dropped if d.chunk_id == "img"] == ["img"]


# 5. an IndexNode's object is shared, not deep-copied
class Holder:
    """An object an IndexNode may carry (a query engine holding a client with a lock)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.big = [list(range(200)) for _ in range(2000)]


def test_an_index_node_carrying_an_object_is_copied_shallowly():
    """Before: TypeError "cannot pickle '_thread.RLock' object" from model_copy(deep=True); and a copied object."""
    holder = Holder()
    node = IndexNode(id_="idx", index_id="sub", text="The Tiber flows through Rome. " * 3, obj=holder,
                     metadata={"title": "Rome", "tags": ["river"]})
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id="doc-rome")
    nodes = [NodeWithScore(node=node, score=0.9),
             NodeWithScore(node=TextNode(id_="b", text="Paris is on the Seine. " * 3), score=0.5)]
    before = (node.text, repr(node.metadata), repr(node.relationships), list(node.excluded_llm_metadata_keys))
    post = RagtrimPostprocessor(budget=30)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    (kept,) = [n.node for n in out if n.node.id_ == "idx"]
    assert kept is not node and kept.obj is holder
    kept.metadata["tags"].append("edited")
    kept.relationships[NodeRelationship.SOURCE].node_id = "edited"
    kept.excluded_llm_metadata_keys.append("edited")
    assert (node.text, repr(node.metadata), repr(node.relationships), list(node.excluded_llm_metadata_keys)) == before
    assert "ragtrim_spans" in kept.metadata and "ragtrim_spans" not in node.metadata
    start = time.perf_counter()
    for _ in range(3):
        post.postprocess_nodes(nodes, query_str=QUERY)
    assert (time.perf_counter() - start) / 3 < 0.25  # the object is not copied (a deep copy took ~0.3 s here)


def test_a_kept_image_index_node_is_returned_with_its_object():
    holder = Holder()
    nodes = [NodeWithScore(node=IndexNode(id_="obj", index_id="x", text="", obj=holder), score=0.5),
             NodeWithScore(node=TextNode(id_="t", text="The Tiber flows through Rome."), score=0.9)]
    out = RagtrimPostprocessor(budget=40, non_text="keep").postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.id_ for n in out] == ["t", "obj"] and out[1].node.obj is holder and out[1].node is not nodes[0].node


# 6. duplicate ids: the trace maps its chunk ids back to the input's ids and positions
def test_duplicate_ids_in_the_trace_map_back_to_the_input():
    nodes = [NodeWithScore(node=TextNode(id_="dup", text=f"{c} is on the {r} river. " * 4), score=0.5)
             for c, r in zip(CITIES[:3], RIVERS[:3])]
    post = RagtrimPostprocessor(budget=20)
    post.postprocess_nodes(nodes, query_str=QUERY)
    result = post.last_result
    (step,) = [s for s in result.trace if s.name == "unique-ids"]
    renamed = {e["chunk_id"]: (e["id"], e["index"]) for e in step.notes["renamed"]}
    assert renamed == {"dup#2": ("dup", 1), "dup#3": ("dup", 2)}
    for drop in result.dropped:  # every dropped id is an input id or maps back to one
        assert drop.chunk_id == "dup" or renamed[drop.chunk_id][0] == "dup"
    assert result.dropped


def test_duplicate_ids_in_langchain_map_back_the_same_way():
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document as LCDocument

    from optimizer.integrations.langchain import RagtrimCompressor

    docs = [LCDocument(id="dup", page_content=f"{c} is on the {r} river. " * 4) for c, r in zip(CITIES[:3], RIVERS[:3])]
    docs.append(LCDocument(page_content="Lisbon is on the Tagus."))
    compressor = RagtrimCompressor(budget=20)
    compressor.compress_documents(docs, QUERY)
    (step,) = [s for s in compressor.last_result.trace if s.name == "unique-ids"]
    assert step.notes["renamed"] == [{"chunk_id": "dup#2", "id": "dup", "index": 1},
                                     {"chunk_id": "dup#3", "id": "dup", "index": 2},
                                     {"chunk_id": "3", "id": None, "index": 3}]


def test_the_sent_view_is_what_get_content_gives():
    """The frame comes from the node's own get_content: a Document's LLM view is counted character for character."""
    nodes = documents()
    post = RagtrimPostprocessor(preset="full", budget=1.0)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    sent = "\n\n".join(n.node.get_content(metadata_mode=MetadataMode.LLM).strip() for n in out)
    assert sent == post.last_result.text and COUNT(sent) == post.last_result.tokens

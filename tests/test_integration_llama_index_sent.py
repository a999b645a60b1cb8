"""The LlamaIndex wrapper's budget holds in what LlamaIndex sends, and its outputs can go through ragtrim again."""

from __future__ import annotations

import logging
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("llama_index.core")

from llama_index.core import Document, SimpleDirectoryReader  # noqa: E402
from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter  # noqa: E402
from llama_index.core.schema import ImageNode, MetadataMode, NodeWithScore, TextNode  # noqa: E402

from optimizer import Pipeline  # noqa: E402
from optimizer.integrations.llama_index import RagtrimPostprocessor  # noqa: E402
from optimizer.tokenizer import get_tokenizer  # noqa: E402

QUERY = "Which river flows through Paris?"
COUNT = get_tokenizer("cl100k_base").count


def sent(nodes: list[NodeWithScore]) -> str:
    """The context a LlamaIndex response synthesizer builds from ``nodes`` (``PromptHelper.repack``'s join)."""
    return "\n\n".join(c.strip() for c in (n.node.get_content(metadata_mode=MetadataMode.LLM) for n in nodes) if c.strip())


def read_folder(tmp_path) -> list[NodeWithScore]:
    """Nodes as the README's setup makes them: SimpleDirectoryReader (file_path shown to the LLM), SentenceSplitter."""
    (tmp_path / "rivers.md").write_text(" ".join(
        f"The Seine flows through Paris and fact {i} about the river is recorded here." for i in range(12)))
    (tmp_path / "food.txt").write_text(" ".join(f"Lyon is known for dish number {i} of its cuisine." for i in range(12)))
    docs = SimpleDirectoryReader(str(tmp_path)).load_data()
    nodes = SentenceSplitter(chunk_size=64, chunk_overlap=0).get_nodes_from_documents(docs)
    return [NodeWithScore(node=n, score=1.0 - k / 100) for k, n in enumerate(nodes)]


@pytest.mark.parametrize("budget", [60, 150, 300])
def test_the_budget_holds_in_the_context_llama_index_sends(tmp_path, budget):
    """file_path is printed with every node and file_name is not: before, ragtrim counted its own layout and
    the context LlamaIndex sent ran 25-55 % over the budget."""
    nodes = read_folder(tmp_path)
    assert "file_path: " in nodes[0].node.get_content(metadata_mode=MetadataMode.LLM)
    post = RagtrimPostprocessor(budget=budget)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert out and post.last_result.text == sent(out)
    assert COUNT(sent(out)) == post.last_result.tokens <= budget
    assert "file_name" not in sent(out)  # excluded by the reader: neither printed nor paid for


def test_the_pipeline_layout_is_still_there_on_request(tmp_path):
    nodes = read_folder(tmp_path)
    post = RagtrimPostprocessor(budget=150, render="pipeline")
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert post.last_result.text.startswith("[1] ")
    assert COUNT(sent(out)) > 150  # LlamaIndex's metadata comes on top of this layout's count


def test_markdown_nodes_pay_for_their_header_path():
    md = "# Guide\n\nIntro text.\n\n## Rivers\n\nThe Seine flows through Paris. It is 777 km long.\n\n## Food\n\nLyon has food.\n"
    nodes = [NodeWithScore(node=n, score=None) for n in
             MarkdownNodeParser().get_nodes_from_documents([Document(text=md, metadata={"file_name": "guide.md"})])]
    post = RagtrimPostprocessor(budget=40)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert "header_path: /Guide/" in sent(out) and "Seine" in sent(out)
    assert COUNT(sent(out)) == post.last_result.tokens <= 40


def test_a_custom_text_template_is_counted_as_printed():
    node = TextNode(id_="a", text="The Seine flows through Paris. " * 8, metadata={"source": "wiki"},
                    text_template="<source>{metadata_str}</source>\n{content}\n<end>", metadata_template="{key}={value}")
    post = RagtrimPostprocessor(budget=30)
    out = post.postprocess_nodes([NodeWithScore(node=node, score=1.0)], query_str=QUERY)
    assert sent(out).startswith("<source>source=wiki</source>\n") and sent(out).endswith("\n<end>")
    assert post.last_result.text == sent(out) and COUNT(sent(out)) <= 30


def test_changing_budget_preset_or_tokenizer_after_construction_takes_effect():
    nodes = [NodeWithScore(node=TextNode(id_=str(i), text=f"Fact {i} about the Seine in Paris. " * 6), score=1.0) for i in range(6)]
    post = RagtrimPostprocessor(budget=20)
    post.postprocess_nodes(nodes, query_str=QUERY)
    assert post.last_result.budget == 20
    post.budget = 200
    post.postprocess_nodes(nodes, query_str=QUERY)
    assert post.last_result.budget == 200 and 20 < post.last_result.tokens <= 200
    post.tokenizer = "o200k_base"
    post.postprocess_nodes(nodes, query_str=QUERY)
    assert post.active_pipeline.tokenizer.name == "o200k_base" and post.last_result.tokenizer == "o200k_base"
    copy = post.model_copy(update={"budget": 40})
    copy.postprocess_nodes(nodes, query_str=QUERY)
    assert copy.last_result.budget == 40


def test_a_second_run_maps_its_ranges_back_to_the_original_text():
    """Cut once at 120 tokens, then again at 40: ragtrim_spans and start/end_char_idx point into the original."""
    original = " ".join(f"Sentence {i} talks about {'the Seine river in Paris' if i % 3 == 0 else 'cheese in Lyon'}." for i in range(30))
    nodes = [NodeWithScore(node=TextNode(id_="a", text=original, start_char_idx=1000, end_char_idx=1000 + len(original)), score=0.9),
             NodeWithScore(node=TextNode(id_="b", text="Berlin is on the Spree. " * 10), score=0.5)]
    first = RagtrimPostprocessor(budget=120).postprocess_nodes(nodes, query_str=QUERY)
    second = RagtrimPostprocessor(budget=40).postprocess_nodes(first, query_str=QUERY)
    (a,) = [n.node for n in second if n.node.id_ == "a"]
    spans = a.metadata["ragtrim_spans"]
    pieces = [original[s:e] for s, e in spans]
    assert " ".join(pieces) == a.text  # one line of prose: the kept pieces joined by a space
    assert (a.start_char_idx, a.end_char_idx) == (1000 + spans[0][0], 1000 + spans[-1][1])
    (a1,) = [n.node for n in first if n.node.id_ == "a"]
    assert a.text != a1.text  # the second run cut further


def test_an_edited_output_gets_ranges_of_its_own_text_with_a_warning(caplog):
    out = RagtrimPostprocessor(budget=60).postprocess_nodes(
        [NodeWithScore(node=TextNode(id_="a", text="The Seine flows through Paris. Lyon has food. " * 5), score=1.0)], query_str=QUERY)
    edited = out[0].model_copy(deep=True)
    edited.node.set_content("Edited: " + edited.node.text)
    with caplog.at_level(logging.WARNING, logger="optimizer.integrations"):
        again = RagtrimPostprocessor(budget=60).postprocess_nodes([edited], query_str=QUERY)
    assert "does not match its text" in caplog.text
    text, kept = edited.node.text, again[0].node
    assert kept.metadata["ragtrim_spans"][0][0] == 0  # "Edited: " is kept: the ranges are of the edited text
    assert " ".join(text[s:e] for s, e in kept.metadata["ragtrim_spans"]) == kept.text


def test_kept_non_text_nodes_are_not_reported_dropped(caplog):
    nodes = [NodeWithScore(node=ImageNode(id_="img", image="aGVsbG8="), score=0.9),
             NodeWithScore(node=TextNode(id_="t", text="The Seine flows through Paris."), score=0.8)]
    post = RagtrimPostprocessor(budget=50, non_text="keep")
    with caplog.at_level(logging.WARNING):
        out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.id_ for n in out] == ["t", "img"]
    assert not [d for d in post.last_result.dropped if d.chunk_id == "img"]
    assert post.last_result.trace[0].notes["passed_through"] == ["img"]
    assert "skipped" not in caplog.text
    skipped = RagtrimPostprocessor(budget=50)
    assert [n.node.id_ for n in skipped.postprocess_nodes(nodes, query_str=QUERY)] == ["t"]
    assert [d.chunk_id for d in skipped.last_result.dropped] == ["img"]


@pytest.mark.parametrize("bad", [float("inf"), float("-inf")])
def test_an_infinite_score_is_read_as_no_score(bad, caplog):
    nodes = [NodeWithScore(node=TextNode(id_="a", text="The Seine flows through Paris."), score=bad),
             NodeWithScore(node=TextNode(id_="b", text="Lyon is on the Rhone."), score=0.5)]
    with caplog.at_level(logging.WARNING):
        out = RagtrimPostprocessor(budget=30).postprocess_nodes(nodes, query_str=QUERY)
    assert "a" in [n.node.id_ for n in out] and "no score" in caplog.text
    assert out[[n.node.id_ for n in out].index("a")].score == bad  # the node's own score is left as it was


def test_a_users_pipeline_is_not_changed_by_the_wrapper():
    pipeline = Pipeline.preset("bm25-pack", budget=50)
    renderer = pipeline.renderer
    post = RagtrimPostprocessor(pipeline=pipeline)
    post.postprocess_nodes([NodeWithScore(node=TextNode(id_="a", text="The Seine.", metadata={"k": "v"}), score=1.0)], query_str=QUERY)
    assert pipeline.renderer is renderer and post.active_pipeline.renderer.frames is not None

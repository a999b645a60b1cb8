"""The LlamaIndex wrapper: a share budget with ``non_text="keep"``, and ``to_dict``/``from_dict`` with a pipeline."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.schema import ImageNode, NodeWithScore, TextNode  # noqa: E402
from test_integration_llama_index import SpyStage, sent_text  # noqa: E402
from test_integration_llama_index_prompt import CITIES, COUNT, QUERY, RIVERS, Fixed, assert_fits, prompt_context  # noqa: E402

from optimizer import Pipeline  # noqa: E402
from optimizer.integrations.llama_index import RagtrimPostprocessor, RagtrimRetriever  # noqa: E402


def images(n: int = 3) -> list[NodeWithScore]:
    return [NodeWithScore(node=ImageNode(id_=f"img{i}", image_url=f"http://x/{i}.png",
                                         metadata={"file_path": f"/data/photos/{CITIES[i].lower()}_river_{i}.png"}), score=0.9)
            for i in range(n)]


def texts(n: int = 3) -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_=f"t{i}", text=f"{c} lies on the {r}. It has {i + 3} old bridges and a market."),
                          score=0.8 - i / 10)
            for i, (c, r) in enumerate(zip(CITIES[:n], RIVERS[:n]))]


def text_and_images() -> list[NodeWithScore]:
    return texts() + images()


def assert_all_back_uncut(nodes: list[NodeWithScore], out: list[NodeWithScore]) -> None:
    assert sorted(n.node.id_ for n in out) == sorted(n.node.id_ for n in nodes)
    given = {n.node.id_: n.node.get_content() for n in nodes}
    assert all(n.node.get_content() == given[n.node.id_] for n in out)


# 1. non_text="keep" and a share: the share is of the whole context sent (text nodes and images' metadata)
@pytest.mark.parametrize("make", [images, text_and_images], ids=["images-only", "text-and-images"])
def test_budget_1_0_with_non_text_keep_returns_every_node_uncut(make):
    """Before: images only -> [] (result.budget 0); text + images -> every text node cut (budget 135 of 176)."""
    nodes = make()
    post = RagtrimPostprocessor(budget=1.0, non_text="keep")
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert_all_back_uncut(nodes, out)
    result = post.last_result
    assert result.tokens == result.tokens_full == COUNT(sent_text(out)) == COUNT(sent_text(nodes))
    assert not result.dropped
    assert_fits(prompt_context(nodes, post), post)  # what a query engine sends is what was counted


def test_a_share_with_non_text_keep_is_of_the_whole_context():
    """Before: tokens_full counted the text nodes only (the images' metadata left out), so 0.5 was half of that."""
    nodes = text_and_images()
    post = RagtrimPostprocessor(budget=0.5, non_text="keep")
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    result = post.last_result
    assert result.tokens_full == COUNT(sent_text(nodes))
    assert result.budget == math.floor(0.5 * result.tokens_full)
    assert COUNT(sent_text(out)) == result.tokens <= result.budget
    assert {n.node.id_ for n in out} >= {"img0", "img1", "img2"}  # the images' metadata is paid for first


def test_the_retriever_wrapper_keeps_everything_at_1_0_with_non_text_keep():
    nodes = text_and_images()
    retriever = RagtrimRetriever(Fixed(nodes), budget=1.0, non_text="keep")
    assert_all_back_uncut(nodes, retriever.retrieve(QUERY))
    assert retriever.last_result.tokens == retriever.last_result.tokens_full == COUNT(sent_text(nodes))


def test_no_budget_with_non_text_keep_reports_the_whole_context():
    nodes = text_and_images()
    post = RagtrimPostprocessor(pipeline=Pipeline.preset("bm25-pack"), non_text="keep")
    assert_all_back_uncut(nodes, post.postprocess_nodes(nodes, query_str=QUERY))
    assert post.last_result.tokens_full == COUNT(sent_text(nodes)) >= post.last_result.tokens


# 2. to_dict()/from_dict() keep the pipeline a postprocessor was built with
def paris_nodes() -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_=f"n{i}", text=f"Fact {i} about Paris and the Seine. " * 8), score=1.0 - i / 100)
            for i in range(6)]


def run(post: RagtrimPostprocessor) -> tuple:
    out = post.postprocess_nodes(paris_nodes(), query_str="Paris")
    result = post.last_result
    return [(n.node.id_, n.node.text) for n in out], result.text, result.tokens, [t.name for t in result.trace]


@pytest.mark.parametrize("via", ["dict", "json"])
def test_from_dict_of_to_dict_runs_the_same_pipeline(via):
    """Before: from_dict rebuilt preset 'default' with cl100k_base (the pipeline field was left out of to_dict)."""
    post = RagtrimPostprocessor(pipeline=Pipeline.preset("bm25-pack", tokenizer="o200k_base"), budget=50)
    back = (RagtrimPostprocessor.from_dict(post.to_dict()) if via == "dict"
            else RagtrimPostprocessor.from_json(post.to_json()))
    assert back.active_pipeline.name == "bm25-pack"
    assert back.active_pipeline.tokenizer_name == "o200k_base"
    assert [n for n, _ in back.active_pipeline.steps] == [n for n, _ in post.active_pipeline.steps]
    assert back.active_pipeline.to_config() == post.active_pipeline.to_config()
    assert run(back) == run(post)


def test_a_pipeline_with_its_own_budget_survives_to_dict():
    """Before: from_dict(to_dict()) raised "RagtrimPostprocessor needs a budget or a pipeline"."""
    post = RagtrimPostprocessor(pipeline=Pipeline.preset("bm25-pack", budget=50))
    back = RagtrimPostprocessor.from_dict(post.to_dict())
    assert back.active_pipeline.budget == 50 and run(back) == run(post)


def test_to_dict_of_a_pipeline_with_an_unregistered_stage_says_how_to_save_it():
    pipeline = Pipeline([SpyStage()], budget=50)
    post = RagtrimPostprocessor(pipeline=pipeline)
    with pytest.raises(ValueError, match=r"unknown stage 'spy'.*to_dict\(exclude=\{'pipeline'\}\).*from_dict\(data, pipeline="):
        post.to_dict()
    data = post.to_dict(exclude={"pipeline"})
    assert "pipeline" not in data
    assert RagtrimPostprocessor.from_dict(data, pipeline=pipeline).active_pipeline.steps == pipeline.steps

"""Presets: every preset builds; baselines are what they say; default beats BM25 on a multi-hop toy."""

from __future__ import annotations

import pytest

from optimizer import Pipeline
from optimizer.presets import list_presets, preset_config

EXPECTED = {"full", "truncate", "bm25-topk", "dense-topk", "sentence-dense", "default", "quality"}


def test_all_presets_exist_and_build():
    assert EXPECTED <= set(list_presets())
    for name in list_presets():
        pipe = Pipeline.preset(name, budget=0.5)
        assert pipe.name == name
        assert Pipeline.from_config(pipe.to_config()).to_config() == pipe.to_config()


def test_baselines_are_what_their_names_say():
    assert preset_config("full")["steps"] == []
    assert [s["stage"] for s in preset_config("truncate")["steps"]] == ["truncate"]
    assert [s["stage"] for s in preset_config("bm25-topk")["steps"]] == ["bm25", "whole-chunks"]
    assert [s["stage"] for s in preset_config("dense-topk")["steps"]] == ["dense", "whole-chunks"]
    assert preset_config("dense-topk")["steps"][0]["params"]["model"] == "minilm"
    sd = preset_config("sentence-dense")["steps"][0]["params"]
    assert sd["model"] == "minilm" and sd["hops"] == 1 and sd["lexical"] == 0.0


def test_default_uses_no_llm_and_no_minilm():
    for step in preset_config("default")["steps"]:
        assert step["stage"] not in ("lm-prune", "dense")
        assert step.get("params", {}).get("model") in (None, "static")


@pytest.mark.slow
def test_default_keeps_the_second_hop_answer_where_whole_chunk_bm25_cannot():
    chunks = [
        {"id": "film", "title": "Kiss and Tell", "text": "Kiss and Tell is a 1945 comedy film. It starred Shirley Temple as Corliss Archer. The film was shot in Los Angeles over a long summer with a large cast and crew. It was followed by a sequel in 1949."},
        {"id": "actress", "title": "Shirley Temple", "text": "Shirley Temple Black was an American actress, singer and dancer. She was famous as a child star in the 1930s and made many films. As an adult, she served as Chief of Protocol of the United States."},
        {"id": "d1", "title": "Meet Corliss Archer", "text": "Meet Corliss Archer was a radio program about the girl Corliss Archer. It ran from 1943 to 1956 on CBS and NBC."},
    ]
    q = "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"
    budget = 70
    default = Pipeline.preset("default", budget=budget).run(q, chunks)
    bm25 = Pipeline.preset("bm25-topk", budget=budget).run(q, chunks)
    assert default.tokens <= budget and bm25.tokens <= budget
    assert "Chief of Protocol" in default.text
    assert "Chief of Protocol" not in bm25.text

"""Bad input gets a clear error naming the value and the fix, never a traceback from deep inside.

Each test asserts the error type and that the message names the bad value and what to do.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from typer.testing import CliRunner

from optimizer.tokenizer import get_tokenizer
from optimizer import Chunk, Pipeline, make_stage
from optimizer.budget import resolve_budget, smallest_share
from optimizer.records import SURROGATE_FIX, as_chunks, lone_surrogate
from ragtrim.cli import app

CHUNK = {"id": "a", "text": "Paris is the capital of France."}
TEXTS = ["Paris is the capital of France. It has 2.1 million inhabitants.", "Lyon is a city in France."]


@pytest.fixture(scope="module")
def bm25():
    return Pipeline.preset("bm25-pack", budget=50)


# -- A. one chunk, a set or a string instead of a list ----------------------------------------
@pytest.mark.parametrize(
    "chunks, says",
    [
        (CHUNK, "got one dict"),
        (Chunk(id="a", text="Paris"), "got one Chunk"),
        ("Paris is the capital.", "got one str"),
        (b"Paris is the capital.", "got one bytes"),
        ({"Paris is the capital."}, "got a set, whose order is arbitrary"),
        (frozenset({"Paris is the capital."}), "got a frozenset, whose order is arbitrary"),
    ],
)
def test_one_chunk_a_set_or_a_string_is_rejected_asking_for_a_list(bm25, chunks, says):
    with pytest.raises(TypeError, match="chunks must be a list of chunks") as info:
        bm25.run("capital", chunks)
    assert says in str(info.value) and ("pass a list" in str(info.value))


def test_ordered_collections_of_chunks_still_run(bm25):
    expected = bm25.run("capital", [CHUNK]).text
    assert expected.startswith("[1] Paris is the capital")
    assert bm25.run("capital", (CHUNK,)).text == expected
    assert bm25.run("capital", (c for c in [CHUNK])).text == expected
    assert [c.id for c in as_chunks(iter(TEXTS))] == ["0", "1"]


# -- D. lone surrogates -------------------------------------------------------------------------
def test_a_lone_surrogate_in_chunk_text_names_the_chunk_the_position_and_the_fix():
    with pytest.raises(ValueError) as info:
        Chunk(id="doc-7", text="Paris \ud800 capital")
    message = str(info.value)
    assert "chunk 'doc-7'" in message and "at character 6" in message and "'\\ud800'" in message
    assert SURROGATE_FIX in message


def test_a_lone_surrogate_in_a_title_or_a_dict_chunk_is_rejected_too():
    with pytest.raises(ValueError, match=r"chunk 'a': title has a lone UTF-16 surrogate '\\udc00' at character 3"):
        Chunk(id="a", text="ok", title="Doc\udc00")
    with pytest.raises(ValueError, match=r"chunk 'b': text has a lone UTF-16 surrogate"):
        as_chunks([{"id": "b", "text": "x \ud83d"}])


@pytest.mark.parametrize("preset", ["default", "bm25-pack", "truncate"])
def test_the_suggested_fix_gives_text_every_preset_runs_with_spans_that_map(preset):
    broken = "Paris \ud800 is the capital of France. A split emoji \ud83d\ude00 here."
    fixed = broken.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert lone_surrogate(fixed) is None and "\ufffd" in fixed and "😀" in fixed
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        Pipeline.preset(preset, budget=50).run("capital", [broken])
    result = Pipeline.preset(preset, budget=50).run("capital", [fixed])
    for span in result.spans:
        assert result.text[span.context_start : span.context_end] == fixed[span.start : span.end]


def test_a_lone_surrogate_in_the_query_is_a_clear_error(bm25):
    with pytest.raises(ValueError) as info:
        bm25.run("capital \udc80 of France", TEXTS)
    message = str(info.value)
    assert message.startswith("query has a lone UTF-16 surrogate '\\udc80' at character 8")
    assert "query.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace')" in message


# -- E. infinite scores -------------------------------------------------------------------------
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), np.float64("inf"), np.float32("-inf")])
def test_an_infinite_score_is_rejected_naming_the_chunk_the_value_and_none(value):
    with pytest.raises(ValueError) as info:
        Chunk(id="n3", text="x", score=value)
    message = str(info.value)
    assert "chunk 'n3': score is" in message and "inf" in message and "pass None for 'no score'" in message


def test_an_infinite_relevance_is_rejected_too():
    with pytest.raises(ValueError, match=r"chunk 'a': relevance is inf, scores must be finite; the stage that set it"):
        Chunk(id="a", text="x", relevance=math.inf)


def test_json_1e999_is_rejected_where_the_chunks_come_in():
    with pytest.raises(ValueError, match=r"chunk 'a': score is inf.*pass None"):
        Pipeline.preset("default", budget=50).run("capital", [json.loads('{"id": "a", "text": "Paris", "score": 1e999}')])


def test_finite_scores_still_run_through_the_score_reading_presets():
    chunks = [Chunk(id="a", text=TEXTS[0], score=1e300), Chunk(id="b", text=TEXTS[1], score=-1e300)]
    assert "capital" in Pipeline.preset("default", budget=50).run("capital of France", chunks).text


# -- F. configs and parameters ----------------------------------------------------------------
@pytest.mark.parametrize(
    "config, says",
    [
        ({"steps": "rerank-bm25"}, "steps must be a list of stage names or {stage, params} mappings, got str: 'rerank-bm25'"),
        ({"steps": {"stage": "x"}}, "steps must be a list of stage names or {stage, params} mappings, got dict"),
        ({"steps": [{"stage": None}]}, "step #0: stage must be a stage name such as 'rerank-bm25'"),
        ({"steps": [{"stage": "rerank-bm25", "params": [{"k1": 2}]}]}, "step #0 ('rerank-bm25'): params must be a mapping of setting: value, got list"),
        ({"steps": [{"stage": "rerank-bm25", "name": 3}]}, "step #0 ('rerank-bm25'): name must be a string, got 3"),
    ],
)
def test_bad_config_steps_name_the_value_and_the_shape_to_use(config, says):
    with pytest.raises(ValueError) as info:
        Pipeline.from_config(config)
    assert says in str(info.value)


def test_a_yaml_params_list_names_the_fix(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("steps:\n  - stage: rerank-bm25\n    params:\n      - k1: 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="params must be a mapping.*without '- ' in front"):
        Pipeline.load(path)


def test_a_tokenizer_that_is_not_a_name_or_a_tokenizer_says_what_is_accepted():
    with pytest.raises(TypeError, match=r"tokenizer must be a name .*'gpt-4o'.*got int: 5"):
        Pipeline.from_config({"tokenizer": 5})


def test_make_stage_with_a_non_string_name_says_what_a_name_is():
    with pytest.raises(TypeError, match=r"stage name must be a string such as 'rerank-bm25'.*got None"):
        make_stage(None)


def test_chunk_metadata_that_is_not_an_object_names_the_value():
    with pytest.raises(TypeError) as info:
        Chunk.from_dict({"id": "a", "text": "x", "metadata": "oops"})
    message = str(info.value)
    assert "chunk 'a': metadata must be an object (dict)" in message and "str: 'oops'" in message


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_a_bool_score_is_rejected_not_read_as_1(value):
    with pytest.raises(TypeError, match=r"chunk 'a': score must be a number or None, got the bool"):
        Chunk.from_dict({"id": "a", "text": "x", "score": value})


def test_numeric_scores_keep_working():
    assert Chunk(id="a", text="x", score=np.float32(0.5)).score == 0.5
    assert Chunk(id="a", text="x", score=3).score == 3


@pytest.mark.parametrize("adaptive", ["x", 5, ["mass", 0.9]])
def test_a_bad_adaptive_setting_names_the_value_and_the_accepted_forms(adaptive):
    for build in (lambda: Pipeline(adaptive=adaptive), lambda: Pipeline.preset("bm25-pack", adaptive=adaptive)):
        with pytest.raises(TypeError) as info:
            build()
        message = str(info.value)
        assert "adaptive must be None (a fixed budget), an AdaptiveBudget or a mapping" in message
        assert repr(adaptive) in message


def test_adaptive_as_a_mapping_still_works():
    assert Pipeline.preset("bm25-pack", adaptive={"mass": 0.8}).adaptive.mass == 0.8


@pytest.mark.parametrize(
    "stage, params, says",
    [
        ("rerank-bm25", {"k1": "x"}, "rerank-bm25: k1 (term-frequency saturation) must be a number of 0 or more, e.g. 1.5, got 'x'"),
        ("rerank-bm25", {"k1": -5}, "got -5"),
        ("rerank-bm25", {"k1": float("nan")}, "got nan"),
        ("rerank-bm25", {"b": 7}, "rerank-bm25: b (length normalization, 0 = none, 1 = full) must be in [0, 1], e.g. 0.75, got 7"),
        ("rerank-bm25", {"b": -0.1}, "got -0.1"),
        ("dedupe-near", {"num_perm": 0}, "dedupe-near: num_perm (MinHash permutations) must be an integer of 2 or more, e.g. 128, got 0"),
        ("dedupe-near", {"num_perm": 64.0}, "got 64.0"),
        ("dedupe-near", {"num_perm": 10, "threshold": 0.9}, "dedupe-near: num_perm=10 cannot reach threshold=0.9 with MinHash LSH"),
        ("dedupe-near", {"threshold": 0.99}, "lower threshold (num_perm=128 reaches thresholds up to 0.98)"),
        ("dedupe-near", {"lsh_above": -1}, "dedupe-near: lsh_above must be a non-negative number of chunks"),
    ],
)
def test_stage_settings_are_checked_when_the_stage_is_made(stage, params, says):
    with pytest.raises(ValueError) as info:
        make_stage(stage, **params)
    assert says in str(info.value)


def test_bm25_edge_settings_are_accepted():
    for params in ({"k1": 0}, {"k1": 2}, {"b": 0}, {"b": 1}):
        make_stage("rerank-bm25", **params)


def test_near_dedupe_settings_that_split_into_bands_run_above_lsh_above():
    stage = make_stage("dedupe-near", num_perm=32, threshold=0.5, lsh_above=2)
    text = "The bridge opened in 1932. It is 503 metres long. Its arch is steel. It carries eight lanes."
    chunks = [Chunk(id=str(i), text=text.replace("1932", str(1900 + i))) for i in range(5)]
    assert len(Pipeline([stage]).run("bridge", chunks).chunks) >= 1


# -- G. a share that rounds to 0 tokens ---------------------------------------------------------
def test_a_share_that_rounds_to_no_token_warns_with_the_smallest_share_that_gives_one(bm25):
    chunks = ["Paris is the capital of France."]
    full = bm25.full_tokens(chunks)
    with pytest.warns(UserWarning) as caught:
        result = bm25.run("capital", chunks, budget=0.0001)
    message = str(caught[0].message)
    share = smallest_share(full)
    assert "budget share 0.0001" in message and f"{full} tokens" in message and f"at least {share!r}" in message
    assert result.text == "" and result.trace[-1].notes["warning"] == message
    assert resolve_budget(share, full) == 1
    assert bm25.run("capital", chunks, budget=share).budget == 1


def test_shares_that_give_tokens_and_empty_inputs_do_not_warn(bm25):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "warning" not in bm25.run("capital", TEXTS, budget=0.5).trace[-1].notes
        assert bm25.run("capital", [], budget=0.0001).text == ""


# -- the command line: one error line, exit code 2 ---------------------------------------------
def _optimize(tmp_path, lines, *extra):
    path = tmp_path / "chunks.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return CliRunner().invoke(app, ["optimize", "--chunks", str(path), "--budget", "50", *extra])


@pytest.mark.parametrize(
    "line, says",
    [
        ('{"id": "a", "text": "Paris \\ud800 capital"}', "line 1: chunk 'a': text has a lone UTF-16 surrogate '\\ud800' at character 6"),
        ('{"id": "a", "text": "Paris", "score": 1e999}', "line 1: chunk 'a': score is inf"),
        ('{"id": "a", "text": "Paris", "metadata": "oops"}', "line 1: chunk 'a': metadata must be an object"),
    ],
)
def test_cli_optimize_prints_one_error_line_for_bad_chunks(tmp_path, line, says):
    result = _optimize(tmp_path, [line], "--query", "capital")
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "error:" in result.output and says in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("query, says", [("cap\udcff", "--query is not valid UTF-8: byte 0xff at character 3"), ("cap\ud800", "query has a lone UTF-16 surrogate")])
def test_cli_optimize_prints_one_error_line_for_a_broken_query(tmp_path, query, says):
    result = _optimize(tmp_path, [json.dumps(CHUNK)], "--query", query)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and says in result.output


def test_cli_optimize_prints_the_empty_share_warning_as_one_line(tmp_path):
    path = tmp_path / "chunks.jsonl"
    path.write_text(json.dumps(CHUNK) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["optimize", "--chunks", str(path), "--query", "capital", "--budget", "0.001", "--preset", "bm25-pack"])
    assert result.exit_code == 0, result.output
    assert "warning: budget share 0.001 of the full context's" in result.output


@dataclass
class _UnhashableWords:
    name: str = "words"

    def encode(self, text):
        return text.split()

    def count(self, text):
        return len(text.split())

    def prefix_within(self, text, max_tokens):
        if max_tokens <= 0:
            return 0
        ends = [i for i in range(1, len(text) + 1) if i == len(text) or text[i].isspace()]
        fitting = [e for e in ends if self.count(text[:e]) <= max_tokens]
        return fitting[-1] if fitting else 0


def test_an_unhashable_custom_tokenizer_runs_a_pipeline():
    tok = _UnhashableWords()
    assert get_tokenizer(tok) is tok
    result = Pipeline.preset("bm25-pack", budget=5, tokenizer=tok).run("capital", TEXTS)
    assert result.tokens <= 5 and result.tokenizer == "words"

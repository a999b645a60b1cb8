import json

import pytest

from optimizer import Chunk, Pipeline, Renderer, Stage, StageOutput
from optimizer.presets import list_presets
from optimizer.records import as_chunks
from optimizer.tokenizer import get_tokenizer


def test_default_preset_keeps_the_relevant_chunk_first(paris_chunks):
    result = Pipeline.preset("default", budget=40).run("What is the capital of France?", paris_chunks)
    assert result.tokens <= 40
    assert result.chunks[0].id == "p1"
    assert "capital of France" in result.text


def test_caller_scores_ids_and_metadata_survive():
    chunks = [Chunk(id="a", text="Alpha text here.", score=0.3, metadata={"url": "u1"})]
    result = Pipeline.preset("default", budget=100).run("alpha", chunks)
    kept = result.chunks[0]
    assert (kept.id, kept.score, dict(kept.metadata)) == ("a", 0.3, {"url": "u1"})
    assert kept.relevance is not None  # the reranker's score is separate from the caller's


def test_full_has_no_budget_and_returns_everything(paris_chunks):
    result = Pipeline.preset("full").run("q", paris_chunks)
    assert result.budget is None
    assert result.tokens == result.tokens_full
    assert [c.id for c in result.chunks] == ["p1", "p2", "p3"]


def test_share_budget_resolves_against_full_context(paris_chunks):
    result = Pipeline.preset("truncate", budget=0.5).run("q", paris_chunks)
    assert result.budget == result.tokens_full // 2
    assert result.tokens <= result.budget


def test_chunk_larger_than_budget_is_cut_at_sentence_boundary_and_traced():
    text = "First sentence is short. " + "Second sentence is much longer and goes on and on. " * 5
    result = Pipeline([], budget=12).run("q", [Chunk(id="big", text=text)])
    assert result.text == "[1] First sentence is short."
    cut = [d for d in result.dropped if d.chunk_id == "big"]
    assert cut and "sentence boundary" in cut[0].reason and cut[0].start == 25


def test_single_sentence_larger_than_budget_is_cut_at_token_boundary():
    text = "word " * 200
    result = Pipeline([], budget=20).run("q", [Chunk(id="w", text=text.strip())])
    assert result.tokens <= 20
    assert any("token boundary" in d.reason for d in result.dropped)


def test_dropped_chunks_are_in_the_trace_with_a_reason(paris_chunks):
    result = Pipeline.preset("default", budget=25).run("capital of France", paris_chunks)
    kept = {c.id for c in result.chunks}
    dropped = {d.chunk_id for d in result.dropped if d.start is None}
    assert kept | dropped == {"p1", "p2", "p3"}
    assert all(d.reason for d in result.dropped)


def test_trace_reports_tokens_and_time_per_step(paris_chunks):
    from optimizer.stages.rerank import BM25Rerank

    result = Pipeline([BM25Rerank()], budget=30).run("capital", paris_chunks)
    names = [t.name for t in result.trace]
    assert names == ["rerank-bm25", "pack"]
    pack = result.trace[-1]
    assert pack.tokens_out == result.tokens and pack.tokens_in >= pack.tokens_out
    assert all(t.ms >= 0 for t in result.trace)
    assert "pack" in result.trace_table()


def test_empty_chunk_list_gives_empty_context():
    result = Pipeline.preset("default", budget=100).run("q", [])
    assert (result.text, result.tokens, result.spans) == ("", 0, ())


def test_input_is_not_mutated(paris_chunks):
    dicts = [c.to_dict() for c in paris_chunks]
    before = json.dumps(dicts, sort_keys=True)
    Pipeline.preset("default", budget=20).run("capital", dicts)
    assert json.dumps(dicts, sort_keys=True) == before


def test_renderer_titles_once_and_markers():
    chunks = [Chunk(id="a", title="T", text="One."), Chunk(id="b", title="T", text="Two."), Chunk(id="c", title="U", text="Three.")]
    text = Pipeline([], renderer=Renderer()).run("q", chunks).text
    assert text == "[1] T\nOne.\n\n[2] Two.\n\n[3] U\nThree."
    plain = Pipeline([], renderer=Renderer(citations=False, titles=False, separator="\n")).run("q", chunks).text
    assert plain == "One.\nTwo.\nThree."


class BadStage(Stage):
    name = "bad"

    def __init__(self, *, mode: str = "invent"):
        self.mode = mode

    def __call__(self, query, chunks, context):
        if self.mode == "invent":
            return [Chunk(id="new", text="x")]
        if self.mode == "twice":
            return [chunks[0], chunks[0]]
        return "not a list"


@pytest.mark.parametrize("mode, message", [("invent", "not in its input"), ("twice", "twice"), ("str", "must return a list")])
def test_misbehaving_stage_is_reported_by_name(mode, message, paris_chunks):
    with pytest.raises((ValueError, TypeError), match=f"stage 'bad'.*{message}"):
        Pipeline([BadStage(mode=mode)]).run("q", paris_chunks)


def test_stage_reasons_reach_the_trace(paris_chunks):
    class DropLyon(Stage):
        name = "drop-lyon"

        def __call__(self, query, chunks, context):
            return StageOutput([c for c in chunks if c.id != "p2"], reasons={"p2": "not about the capital"})

    result = Pipeline([DropLyon()]).run("q", paris_chunks)
    assert [(d.chunk_id, d.reason) for d in result.trace[0].dropped] == [("p2", "not about the capital")]


@pytest.mark.parametrize("budget", [0, -1, float("nan"), 1.5, "lots", True])
def test_bad_budgets_name_the_value(budget):
    with pytest.raises((ValueError, TypeError), match="budget must be"):
        Pipeline([], budget=budget)


def test_unknown_preset_and_stage_suggest_names():
    with pytest.raises(ValueError, match="unknown preset 'defualt'.*Did you mean 'default'"):
        Pipeline.preset("defualt")
    with pytest.raises(ValueError, match="unknown stage 'bm52'"):
        Pipeline.from_config({"steps": [{"stage": "bm52"}]})
    with pytest.raises(TypeError, match="stage 'rerank-bm25'.*Valid parameters"):
        Pipeline.from_config({"steps": [{"stage": "rerank-bm25", "params": {"nope": 1}}]})


def test_duplicate_step_names_rejected():
    from optimizer.stages.rerank import BM25Rerank

    with pytest.raises(ValueError, match="step names must be unique"):
        Pipeline([BM25Rerank(), BM25Rerank()])


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
@pytest.mark.parametrize("preset", list_presets())
def test_config_round_trip(tmp_path, suffix, preset):
    pipeline = Pipeline.preset(preset, budget=0.25, tokenizer="o200k_base")
    path = tmp_path / f"p{suffix}"
    pipeline.save(path)
    loaded = Pipeline.load(path)
    assert loaded.to_config() == pipeline.to_config()


def test_config_file_errors(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("steps: [unclosed", encoding="utf-8")
    with pytest.raises(ValueError, match="could not parse pipeline config"):
        Pipeline.load(bad)
    with pytest.raises(ValueError, match="unknown pipeline config keys"):
        Pipeline.from_config({"stepz": []})
    with pytest.raises(FileNotFoundError):
        Pipeline.load(tmp_path / "missing.toml")


def test_whole_chunks_keeps_whole_chunks_only():
    from optimizer.stages.basic import WholeChunks
    from optimizer.stages.rerank import BM25Rerank

    chunks = [
        Chunk(id="long", text="Paris capital France. " * 20),
        Chunk(id="short", text="Paris is the capital."),
        Chunk(id="other", text="Unrelated text about rivers."),
    ]
    result = Pipeline([BM25Rerank(), WholeChunks()], budget=60).run("capital of France Paris", chunks)
    kept = {s.chunk_id: (s.start, s.end) for s in result.spans}
    assert "long" not in kept  # the best chunk does not fit whole: skipped, never cut
    assert kept["short"] == (0, len(chunks[1].text))
    assert all(d.start is None for d in result.dropped)


def test_a_context_counted_by_full_tokens_is_not_tokenized_again_by_run(monkeypatch):
    p = Pipeline.preset("truncate", budget=0.5)
    docs = ["Paris is the capital of France. " * 20, "Lyon is a city in France. " * 20]
    whole = p.renderer.render(list(as_chunks(docs))).text
    expected = get_tokenizer("cl100k_base").count(whole)
    seen: list[str] = []
    count = type(p.tokenizer).count
    monkeypatch.setattr(type(p.tokenizer), "count", lambda self, text: seen.append(text) or count(self, text))
    full = p.full_tokens(docs)
    first = p.run("capital?", docs)
    again = p.run("capital?", docs, budget=0.25)
    assert first.tokens_full == again.tokens_full == full == expected
    assert seen.count(whole) == 1  # once, by full_tokens; both runs and their budgets reuse it


def test_the_whole_context_count_follows_a_new_tokenizer():
    p = Pipeline.preset("truncate")
    docs = ["Ünïcödé text, counted by two tokenizers that disagree: " * 10]
    before = p.full_tokens(docs)
    p.tokenizer = get_tokenizer("o200k_base")
    assert p.full_tokens(docs) == p.tokenizer.count(p.renderer.render(list(as_chunks(docs))).text) != before

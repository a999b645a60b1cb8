"""The shared DESIGN.md contracts that outside checks read: the dataset schema's extra fields, the budget at a
share of 1.0, and the ``results.json`` fields (``runs[].budget``, ``tokenizer``).

Each test failed on the code before the fix (the contracts hunt, /tmp/hunt-contracts) and passes now.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest
import tiktoken
from typer.testing import CliRunner

from eval_fixtures import TINY
from evals.datasets import load_dataset, parse_example
from optimizer import Pipeline
from optimizer.presets import list_presets
from ragtrim.cli import app


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _eval(data: Path, out: Path, budgets: str, *flags: str):
    """``ragtrim eval`` of ``bm25-pack`` on ``data`` at ``budgets`` into ``out`` (few resamples), the CLI's result."""
    return CliRunner().invoke(app, ["eval", "--no-progress", "--resamples", "20", "-d", str(data), "-p", "bm25-pack",
                                    "-b", budgets, *flags, "-o", str(out)])


def _paris(**extra) -> dict:
    return {"id": "q1", "question": "Where is Paris?", "answers": ["France"],
            "chunks": [{"id": "q1-0", "title": "Paris", "text": "Paris is in France.", "gold": True, **extra},
                       {"id": "q1-1", "title": "Lyon", "text": "Lyon is a city on the Rhone."}],
            "meta": {"source": "mine"}}


# -- 1. "Extra fields are allowed and ignored": a chunk's extra key is kept, never read, never refused ------------
EXTRAS = {
    "score str": {"score": "high"},
    "score bool": {"score": True},
    "score number": {"score": 0.7},
    "metadata str": {"metadata": "crawler-7"},
    "embedding str": {"embedding": "v1"},
    "embedding empty": {"embedding": []},
    "embedding numbers": {"embedding": [0.1, 0.2]},
    "gold_spans dict": {"gold_spans": {"a": 1}},
    "gold_spans outside the text": {"gold_spans": [[1, 99]]},
    "relevance str": {"relevance": "high"},
    "pieces str": {"pieces": "x"},
    "lone surrogate in an extra": {"note": "crawler \ud83d"},
}


@pytest.mark.parametrize("case", sorted(EXTRAS))
def test_an_extra_chunk_field_is_kept_and_never_refused_or_read(tmp_path, case):
    extra = EXTRAS[case]
    ds = load_dataset(_write(tmp_path / "mine.jsonl", [_paris(**extra)]))
    chunk = ds.examples[0].chunks[0]
    assert chunk.score is None and chunk.embedding is None and chunk.relevance is None and not chunk.is_cut
    assert chunk.text == "Paris is in France." and chunk.title == "Paris" and ds.examples[0].gold_ids == ("q1-0",)
    key, value = next(iter(extra.items()))
    assert key in chunk.metadata  # kept for the caller
    if "surrogate" not in case:
        assert chunk.metadata[key] == value
    Pipeline.preset("bm25-pack").run("Where is Paris?", ds.examples[0].chunks, budget=0.5)  # and runs


def test_a_metadata_object_is_still_merged_and_the_chunks_own_gold_decides():
    ex = parse_example(_paris(metadata={"source": "wiki", "gold": False}))
    assert ex.chunks[0].metadata["source"] == "wiki" and ex.gold_ids == ("q1-0",)


def test_extra_fields_round_trip_through_to_dict(tmp_path):
    ex = load_dataset(_write(tmp_path / "a.jsonl", [_paris(score="high", metadata="crawler-7", embedding=[])])).examples[0]
    again = load_dataset(_write(tmp_path / "b.jsonl", [ex.to_dict()])).examples[0]
    assert again == ex and again.chunks[0].metadata["metadata"] == "crawler-7"


def test_a_numeric_score_on_each_chunk_does_not_change_the_contexts(tmp_path):
    rng = random.Random(7)
    scored = [{**row, "chunks": [{**c, "score": rng.random()} for c in row["chunks"]]} for row in TINY]
    plain, noisy = load_dataset(_write(tmp_path / "plain.jsonl", TINY)), load_dataset(_write(tmp_path / "score.jsonl", scored))
    pipe = Pipeline.preset("default")
    for a, b in zip(plain, noisy):
        assert all(c.score is None for c in b.chunks)
        assert pipe.run(a.question, a.chunks, budget=0.25).text == pipe.run(b.question, b.chunks, budget=0.25).text


def test_chunk_scores_opt_in_reads_score_and_embedding_and_checks_them(tmp_path):
    path = _write(tmp_path / "mine.jsonl", [_paris(score=0.7, embedding=[0.1, 0.2])])
    chunk = load_dataset(path, chunk_scores=True).examples[0].chunks[0]
    assert chunk.score == 0.7 and list(chunk.embedding) == [0.1, 0.2]
    assert "score" not in chunk.metadata and "embedding" not in chunk.metadata
    bad = _write(tmp_path / "bad.jsonl", [_paris(score="high")])
    with pytest.raises(ValueError, match=r"bad.jsonl, line 1 .*chunks\[0\].*score.*--chunk-scores"):
        load_dataset(bad, chunk_scores=True)
    with pytest.raises(ValueError, match=r"chunks\[0\]\.embedding"):
        load_dataset(_write(tmp_path / "e.jsonl", [_paris(embedding="v1")]), chunk_scores=True)


def test_eval_cli_accepts_extra_fields_and_reads_scores_only_with_the_flag(tmp_path):
    path = _write(tmp_path / "mine.jsonl", [_paris(score="high", metadata="crawler-7")])
    out = _eval(path, tmp_path / "out", "0.5")
    assert out.exit_code == 0, out.output
    refused = _eval(path, tmp_path / "out2", "0.5", "--chunk-scores")
    assert refused.exit_code == 2 and "score" in refused.output
    scored = _write(tmp_path / "scored.jsonl", [_paris(score=0.9)])
    ok = _eval(scored, tmp_path / "out3", "0.5", "--chunk-scores")
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "out3" / "results.json").read_text())["chunk_scores"] is True
    assert json.loads((tmp_path / "out" / "results.json").read_text())["chunk_scores"] is False


# -- 2. the hard budget at a share of 1.0: never more than the full context ---------------------------------------
def _overruns(name: str, examples) -> list[tuple[str, int, int]]:
    enc = tiktoken.get_encoding("cl100k_base")
    pipe = Pipeline.preset(name)
    out = []
    for ex in examples:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = pipe.run(ex.question, ex.chunks, budget=1.0)
        n = len(enc.encode(r.text, disallowed_special=()))
        if n > r.tokens_full or r.tokens > r.tokens_full or r.budget != r.tokens_full:
            out.append((ex.id, r.tokens_full, n))
    return out


def test_bm25_pack_at_share_one_never_renders_more_than_the_full_context():
    # nq-0101 rendered 1754 tokens of a 1747-token full context before the fix
    examples = [ex for ex in load_dataset("nq-multidoc", limit=102) if ex.id in {"nq-0101", "nq-0061"}]
    assert _overruns("bm25-pack", examples) == []
    assert _overruns("default", examples) == []


@pytest.mark.parametrize("name", [p for p in list_presets() if p not in {"thorough", "fitted"}])
def test_every_preset_at_share_one_keeps_within_the_full_context(name):
    examples = [ex for ex in load_dataset("nq-multidoc", limit=102) if ex.id in {"nq-0101", "nq-0061"}]
    examples += list(load_dataset("hotpotqa", limit=3))
    assert _overruns(name, examples) == []


def test_the_pack_trace_says_when_share_one_cut_the_reordered_context():
    ex = next(ex for ex in load_dataset("nq-multidoc", limit=102) if ex.id == "nq-0101")
    r = Pipeline.preset("bm25-pack").run(ex.question, ex.chunks, budget=1.0)
    pack = r.trace[-1]
    assert r.tokens <= r.budget == r.tokens_full == pack.notes["budget"]
    assert any(d.reason.startswith("budget:") for d in pack.dropped)


# -- 3. results.json: the reference's budget is 1.0, the tokenizer is the encoding --------------------------------
def test_results_json_reference_budget_and_tokenizer_follow_the_contract(tmp_path):
    path = _write(tmp_path / "mine.jsonl", TINY)
    out = _eval(path, tmp_path / "out", "0.5,1.0", "-t", "gpt-4o")
    assert out.exit_code == 0, out.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    budgets = [(r["pipeline"], r["budget"]) for r in results["runs"]]
    assert budgets == [("full", 1.0), ("bm25-pack", 0.5), ("bm25-pack", 1.0)]
    for r in results["runs"]:
        b = r["budget"]
        assert (isinstance(b, float) and 0 < b <= 1) or (isinstance(b, int) and not isinstance(b, bool) and b > 1)
    assert results["tokenizer"] == "o200k_base" and results["tokenizer_given"] == "gpt-4o"
    assert results["tokenizer_encoding"] == "o200k_base"  # kept for readers of the earlier layout
    tiktoken.get_encoding(results["tokenizer"])
    rows = [json.loads(line) for line in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
    assert {r["budget"] for r in rows if r["pipeline"] == "full"} == {1.0}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "tokenizer `gpt-4o` (encoding `o200k_base`)" in report
    assert "| full | full |" in report  # the reference is still shown as the full context


def _bench(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(folder: Path, budget) -> Path:
    folder.mkdir()
    rows = [{"id": "a", "pipeline": "full", "budget": budget, "answer_recall": 1, "tokens": 9, "context": "x"},
            {"id": "a", "pipeline": "default", "budget": 0.5, "answer_recall": 1, "tokens": 5, "context": "x"}]
    runs = [{"pipeline": "full", "budget": budget, "metrics": {"answer_recall": 1.0}, "vs_full": None},
            {"pipeline": "default", "budget": 0.5, "metrics": {"answer_recall": 1.0}, "vs_full": {}}]
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "results.json").write_text(json.dumps({"runs": runs}))
    return folder


def test_compare_runs_pairs_a_reference_written_null_with_one_written_1_0(tmp_path):
    old, new = _write_run(tmp_path / "old", None), _write_run(tmp_path / "new", 1.0)
    assert _bench("compare_runs").main([str(old), str(new)]) == 0


def test_paired_leaves_the_reference_out_in_either_layout(tmp_path):
    paired = _bench("paired")
    for budget in (None, 1.0):
        rows = paired.load_rows(_write_run(tmp_path / f"r{budget}", budget) / "examples.jsonl")
        assert set(paired.recall_rows(rows)) == {("default", 0.5)}


def test_the_report_reads_a_results_json_of_the_layout_before(tmp_path):
    from evals.report import render_markdown

    path = _write(tmp_path / "mine.jsonl", TINY)
    out = _eval(path, tmp_path / "out", "0.5", "-t", "gpt-4o")
    assert out.exit_code == 0, out.output
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    old = {**results, "tokenizer": "gpt-4o", "runs": [{**r, "budget": None} if r["pipeline"] == "full" else r
                                                      for r in results["runs"]]}
    del old["tokenizer_given"]
    for doc in (results, old):
        md = render_markdown(doc, None)
        assert "| full | full |" in md and "tokenizer `gpt-4o` (encoding `o200k_base`)" in md


def test_the_reference_is_found_by_the_budget_results_json_writes():
    from evals.sweep import run_eval

    run = run_eval(load_dataset("hotpotqa", limit=2), ["truncate"], [0.5], progress=False, resamples=20)
    assert run.run_for("full", 1.0) is run.run_for("full", None) and len(run.rows_for("full", 1.0)) == 2

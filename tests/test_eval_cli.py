"""``ragtrim eval`` end to end with typer's CliRunner on a tiny tmp dataset."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from eval_fixtures import TINY, strip_timings, write_tiny
from ragtrim.cli import app

runner = CliRunner()

METRIC_KEYS = {"answer_recall", "evidence_recall", "tokens_mean", "tokens_full_mean", "latency_ms_p50",
               "latency_ms_p95", "accuracy", "em", "f1"}


@pytest.fixture
def data(tmp_path):
    return write_tiny(tmp_path / "tiny.jsonl")


def _eval(*args):
    return runner.invoke(app, ["eval", *args, "--no-progress"])


def test_eval_writes_the_four_outputs_with_the_design_keys(data, tmp_path):
    out = tmp_path / "out"
    res = _eval("--data", str(data), "--pipelines", "truncate,default", "--budgets", "0.25,0.5", "--out", str(out))
    assert res.exit_code == 0, res.output
    for name in ("results.json", "examples.jsonl", "report.md", "report.html"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert {"dataset", "n", "tokenizer", "reader", "runs"} <= set(results)
    assert (results["dataset"], results["n"], results["tokenizer"], results["reader"]) == ("tiny", len(TINY), "cl100k_base", "none")
    assert [(r["pipeline"], r["budget"]) for r in results["runs"]] == [
        ("full", 1.0), ("truncate", 0.25), ("truncate", 0.5), ("default", 0.25), ("default", 0.5)
    ]
    for run in results["runs"]:
        assert METRIC_KEYS <= set(run["metrics"])
        assert run["metrics"]["accuracy"] is None and run["metrics"]["em"] is None and run["metrics"]["f1"] is None
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == len(TINY) * 5
    assert {"id", "pipeline", "budget", "context", "tokens", "answer_recall"} <= set(rows[0])
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    md = (out / "report.md").read_text()
    assert "→" in md and "delta vs full" in md and "$ / 1k queries" in md
    assert "report:" in res.output and "answer recall" in res.output


def test_eval_with_reader_twice_is_identical_and_served_from_cache(data, tmp_path):
    out = tmp_path / "out"
    args = ["--data", str(data), "--pipelines", "truncate", "--budgets", "0.5", "--reader", "fake", "--out", str(out)]
    first = _eval(*args)
    assert first.exit_code == 0, first.output
    doc1 = json.loads((out / "results.json").read_text())
    assert doc1["reader"] == "fake" and doc1["runs"][0]["metrics"]["accuracy"] is not None
    assert (out / "reader-cache.sqlite").is_file()
    second = _eval(*args)
    assert second.exit_code == 0, second.output
    doc2 = json.loads((out / "results.json").read_text())
    assert strip_timings(doc1) == strip_timings(doc2)
    assert doc2["meta"]["reader_cache"]["misses"] == 0
    assert doc2["meta"]["reader_cache"]["hits"] == doc1["meta"]["reader_cache"]["misses"] > 0
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    assert all(r["prediction"] is not None for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "hotpot"], "unknown dataset 'hotpot'"),
        (["--pipelines", "truncate,nope"], "unknown pipeline(s) 'nope'; presets: full, truncate"),
        (["--budgets", "0.25,1.5"], "bad budget '1.5'"),
        (["--budgets", "0"], "bad budget '0'"),
        (["--reader", "gpt"], "unknown reader 'gpt'"),
        (["--price-model", "nope"], "unknown price model 'nope'"),
        (["--model", "x"], "--model only apply with --reader openai or local"),
        (["--limit", "0"], "--limit must be a positive"),
    ],
)
def test_clear_errors(data, tmp_path, args, message):
    base = {"--data": str(data), "--out": str(tmp_path / "o")}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    res = _eval(*[x for kv in base.items() for x in kv])
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_custom_config_pipeline(data, tmp_path):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("steps:\n  - stage: rerank-bm25\n")
    out = tmp_path / "out"
    res = _eval("--data", str(data), "--pipelines", "truncate", "--budgets", "0.5", "--config", str(cfg), "--out", str(out))
    assert res.exit_code == 0, res.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["pipeline"] for r in runs] == ["full", "truncate", "mine"]


def test_config_repeats_for_several_custom_pipelines(data, tmp_path):
    one, two = tmp_path / "lexical.yaml", tmp_path / "sentences.json"
    one.write_text("steps:\n  - stage: rerank-bm25\n")
    two.write_text('{"name": "few", "steps": [{"stage": "compress-sentences", "params": {"model": null}}]}')
    out = tmp_path / "out"
    res = _eval("--data", str(data), "--pipelines", "truncate", "--budgets", "0.5", "--config", str(one), "--config", str(two), "--out", str(out))
    assert res.exit_code == 0, res.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["pipeline"] for r in runs] == ["full", "truncate", "lexical", "few"]


def test_retrieve_replaces_chunks_with_top_k(data, tmp_path):
    out = tmp_path / "out"
    res = _eval("--data", str(data), "--pipelines", "truncate", "--budgets", "0.5", "--retrieve", "bm25", "--top-k", "2", "--out", str(out))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    full = [r for r in rows if r["pipeline"] == "full"]
    assert full and all(1 <= len(r["kept_ids"]) <= 2 for r in full)
    assert json.loads((out / "results.json").read_text())["meta"]["retrieval"]["top_k"] == 2


def test_retrieve_without_the_retrieval_module_is_a_clear_error(data, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "evals.retrieval", None)
    res = _eval("--data", str(data), "--retrieve", "faiss", "--out", str(tmp_path / "o"))
    assert res.exit_code == 2 and "--retrieve faiss needs evals.retrieval" in res.output


def test_reader_on_limits_reader_arms(data, tmp_path):
    out = tmp_path / "out"
    res = _eval("--data", str(data), "--pipelines", "truncate,bm25-topk", "--budgets", "0.25,0.5", "--reader", "fake",
                "--reader-on", "bm25-topk@0.25", "--sample", "3", "--out", str(out))
    assert res.exit_code == 0, res.output
    runs = {(r["pipeline"], r["budget"]): r["metrics"] for r in json.loads((out / "results.json").read_text())["runs"]}
    assert {k for k, m in runs.items() if m["reader_calls"]} == {("full", 1.0), ("bm25-topk", 0.25)}
    assert runs[("bm25-topk", 0.25)]["reader_calls"] == 3
    bad = _eval("--data", str(data), "--pipelines", "truncate", "--budgets", "0.5", "--reader", "fake",
                "--reader-on", "default@0.5", "--out", str(tmp_path / "o2"))
    assert bad.exit_code == 2 and "reader arm 'default@50%' is not in the sweep" in bad.output

"""``ragtrim demo`` on the bundled HotpotQA set (small slices of it)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import evals.demo as demo
from ragtrim.cli import app

runner = CliRunner()


def test_demo_without_llama_cpp_runs_reader_free_and_says_how_to_enable(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "reader_available", lambda: False)
    monkeypatch.setattr(demo, "DEMO_PRESETS", ("truncate", "bm25-topk"))
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--limit", "6"])
    assert res.exit_code == 0, res.output
    assert "pip install 'ragtrim[reader]'" in res.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"] == "hotpotqa" and results["n"] == 6 and results["reader"] == "none"
    assert {r["budget"] for r in results["runs"]} == {1.0, 0.125, 0.25, 0.5}  # the reference: 1.0 (DESIGN.md)
    assert (tmp_path / "report.html").is_file() and "report:" in res.output


@pytest.mark.slow
@pytest.mark.reader
def test_demo_with_the_local_reader_on_a_tiny_sample(tmp_path):
    if not demo.reader_available():
        pytest.skip("llama-cpp-python or the packaged Gemma is not installed")
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--limit", "4", "--sample", "2"])
    assert res.exit_code == 0, res.output
    runs = {(r["pipeline"], r["budget"]): r["metrics"] for r in json.loads((tmp_path / "results.json").read_text())["runs"]}
    assert {k for k, m in runs.items() if m["reader_calls"]} == {("full", 1.0), ("default", 0.25), ("default", 0.125)}
    assert all(m["reader_calls"] == 2 for m in runs.values() if m["reader_calls"])

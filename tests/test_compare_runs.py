"""bench/compare_runs.py: identical runs pass, any change in a kept id, a token count or a metric fails."""

import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("compare_runs", Path(__file__).resolve().parents[1] / "bench" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(compare_runs)


def write_run(folder: Path, rows: list[dict], runs: list[dict]) -> Path:
    folder.mkdir()
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "results.json").write_text(json.dumps({"runs": runs, "meta": {"seconds": 1.0}}))
    return folder


def row(i, pipeline, budget, kept, tokens, latency=1.0):
    return {"id": i, "pipeline": pipeline, "budget": budget, "answer_recall": 1, "evidence_recall": 1.0, "tokens": tokens,
            "tokens_full": 100, "prompt_tokens": tokens + 20, "kept_ids": kept, "context": "x" * tokens, "latency_ms": latency}


RUNS = [{"pipeline": "full", "budget": None, "metrics": {"answer_recall": 1.0, "latency_ms_p50": 3.0}, "vs_full": None}]


@pytest.fixture
def before(tmp_path):
    return write_run(tmp_path / "before", [row("a", "full", None, ["a-0", "a-1"], 100), row("b", "full", None, ["b-0"], 90)], RUNS)


def test_identical_runs_pass_even_with_other_timings(before, tmp_path):
    after = write_run(tmp_path / "after", [row("a", "full", None, ["a-0", "a-1"], 100, latency=9.0), row("b", "full", None, ["b-0"], 90)],
                      [{**RUNS[0], "metrics": {"answer_recall": 1.0, "latency_ms_p50": 7.0}}])
    assert compare_runs.main([str(before), str(after)]) == 0


@pytest.mark.parametrize("change", ["kept", "tokens", "metric"])
def test_any_change_fails(before, tmp_path, change):
    rows = [row("a", "full", None, ["a-0"] if change == "kept" else ["a-0", "a-1"], 99 if change == "tokens" else 100),
            row("b", "full", None, ["b-0"], 90)]
    runs = [{**RUNS[0], "metrics": {"answer_recall": 0.5 if change == "metric" else 1.0, "latency_ms_p50": 3.0}}]
    after = write_run(tmp_path / "after", rows, runs)
    n, diffs = compare_runs.compare(before, after)
    assert n == 2 and len(diffs) >= 1
    assert compare_runs.main([str(before), str(after)]) == 1


def test_subset_compares_only_the_rows_of_the_smaller_run(before, tmp_path):
    after = write_run(tmp_path / "after", [row("a", "full", None, ["a-0", "a-1"], 100)], [])
    assert compare_runs.main(["--subset", str(before), str(after)]) == 0

"""bench/paired.py: the best baseline is chosen per budget on the arm's questions, and the delta is paired."""

import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("paired", Path(__file__).resolve().parents[1] / "bench" / "paired.py")
paired = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(paired)


def write(folder: Path, recall: dict[tuple[str, float], list[int | None]]) -> Path:
    folder.mkdir()
    rows = [{"id": f"q{i}", "pipeline": "full", "budget": None, "answer_recall": 1} for i in range(4)]
    for (pipeline, budget), values in recall.items():
        rows += [{"id": f"q{i}", "pipeline": pipeline, "budget": budget, "answer_recall": v} for i, v in enumerate(values)]
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_best_baseline_per_budget_and_paired_delta(tmp_path, capsys):
    run = write(tmp_path / "run", {
        ("default", 0.25): [1, 1, 1, 0], ("truncate", 0.25): [1, 0, 0, 0], ("bm25-pack", 0.25): [1, 1, 0, 0],
        ("default", 0.5): [1, 1, 1, None], ("truncate", 0.5): [1, 1, 1, 1], ("bm25-pack", 0.5): [0, 0, 0, 0],
    })
    out = tmp_path / "paired.json"
    assert paired.main([str(run), "--arms", "default", "--json", str(out)]) == 0
    table = json.loads(out.read_text())
    quarter, half = table["default@0.25 vs best baseline"], table["default@0.5 vs best baseline"]
    assert (quarter["versus"], quarter["delta"], quarter["n"]) == ("bm25-pack", 0.25, 4)
    # at 50 % the uncountable question is left out, so truncate ties on the other three
    assert (half["versus"], half["delta"], half["n"]) == ("truncate", 0.0, 3)
    assert "| default | 25.0% | 0.750 | bm25-pack | 0.500 | +25.0" in capsys.readouterr().out


def test_also_compares_against_a_named_arm_and_unknown_arms_fail(tmp_path):
    run = write(tmp_path / "run", {("default", 0.25): [1, 1, 0, 0], ("default-noretr", 0.25): [1, 0, 0, 0]})
    out = tmp_path / "paired.json"
    assert paired.main([str(run), "--arms", "default", "--also", "default-noretr", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["default@0.25 vs default-noretr"]["delta"] == 0.25
    with pytest.raises(SystemExit, match="no rows for"):
        paired.main([str(run), "--arms", "quality"])


def test_token_budgets_print_as_tokens(tmp_path, capsys):
    run = write(tmp_path / "run", {("default", 300): [1, 1, 0, 0], ("bm25-pack", 300): [1, 0, 0, 0]})
    assert paired.main([str(run), "--arms", "default"]) == 0
    assert "| default | 300 tokens | 0.500 | bm25-pack | 0.250 |" in capsys.readouterr().out

"""bench/lodo_setting.py: a held-out set never takes part in choosing the value it is reported at."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("lodo_setting", Path(__file__).resolve().parents[1] / "bench" / "lodo_setting.py")
lodo = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(lodo)

SETS = ["hotpotqa", "2wiki", "squad2-pools", "runs/fit-extra/squad-extra.jsonl", "nq-multidoc", "runs/fit-extra/nq-extra.jsonl"]


def write(path: Path, table: dict[str, dict[str, float]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for label, per_set in table.items():
            for data, recall in per_set.items():
                rows = [{"budget": b, "answer_recall": recall} for b in (0.125, 0.25, 0.5)]
                f.write(json.dumps({"data": data, "pipeline": label, "rows": rows}) + "\n")
    return path


def test_each_fold_chooses_without_its_own_group(tmp_path, capsys):
    # "a" is best on the multi-hop sets, "b" on the single-hop ones (by more in total)
    table = {
        "a": {s: (0.95 if s in ("hotpotqa", "2wiki") else 0.5) for s in SETS},
        "b": {s: (0.7 if s in ("hotpotqa", "2wiki") else 0.9) for s in SETS},
    }
    path = write(tmp_path / "runs.jsonl", table)
    results = lodo.load(path)
    assert set(results["a"]) == {"hotpotqa", "2wiki", "squad2-pools", "squad-extra", "nq-multidoc", "nq-extra"}
    assert lodo.choose(results, ["hotpotqa", "2wiki"], None) == "a"
    assert lodo.choose(results, ["hotpotqa", "squad", "nq"], None) == "b"
    assert lodo.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| hotpotqa | b | 0.700 / 0.700 / 0.700 |" in out
    assert "| nq-multidoc | a | 0.500 / 0.500 / 0.500 |" in out  # without nq, the multi-hop sets outweigh squad
    assert "to ship (chosen on all groups): b" in out


def test_a_near_tie_keeps_the_incumbent(tmp_path):
    table = {"new": {s: 0.9005 for s in SETS}, "old": {s: 0.9 for s in SETS}}
    results = lodo.load(write(tmp_path / "runs.jsonl", table))
    assert lodo.choose(results, list(lodo.GROUPS), "old") == "old"
    assert lodo.choose(results, list(lodo.GROUPS), None) == "new"


def test_a_value_missing_a_set_is_refused(tmp_path):
    table = {"a": {s: 0.9 for s in SETS[:-1]}}
    with pytest.raises(SystemExit, match="nq-extra"):
        lodo.main([str(write(tmp_path / "runs.jsonl", table))])

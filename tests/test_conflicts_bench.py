"""bench/conflicts.py: the wrong-fact copy is wrong, sits next to the passage it copies, and the set loads."""

import copy
import importlib.util
import json
from pathlib import Path

from evals.datasets import load_dataset
from evals.metrics import contains_answer

SPEC = importlib.util.spec_from_file_location("conflicts", Path(__file__).resolve().parents[1] / "bench" / "conflicts.py")
conflicts = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(conflicts)

ROWS = [
    {
        "id": "q1",
        "question": "Where is the Eiffel Tower?",
        "answers": ["Paris", "paris, France"],
        "chunks": [
            {"id": "a", "text": "Lyon is a city.", "gold": False},
            {"id": "b", "title": "Eiffel", "text": "The Eiffel Tower is in Paris. PARIS is busy.", "gold": True, "gold_spans": [[0, 29]]},
        ],
    },
    {"id": "q2", "question": "Is Lyon a city?", "answers": ["yes"], "chunks": [{"id": "c", "text": "Lyon is a city."}]},
    {"id": "q3", "question": "Who built it?", "answers": ["Gustave Eiffel"], "chunks": [{"id": "d", "text": "Nobody knows."}]},
    {"id": "q4", "question": "Capital of Italy?", "answers": ["Rome"], "chunks": [{"id": "e", "text": "Rome is the capital."}]},
]


def test_the_copy_replaces_every_answer_and_goes_before_or_after_its_passage(tmp_path):
    rows = copy.deepcopy(ROWS)
    before = conflicts.wrong_copies(rows, "before")
    assert rows == ROWS  # inputs untouched
    assert [r["id"] for r in before] == ["q1-wrong", "q4-wrong"]  # yes/no and "answer held nowhere" are left out
    q1 = before[0]
    assert [c["id"] for c in q1["chunks"]] == ["a", "b-wrong", "b"]
    fake = q1["chunks"][1]
    assert fake["gold"] is False and "gold_spans" not in fake and fake["title"] == "Eiffel"
    assert not contains_answer(fake["text"], q1["answers"])
    assert fake["text"].count(q1["meta"]["wrong_answer"]) == 2  # "Paris" and "PARIS" both replaced
    after = conflicts.wrong_copies(rows, "after")
    assert [c["id"] for c in after[0]["chunks"]] == ["a", "b", "b-wrong"]
    path = tmp_path / "stress.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in before))
    loaded = load_dataset(path)
    assert len(loaded) == 2 and loaded.examples[0].gold_ids == ("b",)

"""Where an arm lost the answer: cut inside a kept chunk, every holding chunk dropped, or in no chunk at all."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from evals import metrics as M
from evals.report import miss_table
from evals.sweep import run_eval
from optimizer import Chunk

FILLER = " ".join(f"Filler sentence number {i} says nothing of note." for i in range(12))


def example(qid: str, answers: list[str], chunks: list[Chunk]) -> SimpleNamespace:
    return SimpleNamespace(id=qid, question="Where is the tower?", answers=answers, chunks=chunks, gold_ids=())


EXAMPLES = [
    # the answer closes a long first chunk: truncation keeps the chunk's start, not its end
    example("cut", ["Paris"], [Chunk(id="c1", text=FILLER + " The tower is in Paris."), Chunk(id="c2", text=FILLER)]),
    # the answer is in the last chunk only: truncation never reaches it
    example("dropped", ["Lyon"], [Chunk(id="d1", text=FILLER), Chunk(id="d2", text=FILLER), Chunk(id="d3", text="The tower is in Lyon.")]),
    # a title holds the answer, and the chunk comes first: kept
    example("kept", ["Rome"], [Chunk(id="k1", title="Rome", text=FILLER), Chunk(id="k2", text=FILLER)]),
    # no chunk holds it, not even the full context
    example("absent", ["Oslo"], [Chunk(id="a1", text=FILLER), Chunk(id="a2", text=FILLER)]),
    # yes/no: answer recall leaves it out, and so does the split
    example("yesno", ["yes"], [Chunk(id="y1", text=FILLER)]),
]


def test_answer_chunk_ids_reads_titles_and_leaves_out_what_recall_leaves_out():
    chunks = [Chunk(id="a", text="Lyon is big."), Chunk(id="b", text="It is old.", title="Paris"), Chunk(id="c", text="PARIS!")]
    assert M.answer_chunk_ids(chunks, ["Paris"]) == ("b", "c")
    assert M.answer_chunk_ids(chunks, ["Oslo"]) == ()
    assert M.answer_chunk_ids(chunks, ["yes"]) is None
    assert M.answer_chunk_ids(chunks, ["yes", "Lyon"]) == ("a",)  # a yes/no answer never marks a chunk


def test_miss_kinds():
    assert M.miss(0, kept_chunk_ids=["b"], answer_chunks=("a", "b")) == "cut"
    assert M.miss(0, kept_chunk_ids=["c"], answer_chunks=("a", "b")) == "dropped"
    assert M.miss(0, kept_chunk_ids=["c"], answer_chunks=()) == "absent"
    assert M.miss(1, kept_chunk_ids=["a"], answer_chunks=("a",)) is None
    assert M.miss(None, kept_chunk_ids=[], answer_chunks=None) is None


def test_a_sweep_splits_each_arms_misses_and_they_add_up():
    run = run_eval(SimpleNamespace(name="misses", examples=EXAMPLES), ["truncate"], [0.25], progress=False)
    rows = {r.id: r for r in run.rows_for("truncate", 0.25)}
    assert {k: r.miss for k, r in rows.items()} == {"cut": "cut", "dropped": "dropped", "kept": None, "absent": "absent", "yesno": None}
    assert "c1" in rows["cut"].kept_ids and "Paris" not in rows["cut"].context
    full = {r.id: r.miss for r in run.rows_for("full", None)}
    assert full == {"cut": None, "dropped": None, "kept": None, "absent": "absent", "yesno": None}
    m = run.run_for("truncate", 0.25).metrics
    assert m.n_answer_recall == 4
    assert (m.miss_cut, m.miss_dropped, m.miss_absent) == (0.25, 0.25, 0.25)
    assert m.answer_recall + m.miss_cut + m.miss_dropped + m.miss_absent == pytest.approx(1.0)
    table = miss_table(run.to_results())
    assert [r[:2] for r in table.rows] == [("full", "full"), ("truncate", "25%")]
    assert table.rows[1][3:] == ("0.750", "0.250", "0.250", "0.250")


def test_rows_without_the_split_give_none_not_a_wrong_share():
    from evals.aggregate import arm_metrics
    from evals.records import ExampleRow

    row = ExampleRow(id="x", pipeline="p", budget=0.5, context="", tokens=1, tokens_full=2, prompt_tokens=1,
                     kept_ids=(), answer_recall=0, evidence_recall=None, latency_ms=1.0)
    m = arm_metrics([row], usd_per_million=1.0)
    assert (m.miss_cut, m.miss_dropped, m.miss_absent) == (None, None, None)
    assert miss_table({"runs": [{"pipeline": "p", "budget": 0.5, "metrics": m.to_dict()}]}) is None

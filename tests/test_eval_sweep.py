"""run_eval: rows per (example, pipeline, budget), the full reference, reader failures, determinism."""

from __future__ import annotations

import json

import pytest

from evals.datasets import load_dataset
from evals.readers.fake import FakeReader
from evals.report import write_report
from evals.sweep import run_eval
from optimizer import Pipeline
from eval_fixtures import TINY, strip_timings, write_tiny


@pytest.fixture
def tiny(tmp_path):
    return load_dataset(write_tiny(tmp_path / "tiny.jsonl"))


def test_full_runs_once_first_and_every_other_arm_per_budget(tiny):
    run = run_eval(tiny, ["truncate", "full", "bm25-topk"], [0.5, 40], progress=False)
    assert [a.label for a in run.arms] == [
        "full", "truncate@50%", "truncate@40 tok", "bm25-topk@50%", "bm25-topk@40 tok"
    ]
    assert len(run.rows) == len(TINY) * 5
    full = run.rows_for("full", None)
    assert [r.id for r in full] == [ex["id"] for ex in TINY]
    assert all(r.tokens == r.tokens_full for r in full)
    for r in run.rows_for("truncate", 40):
        assert r.tokens <= 40
    for r in run.rows_for("bm25-topk", 0.5):
        assert r.tokens <= int(0.5 * r.tokens_full)


def test_answer_recall_rows_and_counts_by_hand(tiny):
    run = run_eval(tiny, ["truncate"], [0.5], progress=False)
    full = {r.id: r for r in run.rows_for("full", None)}
    # yes/no and unanswerable examples are left out; the others contain their answer in full
    assert {k: r.answer_recall for k, r in full.items()} == {
        "q-paris": 1, "q-yes": None, "q-hamlet": 1, "q-none": None, "q-seine": 1
    }
    assert {k: r.evidence_recall for k, r in full.items()} == {
        "q-paris": 1.0, "q-yes": 1.0, "q-hamlet": 1.0, "q-none": None, "q-seine": 1.0
    }
    m = run.run_for("full", None).metrics
    assert (m.answer_recall, m.n_answer_recall, m.n_evidence_recall, m.n) == (1.0, 3, 4, 5)
    # truncate keeps the first half: the hamlet answer sits in the last chunk, so it is lost
    cut = {r.id: r for r in run.rows_for("truncate", 0.5)}
    assert "Shakespeare" not in cut["q-hamlet"].context and cut["q-hamlet"].answer_recall == 0
    expected = [cut[k].answer_recall for k in ("q-paris", "q-hamlet", "q-seine")]
    assert run.run_for("truncate", 0.5).metrics.answer_recall == pytest.approx(sum(expected) / 3)
    d = run.run_for("truncate", 0.5).delta("answer_recall")
    assert d.n == 3 and d.delta == pytest.approx(sum(expected) / 3 - 1.0)


def test_same_call_gives_identical_results_except_timings(tiny, tmp_path):
    docs = []
    for i in range(2):
        run = run_eval(tiny, ["truncate", "default"], [0.25, 0.5], reader=FakeReader(), progress=False)
        write_report(run, tmp_path / f"out{i}", plot=False)
        docs.append(json.loads((tmp_path / f"out{i}" / "results.json").read_text()))
    assert strip_timings(docs[0]) == strip_timings(docs[1])
    assert docs[0]["runs"][1]["vs_full"]["tokens_mean"]["ci95"] is not None


def test_reader_failures_are_recorded_not_scored(tiny, tmp_path):
    reader = FakeReader(fail_every=2)  # calls 2, 4, ... fail
    run = run_eval(tiny, ["truncate"], [0.5], reader=reader, progress=False)
    called = [r for r in run.rows if r.reader_called]
    failed = [r for r in called if r.prediction is None]
    assert failed and all(r.reader_error and r.accuracy is None and r.f1 is None for r in failed)
    total_failures = sum(run_.metrics.reader_failures for run_ in run.runs)
    assert total_failures == len(failed)
    for run_ in run.runs:
        m = run_.metrics
        ok = [r for r in run.rows_for(run_.pipeline, run_.budget) if r.prediction is not None and r.accuracy is not None]
        assert m.n_accuracy == len(ok)
        if ok:
            assert m.accuracy == pytest.approx(sum(r.accuracy for r in ok) / len(ok))
    write_report(run, tmp_path / "out", plot=False)  # allow_nan=False: would raise on a NaN
    rows = [json.loads(line) for line in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
    bad = [r for r in rows if r["reader_error"]]
    assert bad and all(r["prediction"] is None for r in bad)


def test_all_reader_calls_failing_gives_none_not_nan(tiny, tmp_path):
    run = run_eval(tiny, ["truncate"], [0.5], reader=FakeReader(fail_every=1), progress=False)
    for run_ in run.runs:
        m = run_.metrics
        assert m.accuracy is None and m.em is None and m.f1 is None
        assert m.reader_failures == m.reader_calls == len(TINY)
    assert run.run_for("truncate", 0.5).delta("accuracy") is None
    write_report(run, tmp_path / "out")


def test_sample_and_reader_arms_limit_the_reader(tiny):
    reader = FakeReader()
    run = run_eval(tiny, ["truncate", "bm25-pack"], [0.25, 0.5], reader=reader, sample=2,
                   reader_arms=[("bm25-pack", 0.25)], progress=False)
    called = {(r.pipeline, r.budget, r.id) for r in run.rows if r.reader_called}
    ids = [ex["id"] for ex in TINY[:2]]
    assert called == {(p, b, i) for p, b in (("full", None), ("bm25-pack", 0.25)) for i in ids}
    assert run.run_for("truncate", 0.5).metrics.accuracy is None
    assert run.run_for("bm25-pack", 0.25).delta("accuracy").n == 2
    with pytest.raises(ValueError, match="not in the sweep"):
        run_eval(tiny, ["truncate"], [0.5], reader=reader, reader_arms=[("default", 0.5)], progress=False)


def test_custom_pipeline_object_and_errors(tiny):
    custom = Pipeline.from_config({"name": "mine", "steps": [{"stage": "rerank-bm25"}]})
    run = run_eval(tiny, ["truncate", custom], [0.5], progress=False)
    assert [a.label for a in run.arms] == ["full", "truncate@50%", "mine@50%"]
    with pytest.raises(ValueError, match="unknown preset 'nope'.*truncate"):
        run_eval(tiny, ["nope"], [0.5], progress=False)
    with pytest.raises(ValueError, match="budget must be"):
        run_eval(tiny, ["truncate"], [1.5], progress=False)
    with pytest.raises(ValueError, match="sample"):
        run_eval(tiny, ["truncate"], [0.5], sample=0, progress=False)


def test_results_are_frozen_records_until_the_json_boundary(tiny):
    from dataclasses import FrozenInstanceError

    from evals.records import ArmMetrics, ArmRun, Delta

    run = run_eval(tiny, ["truncate"], [0.5], progress=False)
    cut = run.run_for("truncate", 0.5)
    assert isinstance(cut, ArmRun) and isinstance(cut.metrics, ArmMetrics) and isinstance(cut.delta("tokens_mean"), Delta)
    with pytest.raises(FrozenInstanceError):
        cut.metrics.answer_recall = 1.0
    assert cut.metrics.value("tokens_mean") == cut.metrics.tokens_mean
    with pytest.raises(KeyError, match="unknown metric 'recall'"):
        cut.metrics.value("recall")
    doc = run.to_results()["runs"][1]
    assert doc["metrics"] == cut.metrics.to_dict() and doc["vs_full"]["tokens_mean"]["ci95"] == list(cut.delta("tokens_mean").ci95)
    assert json.loads(json.dumps(doc)) == doc

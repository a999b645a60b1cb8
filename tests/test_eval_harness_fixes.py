"""Fixes from the eval-harness bug hunt: each test fails on the old behaviour and passes now.

Fast: the fake reader, reader-free presets (truncate, bm25-pack), tiny files.
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

import evals.sweep
from evals import metrics as M
from evals.datasets import load_dataset, parse_example
from evals.readers import ReaderCache
from evals.readers.fake import FakeReader
from evals.records import Arm
from evals.sweep import make_arms, run_eval
from evals.tune import MIN_SPLIT, bisect_share, evaluate_at, metric_mean, split_examples, tune_budget
from ragtrim.cli import app

FRANCE = {
    "id": "q1", "question": "What is the capital of France?", "answers": ["Paris"],
    "chunks": [{"id": "b", "title": "France", "gold": True,
                "text": "France is a country in Europe. The capital of France is Paris. It has many museums."}],
}
HAMLET = {
    "id": "q2", "question": "Who wrote Hamlet?", "answers": ["Shakespeare"],
    "chunks": [{"id": "h", "title": "Hamlet", "gold": True, "text": "Hamlet is a play by Shakespeare. It is long."},
               {"id": "f", "title": "Farms", "text": "Farms grow wheat in long rows every summer."}],
}


def data(*rows: dict) -> SimpleNamespace:
    return SimpleNamespace(name="t", examples=[parse_example(r) for r in rows])


def write(path, rows, *, prefix: bytes = b"") -> str:
    path.write_bytes(prefix + "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
    return str(path)


def synthetic(n: int) -> list[dict]:
    """Examples whose answer sits after a varying amount of filler (truncate needs a growing share)."""
    out = []
    for i in range(n):
        filler = " ".join(f"Filler sentence {k} about weather in town {i}." for k in range(1 + i % 7))
        out.append({"id": f"s{i}", "question": f"What is the code of town {i}?", "answers": [f"Zq{i}x"],
                    "chunks": [{"id": f"{i}a", "text": filler},
                               {"id": f"{i}b", "text": f"The code of town {i} is Zq{i}x.", "gold": True},
                               {"id": f"{i}c", "text": "Unrelated notes about rivers. " * (1 + i % 3)}]})
    return out


# -- 1. an empty answer is a real, wrong answer --------------------------------------------------
def test_fake_reader_answers_an_empty_context_with_an_empty_answer():
    out = FakeReader().answer("What is the capital of France?", "")
    assert out.ok and out.text == "" and out.error is None


def test_empty_answer_scores_zero_and_is_not_a_failure(tmp_path):
    reader = FakeReader(cache=ReaderCache(tmp_path / "c.sqlite"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 0-token share's own warning
        run = run_eval(data(FRANCE, HAMLET), ["truncate"], [0.001], reader=reader, resamples=20, progress=False)
    rows = run.rows_for("truncate", 0.001)
    assert [r.context for r in rows] == ["", ""]
    assert all(r.reader_called and r.prediction == "" and r.reader_error is None and r.accuracy == 0 for r in rows)
    m = run.run_for("truncate", 0.001).metrics
    assert (m.reader_failures, m.n_reader, m.accuracy, m.em, m.f1) == (0, 2, 0.0, 0.0, 0.0)
    assert m.accuracy <= run.run_for("full", None).metrics.accuracy  # an empty context never scores higher
    assert metric_mean(rows, "accuracy") == 0.0  # the tuner counts it too
    calls = reader.calls
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_eval(data(FRANCE, HAMLET), ["truncate"], [0.001], reader=reader, resamples=20, progress=False)
    assert reader.calls == calls  # cached like any answer


def test_a_real_reader_failure_stays_a_failure():
    run = run_eval(data(FRANCE), ["truncate"], [0.5], reader=FakeReader(fail_every=1), resamples=20, progress=False)
    m = run.run_for("truncate", 0.5).metrics
    assert m.reader_failures == 1 and m.n_reader == 0 and m.accuracy is None


def test_local_reader_empty_generation_is_an_empty_answer():
    from evals.readers.local import LocalReader

    reader = LocalReader()
    reader._worker = SimpleNamespace(call=lambda name, **kw: {"text": "\n", "latency_ms": 1.0})
    out = reader.answer("Who?", "x")
    assert out.ok and out.text == "" and out.error is None


# -- 2. the tuner chooses on one part and checks on the held-out rest ---------------------------
def test_tune_holds_out_examples_and_checks_the_budget_on_them(tmp_path):
    path = write(tmp_path / "s.jsonl", synthetic(60))
    result = tune_budget(path, "truncate", target_retention=0.9, resamples=50, holdout=0.5)
    assert result.n == 60 and result.n_tune == 30 and result.held_out is not None and result.held_out.n == 30
    assert result.note == ""
    # the check is the chosen budget measured on the 30 examples the search did not see
    tune_part, held_part = split_examples(load_dataset(path).examples, 0.5, seed=0)
    assert {e.id for e in tune_part}.isdisjoint({e.id for e in held_part})
    at_b, full = evaluate_at(SimpleNamespace(name="s", examples=held_part), "truncate", result.budget)
    assert (result.held_out.metric, result.held_out.full_metric) == (pytest.approx(at_b), pytest.approx(full))
    text = result.summary()
    assert "in-sample" in text and "held out   30 examples" in text
    assert result.to_dict()["held_out"]["n"] == 30


def test_tune_says_when_too_few_examples_to_hold_out(tmp_path):
    path = write(tmp_path / "s.jsonl", synthetic(MIN_SPLIT - 20))
    result = tune_budget(path, "truncate", target_retention=0.9, resamples=50, holdout=0.5)
    assert result.held_out is None and "fewer than 40" in result.note
    assert "in-sample only" in result.summary()


def test_cli_tune_holds_out_by_default_and_keeps_old_options(tmp_path):
    path = write(tmp_path / "s.jsonl", synthetic(60))
    out = CliRunner().invoke(app, ["tune", "--data", path, "--pipeline", "truncate", "--target-retention", "0.9",
                                   "--resamples", "50", "--format", "json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)
    assert d["held_out"]["n"] == 30 and d["n_tune"] == 30 and "metric" in d["in_sample"]
    same = CliRunner().invoke(app, ["tune", "--data", path, "--pipeline", "truncate", "--resamples", "50",
                                    "--holdout", "0", "--format", "json"])
    assert same.exit_code == 0 and json.loads(same.stdout)["held_out"] is None


# -- 3. a full-context metric of 0 has no meaningful target; never below one token ---------------
def test_tune_refuses_when_the_full_context_scores_zero(tmp_path):
    rows = [{"id": f"a{i}", "question": "What color is the sky?", "answers": ["zzqx"],
             "chunks": [{"id": "c", "text": "The sky is blue. " * 20}]} for i in range(4)]
    path = write(tmp_path / "absent.jsonl", rows)
    with pytest.raises(ValueError, match="meaningless"):
        tune_budget(path, "truncate", resamples=20)
    out = CliRunner().invoke(app, ["tune", "--data", path, "--pipeline", "truncate"])
    assert out.exit_code == 2 and "scores answer_recall = 0" in out.output and "meets" not in out.output


def test_bisection_never_goes_below_the_one_token_floor():
    tried = []
    best = bisect_share(0.0, 0.02, lambda s: tried.append(s) or True, resolution=0.005, floor=0.003)
    assert best >= 0.003 and min(tried) >= 0.003


def test_tune_does_not_evaluate_shares_below_one_token(tmp_path):
    path = write(tmp_path / "small.jsonl", [FRANCE, HAMLET])  # ~20-30 tokens: 2 % and 5 % are 0 tokens
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tune_budget(path, "truncate", target_retention=1.0, resamples=20)
    assert not [w for w in caught if "rounds down to 0 tokens" in str(w.message)]
    assert min(s for s, _ in result.evaluations) >= 1 / result.tokens_full_median


# -- 4. budgets: a bare 1 is ambiguous; 1 and 1.0 are different arms -----------------------------
def test_cli_rejects_a_bare_1_and_says_what_to_write(tmp_path):
    path = write(tmp_path / "g.jsonl", [FRANCE])
    for budgets in ("1", "1,1.0"):
        out = CliRunner().invoke(app, ["eval", "--data", path, "--out", str(tmp_path / "o"), "--budgets", budgets,
                                       "--pipelines", "truncate", "--no-progress"])
        assert out.exit_code == 2 and "write 1.0 for the whole context" in out.output and "at least 2" in out.output


def test_arms_are_deduped_by_kind_and_value():
    assert [a.label for a in make_arms(["truncate"], [1.0, 2, 1.0, 2.0])] == ["full", "truncate@100%", "truncate@2 tok"]
    assert Arm("truncate", 1) != Arm("truncate", 1.0)
    assert len(make_arms(["truncate"], [1, 1.0])) == 3
    run = run_eval(data(FRANCE), ["truncate"], [20, 1.0], resamples=5, progress=False)
    assert 0 < run.run_for("truncate", 20).metrics.tokens_mean <= 20 and run.rows_for("truncate", 1.0)[0].answer_recall == 1


# -- 5. errors that used to appear only after the whole sweep -----------------------------------
@pytest.mark.parametrize("extra, message", [
    (["--out", "FILE"], "is an existing file, not a folder"),
    (["--resamples", "0"], "--resamples must be a positive number"),
    (["--seed", "-1"], "--seed must be an integer >= 0"),
])
def test_eval_checks_out_resamples_and_seed_before_the_sweep(tmp_path, monkeypatch, extra, message):
    monkeypatch.setattr(evals.sweep, "run_eval", lambda *a, **k: pytest.fail("the sweep ran"))
    path = write(tmp_path / "g.jsonl", [FRANCE])
    (tmp_path / "FILE").write_text("x")
    args = ["eval", "--data", path, "--pipelines", "truncate", "--no-progress", "--out", str(tmp_path / "o")]
    args += [str(tmp_path / "FILE") if a == "FILE" else a for a in extra]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("extra, message", [(["--resamples", "0"], "--resamples"), (["--seed", "-1"], "--seed")])
def test_tune_checks_resamples_and_seed_first(tmp_path, extra, message):
    out = CliRunner().invoke(app, ["tune", "--data", write(tmp_path / "g.jsonl", [FRANCE]), "--pipeline", "truncate", *extra])
    assert out.exit_code == 2 and message in out.output


def test_run_eval_checks_bootstrap_settings_before_running(monkeypatch):
    monkeypatch.setattr(evals.sweep, "sweep_rows", lambda *a, **k: pytest.fail("the sweep ran"))
    with pytest.raises(ValueError, match="resamples"):
        run_eval(data(FRANCE), ["truncate"], [0.5], resamples=0, progress=False)
    with pytest.raises(ValueError, match="seed"):
        run_eval(data(FRANCE), ["truncate"], [0.5], seed=-1, progress=False)


# -- 6. lone surrogates in the question or answers are caught at load -----------------------------
@pytest.mark.parametrize("field, value", [("question", "Q \ud800?"), ("answers", ["ok", "x\udc80"])])
def test_surrogate_in_question_or_answers_names_file_line_and_field(tmp_path, field, value):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(FRANCE) + "\n" + json.dumps({**HAMLET, field: value}) + "\n", encoding="utf-8")
    where = re.escape("question" if field == "question" else "answers[1]")
    with pytest.raises(ValueError, match=rf"s\.jsonl, line 2 \(id 'q2'\): field '{where}'.*lone UTF-16 surrogate"):
        load_dataset(path)


# -- 7. evidence recall: a whole sentence of the gold chunk, not a fragment -----------------------
def test_evidence_recall_needs_a_whole_sentence():
    run = run_eval(data(FRANCE), ["truncate"], [8, 14], resamples=5, progress=False)
    fragment = run.rows_for("truncate", 8)[0]
    assert fragment.context.startswith("[1] France\n") and "." not in fragment.context
    assert fragment.kept_ids == ("b",) and fragment.evidence_recall == 0.0  # was 1.0
    whole = run.rows_for("truncate", 14)[0]
    assert "France is a country in Europe." in whole.context and whole.evidence_recall == 1.0


def test_sentence_kept_ids_joins_pieces_split_by_white_space():
    from optimizer import Chunk

    chunk = Chunk(id="c", text="Paris is big. Lyon is small.")
    piece = lambda s, e: SimpleNamespace(chunk_id="c", start=s, end=e)  # noqa: E731
    assert M.sentence_kept_ids([piece(0, 5), piece(5, 13)], [chunk]) == ("c",)
    assert M.sentence_kept_ids([piece(0, 12)], [chunk]) == ()
    assert M.sentence_kept_ids([piece(14, 28)], [chunk], ids=["other"]) == ()


# -- 8. a UTF-8 byte order mark is accepted ----------------------------------------------------
def test_bom_files_load_plain_and_gzipped(tmp_path):
    plain = write(tmp_path / "bom.jsonl", [FRANCE, HAMLET], prefix=b"\xef\xbb\xbf")
    assert [e.id for e in load_dataset(plain).examples] == ["q1", "q2"]
    gz = tmp_path / "bom.jsonl.gz"
    gz.write_bytes(gzip.compress((tmp_path / "bom.jsonl").read_bytes()))
    assert [e.id for e in load_dataset(gz).examples] == ["q1", "q2"]
    nobom = tmp_path / "plain.jsonl.gz"
    nobom.write_bytes(gzip.compress((json.dumps(FRANCE) + "\n").encode()))
    assert len(load_dataset(nobom)) == 1


# -- 9. warnings, reader-only options, Ctrl-C, pipeline-name messages ----------------------------
def test_zero_token_share_warns_once_as_one_line(tmp_path):
    path = write(tmp_path / "g.jsonl", [FRANCE, HAMLET])
    out = CliRunner().invoke(app, ["eval", "--data", path, "--out", str(tmp_path / "o"), "--budgets", "0.001,0.002",
                                   "--pipelines", "truncate", "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "UserWarning" not in out.output and "warnings.warn" not in out.output
    lines = [ln for ln in out.output.splitlines() if "rounds down to 0 tokens" in ln]
    assert lines and lines[0].startswith("warning: budget share") and len(lines) <= 3
    assert any("more time(s)" in ln for ln in out.output.splitlines())


def test_sample_and_reader_on_without_a_reader_are_not_silently_ignored(tmp_path):
    path = write(tmp_path / "g.jsonl", [FRANCE])
    out = CliRunner().invoke(app, ["eval", "--data", path, "--out", str(tmp_path / "o"), "--pipelines", "truncate",
                                   "--budgets", "0.5", "--sample", "1", "--reader-on", "truncate@0.5", "--no-progress"])
    assert out.exit_code == 0 and "--sample and --reader-on only apply with a reader" in out.output


def test_ctrl_c_without_a_reader_says_nothing_was_written(tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(evals.sweep, "run_eval", interrupted)
    out = CliRunner().invoke(app, ["eval", "--data", write(tmp_path / "g.jsonl", [FRANCE]), "--out", str(tmp_path / "o"),
                                   "--pipelines", "truncate", "--no-progress"])
    assert out.exit_code == 130 and "interrupted: nothing was written" in out.output


def test_pipeline_lists_say_what_to_do():
    from ragtrim.commands.common import resolve_pipeline_names

    names = resolve_pipeline_names("all,thorough")
    assert "thorough" in names and "default" in names and len(names) == len(set(names))
    with pytest.raises(ValueError, match="list each preset once"):
        resolve_pipeline_names("default,default")
    with pytest.raises(ValueError, match="list each preset once"):
        evals.sweep.resolve_pipelines(["truncate", "truncate"], tokenizer="cl100k_base")

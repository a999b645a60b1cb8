"""Fixes from the CLI bug hunt (tune, retrieval mode, names, small CLI checks): each test fails on the code before.

Fast: reader-free presets (truncate), a fake reader, tiny files written here; no model is loaded.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from evals.datasets import Dataset, parse_example
from evals.readers.base import ReaderOutput
from evals.readers.fake import FakeReader
from evals.tune import MIN_SPLIT, split_examples, tune_budget
from optimizer import Pipeline
from ragtrim.cli import app

runner = CliRunner()
FILLER = "Unrelated notes about the weather and the tides of the northern sea."


def write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def capital(i: int, *, answer_last: bool = False, sentinel: bool = False, answers: list[str] | None = None) -> dict:
    """An example whose answer sentence comes first (or after three fillers); ``sentinel`` adds a last chunk."""
    city, answer = f"Zorbland{i}", f"Quixotl{i}"
    gold = {"id": f"{i}-a", "title": city, "text": f"The capital of {city} is {answer}.", "gold": True}
    fillers = [{"id": f"{i}-{j}", "title": f"Notes {j}", "text": " ".join([FILLER] * 3)} for j in range(3)]
    chunks = [*fillers, gold] if answer_last else [gold, *fillers]
    if sentinel:
        chunks.append({"id": f"{i}-s", "title": "End", "text": "Sentinel paragraph."})
    return {"id": f"q{i}", "question": f"What is the capital of {city}?",
            "answers": [answer] if answers is None else answers, "chunks": chunks}


class FailsOnSentinel(FakeReader):
    """The fake reader, except that every call whose context holds "Sentinel" fails (the whole contexts of some)."""

    def _generate(self, prompt: str) -> ReaderOutput:
        if "Sentinel" in prompt:
            return ReaderOutput.failure("sentinel: upstream HTTP 502")
        return super()._generate(prompt)


class AlwaysFails(FakeReader):
    def _generate(self, prompt: str) -> ReaderOutput:
        return ReaderOutput.failure("connection reset by peer")


def flaky_rows() -> list[dict]:
    """12 examples: 8 answer early; 4 answer late and their whole context makes the reader fail."""
    return [capital(i, answer_last=i % 3 == 0, sentinel=i % 3 == 0) for i in range(12)]


# -- 1. a flaky reader: paired comparisons, failures counted and reported --------------------------------
def test_a_flaky_reader_is_compared_on_the_same_examples_and_its_failures_are_reported(tmp_path):
    data = SimpleNamespace(name="flaky", examples=[parse_example(r) for r in flaky_rows()])
    result = tune_budget(data, "truncate", metric="accuracy", reader=FailsOnSentinel(), holdout=0, resamples=50)
    # the 4 examples whose full context failed are in neither mean: full and budget on the same 8
    assert result.n_metric == 8 and result.n_left_out == 4
    assert result.full_metric == 1.0 and result.metric == 1.0 and result.delta == pytest.approx(0.0)
    # unpaired, the late answers (0 at small budgets) counted against a full mean without them: a large budget
    assert result.met and result.budget < 0.5
    assert result.reader_failures >= 4 and "sentinel: upstream HTTP 502" in result.first_reader_error
    text = result.summary()
    assert "4 of the 12 examples were left out" in text and "reader calls failed" in text
    assert result.to_dict()["reader_failures"] == result.reader_failures


def test_cli_tune_warns_about_failed_reader_calls(tmp_path, monkeypatch):
    from ragtrim.commands import common

    monkeypatch.setattr(common.ReaderChoice, "build", lambda self, path: (FailsOnSentinel(), None))
    data = write(tmp_path / "flaky.jsonl", flaky_rows())
    res = runner.invoke(app, ["tune", "--data", data, "--pipeline", "truncate", "--metric", "accuracy",
                              "--reader", "fake", "--resamples", "20", "--holdout", "0"])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "reader calls failed" in res.output
    assert "4 of the 12 examples that chose the budget were left out of the comparison" in res.output


# -- 2. tune checks the openai endpoint first; failed calls are named as the cause -------------------------
def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_tune_stops_at_once_on_an_unreachable_endpoint(tmp_path):
    data = write(tmp_path / "d.jsonl", [capital(i) for i in range(4)])
    res = runner.invoke(app, ["tune", "--data", data, "--pipeline", "truncate", "--metric", "accuracy",
                              "--reader", "openai", "--base-url", f"http://127.0.0.1:{_refused_port()}/v1", "--model", "m"])
    assert res.exit_code == 2, res.output
    assert "cannot reach" in res.output and "--base-url" in res.output and "no example" not in res.output


def test_a_reader_metric_whose_calls_all_failed_says_so_and_quotes_the_first_error():
    data = SimpleNamespace(name="d", examples=[parse_example(capital(i)) for i in range(4)])
    with pytest.raises(ValueError, match="4 of the 4 reader calls failed .*connection reset by peer") as err:
        tune_budget(data, "truncate", metric="accuracy", reader=AlwaysFails(), holdout=0)
    assert "yes/no" not in str(err.value)


# -- 3. a pipeline whose own selection keeps less than the whole context at budget 1.0 -------------------
def test_the_miss_of_a_top_1_pipeline_blames_its_selection_not_the_whole_context(tmp_path):
    data = SimpleNamespace(name="late", examples=[parse_example(capital(i, answer_last=True)) for i in range(6)])
    top1 = Pipeline.from_config({"name": "top1", "steps": [{"stage": "select-top-k", "params": {"k": 1}}]})
    result = tune_budget(data, top1, holdout=0, resamples=20)
    assert not result.met and result.tokens_mean < result.tokens_full_mean
    verdict = result.verdict()
    assert "even the whole context" not in verdict
    assert f"keeps {result.tokens_mean:,.0f} of {result.tokens_full_mean:,.0f} tokens" in verdict
    assert "its own selection" in verdict


# -- 4. retrieval mode: the corpus is the whole dataset whatever --limit ---------------------------------
RETRIEVAL_ROWS = [
    {"id": "q0", "question": "Where does the otter live?", "answers": ["rivers"], "chunks": [
        {"id": "q0-g", "text": "The otter sleeps in rivers.", "gold": True},
        {"id": "q0-f", "text": "Filler text about the weather today.", "gold": False}]},
    {"id": "q1", "question": "What does the badger eat?", "answers": ["worms"], "chunks": [
        {"id": "q1-g", "text": "The badger eats worms.", "gold": True},
        {"id": "q1-f", "text": "Notes on cloud shapes and rain.", "gold": False}]},
    {"id": "q2", "question": "What colour is the heron?", "answers": ["grey"], "chunks": [
        {"id": "q2-g", "text": "The heron is grey.", "gold": True},
        # only in the third example: with the whole corpus it outranks q0's gold passage
        {"id": "q2-f", "text": "Where does an otter live? Every otter must live near an otter den.", "gold": False}]},
]


def eval_cli(*args: str):
    return runner.invoke(app, ["eval", "--no-progress", "--resamples", "20", "--pipelines", "truncate",
                               "--budgets", "0.5", *args])


def test_retrieval_with_limit_uses_the_whole_dataset_as_corpus_and_records_its_size(tmp_path):
    data, out = write(tmp_path / "r.jsonl", RETRIEVAL_ROWS), tmp_path / "o"
    res = eval_cli("--data", data, "--out", str(out), "--retrieve", "bm25", "--top-k", "1", "--limit", "1")
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    meta = results["meta"]["retrieval"]
    assert results["n"] == 1
    assert meta["corpus_passages"] == 6 and meta["top_k"] == 1 and meta["top_k_used"] == 1
    assert meta["retrieval_recall"] == 0.0  # the first L examples alone would give 1.0
    assert "corpus of 6 distinct passages of the whole dataset" in (out / "report.md").read_text()


def test_a_top_k_above_the_corpus_is_clipped_with_one_warning(tmp_path):
    data, out = write(tmp_path / "r.jsonl", RETRIEVAL_ROWS), tmp_path / "o"
    res = eval_cli("--data", data, "--out", str(out), "--retrieve", "bm25", "--top-k", "50")
    assert res.exit_code == 0, res.output
    assert res.output.count("larger than the corpus (6 distinct passages)") == 1
    meta = json.loads((out / "results.json").read_text())["meta"]["retrieval"]
    assert (meta["top_k"], meta["top_k_used"]) == (50, 6)
    assert "top 6 per question (50 asked, clipped to the corpus)" in (out / "report.md").read_text()


# -- 5. names with [...] or $ are shown as written; a broken plot does not lose the report ----------------
def test_names_with_markup_and_dollars_are_shown_as_written(tmp_path):
    data, out = write(tmp_path / "rag[v2].jsonl", RETRIEVAL_ROWS), tmp_path / "o"
    configs = []
    for i, name in enumerate(["tr[/]unc", "trunc[v2]", "budget$_cap$"]):
        configs += ["--config", write(tmp_path / f"c{i}.json", [{"name": name, "steps": [{"stage": "select-truncate"}]}])]
    res = eval_cli("--data", data, "--out", str(out), *configs)
    assert res.exit_code == 0, res.output
    for text in ("tr[/]unc", "trunc[v2]", "budget$_cap$", "rag[v2]"):
        assert text in res.output
    assert (out / "pareto.png").stat().st_size > 0 and (out / "report.html").exists()


def test_a_plot_that_cannot_be_drawn_leaves_the_rest_of_the_report(tmp_path, monkeypatch):
    import evals.report

    def broken(results, path):
        raise ValueError("mathtext: unknown symbol\nmore detail")

    monkeypatch.setattr(evals.report, "pareto_plot", broken)
    data, out = write(tmp_path / "d.jsonl", RETRIEVAL_ROWS), tmp_path / "o"
    res = eval_cli("--data", data, "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "warning: the quality-versus-tokens plot could not be drawn (ValueError: mathtext: unknown symbol)" in res.output
    assert "drawing it failed" in (out / "report.md").read_text() and (out / "report.html").exists()
    assert not (out / "pareto.png").exists()


# -- 6. a held-out half with nothing to check is "not checked", not a miss --------------------------------
def test_the_split_spreads_the_examples_that_count_over_both_halves():
    examples = list(range(MIN_SPLIT))
    for seed in range(30):
        tune, held = split_examples(examples, 0.5, seed, counts=lambda i: i in (3, 30))
        assert {3, 30} & set(tune) and {3, 30} & set(held), seed


def test_cli_tune_reports_a_held_out_half_with_nothing_counting_as_not_checked(tmp_path):
    rows = [capital(0)] + [capital(i, answers=["yes"]) for i in range(1, MIN_SPLIT)]  # one example counts
    data = write(tmp_path / "one.jsonl", rows)
    res = runner.invoke(app, ["tune", "--data", data, "--pipeline", "truncate", "--resamples", "20"])
    assert res.exit_code == 0, res.output
    assert "NOT CHECKED" in res.output and "no held-out example counts for answer_recall" in res.output
    assert "MISSES" not in res.output and "retention None" not in res.output
    d = json.loads(runner.invoke(app, ["tune", "--data", data, "--pipeline", "truncate", "--resamples", "20",
                                       "--format", "json"]).stdout)
    assert d["held_out"]["checked"] is False and d["held_out"]["met"] is False


# -- 7. "nothing counts" gives the metric's own reason ---------------------------------------------------
def test_evidence_recall_with_no_gold_chunk_says_so():
    rows = [capital(i) for i in range(4)]
    for r in rows:
        for c in r["chunks"]:
            c["gold"] = False
    data = SimpleNamespace(name="nogold", examples=[parse_example(r) for r in rows])
    with pytest.raises(ValueError, match="no chunk is marked gold") as err:
        tune_budget(data, "truncate", metric="evidence_recall", holdout=0)
    assert "yes/no" not in str(err.value)


# -- 8. small CLI checks -----------------------------------------------------------------------------------
def test_optimize_refuses_a_bare_1_and_warns_about_an_empty_context(tmp_path):
    chunks = write(tmp_path / "c.jsonl", [{"id": "a", "title": "Paris", "text": "Paris is the capital of France."}])
    one = runner.invoke(app, ["optimize", "-q", "Where is Paris?", "-c", chunks, "--budget", "1", "--preset", "truncate"])
    assert one.exit_code == 2 and "ambiguous" in one.output and "budget '1'" in one.output
    tiny = runner.invoke(app, ["optimize", "-q", "Where is Paris?", "-c", chunks, "--budget", "2", "--preset", "truncate"])
    assert tiny.exit_code == 0 and "warning: --budget 2 holds no block: the context is empty" in tiny.output


@pytest.mark.parametrize("make, expected", [
    (lambda d: d / "missing", "is not a folder"),
    (lambda d: d, "has no results.json"),
    (lambda d: (d / "results.json").write_text("notjson") and d, "is not valid JSON"),
    (lambda d: (d / "results.json").write_text("[1]") and d, "is not a ragtrim eval results file"),
])
def test_the_report_module_names_the_folder_instead_of_a_traceback(tmp_path, capsys, make, expected):
    from evals.report import main

    folder = make(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([str(folder)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and expected in err and str(folder) in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, option", [
    (["eval", "--data", "hotpotqa", "--retrieve", "bogus"], "--retrieve"),
    (["eval", "--data", "hotpotqa", "--retrieve", "bm25", "--top-k", "0"], "--top-k"),
    (["demo", "--limit", "0", "--no-reader"], "--limit"),
])
def test_bad_options_are_refused_before_the_out_folder_is_made(tmp_path, args, option):
    out = tmp_path / "o"
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 2 and f"error: {option} must be" in res.output
    assert not out.exists()


def test_the_tune_savings_line_says_it_is_in_sample(tmp_path):
    data = SimpleNamespace(name="d", examples=[parse_example(capital(i)) for i in range(6)])
    saves = next(line for line in tune_budget(data, "truncate", holdout=0, resamples=20).summary().splitlines()
                 if line.strip().startswith("saves"))
    assert "measured on the 6 examples that chose the budget (in-sample)" in saves


def test_retrieve_dataset_limit_keeps_the_whole_corpus():
    from evals.retrieval import retrieve_dataset

    ds = Dataset("t", Path("t.jsonl"), tuple(parse_example(r) for r in RETRIEVAL_ROWS))
    one = retrieve_dataset(ds, top_k=1, retriever="bm25", limit=1)
    assert len(one.examples) == 1 and one.examples[0].retrieval["corpus_passages"] == 6
    assert [c.id for c in one.examples[0].chunks] == ["q2-f"]


def test_tune_says_when_its_prices_multiply_another_encodings_counts():
    """The default tokenizer (cl100k_base) is not the default price model's (gpt-4o counts with o200k_base): the $ line is
    followed by the fix; counted with the model's own encoding, nothing more is said."""
    data = SimpleNamespace(name="d", examples=[parse_example(capital(i)) for i in range(6)])

    def prices_line(**kw):
        lines = tune_budget(data, "truncate", holdout=0, resamples=20, **kw).summary().splitlines()
        return [line for line in lines if line.strip().startswith("prices")]

    [line] = prices_line()
    assert "counted with cl100k_base, but gpt-4o counts with o200k_base" in line and "--tokenizer o200k_base" in line
    assert prices_line(tokenizer="o200k_base") == []

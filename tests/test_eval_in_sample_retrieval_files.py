"""Fixes from the second eval-harness bug hunt: each test fails on the code before the fix and passes now.

Fast: reader-free presets (truncate, bm25-pack, bm25-topk), the fake reader, tiny files; one test runs
``default`` (the static model) on five questions.
"""

from __future__ import annotations

import fcntl
import inspect
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from eval_fixtures import TINY, write_tiny
from evals.datasets import load_dataset, parse_example
from evals.sweep import run_eval
from evals.tune import tune_budget
from optimizer import Chunk, Pipeline
from optimizer.jsonl import read_chunks
from ragtrim.cli import app

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def eval_cli(*args: str):
    return CliRunner().invoke(app, ["eval", "--no-progress", "--resamples", "20", *args])


# -- 1. a preset scored on the data its settings were chosen on is marked in-sample -------------------
def test_runs_of_a_preset_tuned_on_the_dataset_are_marked_in_sample():
    examples = [parse_example(r) for r in TINY]
    run = run_eval(SimpleNamespace(name="hotpotqa", examples=examples), ["default", "truncate"], [0.5], progress=False,
                   resamples=20)
    results = run.to_results()
    by_name = {r["pipeline"]: r for r in results["runs"]}
    assert by_name["default"]["in_sample"] is True and by_name["default"]["tuned_on"][:2] == ["hotpotqa", "2wiki"]
    assert "settings chosen on this set" in by_name["default"]["in_sample_note"]
    assert by_name["truncate"]["in_sample"] is False and by_name["full"]["in_sample"] is False
    # the DESIGN.md keys are untouched
    assert set(by_name["default"]["metrics"]) >= {"answer_recall", "evidence_recall", "tokens_mean", "accuracy"}
    from evals.report import render_markdown, terminal_table
    from evals.tables import to_markdown

    md = render_markdown(results, None)
    assert "| default* | 50% |" in md and "| truncate | 50% |" in md
    assert "settings chosen on this set" in md and "in-sample" in md
    terminal = to_markdown(terminal_table(results))
    assert "| default* |" in terminal and "settings chosen on this set" in terminal
    # the same run on a set default was not tuned on: no mark
    other = run_eval(SimpleNamespace(name="nq-multidoc", examples=examples), ["truncate"], [0.5], progress=False,
                     resamples=20).to_results()
    assert not any(r["in_sample"] for r in other["runs"])


def test_fitted_presets_carry_the_sets_in_their_scorer_files():
    from optimizer.presets import tuned_on

    for preset, scorer in (("fitted", "default"), ("fitted-quality", "quality")):
        info = json.loads((ROOT / "optimizer" / "data" / f"scorer-{scorer}.json").read_text(encoding="utf-8"))["info"]
        expected = {name for part in info["fitted_on"].values() for name in part}
        assert set(tuned_on(preset)["sets"]) == expected
        assert {"hotpotqa", "2wiki", "squad2-pools", "nq-multidoc"} <= expected
    assert tuned_on("default")["sets"] == ["hotpotqa", "2wiki", "nq-extra", "squad-extra"] and tuned_on("bm25-pack") is None
    assert "squad2-pools" not in tuned_on("quality")["sets"] and "nq-multidoc" not in tuned_on("thorough")["sets"]


def test_a_custom_pipeline_with_a_tuned_presets_steps_counts_as_that_preset():
    from evals.sweep import in_sample, tuned_on

    adaptive = Pipeline.preset("default", adaptive={"mass": 0.5}).renamed("adapt")
    tuned = tuned_on("adapt", adaptive)
    assert tuned is not None and tuned["preset"] == "default"
    assert in_sample("2wiki", tuned)["in_sample"] and not in_sample("squad2-pools", tuned)["in_sample"]


# -- 2. under --retrieve, evidence recall keeps unretrieved gold in its denominator --------------------
def _two_gold(i: int, topic: str) -> dict:
    return {"id": f"q{i}", "question": f"Where does the {topic} live?", "answers": [f"{topic}land"],
            "chunks": [{"id": f"q{i}-a", "text": f"The {topic} lives in {topic}land.", "gold": True},
                       {"id": f"q{i}-b", "text": f"Zebras graze on wide plains number {i}.", "gold": True}]}


def test_retrieval_counts_gold_that_was_not_retrieved_as_lost():
    from evals.datasets import Dataset
    from evals.retrieval import retrieve_dataset

    examples = [parse_example(_two_gold(i, t)) for i, t in enumerate(["otter", "heron", "badger"])]
    retrieved = retrieve_dataset(Dataset("t", Path("t.jsonl"), tuple(examples)), top_k=1, retriever="bm25")
    assert all(ex.retrieval["gold_total"] == 2 for ex in retrieved.examples)
    run = run_eval(retrieved, ["truncate"], [0.5], progress=False, resamples=20)
    full = run.rows_for("full", None)
    # one of two gold passages retrieved, and the full context keeps it: evidence recall 0.5, not 1.0
    assert [r.evidence_recall for r in full] == [0.5, 0.5, 0.5]


def test_a_question_whose_gold_was_never_retrieved_scores_zero_not_left_out():
    from evals.datasets import Dataset
    from evals.retrieval import retrieve_dataset

    rows = [{"id": "q0", "question": "What colour is the otter?", "answers": ["brown"],
             "chunks": [{"id": "a", "text": "The otter is brown.", "gold": False},
                        {"id": "g", "text": "Herons wade in shallow water.", "gold": True}]}]
    ds = Dataset("t", Path("t.jsonl"), tuple(parse_example(r) for r in rows))
    retrieved = retrieve_dataset(ds, top_k=1, retriever="bm25")
    assert retrieved.examples[0].retrieval["gold_retrieved"] == 0
    row = run_eval(retrieved, ["truncate"], [0.5], progress=False, resamples=20).rows_for("full", None)[0]
    assert row.evidence_recall == 0.0


def test_cli_retrieval_meta_names_no_embedder_for_bm25_and_reports_recall(tmp_path):
    data = write(tmp_path / "d.jsonl", [_two_gold(i, t) for i, t in enumerate(["otter", "heron", "badger"])])
    out = tmp_path / "o"
    res = eval_cli("--data", data, "--out", str(out), "--pipelines", "truncate", "--budgets", "0.5",
                   "--retrieve", "bm25", "--top-k", "1")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "results.json").read_text())["meta"]["retrieval"]
    assert meta["retriever"] == "bm25" and meta["embedder"] is None
    assert meta["retrieval_recall"] == 0.5 and meta["gold_total"] == 6 and meta["gold_retrieved"] == 3
    assert "Retrieval recall@1 0.500" in (out / "report.md").read_text()


# -- 3. packing baselines skip blank chunks instead of charging their header -------------------------
def test_truncate_skips_an_empty_first_chunk_and_says_why():
    chunks = [Chunk(id="a", title="Paris", text=""), Chunk(id="b", title="Paris (city)", text="Paris is in France")]
    result = Pipeline.preset("truncate").run("Where is Paris?", chunks, budget=9)
    assert result.text == "[1] Paris (city)\nParis is"
    reasons = [d.reason for step in result.trace for d in step.dropped if d.chunk_id == "a"]
    assert reasons and "blank" in reasons[0]


@pytest.mark.parametrize("blank", ["", "   ", "\n\n"])
def test_select_whole_does_not_spend_the_budget_on_a_blank_chunk(blank):
    real = Chunk(id="b", title="Paris (city)", text="Paris is in France", score=0.5)
    cost = Pipeline.preset("full").run("q", [real]).tokens
    big = Chunk(id="c", title="Lyon", text="Lyon is a large city on the Rhone. " * 5, score=0.1)  # never fits
    chunks = [Chunk(id="a", title="Paris", text=blank, score=0.9), real, big]
    pipe = Pipeline.from_config({"name": "whole", "steps": [{"stage": "select-whole"}]})
    assert pipe.run("Where is Paris?", chunks, budget=cost).text == "[1] Paris (city)\nParis is in France"


def test_the_packer_drops_a_white_space_chunk_with_a_reason():
    chunks = [Chunk(id="a", title="Paris", text="   "), Chunk(id="b", title="Paris (city)", text="Paris is in France")]
    result = Pipeline.preset("bm25-pack").run("Where is Paris?", chunks, budget=12)
    assert result.text == "[1] Paris (city)\nParis is in France"
    pack = result.trace[-1]
    assert [d.chunk_id for d in pack.dropped] == ["a"] and "blank" in pack.dropped[0].reason
    assert "   " not in Pipeline.preset("full").run("q", chunks).text


# -- 4. the tuner on an adaptive pipeline: no "whole context", no unlabelled savings ------------------
def _synthetic(n: int) -> list[dict]:
    out = []
    for i in range(n):
        filler = " ".join(f"Filler sentence {k} about the weather in town {i}." for k in range(6))
        out.append({"id": f"s{i}", "question": f"What is the code of town {i}?", "answers": [f"Zq{i}x"],
                    "chunks": [{"id": f"{i}a", "text": filler}, {"id": f"{i}b", "text": f"The code of town {i} is Zq{i}x."}]})
    return out


def test_tuning_an_adaptive_pipeline_says_the_rule_caps_the_context(tmp_path):
    path = write(tmp_path / "s.jsonl", _synthetic(8))
    pipe = Pipeline.preset("truncate", adaptive={"mass": 0.05, "min_tokens": 0, "unit": "sentence"}).renamed("adapt")
    result = tune_budget(path, pipe, target_retention=1.0, resamples=20)
    assert not result.met
    assert "whole context)" not in result.verdict() and "adaptive rule" in result.verdict()
    assert result.adaptive
    text = result.summary()
    saves = next(line for line in text.splitlines() if line.strip().startswith("saves"))
    assert "MISSES" in saves
    assert result.to_dict()["adaptive"] is True


def test_savings_at_a_budget_that_misses_on_held_out_examples_are_labelled(tmp_path):
    from dataclasses import replace

    result = tune_budget(write(tmp_path / "s.jsonl", _synthetic(40)), "truncate", target_retention=0.9, resamples=20)
    assert result.met and result.held_out is not None
    missed = replace(result, held_out=replace(result.held_out, met=False))
    saves = next(line for line in missed.summary().splitlines() if line.strip().startswith("saves"))
    assert "MISSES the target on the held-out examples" in saves
    assert "MISSES" not in next(line for line in replace(result, held_out=replace(result.held_out, met=True)).summary()
                                .splitlines() if line.strip().startswith("saves"))


# -- 5. one eval per --out folder; files replaced whole ------------------------------------------------
def test_a_second_eval_on_a_locked_out_folder_stops_with_a_clear_error(tmp_path):
    data = str(write_tiny(tmp_path / "tiny.jsonl"))
    out = tmp_path / "o"
    out.mkdir()
    with open(out / ".ragtrim.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = eval_cli("--data", data, "--out", str(out), "--pipelines", "truncate", "--budgets", "0.5")
    assert res.exit_code == 2 and "another ragtrim eval is writing to" in res.output
    assert not (out / "results.json").exists()
    again = eval_cli("--data", data, "--out", str(out), "--pipelines", "truncate", "--budgets", "0.5")
    assert again.exit_code == 0, again.output


def test_a_failed_write_leaves_the_previous_outputs_whole(tmp_path):
    from evals.report import write_results

    data = SimpleNamespace(name="t", examples=[parse_example(r) for r in TINY])
    run = run_eval(data, ["truncate"], [0.5], progress=False, resamples=20)
    write_results(run, tmp_path)
    before = (tmp_path / "examples.jsonl").read_text()

    class Boom:
        def to_dict(self):
            raise RuntimeError("disk full")

    broken = SimpleNamespace(to_results=run.to_results, rows=[run.rows[0], Boom()])
    with pytest.raises(RuntimeError):
        write_results(broken, tmp_path)
    assert (tmp_path / "examples.jsonl").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples.jsonl", "results.json"]


# -- 6. tune_budget holds out half by default, as the CLI ----------------------------------------------
def test_tune_budget_holds_out_half_by_default(tmp_path):
    assert inspect.signature(tune_budget).parameters["holdout"].default == 0.5
    result = tune_budget(write(tmp_path / "s.jsonl", _synthetic(40)), "truncate", target_retention=0.9, resamples=20)
    assert result.held_out is not None and result.n_tune == 20 and result.holdout == 0.5


def test_the_tuning_notebook_is_explicit_about_in_sample_calls():
    nb = json.loads((ROOT / "notebooks" / "02-tune-budgets.ipynb").read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    calls = [line for line in code.splitlines() if "tune_budget(data" in line]
    assert calls and all("holdout=0" in line or "holdout=0.5 by default" in line for line in calls)
    assert "verdict()" in code


# -- 7-9. data files that are not UTF-8 JSON Lines, bad embeddings, missing paths ---------------------
def test_a_cp1252_file_names_the_line_and_the_iconv_fix(tmp_path):
    path = tmp_path / "win.jsonl"
    good = json.dumps({"id": "q0", "question": "Where?", "answers": ["x"], "chunks": []}) + "\n"
    path.write_bytes(good.encode() + '{"id": "q1", "question": "Où est le café?", "answers": ["x"], "chunks": []}\n'.encode("cp1252"))
    with pytest.raises(ValueError) as info:
        load_dataset(path)
    msg = str(info.value)
    assert f"{path}, line 2" in msg and "0xf9" in msg and "iconv -f cp1252 -t utf-8" in msg
    res = eval_cli("--data", str(path), "--out", str(tmp_path / "o"), "--pipelines", "truncate")
    assert res.exit_code == 2 and "line 2" in res.output and "codec can't decode" not in res.output


def test_a_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "u16.jsonl"
    path.write_bytes(json.dumps({"id": "q", "question": "Q?", "answers": [], "chunks": []}).encode("utf-16"))
    with pytest.raises(ValueError, match=r"UTF-16.*iconv -f UTF-16 -t UTF-8"):
        load_dataset(path)
    with pytest.raises(ValueError, match="UTF-16"):
        read_chunks(path)


@pytest.mark.parametrize("embedding, expected", [
    ("0.1,0.2", "got str '0.1,0.2'"),
    ({"v": 1}, "got dict"),
    ([0.1, "x"], "item 1 is str 'x'"),
    ([], "got list []"),
])
def test_a_malformed_embedding_is_refused_at_load_naming_file_line_and_chunk(tmp_path, embedding, expected):
    # only when the file's vectors are read (--chunk-scores): otherwise 'embedding' is an extra field, kept, never refused
    row = {"id": "q1", "question": "Q?", "answers": ["x"],
           "chunks": [{"id": "a", "text": "x y z."}, {"id": "b", "text": "other.", "embedding": embedding}]}
    path = write(tmp_path / "e.jsonl", [row])
    with pytest.raises(ValueError) as info:
        load_dataset(path, chunk_scores=True)
    msg = str(info.value)
    assert f"{path}, line 1" in msg and "chunks[1].embedding" in msg and "'b'" in msg and expected in msg
    assert load_dataset(path).examples[0].chunks[1].metadata["embedding"] == embedding


def test_embeddings_of_different_lengths_in_one_example_are_refused(tmp_path):
    row = {"id": "q1", "question": "Q?", "answers": ["x"],
           "chunks": [{"id": "a", "text": "x.", "embedding": [0.1, 0.2, 0.3]}, {"id": "b", "text": "y.", "embedding": [0.1, 0.2]}]}
    with pytest.raises(ValueError, match=r"chunks\[1\]\.embedding.*2 numbers, but chunks\[0\]\.embedding has 3"):
        load_dataset(write(tmp_path / "e.jsonl", [row]), chunk_scores=True)
    ok = {**row, "chunks": [row["chunks"][0], {"id": "b", "text": "y.", "embedding": None}]}
    assert len(load_dataset(write(tmp_path / "ok.jsonl", [ok]), chunk_scores=True)) == 1


def test_json_pretty_json_and_csv_get_a_conversion_hint(tmp_path):
    row = {"id": "q1", "question": "Q?", "answers": ["x"], "chunks": []}
    array = tmp_path / "a.json"
    array.write_text(json.dumps([row]))
    pretty_array = tmp_path / "pa.json"
    pretty_array.write_text(json.dumps([row], indent=2))
    pretty = tmp_path / "p.json"
    pretty.write_text(json.dumps(row, indent=2))
    csv = tmp_path / "d.csv"
    csv.write_text("id,question,answers\nq1,Q?,x\n")
    for path, hint in ((array, "jq -c '.[]'"), (pretty_array, "jq -c '.[]'"), (pretty, "pretty-printed JSON"),
                       (csv, "CSV is not supported")):
        with pytest.raises(ValueError, match=None) as info:
            load_dataset(path)
        assert hint in str(info.value), (path, str(info.value))


def test_a_missing_file_that_looks_like_a_path_says_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("data.json", "hotpotqa.json", "data.csv"):
        with pytest.raises(FileNotFoundError, match=f"no such file: '{name}'"):
            load_dataset(name)
    with pytest.raises(FileNotFoundError, match="did you mean the bundled set 'hotpotqa'"):
        load_dataset("hotpotqa.json")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("hotpotqa2")


def test_a_number_among_the_answers_points_at_it_and_suggests_the_string(tmp_path):
    path = write(tmp_path / "n.jsonl", [{"id": "q", "question": "When?", "answers": [1990], "chunks": []}])
    with pytest.raises(ValueError) as info:
        load_dataset(path)
    assert "answers[0]" in str(info.value) and '"answers": ["1990"]' in str(info.value)


# -- 10. no matplotlib: the report is written without the plot, and said so before the sweep -----------
def test_without_matplotlib_the_report_is_written_without_the_plot(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    data = str(write_tiny(tmp_path / "tiny.jsonl"))
    out = tmp_path / "o"
    res = eval_cli("--data", data, "--out", str(out), "--pipelines", "truncate", "--budgets", "0.5")
    assert res.exit_code == 0, res.output
    assert "ragtrim[eval]" in res.output and "No module named" not in res.output
    md = (out / "report.md").read_text()
    assert "no plot: matplotlib is not installed" in md and "pareto.png" not in md
    assert (out / "report.html").is_file() and not (out / "pareto.png").exists()


# -- 11. a read-only corpus cache: warn once, keep the vectors in memory -------------------------------
def test_a_corpus_cache_that_cannot_be_written_warns_once_and_keeps_the_vectors(monkeypatch, tmp_path):
    import evals.retrieval as R

    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path / "ro"))

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(R, "build_file_atomically", refuse)
    monkeypatch.setattr(R, "_CACHE_WARNED", set(), raising=False)
    model = SimpleNamespace(name="fake-model", encode=lambda texts: np.ones((len(texts), 4), dtype=np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = R.corpus_embeddings(model, ["one", "two"], cache=True)
        b = R.corpus_embeddings(model, ["one", "two", "three"], cache=True)
    assert a.shape == (2, 4) and b.shape == (3, 4)
    said = [w for w in caught if "cannot write" in str(w.message)]
    assert len(said) == 1 and "in memory" in str(said[0].message)


# -- 12. small things ----------------------------------------------------------------------------------
def test_all_unanswerable_data_says_nothing_was_measured_and_warns_nothing(tmp_path):
    rows = [{"id": f"u{i}", "question": "Is it?", "answers": [], "chunks": [{"id": "a", "text": "Some text here."}]}
            for i in range(3)]
    out = tmp_path / "o"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = eval_cli("--data", write(tmp_path / "u.jsonl", rows), "--out", str(out), "--pipelines", "truncate",
                       "--budgets", "0.5")
    assert res.exit_code == 0, res.output
    assert not [w for w in caught if "legend" in str(w.message) or "artists" in str(w.message)]
    assert "Nothing measured for answer recall" in (out / "report.md").read_text()
    assert "Nothing measured for answer recall" in " ".join(res.output.split())  # the terminal table says it too


def test_target_retention_error_names_the_flag(tmp_path):
    data = str(write_tiny(tmp_path / "tiny.jsonl"))
    res = CliRunner().invoke(app, ["tune", "--data", data, "--pipeline", "truncate", "--target-retention", "0"])
    assert res.exit_code == 2 and "--target-retention" in res.output


def test_demo_help_shows_the_extra_in_brackets():
    res = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert "ragtrim[reader]" in res.output


def test_sample_alone_is_said_in_the_singular(tmp_path):
    data = str(write_tiny(tmp_path / "tiny.jsonl"))
    res = eval_cli("--data", data, "--out", str(tmp_path / "o"), "--pipelines", "truncate", "--budgets", "0.5",
                   "--sample", "2")
    assert res.exit_code == 0 and "--sample only applies with a reader" in res.output

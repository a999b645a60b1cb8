"""The eval on users' own files: their data never stands in for the harness's, and the numbers mean what DESIGN says.

- a ``retrieval`` key in ``meta`` (or at the top level) is the user's note, not the harness's retrieval record;
- white-space-only chunks render to nothing, so they add nothing to ``tokens_full`` (the share budgets' basis);
- a gold chunk a deduplicator dropped for its copy keeps its evidence: its sentences are in the context;
- ``"gold": null`` is "not given", a ``gold`` inside ``metadata`` never overrides the chunk's own, and a key other
  tools use for a missing field is named ("did you mean ...");
- results.json and the report say which encoding counted the tokens the $ figures multiply.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from evals import metrics as M
from evals.datasets import load_dataset, parse_example
from evals.report import write_report
from evals.retrieval import all_gold_ids, retrieve_dataset
from evals.sweep import run_eval
from evals.tune import counts_for
from optimizer import Chunk, Pipeline
from optimizer.render import Renderer
from optimizer.tokenizer import get_tokenizer


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _paris(i: int, **extra) -> dict:
    return {"id": f"r{i}", "question": "Where is Paris?", "answers": ["France"],
            "chunks": [{"id": "a", "text": "Paris is in France.", "gold": True}, {"id": "b", "text": "Rome is in Italy."}],
            **extra}


def _rows(run, pipeline: str):
    return [r for r in run.rows if r.pipeline == pipeline]


# -- 1. meta.retrieval is the user's ---------------------------------------------------------------
@pytest.mark.parametrize("where", ["meta", "top level"])
def test_a_retrieval_note_in_the_users_meta_is_not_a_pipeline_error(tmp_path, where):
    note = {"meta": {"source": "helpdesk", "retrieval": "bm25 top-10"}} if where == "meta" else {"retrieval": "bm25 top-10"}
    data = load_dataset(_write(tmp_path / "mine.jsonl", [_paris(i, **note) for i in range(3)]))
    assert data.examples[0].meta["retrieval"] == "bm25 top-10"  # kept, as the user wrote it
    run = run_eval(data, ["truncate"], [0.5], progress=False)
    assert [r.pipeline_error for r in run.rows] == [None] * 6
    assert [r.evidence_recall for r in _rows(run, "full")] == [1.0, 1.0, 1.0]
    assert run.run_for("full", None).metrics.evidence_recall == 1.0


def test_a_dict_under_meta_retrieval_never_changes_evidence_recall(tmp_path):
    """A user's ``meta.retrieval`` shaped like the harness's record (``gold_missed``) is still only the user's."""
    plain = load_dataset(_write(tmp_path / "plain.jsonl", [_paris(0)]))
    noted = load_dataset(_write(tmp_path / "noted.jsonl", [_paris(0, meta={"retrieval": {"gold_missed": ["x", "y"]}})]))
    assert all_gold_ids(noted.examples[0]) == all_gold_ids(plain.examples[0]) == ("a",)
    recalls = [run_eval(d, ["truncate"], [1.0], progress=False).run_for("full", None).metrics.evidence_recall
               for d in (plain, noted)]
    assert recalls == [1.0, 1.0]
    no_gold = parse_example({"id": "q", "question": "q?", "answers": [], "chunks": [{"id": "a", "text": "x"}],
                             "meta": {"retrieval": {"gold_missed": ["x"]}}})
    assert counts_for("evidence_recall")(no_gold) is False  # the tuner does not count it either


def test_retrieval_mode_records_its_own_info_apart_from_the_users_meta(tmp_path):
    rows = [_paris(0, meta={"retrieval": "hand-picked"}),
            {"id": "r1", "question": "Where is Rome?", "answers": ["Italy"], "meta": {"retrieval": "hand-picked"},
             "chunks": [{"id": "c", "text": "Rome is in Italy.", "gold": True}, {"id": "d", "text": "Oslo is in Norway."}]}]
    retrieved = retrieve_dataset(load_dataset(_write(tmp_path / "mine.jsonl", rows)), top_k=1, retriever="bm25")
    first = retrieved.examples[0]
    assert first.meta["retrieval"] == "hand-picked"  # the user's note is left alone
    assert first.retrieval["retriever"] == "bm25" and first.retrieval["gold_total"] == 1
    missed = [ex for ex in retrieved.examples if ex.retrieval["gold_missed"]]
    for ex in missed:  # a gold passage BM25 did not return still counts, as lost
        assert len(all_gold_ids(ex)) == len(ex.gold_ids) + len(ex.retrieval["gold_missed"])
    run = run_eval(retrieved, ["truncate"], [0.5], progress=False)
    assert all(r.pipeline_error is None for r in run.rows)


def test_eval_cli_with_a_users_meta_retrieval_and_retrieve_bm25(tmp_path):
    from typer.testing import CliRunner

    from ragtrim.cli import app

    data = _write(tmp_path / "mine.jsonl", [_paris(i, meta={"retrieval": "bm25 top-10"}) for i in range(3)])
    out = tmp_path / "out"
    for extra in ([], ["--retrieve", "bm25", "--top-k", "1"]):
        res = CliRunner().invoke(app, ["eval", "--data", str(data), "--pipelines", "truncate", "--budgets", "0.5",
                                       "--out", str(out), "--no-progress", *extra])
        assert res.exit_code == 0, res.output
        assert "raised an error" not in res.output
        rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
        assert all(r.get("pipeline_error") is None for r in rows) and {r["evidence_recall"] for r in rows if r["pipeline"] == "full"} == {1.0}
    meta = json.loads((out / "results.json").read_text())["meta"]["retrieval"]
    assert meta["retriever"] == "bm25" and meta["retrieval_recall"] == 1.0 and meta["gold_total"] == 3


# -- 2. blank chunks and tokens_full ----------------------------------------------------------------
BLANKS = [{"id": "a", "title": "T", "text": "   "}, {"id": "b", "text": "Hello world."}, {"id": "c", "title": "U", "text": "\n\t "}]


def test_full_context_tokens_are_what_full_renders():
    full = Pipeline.preset("full")
    result = full.run("q", BLANKS)
    assert result.text == "[1] Hello world."
    assert result.tokens == result.tokens_full == full.full_tokens(BLANKS) == get_tokenizer("cl100k_base").count(result.text)


def test_a_share_budget_is_a_share_of_what_full_renders():
    chunks = [*BLANKS, {"id": "d", "text": "Paris is the capital of France. Lyon is a city in France."}]
    truncate = Pipeline.preset("truncate")
    whole = truncate.run("q", chunks, budget=1.0)
    visible = [c for c in chunks if c["text"].strip()]
    assert whole.tokens_full == Pipeline.preset("full").run("q", visible).tokens
    assert whole.tokens == whole.tokens_full  # budget 1.0 keeps the whole context, all of it counted
    half = truncate.run("q", chunks, budget=0.5)
    assert half.budget == int(0.5 * whole.tokens_full)


def test_blank_chunks_add_no_layout_tokens():
    tok = get_tokenizer("cl100k_base")
    text = [Chunk(id="b", text="Hello world.", title="H")]
    blank = [Chunk(id="a", text="  ", title="T"), Chunk(id="c", text="\n", title="U")]
    assert Renderer().overhead([blank[0], *text, blank[1]], tok) == Renderer().overhead(text, tok)
    assert Renderer().render([blank[0], *text, blank[1]]).text == "[1] H\nHello world."


def test_eval_rows_on_blank_chunks_count_the_rendered_full_context(tmp_path):
    row = {"id": "w", "question": "Greeting?", "answers": ["Hello"], "chunks": BLANKS}
    run = run_eval(load_dataset(_write(tmp_path / "ws.jsonl", [row])), ["truncate"], [1.0], progress=False)
    for r in run.rows:
        assert r.tokens == r.tokens_full == get_tokenizer("cl100k_base").count(r.context)


# -- 3. evidence recall of a gold chunk deduplicated for its copy ---------------------------------------
HAMLET = "Hamlet is a tragedy written by William Shakespeare around 1600. It is set in Denmark."
DUPGOLD = {"id": "d1", "question": "Who wrote Hamlet?", "answers": ["Shakespeare"],
           "chunks": [{"id": "mirror", "title": "Hamlet", "text": HAMLET},
                      {"id": "orig", "title": "Hamlet", "text": HAMLET, "gold": True},
                      {"id": "x", "title": "Macbeth", "text": "Macbeth is another tragedy. It is set in Scotland."}]}


@pytest.mark.parametrize("steps", [[{"stage": "dedupe-near"}], [{"stage": "dedupe-exact"}]])
def test_a_gold_chunk_dropped_for_its_copy_keeps_its_evidence(tmp_path, steps):
    mine = Pipeline.from_config({"name": "dedupe", "steps": steps})
    run = run_eval(load_dataset(_write(tmp_path / "dup.jsonl", [DUPGOLD])), [mine], [1.0], progress=False)
    row = _rows(run, "dedupe")[0]
    assert row.kept_ids == ("mirror", "x")  # the deduper kept the copy, not the gold chunk
    assert HAMLET in row.context
    assert row.evidence_recall == 1.0


def test_default_at_budget_one_keeps_the_evidence_of_a_deduplicated_gold_chunk(tmp_path):
    run = run_eval(load_dataset(_write(tmp_path / "dup.jsonl", [DUPGOLD])), ["default"], [0.5, 1.0], progress=False)
    row = [r for r in _rows(run, "default") if r.budget == 1.0][0]
    assert "orig" not in row.kept_ids and row.evidence_recall == 1.0


def test_the_same_stock_sentence_in_an_unrelated_passage_is_not_evidence():
    gold = Chunk(id="g", text="Ann Lee is a painter from Oslo. They have two sons.", metadata={"gold": True})
    other = Chunk(id="o", text="Bob Ray is a singer from Rome. They have two sons.")
    spans = [SimpleNamespace(chunk_id="o", start=0, end=len(other.text))]
    assert M.sentence_kept_ids(spans, [gold, other], ["g"]) == ()
    gold = Chunk(id="g", text="Ann Lee is a painter. She lives in Oslo. They have two sons.", metadata={"gold": True})
    near = Chunk(id="n", text="Ann Lee is a painter. She lives in Bergen. They have two sons.")  # one sentence changed
    spans = [SimpleNamespace(chunk_id="n", start=0, end=len(near.text))]
    assert M.sentence_kept_ids(spans, [gold, near], ["g"]) == ("g",)
    spans = [SimpleNamespace(chunk_id="n", start=0, end=21)]  # only the copy's first sentence, kept whole
    assert M.sentence_kept_ids(spans, [gold, near], ["g"]) == ("g",)


def test_a_fragment_kept_from_a_copy_is_not_a_sentence():
    gold, copy = Chunk(id="g", text=HAMLET), Chunk(id="m", text=HAMLET)
    cut = [SimpleNamespace(chunk_id="m", start=0, end=30)]
    assert M.sentence_kept_ids(cut, [gold, copy], ["g"]) == ()


# -- 4. the schema ----------------------------------------------------------------------------------
def _one(**chunk) -> dict:
    return {"id": "q", "question": "q?", "answers": ["x"], "chunks": [{"id": "a", "text": "t", **chunk}]}


def test_gold_null_means_not_given():
    ex = parse_example(_one(gold=None))
    assert ex.gold_ids == () and ex.chunks[0].metadata["gold"] is False


@pytest.mark.parametrize(("top", "inside", "gold"), [(False, True, False), (True, False, True), (None, True, False),
                                                      ("absent", True, False), (True, True, True)])
def test_a_gold_inside_metadata_never_overrides_the_chunks_own(top, inside, gold):
    chunk = {"metadata": {"gold": inside, "source": "wiki"}} | ({} if top == "absent" else {"gold": top})
    ex = parse_example(_one(**chunk))
    assert (ex.gold_ids == ("a",)) is gold
    assert ex.chunks[0].metadata["source"] == "wiki"  # the rest of the caller's metadata is kept


def test_a_non_boolean_gold_is_still_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"chunks\[0\]\.gold': expected true, false or null, got int 1; mark evidence"):
        parse_example(_one(gold=1))


@pytest.mark.parametrize(("row", "field", "key"), [
    ({"id": "q", "question": "q?", "answer": "x", "chunks": []}, "answers", "answer"),
    ({"id": "q", "query": "q?", "answers": ["x"], "chunks": []}, "question", "query"),
    ({"id": "q", "question": "q?", "answers": ["x"], "contexts": []}, "chunks", "contexts"),
    ({"id": "q", "question": "q?", "answers": ["x"], "passages": []}, "chunks", "passages"),
    ({"id": "q", "question": "q?", "answers": ["x"], "documents": []}, "chunks", "documents"),
    ({"id": "q", "question": "q?", "answers": ["x"], "chunks": [{"id": "a", "page_content": "t"}]}, "chunks[0].text", "page_content"),
    ({"id": "q", "question": "q?", "answers": ["x"], "chunks": [{"id": "a", "content": "t"}]}, "chunks[0].text", "content"),
])
def test_a_near_miss_key_is_named(row, field, key):
    with pytest.raises(ValueError) as err:
        parse_example(row, where="mine.jsonl, line 4")
    message = str(err.value)
    assert message.startswith(f"mine.jsonl, line 4 (id 'q'): field '{field}': expected ")
    assert f"did you mean '{field.split('.')[-1]}'? The object has '{key}'" in message


def test_a_singular_answer_string_gets_the_list_to_write():
    with pytest.raises(ValueError, match=r'has \'answer\': write "answers": \["Paris"\]'):
        parse_example({"id": "q", "question": "q?", "answer": "Paris", "chunks": []})


def test_a_chunk_given_as_a_string_says_the_object_to_write():
    with pytest.raises(ValueError) as err:
        parse_example({"id": "q1", "question": "q?", "answers": ["x"], "chunks": ["Paris is in France."]})
    assert "field 'chunks[0]': expected an object with 'id' and 'text', got str 'Paris is in France.'" in str(err.value)
    assert 'write each chunk as an object, e.g. {"id": "q1-0", "text": "Paris is in France."}' in str(err.value)


# -- 5. which encoding counted the tokens the $ figures multiply ---------------------------------------
def _report(tmp_path, rows, **options):
    run = run_eval(load_dataset(_write(tmp_path / "mine.jsonl", rows)), ["truncate"], [0.5], progress=False, **options)
    out = tmp_path / "out"
    write_report(run, out, plot=False)
    return json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


def test_default_tokenizer_and_price_model_differ_and_the_report_says_how_to_fix_it(tmp_path):
    results, report = _report(tmp_path, [_paris(0)])
    assert results["tokenizer"] == "cl100k_base" and results["tokenizer_encoding"] == "cl100k_base"
    assert results["tokenizer_given"] == "cl100k_base"
    assert results["price"]["model"] == "gpt-4o" and results["price"]["encoding"] == "o200k_base"
    assert "Tokens counted with cl100k_base, but gpt-4o counts with o200k_base" in report
    assert "pass --tokenizer o200k_base" in report


def test_a_model_name_as_tokenizer_records_its_encoding(tmp_path):
    results, report = _report(tmp_path, [_paris(0)], tokenizer="gpt-4o")
    assert results["tokenizer"] == "o200k_base" and results["tokenizer_given"] == "gpt-4o"  # DESIGN.md: the encoding
    assert results["tokenizer_encoding"] == "o200k_base"
    assert "tokenizer `gpt-4o` (encoding `o200k_base`)" in report
    assert "Tokens counted with o200k_base, the encoding gpt-4o counts with." in report
    assert "but gpt-4o counts with" not in report


def test_a_price_model_tiktoken_does_not_know_is_said(tmp_path):
    results, report = _report(tmp_path, [_paris(0)], price_model="claude-3.5-sonnet")
    assert results["price"]["encoding"] is None
    assert "tiktoken does not know which encoding claude-3.5-sonnet counts with" in report

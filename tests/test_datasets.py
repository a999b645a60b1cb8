"""The bundled eval sets and the schema loader."""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import pytest

from evals.datasets import Dataset, Example, dataset_path, list_datasets, load_dataset
from evals.metrics import contains_answer

EXPECTED_N = {"hotpotqa": 500, "2wiki": 164, "squad2-pools": 500, "nq-multidoc": 500}


@functools.cache
def bundled(name: str) -> Dataset:
    return load_dataset(name)


def test_list_datasets_names_the_four_bundled_sets():
    assert sorted(list_datasets()) == sorted(EXPECTED_N)


@pytest.mark.parametrize("name", sorted(EXPECTED_N))
def test_bundled_set_loads_with_stated_size_and_unique_ids(name):
    ds = bundled(name)
    assert ds.name == name and ds.path == dataset_path(name)
    assert len(ds) == EXPECTED_N[name]
    assert len({ex.id for ex in ds}) == len(ds)
    for ex in ds:
        assert isinstance(ex, Example) and ex.question.strip()
        assert all(isinstance(a, str) for a in ex.answers)
        ids = [c.id for c in ex.chunks]
        assert len(ids) == len(set(ids)), ex.id
        assert ex.gold_ids, f"{name}/{ex.id} has no gold chunk"


@pytest.mark.parametrize("name", sorted(EXPECTED_N))
def test_gold_spans_lie_inside_their_gold_chunk_and_cover_whole_sentences(name):
    for ex in bundled(name):
        for c in ex.chunks:
            spans = c.metadata.get("gold_spans")
            if spans is None:
                continue
            assert c.metadata["gold"] is True, f"{c.id}: spans on a non-gold chunk"
            assert spans, c.id
            for start, end in spans:
                assert 0 <= start < end <= len(c.text), (c.id, start, end)
                piece = c.text[start:end]
                assert piece == piece.strip(), (c.id, piece)


def test_hotpotqa_has_sentence_gold_for_the_first_hundred_with_type_and_level():
    with_spans = [ex for ex in bundled("hotpotqa") if any("gold_spans" in c.metadata for c in ex.chunks)]
    assert len(with_spans) == 100
    for ex in with_spans:
        assert ex.meta["type"] in {"bridge", "comparison"} and ex.meta["level"]
        assert all("gold_spans" in c.metadata for c in ex.chunks if c.id in ex.gold_ids)
    assert len(bundled("hotpotqa").examples[0].gold_ids) == 2


def test_hotpotqa_known_supporting_sentence_maps_exactly():
    ex = bundled("hotpotqa").examples[0]  # the Kiss and Tell / Shirley Temple question
    gold = {c.title: c for c in ex.chunks if c.id in ex.gold_ids}
    start, end = gold["Shirley Temple"].metadata["gold_spans"][-1]
    assert gold["Shirley Temple"].text[start:end].endswith("Chief of Protocol of the United States.")


def test_2wiki_every_gold_chunk_has_sentence_spans():
    for ex in bundled("2wiki"):
        assert all("gold_spans" in c.metadata for c in ex.chunks if c.id in ex.gold_ids)
        assert len(ex.gold_ids) in (2, 4)


def test_squad2_pools_keep_natural_mix_same_article_and_varied_gold_position():
    ds = bundled("squad2-pools")
    unanswerable = [ex for ex in ds if not ex.answers]
    assert abs(len(unanswerable) / len(ds) - 3168 / 6078) < 0.01
    assert all(ex.meta["type"] == "unanswerable" and len(ex.gold_ids) == 1 for ex in unanswerable)
    positions = set()
    for ex in ds:
        assert len(ex.chunks) == 10 and len({c.title for c in ex.chunks}) == 1
        position = [c.id for c in ex.chunks].index(ex.gold_ids[0])
        assert position == ex.meta["gold_position"]
        positions.add(position)
    assert positions == set(range(10))


def test_nq_multidoc_distractors_never_contain_an_answer_and_gold_moves():
    positions = []
    for ex in bundled("nq-multidoc"):
        assert len(ex.chunks) == 20 and len(ex.gold_ids) == 1
        for c in ex.chunks:
            if c.id not in ex.gold_ids:
                assert not contains_answer(f"{c.title}\n{c.text}", ex.answers), (ex.id, c.id)
        position = [c.id for c in ex.chunks].index(ex.gold_ids[0])
        assert position == ex.meta["gold_position"]
        positions.append(position)
    assert set(positions) == {0, 4, 9, 14, 19}
    assert max(positions.count(p) for p in set(positions)) <= len(positions) // 5 + 1


# -- custom files -------------------------------------------------------------------------

def _row(i: int, **overrides) -> dict:
    row = {
        "id": f"q{i}",
        "question": "Where is the Eiffel Tower?",
        "answers": ["Paris"],
        "chunks": [
            {"id": f"q{i}-0", "title": "Eiffel Tower", "text": "The Eiffel Tower is in Paris.", "gold": True, "gold_spans": [[0, 29]]},
            {"id": f"q{i}-1", "text": "Lyon is a city.", "note": "extra"},
        ],
        "meta": {"source": "inline"},
    }
    row.update(overrides)
    return row


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_custom_file_loads_with_extras_kept_and_limit(tmp_path):
    path = _write(tmp_path / "mine.jsonl", [_row(0, extra_key=1), _row(1, answers=[]), _row(2)])
    ds = load_dataset(path)
    assert ds.name == "mine" and len(ds) == 3
    ex = ds.examples[0]
    assert ex.gold_ids == ("q0-0",)
    assert ex.meta["source"] == "inline" and ex.meta["extra_key"] == 1
    assert ex.chunks[1].metadata["note"] == "extra" and ex.chunks[1].title is None
    assert ds.examples[1].answers == ()
    assert [e.id for e in load_dataset(str(path), limit=2)] == ["q0", "q1"]


def test_custom_gzip_file_loads(tmp_path):
    path = tmp_path / "mine.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps(_row(0)) + "\n")
    ds = load_dataset(path)
    assert ds.name == "mine" and ds.examples[0].answers == ("Paris",)


def test_example_round_trips_through_to_dict(tmp_path):
    ex = load_dataset(_write(tmp_path / "a.jsonl", [_row(0)])).examples[0]
    again = load_dataset(_write(tmp_path / "b.jsonl", [ex.to_dict()])).examples[0]
    assert again == ex


def _chunks(*items):
    return {"chunks": list(items)}


BAD = {
    "bad json": ('{"id": "q1", "question": ', "not valid JSON"),
    "not an object": ("[1, 2]", "expected a JSON object"),
    "missing question": (_row(1, question=None), "field 'question'"),
    "non-string question": (_row(1, question=42), "field 'question'"),
    "answers a string": (_row(1, answers="Paris"), 'field \'answers\': expected a list of strings, got str \'Paris\'; write "answers": ["Paris"]'),
    "answers with a number": (_row(1, answers=["Paris", 3]), "field 'answers'"),
    "missing answers": ({k: v for k, v in _row(1).items() if k != "answers"}, "field 'answers'"),
    "chunks not a list": (_row(1, chunks={"id": "a", "text": "x"}), "field 'chunks'"),
    "chunk not an object": (_row(1, **_chunks("just text")), "field 'chunks[0]'"),
    "chunk without id": (_row(1, **_chunks({"text": "x"})), "field 'chunks[0].id'"),
    "chunk id not a string": (_row(1, **_chunks({"id": ["a"], "text": "x"})), "field 'chunks[0].id'"),
    "chunk without text": (_row(1, **_chunks({"id": "a"})), "field 'chunks[0].text'"),
    "chunk text not a string": (_row(1, **_chunks({"id": "a", "text": 5})), "field 'chunks[0].text'"),
    "duplicate chunk id": (_row(1, **_chunks({"id": "a", "text": "x"}, {"id": "a", "text": "y"})), "field 'chunks[1].id': duplicate chunk id 'a'"),
    "gold not a bool": (_row(1, **_chunks({"id": "a", "text": "x", "gold": "yes"})), "field 'chunks[0].gold'"),
    "duplicate example id": (_row(0), "field 'id': duplicate example id 'q0' (first on line 1)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_schema_errors_name_file_line_and_field(tmp_path, case):
    bad, expected = BAD[case]
    path = _write(tmp_path / "broken.jsonl", [_row(0), bad])
    with pytest.raises(ValueError) as info:
        load_dataset(path)
    message = str(info.value)
    assert f"{path}, line 2" in message, message
    assert expected in message, message


def test_a_malformed_gold_spans_is_an_extra_field_kept_not_refused(tmp_path):
    # DESIGN.md: extra fields are allowed and ignored; nothing in the harness reads gold_spans (evidence recall uses gold)
    path = _write(tmp_path / "mine.jsonl", [_row(1, **_chunks({"id": "a", "text": "xyz", "gold": True, "gold_spans": [[1, 9]]}))])
    chunk = load_dataset(path).examples[0].chunks[0]
    assert chunk.metadata["gold_spans"] == [[1, 9]] and chunk.metadata["gold"] is True


def test_unknown_name_lists_bundled_sets_with_a_hint():
    with pytest.raises(ValueError, match=r"Did you mean 'hotpotqa'\?.*2wiki.*nq-multidoc"):
        load_dataset("hotpot")


def test_missing_file_and_bad_limit_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="limit must be a positive"):
        load_dataset("2wiki", limit=0)


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no examples"):
        load_dataset(_write(tmp_path / "empty.jsonl", []))

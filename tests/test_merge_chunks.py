"""bench/merge_chunks.py: long untitled chunks that keep every passage's title and text, and its gold mark."""

import importlib.util
from pathlib import Path

import pytest

from eval_fixtures import TINY, write_tiny
from evals.datasets import load_dataset

SPEC = importlib.util.spec_from_file_location("merge_chunks", Path(__file__).resolve().parents[1] / "bench" / "merge_chunks.py")
merge = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(merge)


def test_merged_chunks_hold_every_passage_in_order_and_carry_gold(tmp_path):
    path = write_tiny(tmp_path / "tiny.jsonl")
    rows = merge.merge_rows(str(path), per=2)
    by_id = {r["id"]: r for r in rows}
    paris = by_id["q-paris-x2"]
    assert [c["id"] for c in paris["chunks"]] == ["q-paris-0+q-paris-1", "q-paris-2"]
    assert [c["gold"] for c in paris["chunks"]] == [True, False]
    assert all("title" not in c for c in paris["chunks"])
    src = TINY[0]["chunks"]
    assert paris["chunks"][0]["text"] == f"Lyon\n{src[0]['text']}\n\nFrance\n{src[1]['text']}"
    # the merged file is a valid eval set with the same answers
    out = tmp_path / "merged.jsonl"
    assert merge.save_variant(rows, out).startswith(f"wrote {out}: 5 questions")
    ds = load_dataset(str(out))
    assert [list(e.answers) for e in ds.examples] == [r["answers"] for r in TINY]


def test_per_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="--per must be at least 1"):
        merge.merge_rows(str(write_tiny(tmp_path / "tiny.jsonl")), per=0)


def test_splitter_chunks_are_the_document_cut_where_llamaindex_cuts(tmp_path):
    path = write_tiny(tmp_path / "tiny.jsonl")
    rows = merge.split_rows(str(path), chunk_size=32)
    for row, src in zip(rows, load_dataset(str(path)).examples):
        doc, spans = merge.passage_document(src.chunks)
        texts = [c["text"] for c in row["chunks"]]
        assert row["id"] == f"{src.id}-s32" and all("title" not in c for c in row["chunks"])
        at, starts = 0, []
        for t in texts:  # exact pieces of the document, in order, covering it apart from white space
            found = doc.index(t, at)
            assert not doc[at:found].strip()
            starts.append(found)
            at = found + len(t)
        assert not doc[at:].strip()
        gold = [span for c, span in zip(src.chunks, spans) if c.id in set(src.gold_ids)]
        assert [c["gold"] for c in row["chunks"]] == [any(s < a + len(t) and a < e for s, e in gold) for a, t in zip(starts, texts)]
    assert any(len(r["chunks"]) > 1 for r in rows)


def test_titles_and_generic_sections(tmp_path):
    path = write_tiny(tmp_path / "tiny.jsonl")
    src = TINY[0]["chunks"]
    first = {r["id"]: r for r in merge.merge_rows(str(path), per=2, title="first")}["q-paris-x2"]["chunks"]
    assert [c["title"] for c in first] == [src[0]["title"], src[2]["title"]]  # the title of the passage a chunk starts in
    files = {r["id"]: r for r in merge.merge_rows(str(path), per=2, title="file")}["q-paris-x2"]["chunks"]
    assert [c["title"] for c in files] == ["doc-q-paris-0.txt", "doc-q-paris-1.txt"]
    sections = {r["id"]: r for r in merge.merge_rows(str(path), per=1, title="first", sections=True)}["q-paris-x1"]["chunks"]
    for c, s in zip(sections, src):
        head, body = c["text"].split("\n", 1)
        assert c["title"] == s["title"] and head in merge.SECTIONS and body == s["text"]
    split = merge.split_rows(str(path), chunk_size=32, title="file")
    assert all(c["title"] == "doc-" + r["id"].removesuffix("-s32") + ".txt" for r in split for c in r["chunks"])  # one file
    with pytest.raises(ValueError, match="--title must be one of none, first, file, got 'path'"):
        merge.merge_rows(str(path), title="path")


def test_files_cut_each_group_of_passages_alone_and_title_its_nodes_by_file(tmp_path):
    path = write_tiny(tmp_path / "tiny.jsonl")
    rows = {r["id"]: r for r in merge.split_rows(str(path), chunk_size=32, title="file", files=2)}
    src = {e.id: e for e in load_dataset(str(path)).examples}
    paris = rows["q-paris-s32"]["chunks"]
    assert sorted({c["title"] for c in paris}) == ["doc-q-paris-0.txt", "doc-q-paris-1.txt"]
    for f, k0 in enumerate(range(0, len(src["q-paris"].chunks), 2)):  # each file's nodes are its passages' text, in order
        doc, _ = merge.passage_document(src["q-paris"].chunks[k0 : k0 + 2])
        texts = [c["text"] for c in paris if c["title"] == f"doc-q-paris-{f}.txt"]
        at = 0
        for t in texts:
            found = doc.index(t, at)
            assert not doc[at:found].strip()
            at = found + len(t)
        assert not doc[at:].strip()
    assert len({c["id"] for c in paris}) == len(paris)
    with pytest.raises(ValueError, match="--files must be at least 1, got 0"):
        merge.split_rows(str(path), chunk_size=32, files=0)

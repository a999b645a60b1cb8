"""Fixes from a hunt for inputs that scale badly: memo size, line starts, surrogates in ids/metadata, a build race."""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path

import pytest

import optimizer.cache as cache
from optimizer.records import Chunk, indent_start
from optimizer.sentences import line_view

# -- StaticEmbedder: the word-piece memos are bounded by what they hold, not by their token count --


@pytest.mark.slow
def test_static_memo_stays_under_its_size_bound_for_blobs_without_white_space():
    from optimizer.embeddings import get_embedder

    static = get_embedder("static")
    tok = type(static._model.tokenizer).from_str(static._model.tokenizer.to_str())
    tok.no_truncation()  # the whole text's ids, as the memos give them
    static.MEMO_SIZE = 30_000  # an instance attribute; a 6 KB base64 blob is ~10,000 of it
    static._reset_memos()
    vocab_words = len(static._pieces)
    try:

        def held() -> int:
            return sum(len(t) + len(ids) for t, ids in static._tokens.items())

        resets = 0
        for i in range(12):  # distinct blobs: nothing is ever seen twice
            blob = base64.b64encode(random.Random(i).randbytes(4_500)).decode()
            texts = [blob, f"{blob[:3000]} and some prose about Paris {i}"]
            before = static._tokens
            got = static._word_pieces(texts)
            assert got == [tok.encode(t, add_special_tokens=False).ids for t in texts]  # same ids as the tokenizer
            resets += static._tokens is not before
            assert static._memo_size[0] == held() <= static.MEMO_SIZE  # counted exactly, and under the bound
            learnt = list(static._pieces.items())[vocab_words:]  # after the vocabulary's whole words
            assert sum(len(w) + len(ids) for w, ids in learnt) <= static._memo_size[0]  # the word memo holds no more
        assert resets >= 3  # the bound was reached several times (the token count never was)
        assert len(static._tokens) < static.MEMO_TOKENS

        # ordinary prose far under the bound keeps its memo across calls
        static._reset_memos()
        prose = ["Paris is the capital of France, and Lyon lies on the Rhône.", "Zürich is (not) the capital."]
        static._word_pieces(prose)
        memo = static._tokens
        static._word_pieces(prose[::-1] + ["Another sentence."])
        assert static._tokens is memo and "Paris" in memo and "Another" in memo
    finally:
        del static.MEMO_SIZE
        static._reset_memos()


# -- indent_start: linear in a long line without line breaks, same results --


def _indent_start_reference(text: str, pos: int) -> int:
    line = line_view(text).rfind("\n", 0, pos) + 1  # a lone "\r" ends a line too, as where the text is split
    return line if not text[line:pos].strip() else pos


def test_indent_start_equals_the_reference_on_varied_texts():
    rng = random.Random(7)
    alphabet = ["a", "b", " ", " ", "\n", "\t", "\r", "\u3000", "\x0b", "\x1c", "\x85", "\u2028", "é", ".", "😀"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        for pos in range(-3, len(text) + 4):
            assert indent_start(text, pos) == _indent_start_reference(text, pos), (text, pos)
    code = "def f():\n    if x:\n\t\treturn 1\n  \n    y = 2"
    for pos in range(len(code) + 1):
        assert indent_start(code, pos) == _indent_start_reference(code, pos)


class _CountingStr(str):
    """A str that counts the characters its index, slice and rfind calls cover."""

    covered = 0

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            _CountingStr.covered += max(0, stop - start)
        else:
            _CountingStr.covered += 1
        return str.__getitem__(self, key)

    def rfind(self, sub, start=None, end=None):  # type: ignore[no-untyped-def,override]
        lo, hi, _ = slice(start, end).indices(len(self))
        _CountingStr.covered += max(0, hi - lo)
        return str.rfind(self, sub, start, end)


def test_indent_start_reads_only_the_white_space_before_pos_on_a_long_line():
    sentence = "The river runs through the old town and past the mill.  "
    text = _CountingStr(sentence * 2_000)  # ~114,000 characters, one line
    starts = range(0, len(text), len(sentence))
    _CountingStr.covered = 0
    assert [indent_start(text, s) for s in starts] == [0] + list(starts)[1:]
    assert _CountingStr.covered <= 10 * len(starts)  # a few characters per call, not the line up to pos
    indented = _CountingStr("x\n" + " " * 50_000 + "y")
    _CountingStr.covered = 0
    assert indent_start(indented, len(indented) - 1) == 2
    assert _CountingStr.covered <= 3 * 50_001


# -- lone surrogates in a chunk id or metadata are refused up front, naming the field --


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"id": "a\ud800"}, "chunk id 'a\\ud800'"),
        ({"metadata": {"k": "\udc00"}}, "chunk 'a': metadata['k']"),
        ({"metadata": {"k\ud800": 1}}, "chunk 'a': a key of metadata"),
        ({"metadata": {"src": {"tags": ["ok", "x\udc80"]}}}, "chunk 'a': metadata['src']['tags'][1]"),
        ({"metadata": {"t": ("ok", {"deep": "\ud83d"})}}, "chunk 'a': metadata['t'][1]['deep']"),
    ],
)
def test_chunk_refuses_a_lone_surrogate_in_its_id_or_metadata(fields, named):
    kwargs = {"id": "a", "text": "Paris is the capital of France.", **fields}
    with pytest.raises(ValueError, match="lone UTF-16 surrogate") as info:
        Chunk(**kwargs)
    assert str(info.value).startswith(named)


def test_chunk_metadata_without_surrogates_is_kept_as_given():
    loop: list = ["x"]
    loop.append(loop)  # a container that holds itself is read once
    meta = {"src": {"tags": ["ok", "😀 emoji"], "n": 3, "b": b"\xff"}, "loop": loop, 5: "int key"}
    chunk = Chunk(id="a😀", text="Paris.", metadata=meta)
    assert chunk.metadata["src"]["tags"] == ["ok", "😀 emoji"] and chunk.metadata["loop"] is loop
    from optimizer.records import as_chunks

    with pytest.raises(ValueError, match=r"metadata\['k'\]"):
        list(as_chunks([{"id": "a", "text": "Paris.", "metadata": {"k": "\udfff"}}]))


# -- build_atomically: the loser of a build race keeps the winner's folder --


def test_build_atomically_loser_of_the_race_keeps_the_winners_copy(tmp_path: Path, monkeypatch):
    target = tmp_path / "model"
    real_share = cache.share_as_umask

    raced: list[Path] = []

    def winner_renames_meanwhile(path):  # between the loser's exists() check and its rename
        real_share(path)
        if not raced:  # (the winner's own build calls this too)
            raced.append(path)
            with cache.build_atomically(target) as other:
                (other / "weights.bin").write_bytes(b"winner")
            assert (target / "weights.bin").read_bytes() == b"winner"

    monkeypatch.setattr(cache, "share_as_umask", winner_renames_meanwhile)
    with cache.build_atomically(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"loser")
        (tmp / "config.json").write_text("{}")
    monkeypatch.setattr(cache, "share_as_umask", real_share)
    assert sorted(os.listdir(target)) == ["weights.bin"] and (target / "weights.bin").read_bytes() == b"winner"
    assert os.listdir(tmp_path) == ["model"] and raced  # the loser's temporary copy is gone


def test_build_atomically_still_raises_when_the_rename_fails_for_another_reason(tmp_path: Path, monkeypatch):
    def failing_replace(src, dst):  # type: ignore[no-untyped-def]
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cache.os, "replace", failing_replace)
    with pytest.raises(PermissionError), cache.build_atomically(tmp_path / "model") as tmp:
        (tmp / "weights.bin").write_bytes(b"0")
    assert os.listdir(tmp_path) == []  # nothing left behind

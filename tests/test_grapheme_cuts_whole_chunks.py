"""Second core hunt, cuts: a token-boundary cut never splits a grapheme cluster (emoji ZWJ sequences,
flags, Indic syllables, letters with combining marks, Hangul jamo), and ``select-whole`` (the
``bm25-topk`` / ``dense-topk`` baselines) keeps a chunk that fits the budget exactly."""

from __future__ import annotations

import unicodedata

import pytest
import regex

from optimizer import Chunk, Pipeline
from optimizer.packer import cut_to_tokens, token_cut
from optimizer.stage import StageContext
from optimizer.stages.basic import BORDERLINE_TOKENS, Truncate, WholeChunks
from optimizer.tokenizer import get_tokenizer, grapheme_floor

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466"  # man ZWJ woman ZWJ girl ZWJ boy: one cluster
FLAGS = "\U0001F1EB\U0001F1F7\U0001F1E9\U0001F1EA\U0001F1EF\U0001F1F5"  # three flags, two regional indicators each
TEXTS = {
    "zwj": f"Family photo {FAMILY}{FAMILY}{FAMILY} taken in 2019",
    "flags": f"Flags {FLAGS}\U0001F1EE\U0001F1F9 on the wall",
    "hindi": "नमस्ते दुनिया यह एक परीक्षण है",
    "nfd": unicodedata.normalize("NFD", "Rösti Zürich café crème brûlée déjà vu"),
    "jamo": unicodedata.normalize("NFD", "한국어 문장을 자르면 안 됩니다"),
    "marks": "e\u0301" * 20,
    "crlf": "a\r\nb\r\n" * 10,
}
PRESETS = ("default", "truncate", "bm25-pack")


def boundaries(text: str) -> set[int]:
    """Every extended-grapheme-cluster boundary of ``text``, by a full scan."""
    return {0} | {m.end() for m in regex.finditer(r"\X", text)}


# -- 1. cuts on grapheme boundaries --------------------------------------------------------


@pytest.mark.parametrize(
    "preset, text, budget, expected",
    [
        ("default", f"Family photo {FAMILY}{FAMILY} taken", 8, "[1] Family photo"),
        ("truncate", f"Family photo {FAMILY}{FAMILY} taken", 8, "[1] Family photo"),
        ("bm25-pack", f"Family photo {FAMILY}{FAMILY} taken", 8, "[1] Family photo"),
        ("default", f"Flags {FLAGS} on the wall", 8, "[1] Flags"),
        ("truncate", "नमस्ते दुनिया यह एक परीक्षण है", 7, "[1] नम"),
    ],
)
def test_the_hunters_cuts_end_before_the_cluster(preset, text, budget, expected):
    # were '[1] Family photo 👨' (a lone man of the family), '[1] Flags 🇫' (half a flag), '[1] नमस' (half a syllable)
    assert Pipeline.preset(preset).run("q", [text], budget=budget).text == expected


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", sorted(TEXTS))
def test_every_kept_span_starts_and_ends_on_a_grapheme_boundary(preset, name):
    text = TEXTS[name]
    bounds = boundaries(text)
    pipe = Pipeline.preset(preset)
    for budget in range(3, 30):
        result = pipe.run("q", [text], budget=budget)
        assert result.tokens <= budget
        for span in result.spans:
            assert span.start in bounds and span.end in bounds, (budget, span)
            assert text[span.start : span.end] == result.text[span.context_start : span.context_end]


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize("name", sorted(TEXTS))
def test_prefix_within_ends_on_a_grapheme_boundary_and_fits(encoding, name):
    tok, text = get_tokenizer(encoding), TEXTS[name]
    bounds = boundaries(text)
    for n in range(tok.count(text) + 1):
        k = tok.prefix_within(text, n)
        assert k in bounds and tok.count(text[:k]) <= n, (n, k)


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_grapheme_floor_matches_a_full_scan(name):
    text = TEXTS[name]
    bounds = sorted(boundaries(text))
    for k in range(len(text) + 1):
        assert grapheme_floor(text, k) == max(b for b in bounds if b <= k), k


def test_grapheme_floor_looks_back_past_a_cluster_longer_than_its_window():
    text = "x" + "e" + "\u0301" * 200 + "y"  # one cluster of 201 characters
    assert grapheme_floor(text, 150) == 1
    assert grapheme_floor(text, len(text) - 1) == len(text) - 1


def test_plain_text_cuts_are_unchanged():
    text = "The quick brown fox jumps over the lazy dog. " * 5
    tok = get_tokenizer("cl100k_base")
    enc = tok._enc
    for n in range(1, tok.count(text)):
        expected = len(enc.decode(enc.encode_ordinary(text)[:n]))  # the token boundary itself
        assert tok.prefix_within(text, n) == expected


def test_cut_to_tokens_and_token_cut_snap_back():
    text = f"Flags {FLAGS} on the wall"
    ctx = StageContext.default()
    bounds = boundaries(text)
    for n in range(1, ctx.count(text)):
        k = token_cut(text, n, ctx)
        cut, how = cut_to_tokens(Chunk(id="a", text=text), n, ctx)
        assert k in bounds and ctx.count(text[:k]) <= n
        assert cut.kept_pieces in ((), ((0, k),)) or cut.kept_pieces[-1][1] in bounds, (n, how)


def test_truncate_at_token_snaps_back():
    text = f"Family photo {FAMILY}{FAMILY} taken"
    for n in range(1, 20):
        (cut,) = Truncate()("q", [Chunk(id="a", text=text)], StageContext.default(budget=n)).chunks or (None,)
        if cut is not None:
            assert cut.kept_pieces[-1][1] in boundaries(text), n


class LazyChars:
    """A tokenizer that counts characters and whose ``prefix_within`` never cuts: the packer's
    one-character step (``_shrink_to_fit``'s "no progress" path) then does all the cutting."""

    name = "lazy-chars"

    def encode(self, text):
        return [ord(c) for c in text]

    def count(self, text):
        return len(text)

    def prefix_within(self, text, max_tokens):
        return len(text) if max_tokens > 0 else 0


def test_the_packers_one_character_step_drops_a_whole_cluster():
    text = f"ab {FLAGS}"
    bounds = boundaries(text)
    for budget in range(5, len(text) + 4):
        result = Pipeline([], tokenizer=LazyChars()).run("q", [text], budget=budget)
        assert result.tokens <= budget
        for span in result.spans:
            assert span.end in bounds, (budget, span)


# -- 2. select-whole keeps a chunk that fits exactly -----------------------------------


PARIS = [{"id": "a", "text": "Paris is the capital of France."}, {"id": "b", "text": "Lyon is a city in France."}]


def test_bm25_topk_keeps_a_chunk_that_fits_the_budget_exactly():
    exact = Pipeline.preset("full").run("q", PARIS[:1]).tokens  # 10
    result = Pipeline.preset("bm25-topk").run("capital of France", PARIS, budget=exact)
    assert result.text == "[1] Paris is the capital of France."  # was '' (select-whole: needs 11 tokens, 10 left)
    assert result.tokens == exact
    assert Pipeline.preset("bm25-topk").run("capital of France", PARIS, budget=exact - 1).text == ""


def test_select_whole_keeps_every_chunk_whose_exact_rendering_fits():
    chunks = [Chunk(id=f"c{i}", text=f"Fact number {i} is about the city of Paris, France.", score=1.0 - i / 10) for i in range(6)]
    pipe = Pipeline([WholeChunks()])
    for budget in range(10, 120):
        kept = pipe.run("q", chunks, budget=budget).chunks
        n = len(kept)
        assert Pipeline.preset("full").run("q", chunks[:n]).tokens <= budget
        if n < len(chunks):  # the next chunk in rank order really does not fit
            assert Pipeline.preset("full").run("q", chunks[: n + 1]).tokens > budget, budget


def test_select_whole_without_a_renderer_is_unchanged():
    chunks = [Chunk(id="big", text="word " * 50, score=0.9), Chunk(id="small", text="tiny", score=0.1)]
    assert [c.id for c in WholeChunks()("q", chunks, StageContext.default(budget=10))] == ["small"]
    assert BORDERLINE_TOKENS >= 1


@pytest.mark.slow
def test_dense_topk_keeps_a_chunk_that_fits_the_budget_exactly():
    exact = Pipeline.preset("full").run("q", PARIS[:1]).tokens
    result = Pipeline.preset("dense-topk").run("capital of France", PARIS, budget=exact)
    assert result.text == "[1] Paris is the capital of France."

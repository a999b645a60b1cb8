"""The packer's cuts: whole sentences when one fits, a token prefix only when it is worth its header."""

from __future__ import annotations

from optimizer import Chunk
from optimizer.packer import MIN_FRAGMENT_TOKENS, cut_to_tokens, pack
from optimizer.render import Renderer
from optimizer.stage import StageContext

LONG = "Onesentencewithoutanybreaksthatgoesonandonforquiteawhile " * 8


def test_cut_prefers_whole_sentences():
    chunk = Chunk(id="a", text="Paris is the capital of France. It has many museums. The Seine crosses it.")
    cut, how = cut_to_tokens(chunk, 9, StageContext.default())
    assert (cut.text, how) == ("Paris is the capital of France.", "sentence")


def test_token_cut_is_skipped_below_the_smallest_useful_fragment():
    ctx = StageContext.default()
    chunk = Chunk(id="a", text=LONG)
    assert cut_to_tokens(chunk, 5, ctx)[1] == "token"
    cut, how = cut_to_tokens(chunk, 5, ctx, min_token_cut=6)
    assert (cut.text, how) == ("", "none")
    assert cut_to_tokens(chunk, 6, ctx, min_token_cut=6)[1] == "token"


def test_pack_drops_a_leftover_that_only_a_short_token_fragment_would_fit(monkeypatch):
    ctx = StageContext.default()
    first = Chunk(id="first", text="Paris is the capital of France.", score=1.0)
    rest = Chunk(id="rest", text=LONG, score=0.5)
    renderer = Renderer()
    used = ctx.count(renderer.render([first]).text)
    budget = used + ctx.count(renderer.separator) + ctx.count(renderer.header(2, None, None)) + MIN_FRAGMENT_TOKENS - 1
    calls = []
    real = ctx.tokenizer.prefix_within
    monkeypatch.setattr(type(ctx.tokenizer), "prefix_within", lambda self, t, n: calls.append(n) or real(t, n))
    packed = pack([first, rest], budget, renderer, ctx)
    assert [c.id for c in packed.chunks] == ["first"]
    assert packed.dropped[0].chunk_id == "rest" and packed.dropped[0].reason.startswith("budget: no room")
    assert calls == []
    assert packed.tokens <= budget


def test_a_title_all_chunks_share_is_counted_once():
    """Nodes of one file share its name as title; it prints once, so the budget counts it once."""
    ctx = StageContext.default()
    title = "docs/reference/configuration-and-budgets.md"
    chunks = [Chunk(id=str(i), text=f"Setting {i} caps the tokens of tenant {i}.", title=title, score=1.0 - i / 10) for i in range(4)]
    renderer = Renderer()
    whole = renderer.render(chunks)
    budget = ctx.count(whole.text) + 10  # some slack: parts counted alone sum above the whole (BPE)
    assert whole.text.count(title) == 1
    packed = pack(chunks, budget, renderer, ctx)
    assert [c.text for c in packed.chunks] == [c.text for c in chunks] and not packed.dropped  # all fit, none cut
    assert packed.tokens == budget - 10
    one, each = renderer.overhead(chunks, ctx.tokenizer), renderer.overhead(chunks[:1], ctx.tokenizer)
    assert one == each + 3 * (ctx.count("[2] ") + ctx.count(renderer.separator))  # the title once, a marker per block
    mixed = [chunks[0], Chunk(id="x", text="Other.", title="other.md")]
    assert renderer.overhead(mixed, ctx.tokenizer) == sum(renderer.overhead([c], ctx.tokenizer) for c in mixed) + ctx.count(renderer.separator)

"""What a chunk taken after the others adds to the overhead is counted for it alone (optimizer/overhead_tally.py).

A selector tried each chunk on top of every chunk it had taken, counting every block's header
again: ``default`` at half the context took 5.4 s on 800 four-line chunks and 23.5 s on 1600. The
tallies must give the recount's numbers exactly (same output), while the headers built grow
linearly with the chunks.
"""

from __future__ import annotations

import random

import pytest

from optimizer import Chunk, Pipeline
from optimizer.overhead_tally import HeaderTally, RecountTally, RenderOverhead
from optimizer.render import Renderer
from optimizer.stage import StageContext
from optimizer.stages.paragraphs import ParagraphViews
from optimizer.tokenizer import get_tokenizer

TOK = get_tokenizer("cl100k_base")
TEXTS = ["Paris is big.", "  \n", "```sh\nls\n```", "    if x:\n        y()", "| a | b |", "- item", "", "Lyon.", "# Head"]
RENDERERS = [Renderer(), Renderer(titles=False), Renderer(citations=False, separator="\n---\n"),
             Renderer(frames="frame", separator="")]


def _chunk(rng: random.Random, k: int) -> Chunk:
    frame = {"frame": [rng.choice(["", "file: a.txt\n\n", "<doc>"]), rng.choice(["", "</doc>"])]} if rng.random() < 0.5 else {}
    return Chunk(id=f"c{k}", text=rng.choice(TEXTS), title=rng.choice([None, "Paris", "Lyon", "Nice"]), metadata=frame)


def _four_line(n: int) -> list[str]:
    return [f"ACME Annual Report 2023\nPart {k} text is here and goes on.\nMore {k}.\nDone {k}" for k in range(n)]


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize("grouped", [False, True])
def test_header_tally_gives_the_recount_of_every_layout(renderer, grouped):
    overhead = RenderOverhead(renderer, TOK, {})

    def full(chunks):
        return overhead(chunks, grouped=grouped)

    for seed in range(12):
        rng = random.Random(seed)
        tally = overhead.tally(grouped)
        assert isinstance(tally, HeaderTally)
        taken: list[Chunk] = []
        for k in range(40):
            tries = [_chunk(rng, 100 * k + j) for j in range(3)]
            for c in tries:  # what any chunk would add, asked before it is taken
                assert tally.added(c) == full([*taken, c]) - full(taken)
            c = tries[0]
            assert tally.take(c) == full([*taken, c]) - full(taken)
            taken.append(c)
            if taken and rng.random() < 0.3:  # a block put in place of one taken (same title or not)
                old = rng.choice(taken)
                new = Chunk(id=old.id, text=rng.choice(TEXTS), title=old.title if rng.random() < 0.7 else "Nice",
                            metadata=dict(old.metadata))
                swapped = [new if t is old else t for t in taken]
                assert tally.swapped(old, new) == full(swapped) - full(taken)
                assert tally.swap(old, new) == full(swapped) - full(taken)
                taken = swapped
            assert tally.total == full(taken)


def test_a_context_without_a_tally_of_its_own_counts_every_layout_again():
    context = StageContext(tokenizer=TOK, render_overhead=lambda cs, grouped=False: 3 * len(cs) + grouped)
    tally = context.overhead_tally(grouped=True)
    assert isinstance(tally, RecountTally)
    a, b = Chunk(id="a", text="x"), Chunk(id="b", text="y")
    assert (tally.added(a), tally.take(a), tally.added(b), tally.take(b)) == (4, 4, 3, 3)


@pytest.mark.parametrize("grouped", [False, True])
def test_view_tally_gives_the_paragraph_views_recount(grouped):
    def doc(d: int) -> Chunk:
        sections = "\n\n".join(f"## Part {s}\nPart {s} of guide {d} says {s * d}.\n    code {s}\n- item {s}" for s in range(5))
        return Chunk(id=f"g{d}", text=f"Guide {d}\n\n{sections}", title=["Guide", None, "Other"][d % 3])

    chunks = [doc(d) for d in range(6)] + [Chunk(id="plain", text="One line.", title="Guide")]
    split = ParagraphViews(chunks)
    base = StageContext(tokenizer=TOK, render_overhead=RenderOverhead(Renderer(), TOK, {}))
    context = split.context(base)
    assert split.views is not None
    for seed in range(8):
        views = list(split.views)
        random.Random(seed).shuffle(views)  # later views of a chunk often start before its first one taken
        tally = context.overhead_tally(grouped=grouped)
        taken: list[Chunk] = []
        for v in views:
            expected = context.overhead([*taken, v], grouped=grouped) - context.overhead(taken, grouped=grouped)
            assert tally.added(v) == expected
            assert tally.take(v) == expected
            taken.append(v)


def _count_calls(monkeypatch, name: str = "header") -> list[int]:
    """A counter of the calls to :class:`Renderer`'s ``name`` from now on (``[n]``): a counting proxy for the time."""
    built = [0]
    method = getattr(Renderer, name)

    def counting(self, *args, **kwargs):
        built[0] += 1
        return method(self, *args, **kwargs)

    monkeypatch.setattr(Renderer, name, counting)
    return built


@pytest.mark.parametrize("preset", ["default", "bm25-topk", "truncate"])
def test_headers_built_grow_linearly_with_the_chunks_kept(preset, monkeypatch):
    """A counting proxy for the time: headers built per run at 100 and 400 chunks (each try used to rebuild all)."""
    built = _count_calls(monkeypatch)
    pipeline = Pipeline.preset(preset)
    per_size = {}
    for n in (100, 400):
        built[0] = 0
        result = pipeline.run("what did part 7 say", _four_line(n), budget=0.5)
        per_size[n] = built[0]
        assert len(result.chunks) > n // 3  # many chunks kept: the case that was quadratic
    assert per_size[400] <= 5 * per_size[100], per_size  # 4x the chunks: 4x the headers, not 16x


@pytest.mark.parametrize("order", ["relevance", "document"])
def test_selection_keeps_what_it_kept_when_counting_every_layout_again(order, monkeypatch):
    """The tally changes no choice: the same run with a context that recounts every layout gives the same result."""
    from optimizer.presets import preset_config

    config = preset_config("default")
    for step in config["steps"]:
        if step["stage"] == "compress-sentences":
            step["params"] = {**step["params"], "order": order}
    pipeline = Pipeline.from_config(config)
    chunks = _four_line(60) + [{"id": f"t{k}", "title": f"Doc {k % 3}", "text": f"Item {k} is worth {k * 3}. Part {k} ends."}
                               for k in range(30)]
    fast = [pipeline.run("what did part 7 say", chunks, budget=b) for b in (0.1, 0.3, 0.6, 1.0)]
    monkeypatch.setattr(RenderOverhead, "tally", lambda self, grouped=False: RecountTally(lambda cs: self(cs, grouped=grouped)))
    slow = [pipeline.run("what did part 7 say", chunks, budget=b) for b in (0.1, 0.3, 0.6, 1.0)]
    assert [(r.text, r.tokens, r.spans) for r in fast] == [(r.text, r.tokens, r.spans) for r in slow]


@pytest.mark.parametrize("preset", ["default"])
def test_headers_built_grow_linearly_when_chunk_titles_repeat(preset, monkeypatch):
    """Hunt of the round after a73d3e0: many chunks from few documents (titles repeat), a chunk joining an earlier
    title group was counted with the whole layout in ``added`` and again, block by block, in ``take``: 1600 chunks
    from 20 titles took 6.7 s (3.1 s before the tally). A counting proxy for the time: headers built per run."""
    built = _count_calls(monkeypatch)
    pipeline = Pipeline.preset(preset)
    per_size = {}
    for n in (100, 400):
        rng = random.Random(2)
        chunks = [{"id": f"c{k}", "title": f"Doc {rng.randrange(5)}", "text": t} for k, t in enumerate(_four_line(n))]
        built[0] = 0
        result = pipeline.run("what did part 7 say", chunks, budget=0.5)
        per_size[n] = built[0]
        assert len(result.chunks) > n // 3
    assert per_size[400] <= 6 * per_size[100], per_size  # 4x the chunks: about 4x the headers (was 15x)


def test_a_chunk_joining_an_earlier_title_group_is_counted_once_for_added_and_take(monkeypatch):
    """``take`` after ``added`` of the same chunk counts nothing again (the layout did not change between)."""
    overhead = RenderOverhead(Renderer(), TOK, {})
    tally = overhead.tally(grouped=True)
    chunks = [Chunk(id=f"c{k}", text="Some text.", title=f"Doc {k % 3}") for k in range(31)]  # the last joins 'Doc 0'
    for c in chunks[:-1]:
        tally.take(c)
    expected = overhead(chunks, grouped=True) - overhead(chunks[:-1], grouped=True)
    built = _count_calls(monkeypatch, "block_texts")
    gained = tally.added(chunks[-1])
    before_take = built[0]
    assert tally.take(chunks[-1]) == gained == expected
    assert built[0] == before_take, "take counted the layout again"

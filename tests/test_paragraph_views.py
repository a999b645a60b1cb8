"""Paragraph views: a long chunk's paragraphs scored as passages, kept as one chunk with exact provenance."""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageOutput
from optimizer.stages.paragraphs import CUT_REASON, merge_views, paragraph_views, paragraphs

TEXT = "Paris\nParis is the capital of France.\n\n  \nLyon\nLyon is a city on the Rhone.\n\nNice\nNice is by the sea."


def test_paragraphs_are_the_blank_line_blocks_of_the_kept_text():
    c = Chunk(id="c", text=TEXT)
    blocks = [TEXT[s:e] for s, e in paragraphs(c)]
    assert blocks == ["Paris\nParis is the capital of France.", "Lyon\nLyon is a city on the Rhone.", "Nice\nNice is by the sea."]
    cut = c.keep([(0, 40), (TEXT.index("Nice"), len(TEXT))])  # an earlier stage removed Lyon
    assert [TEXT[s:e] for s, e in paragraphs(cut)] == ["Paris\nParis is the capital of France.", "Nice\nNice is by the sea."]


def test_views_share_the_chunk_and_only_split_chunks_of_several_paragraphs():
    one = Chunk(id="one", text="A single paragraph. Two sentences.", title="T")
    assert paragraph_views([one]) is None
    views = paragraph_views([one, Chunk(id="c", text=TEXT, title="Cities")])
    assert [v.id for v in views] == ["one", "c", "c", "c"]
    assert views[0] is one
    assert all(v.title == "Cities" and v.original_text == TEXT for v in views[1:])


def test_merge_puts_kept_views_back_into_their_chunk_with_the_right_reasons():
    c, d = Chunk(id="c", text=TEXT), Chunk(id="d", text="Other.")
    views = paragraph_views([c, d])
    lyon = views[1].keep([(TEXT.index("Lyon is"), TEXT.index("Rhone.") + 6)])
    paris = views[0]
    out = StageOutput([replace_relevance(lyon, 2.0), replace_relevance(paris, 1.0)],
                      reasons={"c": "sentences: no sentence among the best within the budget", "d": "dropped"})
    merged = merge_views(out, [c, d])
    assert [m.id for m in merged.chunks] == ["c"]
    m = merged.chunks[0]
    assert m.relevance == 2.0
    assert [TEXT[s:e] for s, e in m.kept_pieces] == ["Paris\nParis is the capital of France.", "Lyon is a city on the Rhone."]
    assert merged.reasons == {"c": CUT_REASON, "d": "dropped"}


def replace_relevance(chunk: Chunk, value: float) -> Chunk:
    from dataclasses import replace

    return replace(chunk, relevance=value)


@pytest.mark.slow
def test_a_pipeline_with_paragraphs_keeps_exact_spans_and_the_budget():
    chunks = [
        Chunk(id="long", text="\n\n".join(f"Town {i}\nTown {i} lies on river {i}. It has {i} bridges and a market." for i in range(8))
              + "\n\nEiffel Tower\nThe Eiffel Tower is in Paris. It opened in 1889."),
        Chunk(id="short", text="Paris is the capital of France. It is large."),
    ]
    for on in (False, True):
        pipe = Pipeline.from_config({"steps": [{"stage": "compress-sentences", "params": {"model": "static", "paragraphs": on}}]})
        r = pipe.run("When did the Eiffel Tower open?", chunks, budget=40)
        assert r.tokens <= 40
        for span in r.spans:
            src = {c.id: c for c in chunks}[span.chunk_id].text
            assert src[span.start:span.end] == r.text[span.context_start:span.context_end]
        assert r.text.count("[") == len({s.chunk_id for s in r.spans})  # one block per chunk, views merged
        assert "1889" in r.text
        assert r.trace[0].notes.get("paragraph_views", False) is on

"""Paragraph views: a long chunk's paragraphs scored as passages, kept as one chunk with exact provenance."""

from __future__ import annotations

import re

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageOutput
from optimizer.render import Renderer
from optimizer.stage import StageContext
from optimizer.stages.paragraphs import (
    CUT_REASON,
    ParagraphViews,
    heading_line,
    paragraph_parts,
    paragraph_views,
    paragraphs,
)
from optimizer.tokenizer import get_tokenizer

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
    assert all(v.title.startswith("Cities: ") and v.original_text == TEXT for v in views[1:])


def test_merge_puts_kept_views_back_into_their_chunk_with_the_right_reasons():
    c, d = Chunk(id="c", text=TEXT), Chunk(id="d", text="Other.")
    views = paragraph_views([c, d])
    lyon = views[1].keep([(TEXT.index("Lyon is"), TEXT.index("Rhone.") + 6)])
    paris = views[0]
    out = StageOutput([replace_relevance(lyon, 2.0), replace_relevance(paris, 1.0)],
                      reasons={"c": "sentences: no sentence among the best within the budget", "d": "dropped"})
    merged = ParagraphViews([c, d]).merge(out)
    assert [m.id for m in merged.chunks] == ["c"]
    m = merged.chunks[0]
    assert m.relevance == 2.0
    # Lyon's heading comes along; only white space then separates the two kept paragraphs
    assert [TEXT[s:e] for s, e in m.kept_pieces] == ["Paris\nParis is the capital of France.\n\n  \nLyon\nLyon is a city on the Rhone."]
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


def test_headings_of_an_untitled_chunk_become_view_titles_and_leave_the_text():
    text = "# Guide\n\nStep one. Step two.\n\nNotes\nKeep it dry.\n\n- not a heading\n- a list\n\nEnd."
    c = Chunk(id="g", text=text)
    parts = paragraph_parts(c)
    assert [(text[slice(*p.body)], p.heading and text[slice(*p.heading)]) for p in parts] == [
        ("Step one. Step two.", "# Guide"), ("Keep it dry.", "Notes"), ("- not a heading\n- a list", None), ("End.", None)]
    views = paragraph_views([c])
    assert [(v.title, v.text) for v in views] == [
        ("Guide", "Step one. Step two."), ("Notes", "Keep it dry."), (None, "- not a heading\n- a list"), (None, "End.")]
    # a titled chunk's views put the heading after the chunk's title; with "off" its first lines stay text
    titled = paragraph_views([Chunk(id="t", text=TEXT, title="Cities")])
    assert [(v.title, v.text) for v in titled][0] == ("Cities: Paris", "Paris is the capital of France.")
    off = paragraph_views([Chunk(id="t", text=TEXT, title="Cities")], "off")
    assert [v.title for v in off] == ["Cities"] * 3 and off[0].text.startswith("Paris\n")


def test_two_heading_lines_in_a_row_the_nearer_one_heads_the_body():
    """The farther one is a paragraph of its own (it may be a section's whole text), unless it is a ``#`` heading
    over a deeper one: then it is printed above it (tests/test_faq_layouts.py)."""
    text = "Doc\n\nSection\nBody text here.\n\nOther paragraph."
    parts = paragraph_parts(Chunk(id="d", text=text))
    assert [(text[slice(*p.body)], p.heading and text[slice(*p.heading)], [text[slice(*a)] for a in p.above]) for p in parts] == [
        ("Doc", None, []), ("Body text here.", "Section", []), ("Other paragraph.", None, [])]
    text = "# Doc\n\n## Section\nBody text here.\n\nOther paragraph."
    parts = paragraph_parts(Chunk(id="m", text=text))
    assert [(text[slice(*p.body)], p.heading and text[slice(*p.heading)], [text[slice(*a)] for a in p.above]) for p in parts] == [
        ("Body text here.", "## Section", ["# Doc"]), ("Other paragraph.", None, [])]


@pytest.mark.parametrize("line, title", [("Early life", "Early life"), ("### Results", "Results"), ("It rained.", None),
                                         ("Why?", None), ("1. Step", None), ("a " * 13, None),
                                         ("Paris, Texas", "Paris, Texas"), ("When it rains,", None), ("<details open>", None),
                                         ("[![CI](https://x/badge.svg)](https://x)", None), ("| a | b |", None),
                                         ("> quoted", None), ("```python", None), ("See [the docs](https://x) for more", None),
                                         ("## [API](https://x)", "[API](https://x)")])
def test_heading_line(line, title):
    assert heading_line(line) == title


def test_view_overhead_counts_what_the_merged_block_prints():
    """Selector cost (sentence tokens + joiners + view overhead) bounds the rendered merged block from above, closely.

    Like the renderer's own overhead, it may count a token or so per join that tiktoken merges
    with the next word, never fewer than the block takes.
    """
    c = Chunk(id="c", text=TEXT)
    views = paragraph_views([c])
    tok = get_tokenizer("cl100k_base")
    renderer = Renderer()
    base = StageContext(tokenizer=tok, budget=None, render_overhead=lambda cs, grouped=False: renderer.overhead(cs, tok, grouped=grouped))
    split = ParagraphViews([c])
    ctx = split.context(base)
    for taken in ([views[0]], [views[0], views[2]], views):
        merged = split.merge(StageOutput(list(taken))).chunks
        rendered = renderer.render(merged).text
        body = sum(tok.count(v.text) for v in taken)
        estimate = ctx.overhead(list(taken)) + body
        assert 0 <= estimate - tok.count(rendered) <= len(taken) + 1, (rendered, estimate)


@pytest.mark.slow
@pytest.mark.parametrize("budget", [30, 45, 60, 90])
def test_default_reads_an_untitled_long_chunk_by_its_headings(budget):
    towns = "\n\n".join(f"## Town {i}\nTown {i} lies on river {i}. It has {i} bridges and a weekly market." for i in range(6))
    page = Chunk(id="page", text=towns + "\n\n## Eiffel Tower\nThe Eiffel Tower was opened in 1889. It stands in Paris.")
    other = Chunk(id="other", text="Paris is the capital of France. It is large.")
    r = Pipeline.preset("default").run("When was the Eiffel Tower opened?", [page, other], budget=budget)
    assert r.tokens <= budget
    for span in r.spans:
        src = {c.id: c for c in (page, other)}[span.chunk_id].text
        assert src[span.start:span.end] == r.text[span.context_start:span.context_end]
    assert "## Eiffel Tower\n" in r.text and "1889" in r.text  # the heading names the paragraph; it comes along
    bodies = {p.split("\n", 1)[0]: p.split("\n", 1)[1] for p in page.text.split("\n\n")}
    for head, rest in re.findall(r"(## [^\n]+)\n([^\n]+)", r.text):  # each printed heading opens its own paragraph's text
        assert bodies[head].startswith(rest.split(". ")[0].split(" ## ")[0]) or rest.split(" ## ")[0] in bodies[head]
    pack = r.trace[-1]
    assert pack.name == "pack" and not pack.notes["cuts"], pack.notes  # the selection's count already fit


def test_presets_read_long_chunks_by_paragraph_and_leave_others_alone():
    for name in ("default", "quality"):
        params = Pipeline.preset(name).to_config()["steps"][-1]["params"]
        assert params["paragraphs"] is True
    assert paragraph_views([Chunk(id="a", text="One line.\nAnother line.", title="T")]) is None


def test_an_untitled_title_line_chunk_reads_as_a_titled_one():
    inline = Chunk(id="d", text="Deadpool 2\nDeadpool 2 opened on May 18, 2018. A sequel is planned.")
    (view,) = paragraph_views([inline])
    assert (view.id, view.title, view.text) == ("d", "Deadpool 2", "Deadpool 2 opened on May 18, 2018. A sequel is planned.")
    kept = view.keep([(inline.text.index("A sequel"), len(inline.text))])
    merged = ParagraphViews([inline]).merge(StageOutput([kept])).chunks[0]
    assert merged.text == "Deadpool 2\nA sequel is planned."  # the title line comes with what is kept, on a line of its own
    # in a titled chunk the first line repeats the title: the view keeps that title, the line leaves the text
    (titled,) = paragraph_views([Chunk(id="t", text=inline.text, title="Deadpool 2")])
    assert (titled.title, titled.text) == ("Deadpool 2", view.text)
    assert paragraph_views([Chunk(id="t", text=inline.text, title="Deadpool 2")], "off") is None
    # a chunk whose first line is a sentence is left whole
    assert paragraph_views([Chunk(id="s", text="It opened in May.\nA sequel is planned.")]) is None
    assert paragraph_views([Chunk(id="s", text="It opened in May.\nA sequel is planned.", title="T")]) is None


def test_a_paragraph_an_earlier_stage_cut_in_pieces_stays_one_paragraph():
    c = Chunk(id="c", text="Paris is big. It is old. It is on the Seine.", title="Paris")
    cut = c.keep([(0, 13), (25, 44)])  # near-dedupe left two pieces of the one paragraph
    assert len(cut.kept_pieces) == 2 and paragraphs(cut) == [(0, 44)]
    assert paragraph_views([cut]) is None  # nothing to split: the chunk reads as before
    two = Chunk(id="t", text="Lyon\nLyon is old. It has bridges.\n\nNice\nNice is by the sea.")
    views = paragraph_views([two.keep([(0, 17), (35, 59)])])
    assert [(v.title, v.text) for v in views] == [("Lyon", "Lyon is old."), ("Nice", "Nice is by the sea.")]


def test_a_heading_is_counted_when_an_earlier_stage_cut_the_start_of_its_paragraph():
    c = Chunk(id="c", text="Lyon\nLyon is old. It has bridges.\n\nNice Riviera Coast\nNice is by the sea.")
    cut = c.keep([(0, 17), (c.text.index("by the"), len(c.text))])  # "Nice is " of the second body removed
    split = ParagraphViews([cut])
    tok = get_tokenizer("cl100k_base")
    ctx = split.context(StageContext(tokenizer=tok, budget=None, render_overhead=lambda cs, grouped=False: 0))
    nice = split.views[1]
    assert nice.title == "Nice Riviera Coast" and nice.text == "by the sea."
    assert ctx.overhead([nice]) == tok.count("Nice Riviera Coast") + 1


def test_headings_of_a_titled_chunk_title_its_views_alone_or_after_the_chunk_title():
    c = Chunk(id="c", text=TEXT, title="Cities")
    heading = ParagraphViews([c], "heading").views
    assert [(v.title, v.text) for v in heading] == [
        ("Paris", "Paris is the capital of France."), ("Lyon", "Lyon is a city on the Rhone."), ("Nice", "Nice is by the sea.")]
    assert [v.title for v in ParagraphViews([c], "joined").views] == ["Cities: Paris", "Cities: Lyon", "Cities: Nice"]
    assert [v.title for v in ParagraphViews([c], "off").views] == ["Cities"] * 3
    same = Chunk(id="s", text="## Paris\n\nParis is big.", title="paris")
    assert [v.title for v in ParagraphViews([same], "joined").views] == ["paris"]  # the heading only repeats the title
    merged = ParagraphViews([c], "heading").merge(StageOutput([heading[1]])).chunks[0]
    assert (merged.title, merged.text) == ("Cities", "Lyon\nLyon is a city on the Rhone.")  # the block keeps its own title


def test_a_markdown_node_of_a_file_reads_under_its_heading():
    """LlamaIndex's MarkdownNodeParser gives ``## Install\\n\\nbody`` nodes, titled by the wrapper with the file name."""
    node = Chunk(id="n", text="## Install\n\nRun pip install ragtrim. It needs Python 3.10.", title="guide.md")
    assert [(v.title, v.text) for v in ParagraphViews([node], "off").views] == [
        ("guide.md", "## Install"), ("guide.md", "Run pip install ragtrim. It needs Python 3.10.")]  # the heading alone is a view
    (view,) = ParagraphViews([node], "heading").views
    assert (view.title, view.text) == ("Install", "Run pip install ragtrim. It needs Python 3.10.")
    split = ParagraphViews([node], "heading")
    kept = view.keep([(node.text.index("It needs"), len(node.text))])
    out = Renderer().render(split.merge(StageOutput([kept])).chunks).text
    assert out == "[1] guide.md\n## Install\nIt needs Python 3.10."  # the heading keeps its own line (Markdown reads it as one)
    tok = get_tokenizer("cl100k_base")
    renderer = Renderer()
    ctx = split.context(StageContext(tokenizer=tok, budget=None, render_overhead=lambda cs, grouped=False: renderer.overhead(cs, tok, grouped=grouped)))
    assert 0 <= ctx.overhead([kept]) + tok.count(kept.text) - tok.count(out) <= 2


def test_titled_headings_must_be_a_known_choice():
    with pytest.raises(ValueError, match="titled_headings must be one of off, heading, joined, got 'yes'"):
        Pipeline.from_config({"steps": [{"stage": "compress-sentences", "params": {"paragraphs": True, "titled_headings": "yes"}}]})
    with pytest.raises(ValueError, match="titled must be one of"):
        ParagraphViews([], "on")


WRAPPED = ("Click is a Python package for creating beautiful command line interfaces\n"
           "in a composable way with as little code as necessary. It is the Command\n"
           "Line Interface Creation Kit, and it is highly configurable.")


def test_hard_wrapped_prose_is_not_read_as_a_heading_over_its_own_sentence():
    """A README paragraph wrapped at a fixed width: its first line starts a sentence, it heads nothing."""
    text = f"# Click\n\n{WRAPPED}\n\n## Install\n\nRun pip install click."
    parts = paragraph_parts(Chunk(id="r", text=text, title="README.md"), "joined")
    (wrapped,) = [p for p in parts if text[slice(*p.body)].startswith("Click") or "composable" in text[slice(*p.body)]]
    assert text[slice(*wrapped.heading)] == "# Click" and text[slice(*wrapped.body)] == WRAPPED  # headed by the real heading
    (alone,) = paragraph_parts(Chunk(id="w", text=WRAPPED), "joined")
    assert alone.heading is None and WRAPPED[slice(*alone.body)] == WRAPPED
    views = paragraph_views([Chunk(id="r", text=text, title="README.md")])
    assert {"README.md: Click", "README.md: Install"} <= {v.title for v in views}
    assert not [v.title for v in views if "Click is a Python package" in (v.title or "")]
    result = Pipeline.preset("default", budget=40).run("Is it highly configurable?", [Chunk(id="r", text=text, title="README.md")])
    assert "highly configurable" in result.text
    assert "Click is a Python package" not in result.text or "in a composable way" in result.text  # never half a sentence as a frame


@pytest.mark.parametrize("text", [
    "Human hair color\nor sandy blond color.",  # a splitter cut a passage a few words in: a title over a fragment
    "Early life\nborn in Lyon, he moved to Paris in 1901.\nHe studied law.",  # a short title over a wrapped text
    "## Usage\nrun it like this, with the flags it needs, and wait until\nit prints done.",  # marked: always a heading
])
def test_a_title_over_its_text_still_heads_it(text):
    (part,) = paragraph_parts(Chunk(id="t", text=text), "joined")
    assert part.heading is not None and text[slice(*part.heading)] == text.split("\n")[0]

"""A lone ``\\r`` (an old Mac line end) ends a line where kept pieces are joined and indented, as it does
where they are split (:func:`optimizer.sentences.line_view`); and one white-space set is indentation
both to the joiner and to the renderer's marker.

Kept lines of a lone-CR chunk were joined by a space (``service: owner: team payments worker: ...``:
the YAML read as one line) and lost their indentation; an NBSP-indented block kept from its
second line printed its first line after ``[1] ``, its others at their own depth.
"""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.packer import cut_to_tokens
from optimizer.records import indent_start, piece_joiner, with_first_indent
from optimizer.render import Renderer, indented_lines
from optimizer.sentences import line_view
from optimizer.stage import StageContext

YAML = ("service:\n  name: billing\n  owner: team payments\n  image: registry/billing:4.2\n"
        "worker:\n  replicas: 3\n  resources:\n    requests:\n      cpu: 250m\n    limits:\n      memory: 1Gi\n"
        "  queue: payouts\n  timeout: 30s")


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"])
def test_kept_lines_of_a_chunk_keep_their_line_breaks_whatever_ends_them(eol):
    chunk = Chunk(id="x", text=f"a: 1{eol}b: 2{eol}c: 3")
    c = chunk.original_text.index("c")
    kept = chunk.keep([(0, 4), (c, c + 4)])
    assert kept.text == "a: 1\nc: 3"
    assert kept.map_range(5, 9) == [(c, c + 4)]  # offsets into the text agree with the joiner


@pytest.mark.parametrize("eol", ["\r", "\r\n"])
def test_a_lone_cr_ends_a_line_for_the_joiner_and_the_indentation(eol):
    text = f"def f():{eol}    x = 1{eol}    return x"
    r = text.index("return")
    assert indent_start(text, r) == r - 4
    assert piece_joiner(text, text.index("1") + 1, r) == "\n    "
    assert piece_joiner(f"a.{eol}b", 2, 2 + len(eol)) == "\n"  # the first piece ends its line
    t = f"    if x:{eol}        y(){eol}    z()"
    z = t.index("z")
    assert with_first_indent(t, [(4, 9), (z, z + 3)], "if x:\n    z()") == (((0, 9), (z, z + 3)), "    if x:\n    z()")


def test_yaml_with_lone_cr_line_ends_renders_the_lines_the_newline_version_does():
    pipeline = Pipeline.preset("default")
    other = [{"id": f"o{i}", "text": f"The cafeteria opens at {8 + i} am and serves lunch until two."} for i in range(3)]
    out = {}
    for eol in ("\n", "\r"):
        result = pipeline.run("What is the worker memory limit?", [{"id": "k8s", "text": YAML.replace("\n", eol)}] + other, budget=40)
        out[eol] = line_view(result.text)
    assert "      memory: 1Gi" in out["\r"].split("\n")
    assert "service: owner" not in out["\r"]
    assert out["\r"] == out["\n"]


@pytest.mark.parametrize("space", ["\xa0", "\u3000", "\f", " ", "\t"])
def test_one_white_space_set_is_indentation_to_the_joiner_and_to_the_marker(space):
    text = f"x:\n{space * 2}a: 1\n{space * 2}b: 2"
    kept = Chunk(id="x", text=text).keep([(text.index("a"), len(text))])
    assert kept.text == f"{space * 2}a: 1\n{space * 2}b: 2"  # the first line keeps its indentation (with_first_indent)
    assert indented_lines(kept.text)
    assert Renderer().render([kept]).text == f"[1]\n{space * 2}a: 1\n{space * 2}b: 2"  # the marker on a line of its own


def test_indented_lines_reads_a_lone_cr_as_a_line_end():
    assert indented_lines("  a: 1\r  b: 2")
    assert not indented_lines("  one line\r")
    assert not indented_lines("\ra\rb")  # a line end first is no indentation


@pytest.mark.parametrize("eol", ["\n", "\r"])
def test_a_token_cut_of_an_indented_chunk_counts_the_indentation_it_keeps(eol):
    chunk = Chunk(id="x", text=f"        alpha beta gamma delta{eol}        epsilon zeta eta theta iota kappa lambda")
    context = StageContext.default()
    for k in range(3, 16):
        cut, how = cut_to_tokens(chunk, k, context)
        assert context.count(cut.text) <= k, (k, how, cut.text)


def test_any_kept_ranges_of_a_lone_cr_text_read_as_those_of_its_newline_twin():
    """Same length, same offsets: keeping the same ranges gives the same text, line ends aside, and the same render."""
    import random

    rng = random.Random(3)
    lines = ["a: 1", "  b: 2", "    c: [3, 4]", "", "  - item", "\tdef f():", "x = 1. y = 2.", "   ", "## Head"]
    for _ in range(400):
        lf = "\n".join(rng.choice(lines) for _ in range(rng.randint(1, 8)))
        cr = lf.replace("\n", "\r")
        ranges = [tuple(sorted((rng.randint(0, len(lf)), rng.randint(0, len(lf))))) for _ in range(rng.randint(1, 4))]
        kept_lf, kept_cr = Chunk(id="x", text=lf).keep(ranges), Chunk(id="x", text=cr).keep(ranges)
        assert kept_cr.kept_pieces == kept_lf.kept_pieces, (lf, ranges)
        assert line_view(kept_cr.text) == kept_lf.text, (lf, ranges)
        assert line_view(Renderer().render([kept_cr]).text) == Renderer().render([kept_lf]).text, (lf, ranges)

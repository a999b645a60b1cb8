"""bench/markdown_fidelity.py: its measures see broken fences, run-together lines and lost indentation."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from optimizer import Chunk

SPEC = importlib.util.spec_from_file_location(
    "markdown_fidelity", Path(__file__).resolve().parents[1] / "bench" / "markdown_fidelity.py")
md = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(md)

DOC = "## Use\n\nSteps:\n- one\n- two\n\n```py\ndef f():\n    return 1\n```"


def result_of(*chunks: Chunk) -> SimpleNamespace:
    return SimpleNamespace(chunks=chunks)


def test_a_faithful_cut_counts_nothing_wrong():
    c = Chunk(id="a", text=DOC)
    at = DOC.index
    kept = c.keep([(0, 6), (at("- two"), at("- two") + 5), (at("```py"), len(DOC))])
    counts = md.measure(result_of(kept), {"a": c})
    assert counts["chunks"] == 1 and counts["broken"] == 0 and counts["merged"] == 0 and counts["unindented"] == 0
    assert counts["lines"] == 1 and counts["code"] == 2  # one gap held a line break ("- two" and the block merge); two code lines


def test_broken_fences_merged_lines_and_lost_indentation_are_counted():
    c = Chunk(id="a", text=DOC)
    at = DOC.index
    broken = c.keep([(at("```py"), at("def f") + 8)])  # the opening fence without its closing one
    assert md.measure(result_of(broken), {"a": c})["broken"] == 1
    # what a space joiner made of two lines: a stand-in chunk whose kept text runs them together
    merged = Chunk(id="a", text="- one - two", source=DOC, pieces=((at("- one"), at("- one") + 5), (at("- two"), at("- two") + 5)))
    assert md.line_joins(merged) == (1, 1)
    unindented = Chunk(id="a", text="```py\ndef f():\nreturn 1\n```", source=DOC,
                       pieces=((at("```py"), at("def f") + 8), (at("return"), len(DOC))))
    assert md.measure(result_of(unindented), {"a": c})["unindented"] == 1
    assert md.fence_lines("```\nx\n```\n  ~~~") == 3

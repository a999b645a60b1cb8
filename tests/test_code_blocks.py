"""Markdown code blocks and line structure survive compression: fences closed, lines and indentation kept."""

from __future__ import annotations

import re

import pytest

from optimizer import Chunk, Pipeline
from optimizer.sentences import fenced_blocks, paragraph_spans, split_range, split_sentences
from optimizer.stages.paragraphs import heading_line, paragraph_parts

SHELL = "\n".join(f"ragtrim option{i} --flag{i}  # sets thing {i}" for i in range(25))
FLAGS = f"## Flags\n\nEvery flag of the command line:\n\n```bash\n{SHELL}\n```\n\nThe defaults suit most users. Budgets are shares or token counts."
PYTHON = "\n".join(f"    pipeline.set_option{i}(value={i})" for i in range(25))
OPTIONS = f"## Options\n\nEvery option:\n\n```python\ndef configure(pipeline):\n{PYTHON}\n\n    return pipeline\n```\n\nDefaults suit most users."
OTHER = Chunk(id="b", text="Budgets are counted with the model's tokenizer. The service caps spend.", title="budget.md")


def fence_lines(text: str) -> list[str]:
    return [ln for ln in text.split("\n") if re.match(r"\s{0,3}(```|~~~)", ln)]


def test_a_fenced_block_is_one_block_split_per_line_with_its_fences_attached():
    text = "Run:\n~~~sh\nls -l\n\n  pwd\n~~~\nDone. Really."
    assert [text[s:e] for s, e in fenced_blocks(text)] == ["~~~sh\nls -l\n\n  pwd\n~~~"]
    assert [text[s:e] for s, e in paragraph_spans(text)] == ["Run:", "~~~sh\nls -l\n\n  pwd\n~~~", "Done. Really."]
    assert [text[s:e] for s, e in split_sentences(text)] == ["Run:", "~~~sh\nls -l", "pwd\n~~~", "Done.", "Really."]
    # an unpunctuated shell block is no longer one giant sentence
    assert len(split_sentences(FLAGS)) == 2 + 25 + 2
    # a fence is never a heading (it would title a view and lose its block's closing line)
    assert heading_line("```python") is None and heading_line("~~~") is None
    # inline backticks and a closing mark of the other kind do not open or close a block
    assert fenced_blocks("Use ```x``` here.\n~~~\na\n```\nb\n~~~") == [(len("Use ```x``` here.\n"), len("Use ```x``` here.\n~~~\na\n```\nb\n~~~"))]


def test_a_code_paragraph_gets_its_fence_lines_as_frame():
    c = Chunk(id="c", text=OPTIONS, title="guide.md")
    code = [p for p in paragraph_parts(c) if p.fences][0]
    assert [OPTIONS[slice(*f)] for f in code.fences] == ["```python", "```"]
    assert OPTIONS[slice(*code.heading)] == "Every option:"  # the line before the block heads it (printed with it)
    unclosed = Chunk(id="u", text="Intro.\n\n```py\nx = 1\ny = 2")  # a splitter cut the block
    (p,) = [p for p in paragraph_parts(unclosed) if p.fences]
    assert [unclosed.text[slice(*f)] for f in p.fences] == ["```py"]


@pytest.mark.parametrize("preset", ["default", "quality"])
@pytest.mark.parametrize("budget", [40, 80, 120])
def test_kept_code_lines_come_with_both_fences_and_their_indentation(preset, budget):
    pipeline = Pipeline.preset(preset, budget=budget)
    for doc, query, wanted in [(FLAGS, "What does option17 set?", "ragtrim option17 --flag17  # sets thing 17"),
                               (OPTIONS, "What does set_option17 take?", "    pipeline.set_option17(value=17)")]:
        result = pipeline.run(query, [Chunk(id="a", text=doc, title="guide.md"), OTHER])
        assert result.tokens <= budget
        lines = result.text.split("\n")
        assert wanted in lines, result.text  # the answering line, whole, on a line of its own
        fences = fence_lines(result.text)
        assert len(fences) == 2 and fences[1].strip() == "```", result.text  # opened and closed
        inside = lines[lines.index(fences[0]) + 1 : len(lines) - lines[::-1].index(fences[1]) - 1]
        assert all(ln in doc.split("\n") for ln in inside), result.text  # every code line as written, indentation too


def test_pieces_of_one_chunk_keep_the_lines_they_sit_on():
    doc = "Steps:\n- install it\n- run the demo\n  - it prints a report\n- read the report\nThat is all."
    c = Chunk(id="s", text=doc)
    at = doc.index
    kept = c.keep([(0, 6), (at("- it"), at("- it") + 20), (at("That"), len(doc))])
    assert kept.text == "Steps:\n  - it prints a report\nThat is all."  # the nested item keeps its line and depth
    assert c.keep([(at("install"), at("install") + 7), (at("is all"), len(doc))]).text == "install is all."  # mid-line: a space
    for k, char in enumerate(kept.text):  # every kept character maps back; joiners map to nothing
        mapped = kept.map_range(k, k + 1)
        assert all(doc[s:e] == char for s, e in mapped) and (mapped or char in " \n")


def test_a_part_of_a_code_block_is_still_split_per_line():
    text = "Run:\n```sh\nls -l here\npwd now\n```\nDone. Really."
    code = (text.index("ls"), text.rindex("\n```"))
    assert [text[s:e] for s, e in split_range(text, *code)] == ["ls -l here", "pwd now"]
    assert split_range(text, 0, len(text)) == list(split_sentences(text))  # the whole text: as split_sentences
    plain = "One line. Two.\nThree."
    assert split_range(plain, 4, len(plain)) == [(4 + s, 4 + e) for s, e in split_sentences(plain[4:])]


def test_fences_indented_in_a_list_item_are_kept_whole():
    doc = ("## Installation\n\n- pip (recommended)\n  ```\n  pip install narwhals\n  ```\n"
           "- conda-forge (may lag behind)\n  ```\n  conda install -c conda-forge narwhals\n  ```")
    chunks = [Chunk(id="n", text=doc, title="narwhals/README.md"), OTHER]
    for budget in (30, 45, 60):
        result = Pipeline.preset("default", budget=budget).run("How do I install with conda?", chunks)
        kept = [c.text for c in result.chunks if c.id == "n"]
        assert kept and len(fence_lines(kept[0])) % 2 == 0, (budget, kept)
        assert "conda install -c conda-forge narwhals" in result.text, (budget, result.text)


@pytest.mark.parametrize("budget", [20, 35, 60, 90])
def test_the_packer_never_cuts_inside_a_code_block(budget):
    """A pipeline without the sentence stage leaves the cut to the packer: before a block or after it, never inside.
    (The ``truncate`` baseline cuts by itself, as naive truncation does.)"""
    doc = "Install it first.\n\n```bash\npip install ragtrim\nragtrim --version\nragtrim demo --fast\n```\n\nThen read the report it prints."
    pipeline = Pipeline.from_config({"steps": [{"stage": "rerank-bm25"}]}, budget=budget)
    result = pipeline.run("How do I install it?", [Chunk(id="a", text=doc, title="guide.md")])
    assert result.trace[-1].notes["cuts"] == (budget < 60)  # the packer did the cutting
    assert result.tokens <= budget
    text = result.chunks[0].text if result.chunks else ""
    assert len(fence_lines(text)) % 2 == 0, text
    assert ("pip install ragtrim" in text) == ("```bash\npip install ragtrim\nragtrim --version\nragtrim demo --fast\n```" in text)

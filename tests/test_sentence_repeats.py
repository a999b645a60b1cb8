"""A sentence another chunk already says word for word is not kept twice (the quickstart notebook's chunks)."""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stages.sentence_select import REPEAT_REASON, repeat_key

FIRST = "She was the first woman to win a Nobel Prize."
CHUNKS = [
    Chunk(id="curie-1", title="Marie Curie", score=0.71,
          text=f"Marie Curie was a Polish and naturalised-French physicist and chemist. {FIRST} "
               "She won the Nobel Prize in Physics in 1903 and the Nobel Prize in Chemistry in 1911."),
    Chunk(id="curie-2", title="Marie Curie", score=0.69,
          text=f"Marie Curie was a Polish and naturalised-French physicist and chemist. {FIRST}"),  # a subset of curie-1
    Chunk(id="warsaw", title="Warsaw", score=0.52,
          text="Warsaw is the capital and largest city of Poland. Marie Curie was born there in 1867."),
    Chunk(id="radium", title="Radium", score=0.40,
          text="Radium is a chemical element with symbol Ra. It was discovered by Marie and Pierre Curie in 1898. "
               "Radium is highly radioactive."),
]
QUERY = "In which year did Marie Curie win the Nobel Prize in Chemistry?"


@pytest.mark.parametrize("preset", ["default", "fitted"])
@pytest.mark.parametrize("budget", [60, 100, 1.0])
def test_a_sentence_is_kept_once_whichever_chunk_says_it(preset, budget):
    """Before, `default` at 60 tokens printed FIRST twice: curie-1's, then curie-2's (dedupe-near's Jaccard misses containment)."""
    result = Pipeline.preset(preset, budget=budget).run(QUERY, CHUNKS)
    assert result.text.count(FIRST) <= 1
    assert result.text.count("Marie Curie was a Polish") <= 1
    assert result.tokens <= result.budget
    if budget == 1.0:  # everything else fits: only the repeat goes, and the trace says why
        assert result.text.count(FIRST) == 1 and "Radium is highly radioactive." in result.text
        reasons = [d.reason for d in result.dropped if d.chunk_id == "curie-2"]  # dedupe-overlaps finds it inside curie-1 first
        assert reasons in ([REPEAT_REASON], ["contained in curie-1"])


def test_a_line_a_chunk_repeats_itself_is_kept():
    """Within one chunk a repeat is the text's own (a code line, a refrain): both stay."""
    code = "```python\nvalue = compute(a, b)\nprint(value)\nvalue = compute(a, b)\nprint(value)\n```"
    result = Pipeline.preset("default", budget=1.0).run("compute value", [Chunk(id="c", text=code), Chunk(id="d", text="Other text here.")])
    assert result.text.count("value = compute(a, b)") == 2


def test_short_lines_are_not_repeats():
    assert repeat_key("}") is None and repeat_key("See also.") is None
    assert repeat_key("She  was the First woman.") == repeat_key("she was the first woman.")

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


def test_a_csv_row_or_a_cjk_sentence_is_long_enough_to_be_a_copy():
    """A CSV row and a CJK sentence have one "word" between spaces: each was never a repeat (hunt 37)."""
    assert repeat_key("ORD-5004,Customer4,Austin,248.50,shipped") is not None
    assert repeat_key("访客车辆最多可停放24小时。") is not None
    assert repeat_key("お問い合わせはこちら。") is not None
    assert repeat_key("1,2") is None and repeat_key("谢谢。") is None and repeat_key("});") is None
    assert repeat_key("return x + y;") is not None  # four tokens between spaces still make a code line long enough


HEADER = "order_id,customer,ship_city,amount_usd,status"
ROWS = [f"ORD-50{i:02d},Customer{i},Austin,{100 + i * 37}.50,{'pending' if i % 2 else 'shipped'}" for i in range(16)]
WINDOWS = [Chunk(id=f"w{k}", title="orders.csv", text=HEADER + "\n" + "\n".join(ROWS[s:s + 6])) for k, s in enumerate([0, 4, 8])]
PARKING = [Chunk(id="z1", title="物业规定", text="小区停车场共有120个车位。访客车辆最多可停放24小时。每月物业费为每平方米3.5元。"),
           Chunk(id="z2", title="业主手册", text="访客车辆最多可停放24小时。垃圾每天早上七点收集。"),
           Chunk(id="z3", title="FAQ", text="访客车辆最多可停放24小时。宠物须拴绳。")]


@pytest.mark.parametrize("preset", ["default", "quality"])
@pytest.mark.parametrize("query, chunks, lines", [
    ("What is the status of ORD-5005?", WINDOWS, ROWS),
    ("访客车辆可以停放多久？", PARKING, ["访客车辆最多可停放24小时。"]),
])
def test_overlapping_csv_windows_and_cjk_copies_print_each_line_once(preset, query, chunks, lines):
    """Before, rows of overlapping CSV windows (ORD-5004, ORD-5005) were printed in both blocks, and ``quality``
    printed the parking sentence three times."""
    result = Pipeline.preset(preset, budget=0.6).run(query, chunks)
    assert result.tokens <= result.budget
    printed = result.text.split("\n")
    assert any(line in printed or line in result.text for line in lines)
    assert all(result.text.count(line) <= 1 for line in lines), result.text
    source = {c.id: c.text for c in chunks}
    for span in result.spans:
        assert source[span.chunk_id][span.start:span.end] == result.text[span.context_start:span.context_end]


FETCH = "    resp = self._session.get(url)"
CLIENTS = [Chunk(id=name, title=f"api/{name}.py", text=f'```python\ndef get_{name[:-1]}(self, {name[:-1]}_id):\n'
                 f'    url = f"{{self.base}}/{name}/{{{name[:-1]}_id}}"\n{FETCH}\n    resp.raise_for_status()\n    return resp.json()\n```')
           for name in ("users", "orders")]


@pytest.mark.parametrize("preset", ["default", "quality"])
def test_a_code_line_two_fenced_functions_share_is_printed_in_each(preset):
    """Before, ``resp = self._session.get(url)`` (three words between spaces, five word_count words) was dropped from the
    second function as a repeat of the first's, which then printed ``resp.raise_for_status()`` with ``resp`` never assigned."""
    result = Pipeline.preset(preset, budget=1000).run("How is the HTTP response fetched?", CLIENTS)
    assert result.text.count(FETCH) == 2, result.text
    assert not [d for d in result.dropped if d.reason == REPEAT_REASON]


def test_word_count_words_key_only_cjk_text_and_delimited_rows():
    """A line of prose or code with fewer than four words between spaces is no repeat, however many word runs it has."""
    assert repeat_key("resp = self._session.get(url)") is None
    assert repeat_key("x.y.z = a.b.c(d)") is None
    assert repeat_key("ORD-5004\tCustomer4\tAustin\t248.50") is not None

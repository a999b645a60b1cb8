"""Code fences survive ``paragraphs: false``; ``order-chunks`` may split a title's run, as documented.

With the sentence stage's paragraph reading off, a chunk is one passage, but a fenced code block's
fence lines are still printed (and counted) with any kept line of its code: before, the opening
fence was joined to the first code line and the closing one to the last, so a middle line kept
alone came without fences, or with the closing fence alone, which opens a block in the context.
"""

from __future__ import annotations

import re

import pytest

from optimizer import Chunk, Pipeline, make_stage
from optimizer.presets import preset_config
from optimizer.stage import StageContext
from optimizer.stages.paragraphs import ParagraphViews, fence_parts

CLIENT = ("The client library is configured in a few lines of Python code.\n```py\nfrom client import Client\n"
          "c = Client(timeout=30)\nc.set_retries(5)\nc.connect()\n```\nRetries double the wait each time the server does not answer.")
SHELL = "\n".join(f"ragtrim option{i} --flag{i}  # sets thing {i}" for i in range(12))
FLAGS = f"Every flag of the command line:\n\n```bash\n{SHELL}\n```\n\nThe defaults suit most users. Budgets are shares or token counts."
OTHERS = [Chunk(id=f"o{i}", text=t, title=f"other{i}.md") for i, t in enumerate([
    "Paris is the capital of France. It has many museums and a large river.",
    "The weather in spring is mild, with rain in April and sun in May.",
    "Lyon is known for its food and its old town near the two rivers."])]


def fence_lines(text: str) -> list[str]:
    return [ln for ln in text.split("\n") if re.match(r"\s{0,3}(```|~~~)", ln)]


def unsplit_default(budget: int) -> Pipeline:
    """``default`` with the sentence stage's ``paragraphs`` off."""
    config = preset_config("default")
    for step in config["steps"]:
        if step["stage"] == "compress-sentences":
            step["params"] = {**step["params"], "paragraphs": False}
    return Pipeline.from_config(config, budget=budget)


@pytest.mark.parametrize("budget", [25, 38, 51, 64, 90])
@pytest.mark.parametrize("doc, query, wanted", [
    (CLIENT, "how do I set the number of retries of the client?", "c.set_retries(5)"),
    (FLAGS, "What does option7 set?", "ragtrim option7 --flag7  # sets thing 7"),
])
def test_paragraphs_off_keeps_both_fences_of_kept_code(budget, doc, query, wanted):
    chunks = [Chunk(id="a", text=doc, title="guide.md"), *OTHERS]
    result = unsplit_default(budget).run(query, chunks)
    assert result.tokens <= budget
    by_id = {c.id: c for c in chunks}
    for span in result.spans:  # every kept character maps back to its chunk
        assert by_id[span.chunk_id].text[span.start:span.end] == result.text[span.context_start:span.context_end]
    kept = [c.text for c in result.chunks if c.id == "a"]
    code = [ln for ln in (kept[0].split("\n") if kept else []) if ln in doc.split("\n")[2:-2] and not fence_lines(ln)]
    fences = fence_lines(kept[0]) if kept else []
    if code:  # a kept code line sits between its block's opening and closing fences
        assert len(fences) == 2 and fences[0].startswith("```") and fences[1] == "```", kept[0]
        lines = kept[0].split("\n")
        assert lines.index(fences[0]) < lines.index(code[0]) and lines.index(code[-1]) < len(lines) - 1 - lines[::-1].index("```")
    else:
        assert not fences, kept
    if budget >= 51:
        assert wanted in result.text.split("\n"), result.text


def test_unsplit_views_leave_out_fence_lines_and_merge_puts_them_back():
    chunk = Chunk(id="a", text=CLIENT, title="guide.md")
    (part,) = fence_parts(chunk)
    assert [CLIENT[slice(*f)] for f in part.fences] == ["```py", "```"] and part.heading is None
    split = ParagraphViews([chunk, *OTHERS], split=False)
    assert split.views is not None and [v.id for v in split.views] == ["a", "o0", "o1", "o2"]  # one view per chunk
    assert "```" not in split.views[0].text and split.views[0].title == "guide.md"
    retries = CLIENT.index("c.set_retries(5)")
    out = split.merge(make_stage("select-whole")("q", [split.views[0].keep([(retries, retries + 16)])], StageContext.default()))
    assert out.chunks[0].text == "```py\nc.set_retries(5)\n```" and out.notes == {"fence_views": True}
    assert ParagraphViews(OTHERS, split=False).views is None  # no code block: nothing changes


def test_unsplit_view_overhead_counts_its_fence_lines():
    chunk = Chunk(id="a", text=CLIENT, title="guide.md")
    ctx = StageContext.default()
    base = StageContext(tokenizer=ctx.tokenizer, render_overhead=lambda cs, grouped=False: len(cs))
    split = ParagraphViews([chunk], split=False)
    fences = ctx.count("```py") + 1 + ctx.count("```") + 1  # each printed on a line of its own
    assert split.context(base).overhead(split.views) == 1 + fences


def test_order_chunks_after_default_may_print_a_title_twice_and_the_budget_counts_it():
    """README: ``default`` lays a title's kept chunks out together; "add an ``order-chunks`` step for another
    order". That step sorts by relevance alone (documented), and the packer counts each title where it prints."""
    chunks = [Chunk(id="a1", text="Quota caps the tokens of a tenant per day.", title="quotas.md"),
              Chunk(id="b1", text="A tenant quota is set in the gateway config file.", title="deploy.md"),
              Chunk(id="a2", text="The gateway runs behind a load balancer.", title="quotas.md")]
    grouped = Pipeline.preset("default", budget=1.0).run("What does a tenant quota cap?", chunks)
    config = preset_config("default")
    config["steps"].append({"stage": "order-chunks"})
    ordered = Pipeline.from_config(config, budget=grouped.budget).run("What does a tenant quota cap?", chunks)
    assert [c.id for c in grouped.chunks] == ["a1", "a2", "b1"] and grouped.text.count("quotas.md") == 1
    assert [c.id for c in ordered.chunks] == ["a1", "b1", "a2"] and ordered.text.count("quotas.md") == 2
    assert ordered.tokens <= ordered.budget

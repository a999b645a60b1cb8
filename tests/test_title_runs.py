"""A title prints once per run of blocks that share it; the budget counts it where it prints.

Nodes of several files (LlamaIndex titles each node with its file name) reach the optimizer
interleaved by the retriever. The selector lays a title's kept chunks out together and pays
for the title once; the packer counts each title against its kept neighbours in render order.
"""

from __future__ import annotations

import numpy as np

from optimizer import Chunk, Pipeline
from optimizer.packer import pack
from optimizer.render import Renderer
from optimizer.stage import StageContext
from optimizer.stages.sentence_select import SentenceSelector
from optimizer.stages.sentence_signals import split_chunks

A, B = "docs/reference/tenant-budgets-and-quotas.md", "docs/guides/deploying-the-gateway-service.md"


def _node(i: int, title: str, score: float | None = None) -> Chunk:
    return Chunk(id=f"n{i}", text=f"Setting number {i} caps the tokens of tenant {i}.", title=title, score=score)


def test_overhead_counts_a_title_where_the_renderer_prints_it():
    ctx, renderer = StageContext.default(), Renderer()
    a0, a1, b0 = _node(0, A), _node(1, A), _node(2, B)
    together, apart = renderer.overhead([a0, a1, b0], ctx.tokenizer), renderer.overhead([a0, b0, a1], ctx.tokenizer)
    assert apart - together == ctx.count(f"[3] {A}\n") - ctx.count("[3] ")  # A printed a second time
    for order in ([a0, a1, b0], [a0, b0, a1]):
        rendered = renderer.render(order).text
        assert rendered.count(A) == (1 if order[1] is a1 else 2)


def test_the_packer_fills_the_budget_when_titles_repeat_in_runs():
    """List order groups each file's nodes; priority interleaves them. All fit: no cut, no drop."""
    ctx, renderer = StageContext.default(), Renderer()
    chunks = [_node(0, A, 0.5), _node(1, A, 0.9), _node(2, B, 0.8), _node(3, B, 0.2)]  # a1 first, then a0 before it
    whole = renderer.render(chunks)
    assert whole.text.count(A) == whole.text.count(B) == 1
    budget = ctx.count(whole.text) + 5  # slack: parts counted alone can sum above the whole (BPE)
    assert ctx.count(f"{A}\n") > 5 and ctx.count(f"{B}\n") > 5  # an upper bound counting either title twice would cut
    packed = pack(chunks, budget, renderer, ctx)
    assert [c.text for c in packed.chunks] == [c.text for c in chunks] and not packed.dropped and packed.cuts == 0
    assert packed.tokens == budget - 5


def test_the_packer_counts_a_title_split_by_another_twice():
    ctx, renderer = StageContext.default(), Renderer()
    chunks = [_node(0, A, 0.9), _node(1, B, 0.1), _node(2, A, 0.8)]  # rendered A, B, A: A prints twice
    exact = ctx.count(renderer.render(chunks).text)
    packed = pack(chunks, exact + 2, renderer, ctx)
    assert packed.cuts == 0 and len(packed.chunks) == 3 and packed.tokens <= exact + 2
    short = pack(chunks, exact - 4, renderer, ctx)  # less than A's second print: the least relevant node must go or shrink
    assert short.tokens <= exact - 4 and (short.cuts or short.dropped)


def _selector_context(budget: int) -> StageContext:
    renderer = Renderer()
    ctx = StageContext.default(budget=budget)
    return StageContext(tokenizer=ctx.tokenizer, budget=budget, render_overhead=lambda cs, grouped=False: renderer.overhead(cs, ctx.tokenizer, grouped=grouped))


def test_the_selector_lays_out_each_title_together_and_pays_for_it_once():
    chunks = [_node(0, A), _node(1, B), _node(2, A), _node(3, B)]  # interleaved, as a retriever ranks nodes
    renderer = Renderer()
    ctx = _selector_context(10_000)
    sents = split_chunks(chunks, ctx)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    grouped = renderer.render([chunks[i] for i in (0, 2, 1, 3)]).text
    need = sum(s.tokens for s in sents) + renderer.overhead([chunks[i] for i in (0, 2, 1, 3)], ctx.tokenizer)
    assert need < sum(s.tokens for s in sents) + renderer.overhead(chunks, ctx.tokenizer) - 10  # interleaved: 2 more titles
    selector = SentenceSelector(redundancy=0.0)
    out = selector("tokens of a tenant?", chunks, sents, scores, _selector_context(need))
    assert [c.id for c in out.chunks] == ["n0", "n2", "n1", "n3"]  # best first, its file's other node right after it
    assert renderer.render(out.chunks).text == grouped  # every node whole, each title once
    one_less = selector("tokens of a tenant?", chunks, sents, scores, _selector_context(need - 1))
    assert [c.id for c in one_less.chunks] == ["n0", "n2", "n1"]


NODES = [
    (A, "Tenant budgets cap the monthly spend in dollars."),
    (B, "The gateway listens on port 8080 by default."),
    (A, "Requests over the hard cap get status 429 and no answer."),
    (B, "Set RAGTRIM_DB_URL to a PostgreSQL address before the first start."),
    (A, "A quota resets on the first day of each month."),
    (B, "Health checks hit the /healthz route every ten seconds."),
]


def test_default_prints_each_file_name_once_for_nodes_of_two_files():
    chunks = [Chunk(id=f"n{i}", text=t, title=title, score=1.0 - i / 10) for i, (title, t) in enumerate(NODES)]
    result = Pipeline.preset("default", budget=110).run("What happens to requests over the hard cap, and which port does the gateway use?", chunks)
    text = result.text
    assert result.tokens <= 110 and "status 429" in text and "port 8080" in text
    assert text.count(A) == 1 and text.count(B) == 1 and len(result.chunks) >= 4  # the titles saved buy more nodes
    titles = [c.title for c in result.chunks]
    assert titles == sorted(titles, key=titles.index)  # each file's nodes together


def test_long_nodes_read_by_paragraph_still_print_each_file_name_once():
    """With paragraph views the selector sees views titled by their headings; the blocks still group by file."""
    x = Chunk(id="x", title=A, score=0.9, text="## Caps\nRequests over the hard cap get status 429 and no answer.\n\n"
              "## Resets\nA quota resets on the first day of each month.")
    y = Chunk(id="y", title=B, score=0.8, text="## Port\nThe gateway listens on port 8080 by default.\n\n"
              "## Database\nSet RAGTRIM_DB_URL to a PostgreSQL address before the first start.")
    z = Chunk(id="z", title=A, score=0.7, text="## Spend\nTenant budgets cap the monthly spend in dollars.\n\n"
              "## Alerts\nSoft caps only send a warning e-mail to the tenant.")
    query = "What happens over the hard cap, how are tenant budgets capped, and which port does the gateway use?"
    result = Pipeline.preset("default", budget=120).run(query, [x, y, z])
    assert result.tokens <= 120 and all(p in result.text for p in ("status 429", "port 8080", "monthly spend"))
    assert [c.id for c in result.chunks] in (["x", "z", "y"], ["y", "x", "z"], ["y", "z", "x"], ["z", "x", "y"])
    assert result.text.count(A) == 1 and result.text.count(B) == 1

"""Four findings of the ninth (provenance) hunt.

1. A near-duplicate cut to the lines it adds kept a line of a fenced code block without that
   block's other fence: ``"```\\nprint('Paris')"`` kept, ``"x = 1\\n```"`` dropped as a repeat, and
   the rest of the context then read as code. A kept line of a code block now brings the block's
   fence lines along (as a kept line does in the sentence stage and the packer).
2. An input chunk that was already empty was reported ``removed by <step>`` by every step, besides
   (or instead of) the packer's blank reason: now the packer's reason is its one record.
3. A packer token cut that kept white space only was counted as a cut, the chunk vanished and the
   budget went unused: the token cut now starts after leading white space, and an empty cut is a drop.
4. A caller's pre-cut chunk whose ``text`` is not its ``pieces`` of ``source`` rendered the pieces,
   not the text, silently: it is now refused, naming the chunk and the fix.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer import Chunk, Pipeline
from optimizer.packer import BLANK_REASON, cut_to_tokens
from optimizer.stage import StageContext
from optimizer.stages.dedupe import MergeOverlaps, NearDedupe, SemanticDedupe

# -- 1. fences: balanced in, balanced out ------------------------------------------------------------

_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})", re.M)


def balanced(text: str) -> bool:
    """Whether every fenced code block ``text`` opens is closed (CommonMark: a closing fence is the same mark, as long or longer)."""
    open_ = None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for m in _FENCE.finditer(text):
        mark = m.group(1)
        if open_ is None:
            open_ = mark
        elif mark[0] == open_[0] and len(mark) >= len(open_) and not text[m.end():].split("\n", 1)[0].strip():
            open_ = None
    return open_ is None


DOCS = ["```\nx = 1\n```\nThe Eiffel tower was built in 1889. Paris is the capital of France.",
        "```\nprint('Paris')\nx = 1\n```\nThe Eiffel tower was built in 1889. Paris is the capital of France."]
QUERY = "What is the capital? print Paris"


def test_a_near_duplicate_cut_to_a_line_of_code_keeps_both_fences():
    a, b = (Chunk(id=i, text=t) for i, t in zip("ab", DOCS))
    out = NearDedupe()("q", [a, b], StageContext.default())
    assert [c.id for c in out] == ["a", "b"]
    assert out[1].text == "```\nprint('Paris')\n```", out[1].text  # the line it adds, inside its block
    assert out.reasons["b"].endswith("kept the 1 sentence it adds")  # the fences are the block's frame, not sentences


def test_a_semantic_duplicate_cut_to_a_line_of_code_keeps_both_fences(static_as_hashing):
    static_as_hashing(512)
    a, b = (Chunk(id=i, text=t) for i, t in zip("ab", DOCS))
    out = SemanticDedupe(threshold=0.5)("q", [a, b], StageContext.default())
    assert [c.text for c in out][1:] == ["```\nprint('Paris')\n```"]


@pytest.mark.parametrize("preset", ["default", "quality", "fitted", "fitted-quality"])
def test_the_presets_keep_fences_balanced_at_every_budget(preset):
    pipeline = Pipeline.preset(preset)
    for budget in [*range(5, 40), None, 0.5]:
        result = pipeline.run(QUERY, DOCS, budget=budget)
        assert balanced(result.text), (budget, result.text)
        assert result.text.count("```") % 2 == 0, (budget, result.text)


def test_a_window_overlap_trimmed_off_keeps_the_fences_of_the_code_left():
    """Two windows that read the shared text with opposite fence parity (each balanced on its own):
    the trimmed one keeps the fences of the code block it is left with."""
    shared = "```\nshared line one of the code\n```\n```\nshared line two\n"
    hi = Chunk(id="hi", text="```\nfirst\n" + shared, score=0.9)
    lo = Chunk(id="lo", text=shared + "```\nThen some prose follows.", score=0.1)
    assert balanced(hi.text) and balanced(lo.text)
    out = MergeOverlaps(min_overlap=20)("q", [hi, lo], StageContext.default())
    kept = {c.id: c.text for c in out}
    assert "Then some prose follows." in kept["lo"] and kept["lo"] != lo.text  # trimmed
    assert balanced(kept["lo"]), kept["lo"]


_CODE = ["x = 1", "print('Paris')", "# comment", "Paris is the capital.", "    indented", "y = x + 1", "return x"]
_PROSE = ["Paris is the capital of France.", "The Eiffel tower was built in 1889.", "Lyon is a city in France.",
          "It is known for food.", "Is Paris the capital of France?", "The capital of France is Paris!"]


@st.composite
def fenced_doc(draw: st.DrawFn) -> list[str]:
    """A document as parts: prose paragraphs and fenced code blocks (of either mark, with an info string or not)."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            fence = draw(st.sampled_from(["```", "~~~", "````"]))
            body = draw(st.lists(st.sampled_from(_CODE), min_size=1, max_size=5))
            parts.append([fence + draw(st.sampled_from(["", "python"])), *body, fence])
        else:
            parts.append([" ".join(draw(st.lists(st.sampled_from(_PROSE), min_size=1, max_size=3)))])
    return parts


@st.composite
def near_copies(draw: st.DrawFn) -> list[dict[str, str]]:
    """A document, copies of it with a line added, dropped or changed (near-duplicates), and other documents."""
    base = draw(fenced_doc())
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    docs = [base]
    for _ in range(draw(st.integers(1, 3))):
        copy = [list(p) for p in base]
        part = copy[draw(st.integers(0, len(copy) - 1))]
        where = draw(st.integers(1, len(part) - 2)) if len(part) > 2 else 0  # a line of code, never a fence
        edit = draw(st.sampled_from(["add", "drop", "change"]))
        if edit == "add":
            part.insert(where if len(part) > 2 else 1, draw(st.sampled_from(_CODE + _PROSE)))
        elif edit == "drop" and len(part) > 3:
            del part[where]
        else:
            part[where] = part[where] + " " + draw(st.sampled_from(["1889", "Lyon", "z = 2"]))
        docs.append(copy)
    docs += draw(st.lists(fenced_doc(), max_size=2))
    texts = [nl.join(nl.join(p) for p in doc) for doc in draw(st.permutations(docs))]
    return [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)]


# every preset but ``truncate`` (naive truncation cuts where the budget falls, by design) and ``thorough``
# (the packaged Gemma; its LM rerank only reorders, the cutting stages are those of ``quality``)
PRESETS = ["full", "bm25-topk", "bm25-pack", "dense-topk", "sentence-dense", "default", "quality", "fitted", "fitted-quality"]
_PIPES: dict[str, Pipeline] = {}


@pytest.mark.parametrize("preset", PRESETS)
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(chunks=near_copies(), budget=st.one_of(st.integers(5, 200), st.sampled_from([0.25, 0.5, None])))
def test_balanced_fences_in_balanced_fences_out(preset, chunks, budget):
    pipeline = _PIPES.get(preset) or _PIPES.setdefault(preset, Pipeline.preset(preset))
    assert all(balanced(c["text"]) for c in chunks)
    result = pipeline.run(QUERY, chunks, budget=budget)
    for c in result.chunks:
        assert balanced(c.text), (preset, budget, c.text)
    assert balanced(result.text), (preset, budget, result.text)


# -- 2. one record for a chunk that came in empty ----------------------------------------------------


@pytest.mark.parametrize("preset", ["full", "bm25-pack", "default", "quality"])
@pytest.mark.parametrize("blank", ["", " \n\t"])
def test_a_blank_input_chunk_has_the_packers_blank_reason_as_its_only_record(preset, blank):
    result = Pipeline.preset(preset).run("Paris?", [{"id": "a", "text": blank}, {"id": "b", "text": "Paris is big."}], budget=50)
    assert [(d.chunk_id, d.reason, d.start) for d in result.dropped if d.chunk_id == "a"] == [("a", BLANK_REASON, None)]
    assert [c.id for c in result.chunks] == ["b"]


def test_a_chunk_a_stage_empties_is_still_reported_by_that_stage():
    """Only a chunk empty on the way in is left to the packer: one a step removes is that step's record."""
    chunks = [{"id": "a", "text": "Paris is big. Lyon is old."}, {"id": "b", "text": "Paris is big. Lyon is old."}]
    result = Pipeline.preset("default").run("Paris?", chunks, budget=50)
    assert [(d.chunk_id, d.reason, d.start) for d in result.dropped] == [("b", "near-duplicate of a (jaccard 1.00)", None)]


# -- 3. a token cut of white space only ----------------------------------------------------------------


@pytest.mark.parametrize("preset", ["full", "bm25-pack"])
def test_a_token_cut_starts_after_leading_white_space(preset):
    result = Pipeline.preset(preset).run("", [{"id": "c", "text": "    code\n    code"}], budget=5)
    assert result.text == "[1] code" and result.tokens <= 5
    assert [c.id for c in result.chunks] == ["c"] and result.trace[-1].notes["cuts"] == 1
    assert [(d.reason, d.start, d.end) for d in result.dropped] == [("budget: cut at a token boundary", 13, 17)]


def test_a_cut_that_keeps_nothing_is_a_drop_not_a_cut():
    context = StageContext.default()
    cut, how = cut_to_tokens(Chunk(id="c", text="     \n" + "x" * 400), 1, context)
    assert cut.text and how == "token"  # a token of text, not one of white space
    flag = Chunk(id="f", text="     \U0001F1EB\U0001F1F7 flag")  # white space, then a cluster of several tokens
    assert cut_to_tokens(flag, 2, context) == (flag.keep([]), "none")
    result = Pipeline.preset("bm25-pack").run("", [flag], budget=4)
    assert result.chunks == () and result.trace[-1].notes["cuts"] == 0
    assert [(d.chunk_id, d.start) for d in result.dropped] == [("f", None)]  # dropped whole, said once
    assert result.dropped[0].reason.startswith("budget: no room")


# -- 4. a caller's pre-cut chunk must say what it renders ----------------------------------------------


@pytest.mark.parametrize("chunk", [
    Chunk(id="a", text="hello", source="goodbye cruel world, this is long text"),
    Chunk(id="a", text="Paris is big.", source="Paris is big. Lyon is small.", pieces=((14, 28),)),
    Chunk(id="a", text="x", source="Paris is big. Lyon is small.", pieces=((0, 13),)),
    Chunk(id="a", text="Paris", source="Paris is big.", pieces=((0, 500),)),
])
def test_a_pre_cut_chunk_whose_text_is_not_its_pieces_is_refused(chunk):
    with pytest.raises(ValueError) as err:
        Pipeline.preset("full").run("Paris?", [chunk], budget=8)
    message = str(err.value)
    assert "chunk 'a'" in message and "source" in message and "keep(" in message, message


def test_a_pre_cut_chunk_from_keep_is_accepted_and_rendered_as_kept():
    whole = Chunk(id="a", text="Paris is big. Lyon is small.")
    result = Pipeline.preset("full").run("Paris?", [whole.keep([(14, 28)])], budget=8)
    assert result.text == "[1] Lyon is small." and [(s.start, s.end) for s in result.spans] == [(14, 28)]

"""Sliding windows cut mid-sentence: `default` and `quality` print no text twice.

A splitter with overlap (LlamaIndex ``TokenTextSplitter(128, 32)``) repeats the end of one
window at the start of the next, cut mid-sentence, so the sentence stage's repeat rule (whole
sentences said word for word) does not see it. Both presets now trim window overlaps first
(``dedupe-overlaps``), whose candidate pairs come from a lookup, not from every pair: the
property test checks it against the plain pairwise comparison it replaced.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer import Chunk, Pipeline
from optimizer.presets import preset_config
from optimizer.stage import StageContext
from optimizer.stages.dedupe import MergeOverlaps, _best_first, held, trimmed

SENTENCES = [
    "The Eiffel Tower was completed in March 1889 for the World's Fair.",
    "It was designed by the engineering company of Gustave Eiffel.",
    "The tower is 330 metres tall and was the tallest structure until 1930.",
    "Its iron lattice weighs about 7,300 tonnes according to the operator.",
    "About seven million people visit the tower every single year.",
    "The top floor can be reached by lift or by climbing the stairs.",
    "Paint is applied every seven years to protect it from rust.",
]
QUERY = "How tall is the Eiffel Tower and when was it completed?"
DOC = " ".join(SENTENCES)


def _mid_sentence_windows() -> list[tuple[int, str]]:
    """Two windows (start, text) overlapping from mid-sentence 3 to mid-sentence 4."""
    cut, end = DOC.index("was the tallest"), DOC.index("according")
    return [(0, DOC[:end]), (cut, DOC[cut:])]


def _printed_positions(result, starts: dict[str, int]) -> Counter[int]:  # type: ignore[no-untyped-def]
    """How often each document character is printed, mapping spans back through each window's start."""
    printed: Counter[int] = Counter()
    for span in result.spans:
        base = starts[span.chunk_id]
        printed.update(range(base + span.start, base + span.end))
    return printed


def test_default_prints_no_document_character_twice_when_windows_overlap_mid_sentence():
    windows = _mid_sentence_windows()
    chunks = [Chunk(id=f"w{k}", text=text) for k, (_, text) in enumerate(windows)]
    starts = {f"w{k}": start for k, (start, _) in enumerate(windows)}
    for budget in (1.0, 0.6):
        result = Pipeline.preset("default", budget=budget).run(QUERY, chunks)
        printed = _printed_positions(result, starts)
        assert printed, budget
        assert max(printed.values()) == 1, (budget, result.text)
        assert "330 metres" in result.text
        for span in result.spans:  # provenance exact: every span is the window's own text
            source = chunks[int(span.chunk_id[1:])]
            assert source.text[span.start : span.end] == result.text[span.context_start : span.context_end]


def test_default_and_quality_trim_window_overlaps_first():
    for name in ("default", "quality"):
        assert preset_config(name)["steps"][0] == {"stage": "dedupe-overlaps"}, name


def _pairwise(stage: MergeOverlaps, chunks: Sequence[Chunk], *, copies: bool = True) -> tuple[list[tuple], dict[str, str]]:
    """The stage's result by comparing every pair, as ``MergeOverlaps`` did before its lookup (``copies``:
    with its rule for exact copies, which changes the reasons; without it, every better chunk is compared)."""
    order = _best_first(chunks, StageContext.default())  # the reading the stage gets from the same context
    current = dict(enumerate(chunks))
    reasons: dict[str, str] = {}

    def copy_of(rank: int) -> int | None:  # the best-ranked chunk this one's whole text copies, of its title group
        c = chunks[order[rank]]
        same = [i for i in order[:rank] if chunks[i].original_text == c.original_text and chunks[i].kept_pieces == c.kept_pieces
                and (not stage.same_title_only or chunks[i].title == c.title) and stage.doc_key not in chunks[i].metadata]
        if stage.doc_key in c.metadata:
            return None
        return same[0] if same and len(c.original_text) >= stage.min_overlap and copies else None

    copies = {order[r]: copy_of(r) for r in range(len(order)) if copy_of(r) is not None}
    for rank, lo_i in enumerate(order):
        lo = chunks[lo_i]
        if not lo.text.strip():
            continue
        if lo_i in copies:  # a copy is trimmed whole by the best-ranked copy alone
            copy = chunks[copies[lo_i]]
            current[lo_i], reasons[lo.id] = trimmed(lo, held((0, len(lo.original_text), 0), copy), [copy.id])
            continue
        removed, by = [], []
        for hi_i in order[:rank]:
            hi = chunks[hi_i]
            span = stage._meta_overlap(hi, lo)
            if span is None and (not stage.same_title_only or hi.title == lo.title) and hi_i not in copies:
                span = stage._text_overlap(hi, lo)
            ranges = held(span, hi) if span is not None else []
            if ranges:
                removed.extend(ranges)
                by.append(hi.id)
        if not removed:
            continue
        current[lo_i], reasons[lo.id] = trimmed(lo, removed, by)  # the trim itself is shared: the candidates are what differ
    out = [current[i] for i in range(len(chunks)) if current[i].text or not chunks[i].text.strip()]
    return [(c.id, c.text, c.kept_pieces) for c in out], reasons


@st.composite
def _window_sets(draw):  # type: ignore[no-untyped-def]
    """Random windows over a document of few distinct words (so prefixes recur), some retitled,
    some with right, wrong or odd offsets, some already cut, some empty."""
    words = draw(st.lists(st.sampled_from(["ab", "a", "b", "ba", "abc", "c", "x"]), min_size=1, max_size=120))
    doc = draw(st.sampled_from([" ", "", "  "])).join(words)
    chunks = []
    for k in range(draw(st.integers(0, 14))):
        start = draw(st.integers(0, len(doc)))
        text = doc[start : start + draw(st.integers(0, 120))]
        meta = draw(st.sampled_from(["none", "right", "right", "wrong", "other-doc", "odd", "unhashable"]))
        metadata = {
            "none": {},
            "right": {"doc_id": "d", "start": start},
            "wrong": {"doc_id": "d", "start": start + draw(st.integers(-5, 5))},
            "other-doc": {"doc_id": "e", "start": start},
            "odd": {"doc_id": "d", "start": draw(st.sampled_from(["x", None, "3", 2.5]))},
            "unhashable": {"doc_id": ["d"], "start": start},
        }[meta]
        score = draw(st.one_of(st.none(), st.sampled_from([0.1, 0.5, 0.5, 0.9])))
        chunk = Chunk(id=f"c{k}", text=text, score=score, title=draw(st.sampled_from([None, None, "T", "U"])),
                      metadata=metadata)
        if text and draw(st.booleans()):
            a = draw(st.integers(0, len(text)))
            chunk = chunk.keep([(a, draw(st.integers(a, len(text))))])
        chunks.append(chunk)
    return chunks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_window_sets(), st.integers(1, 30), st.booleans())
def test_lookup_finds_exactly_what_comparing_every_pair_finds(chunks, min_overlap, same_title_only):
    stage = MergeOverlaps(min_overlap=min_overlap, same_title_only=same_title_only)
    out = stage("q", chunks, StageContext.default())
    expected, reasons = _pairwise(stage, chunks)
    assert [(c.id, c.text, c.kept_pieces) for c in out] == expected
    assert dict(out.reasons) == reasons
    assert expected == _pairwise(stage, chunks, copies=False)[0]  # the copy rule keeps what comparing every pair keeps


def test_a_thousand_untitled_windows_are_trimmed_with_exact_provenance():
    rng = random.Random(0)  # varied words: templated text would repeat 40-character runs between windows
    vocab = [f"{rng.choice('bcdfgklmnprst')}{rng.choice('aeiou')}{rng.choice('lmnrst')}{i}" for i in range(500)]
    doc = " ".join(rng.choice(vocab) for _ in range(60_000))
    size, step = 400, 300
    chunks = [Chunk(id=f"w{k}", text=doc[s : s + size], score=float(k % 7)) for k, s in enumerate(range(0, step * 1_000, step))]
    assert len(chunks) == 1_000
    out = MergeOverlaps()("q", chunks, StageContext.default())
    by_id = {c.id: c for c in out}
    for source in chunks:
        kept = by_id[source.id]
        assert kept.original_text == source.text  # provenance exact: the kept pieces index the source
        for s, e in kept.kept_pieces:
            assert kept.text.find(source.text[s:e].strip()) >= 0
    printed: Counter[int] = Counter()
    for c in out:
        for s, e in c.kept_pieces:
            printed.update(range(int(c.id[1:]) * step + s, int(c.id[1:]) * step + e))
    assert max(printed.values()) == 1  # no document character is kept twice
    covered = doc[: step * 999 + size]
    assert {p for p, ch in enumerate(covered) if not ch.isspace()} <= printed.keys()  # and none is lost


def test_a_shared_boilerplate_opening_does_not_pair_every_chunk():
    """Scraped pages often open every chunk with the same breadcrumb: its first ``min_overlap`` characters
    occur in every chunk, but no chunk ends with another's start, so they are not candidates (the lookup
    paired all of them before: 1.8 s of the run at 1,000 chunks) and the output is the pairwise one."""
    chunks = [Chunk(id=f"c{i}", text="Home > Products > Widgets > Catalogue page. "
                    f"Item {i} is a widget of size {i * 7 % 13} with colour {i % 5}.") for i in range(300)]
    stage = MergeOverlaps()
    assert len(set(stage._text_pairs(chunks))) == 0
    out = stage("which widget?", chunks, StageContext.default())
    assert ([(c.id, c.text, c.kept_pieces) for c in out], dict(out.reasons)) == _pairwise(stage, chunks)


def test_copies_of_one_passage_are_trimmed_by_the_best_copy_in_linear_steps(monkeypatch):
    """A retriever can return one passage many times: each copy is contained in the best-ranked one,
    the trace names that one (it named every better copy: a reason O(n) long per copy), and the
    texts compared grow with the number of chunks, not its square (2,000 copies took 7.3 s)."""
    text = "The quick brown fox jumps over the lazy dog near the river bank, then runs into the forest."
    n = 400
    chunks = [Chunk(id=f"c{i}", text=text, score=1.0 - i / (10 * n)) for i in range(n)]
    chunks.append(Chunk(id="other", text="A different passage, about the bank's opening hours on Sundays.", score=0.01))
    stage = MergeOverlaps()
    compared = []
    real = MergeOverlaps._text_overlap
    monkeypatch.setattr(MergeOverlaps, "_text_overlap", lambda self, hi, lo: compared.append(1) or real(self, hi, lo))
    out = stage("where does the fox run?", chunks, StageContext.default())
    assert [c.id for c in out] == ["c0", "other"]
    assert {out.reasons[f"c{i}"] for i in range(1, n)} == {"contained in c0"}
    assert len(compared) <= n
    monkeypatch.undo()
    assert ([(c.id, c.text, c.kept_pieces) for c in out], dict(out.reasons)) == _pairwise(stage, chunks)


def test_a_window_an_earlier_step_cut_trims_only_what_it_still_says():
    """A chunk cut before this stage (a second ragtrim pass over its own output, a custom step first)
    keeps only part of its window; the other window's overlap beyond that part is printed nowhere
    else, so it stays (it was trimmed, and 'Charlie seven eight nine. Delta ...' was lost)."""
    doc = ("Alpha one two three. Bravo four five six. Charlie seven eight nine. Delta ten eleven twelve. "
           "Echo thirteen fourteen. Foxtrot fifteen sixteen.")
    a = Chunk(id="A", text=doc[:90], score=0.9).keep([(0, 41)])  # "Alpha ... Bravo four five six."
    b = Chunk(id="B", text=doc[21:], score=0.5)  # "Bravo four five six. Charlie ..."
    out = MergeOverlaps(min_overlap=15)("q", [a, b], StageContext.default())
    assert [c.text for c in out] == [doc[:41], doc[42:]]  # only what A still says is trimmed from B
    assert out.reasons["B"] == "overlaps A: repeated text trimmed"
    copy = Chunk(id="C", text=doc[:90], score=0.1)  # a full copy of A's window: keeps what A no longer says
    out = MergeOverlaps(min_overlap=20)("q", [a, copy], StageContext.default())
    assert out[1].text == doc[41:90].strip() and out.reasons["C"] == "overlaps A: repeated text trimmed"


def test_copies_an_earlier_step_cut_differently_are_compared_like_any_other_chunks():
    """Three copies of one passage, the best cut to nothing by an earlier step: the two left are
    printed once (they were both printed, each 'trimmed' by the empty one)."""
    text = "The quick brown fox jumps over the lazy dog near the river bank, then runs into the forest."
    a = Chunk(id="A", text=text, score=0.9).keep([])
    b, c = Chunk(id="B", text=text, score=0.5), Chunk(id="C", text=text, score=0.1)
    out = MergeOverlaps()("q", [a, b, c], StageContext.default())
    assert [x.id for x in out if x.text] == ["B"] and out.reasons["C"] == "contained in B"


def test_a_cut_chunk_that_says_the_passage_twice_contains_it_where_it_still_keeps_it():
    sentence = "The committee approved the bridge budget on Tuesday after a long debate."
    minutes = "Minutes, item 1: " + sentence + " Item 2 was deferred. Minutes, item 3: " + sentence
    hi = Chunk(id="H", text=minutes, score=0.9).keep([(minutes.rfind("Minutes, item 3"), len(minutes))])  # item 3 only
    out = MergeOverlaps(min_overlap=20)("q", [hi, Chunk(id="L", text=sentence, score=0.1)], StageContext.default())
    assert [c.id for c in out] == ["H"] and out.reasons["L"] == "contained in H"

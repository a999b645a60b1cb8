"""Two performance cliffs of the optimizer core (eighth hunt), fixed without changing any output.

- ``default``/``quality`` on one chunk of many blank-line paragraphs (a CHANGELOG, an FAQ): the
  paragraph views' overhead scanned every paragraph of the chunk for every view taken, for every
  sentence tried, so the work grew with the cube of the paragraphs; and the selector checked the
  run's deadline only every 16 rounds.
- The packer's cut scanned every code block of a chunk for every sentence end (quadratic on a long
  API reference), and nothing inside the packer checked the run's deadline.

The tests count the scans (never the wall clock) and drive the deadline with a fake clock.
"""

from __future__ import annotations

import numpy as np
import pytest

import optimizer.packer as packer
import optimizer.pipeline as pipeline
from optimizer import Chunk, OptimizerTimeout, Pipeline
from optimizer.deadline import Deadline
from optimizer.packer import cut_to_tokens
from optimizer.stage import StageContext
from optimizer.stages.paragraphs import Paragraph, ParagraphViews
from optimizer.stages.sentence_select import SentenceSelector
from optimizer.stages.sentence_signals import split_chunks


def changelog(n: int) -> str:
    """A CHANGELOG.md as one chunk: ``n`` entries, each a heading and a one-sentence paragraph."""
    return "".join(f"## Version 1.{i}.0\n\nFixed a crash in the parser when reading file number {i}.\n\n" for i in range(n))


def apidoc(n: int) -> str:
    """An API reference as one chunk: ``n`` sections, each a heading, a sentence and a fenced code block."""
    return "".join(f"## The function_{i} call\n\nCall `function_{i}` to load record {i} from the store.\n\n"
                   f"```python\nresult = client.function_{i}(key={i})\nprint(result)\n```\n\n" for i in range(n))


# -- 1. paragraph views: frames found once per view, by bisection ----------------------------------


def frame_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter of :attr:`Paragraph.frame` reads: one per paragraph a frame lookup looks at."""
    reads = [0]
    real = Paragraph.__dict__["frame"].func

    def counted(self: Paragraph) -> tuple[tuple[int, int], ...]:
        reads[0] += 1
        return real(self)

    monkeypatch.setattr(Paragraph, "frame", property(counted))
    return reads


def test_a_changelog_chunk_costs_frame_lookups_linear_in_its_paragraphs(monkeypatch):
    reads = frame_reads(monkeypatch)
    pl = Pipeline.preset("default")
    counts = {}
    for n in (40, 80):
        reads[0] = 0
        result = pl.run("Which version fixed the parser crash for file 17?",
                        [{"id": "C", "title": "CHANGELOG.md", "text": changelog(n)}], budget=10 * n)
        assert "Version 1.17.0" in result.text
        counts[n] = reads[0]
    # before: every view taken re-read every paragraph's frame for every sentence tried (80 entries: ~200,000 reads)
    assert counts[80] <= 2.5 * counts[40], counts
    assert counts[80] <= 10 * 2 * 80, counts


def test_frames_of_by_bisection_finds_what_a_scan_of_every_paragraph_finds():
    text = ("# Guide\n\nStep one. Step two.\n\nNotes\nKeep it dry.\n\n```sh\nls\npwd\n```\n\n"
            "Plain words here.\n\n  ```py\n  x = 1\n  ```\n\nTail\nThe end.")
    pv = ParagraphViews([Chunk(id="g", text=text)])
    parts = pv.parts["g"]

    def scanned(pieces):  # the former lookup: every paragraph, every piece (from past its indentation: with_first_indent)
        starts = [s + len(text[s:e]) - len(text[s:e].lstrip(" \t")) for s, e in pieces]
        return list(dict.fromkeys(span for p in parts if p.frame and any(p.body[0] <= s < p.body[1] for s in starts) for span in p.frame))  # a shared heading once

    probes = [(s, min(s + 3, len(text))) for s in range(len(text))]
    for k in range(len(probes)):
        pieces = [probes[k], probes[(7 * k) % len(probes)], probes[(13 * k + 5) % len(probes)]]
        assert pv._frames_of("g", sorted(pieces)) == scanned(sorted(pieces)), pieces
    assert pv._frames_of("g", []) == [] and pv._frames_of("other", [(0, 3)]) == []


def test_the_selector_checks_the_deadline_every_round():
    chunks = [Chunk(id=f"c{i}", text=f"Town {i} is in France. It has a market on day {i}.") for i in range(10)]
    ctx = StageContext.default(budget=10_000)
    sents = split_chunks(chunks, ctx)
    checks: list[str] = []
    taken = list(SentenceSelector(redundancy=0.3).greedy(sents, np.ones(len(sents)), None, None, 0.3, check=checks.append))
    assert len(taken) == len(sents) == 20
    assert checks == [f"choosing sentences ({k} taken of 20)" for k in range(20)]  # before: rounds 0 and 16 only


# -- 2. the packer: code blocks found by bisection, the deadline checked inside ------------------


def test_cut_to_tokens_looks_at_each_code_block_a_bounded_number_of_times(monkeypatch):
    looks = [0]

    class Counted(tuple):
        def __iter__(self):  # unpacking a block's (start, end) to compare against it
            looks[0] += 1
            return super().__iter__()

    real = packer.strip_range
    monkeypatch.setattr(packer, "strip_range", lambda text, s, e: Counted(real(text, s, e)))
    ctx = StageContext.default()
    for n in (100, 200):
        looks[0] = 0
        cut, how = cut_to_tokens(Chunk(id="api", text=apidoc(n)), 1000, ctx)
        assert how == "sentence" and cut.text.endswith("```") and cut.text.count("```") % 2 == 0
        assert looks[0] <= 2 * n, (n, looks[0])  # before: every block for every sentence end (n=200: ~120,000)


class FakeClock:
    """A monotonic clock that stands still until :meth:`expire` moves it past any limit."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def expire(self) -> None:
        self.now = 1e9


@pytest.mark.parametrize("where", ["pack", "cut_to_tokens", "_shrink_to_fit", "_refill"])
def test_a_deadline_that_passes_inside_the_packer_stops_the_run(monkeypatch, where):
    clock = FakeClock()
    module = pipeline if where == "pack" else packer
    real = getattr(module, where)

    def expiring(*args, **kwargs):
        clock.expire()  # the time runs out on the way into this step of the packer
        return real(*args, **kwargs)

    monkeypatch.setattr(module, where, expiring)
    pl = Pipeline.preset("bm25-pack")
    doc = [{"id": "api", "title": "API.md", "text": apidoc(200)}]
    with pytest.raises(OptimizerTimeout) as raised:  # before: the packer ran to the end and the run returned
        pl.run("How do I load record 17?", doc, budget=1000, timeout=Deadline(1.0, clock=clock))
    assert raised.value.where.startswith("packing") and raised.value.seconds == 1.0


def test_the_packer_without_a_deadline_passing_returns_what_it_returns_without_one():
    pl = Pipeline.preset("bm25-pack")
    doc = [{"id": "api", "title": "API.md", "text": apidoc(200)}]
    plain = pl.run("How do I load record 17?", doc, budget=1000)
    timed = pl.run("How do I load record 17?", doc, budget=1000, timeout=600)
    assert (timed.text, timed.tokens) == (plain.text, plain.tokens) and 0 < plain.tokens <= 1000

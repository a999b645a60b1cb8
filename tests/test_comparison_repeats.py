"""A comparison of template sibling pages keeps what tells them apart before what they share.

In a query naming two sibling pages (``X300 vs X310 battery``), a sentence both pages say word for word is no
repeat: each page says it of its own subject. But its second copy tells the reader nothing the first did not,
and taken at its rank it crowded out the one sentence that differs (the battery) at ``budget=0.15``. It now
waits until its page's own sentences have been offered. FAQ pages built from one template ask the same question
of another product (``Does the X300 include a battery?`` / ``Does the X310 ...``), each answered ``Yes, ...``:
a unit was known by its answer alone, so two of the three pages were dropped as repeats at ``budget=1.0``.
"""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.sentence_select import SentenceSelector, subject_keys
from optimizer.stages.sentence_signals import split_chunks

SHARED = "It weighs 1.6 kg with the battery."


def spec(model: str, battery: str, torque: str) -> dict:
    return {"id": model, "title": f"{model} drill", "text":
            f"The {model} cordless drill is built for daily use on job sites. {SHARED} "
            f"The {model} ships with a {battery} battery and a fast charger. Maximum torque is {torque}. "
            f"The chuck takes bits from 1.5 to 13 mm. A two-year warranty covers the motor and the gearbox."}


OTHERS = [{"id": "d1", "text": "Our support team answers e-mail within one business day. Phone support is available to Business customers."},
          {"id": "d2", "text": "The mobile app is available for iOS and Android. It syncs with the web app every five minutes."},
          {"id": "d3", "text": "Invoices are sent on the first day of each month. You can download past invoices from the Billing page."}]
DRILLS = [spec("X300", "2.0 Ah", "42 Nm"), spec("X310", "4.0 Ah", "55 Nm"), spec("X3000", "5.0 Ah", "80 Nm")] + OTHERS


@pytest.mark.parametrize("preset", ["default", "quality"])
@pytest.mark.parametrize("budget", [0.15, 0.25])
def test_a_comparison_keeps_a_battery_before_the_shared_line_twice(preset, budget):
    """At 0.15 both pages kept ``It weighs 1.6 kg with the battery.`` and neither kept its battery."""
    out = Pipeline.preset(preset).run("X300 vs X310 battery", DRILLS, budget=budget)
    kept = [b for b in ("2.0 Ah", "4.0 Ah") if b in out.text]
    assert kept, out.text
    assert out.text.count(SHARED) < 2 or len(kept) == 2, out.text


def _select(chunks: list[Chunk], query: str, score: list[float], budget: int) -> str:
    ctx = StageContext.default(budget=budget)
    sents = split_chunks(chunks, ctx)
    out = SentenceSelector(redundancy=0.0)(query, chunks, sents, np.array(score), ctx)
    return "\n".join(c.text for c in out)


def test_the_second_copy_of_a_shared_line_waits_for_its_pages_own_lines():
    """The shared line ranks first on both pages; the second copy comes only after the page's own line."""
    chunks = [Chunk(id="a", title="X300 drill", text=f"{SHARED} The X300 ships with a 2.0 Ah battery."),
              Chunk(id="b", title="X310 drill", text=f"{SHARED} The X310 ships with a 4.0 Ah battery.")]
    sents = split_chunks(chunks, StageContext.default(budget=1000))
    whole = sum(s.tokens for s in sents) + 2  # no renderer: a chunk's sentences and the joiner between them
    three = whole - sents[0].tokens - 1  # every line but one copy of the shared one
    text = _select(chunks, "X300 vs X310 battery", [2.0, 1.0, 2.0, 1.0], three)
    assert "2.0 Ah" in text and "4.0 Ah" in text and text.count(SHARED) == 1, text
    assert _select(chunks, "X300 vs X310 battery", [2.0, 1.0, 2.0, 1.0], whole).count(SHARED) == 2  # room for all: both copies
    assert _select(chunks, "X300 battery", [2.0, 1.0, 2.0, 1.0], whole).count(SHARED) == 1  # no comparison: a repeat


def faq(model: str) -> dict:
    return {"id": model, "title": f"{model} FAQ", "text":
            f"{model} FAQ\nDoes the {model} include a battery?\nYes, one 18 V battery and a charger are included in the box.\n"
            f"Can I use the {model} in the rain?\nNo, keep it dry and store it indoors.\n"
            f"How long is the {model} warranty?\nThe warranty runs for two years from purchase."}


@pytest.mark.parametrize("preset", ["default", "quality"])
def test_faq_pages_asking_of_other_products_are_no_repeats(preset):
    """Only Z9's page was kept: X300's and X310's units had the same answers under another product's question."""
    out = Pipeline.preset(preset).run("Which drills include a battery?", [faq("X300"), faq("X310"), faq("Z9")] + OTHERS[:2], budget=1.0)
    for model in ("X300", "X310", "Z9"):
        assert f"Does the {model} include a battery?" in out.text, out.text


def test_a_question_joined_to_its_answer_repeats_the_same_unit_or_the_answer_alone():
    answer = "Yes, one 18 V battery and a charger are included."
    ctx = StageContext.default()

    def keys(*texts: str) -> list:
        chunks = [Chunk(id=str(k), text=t) for k, t in enumerate(texts)]
        return list(subject_keys("q", chunks, split_chunks(chunks, ctx)))

    assert len(set(keys(f"Does the X300 include a battery?\n{answer}", f"Does the X310 include a battery?\n{answer}"))) == 2
    assert len(set(keys(f"Does the X300 include a battery?\n{answer}", f"Does the X300 include a battery?\n{answer}"))) == 1
    assert len(set(keys(f"Does the X300 include a battery?\n{answer}", answer))) == 1  # the answer given alone

"""A near-copy that changes only a sign, a currency, a comparison or a unit keeps that sentence.

Near-dedupe compares a duplicate's sentences with its original's to keep what it adds, and that
comparison dropped every symbol, so ``-5 °C`` equalled ``5 °C`` and the corrected copy's figure
was lost even at ``budget=1.0`` (the README promises an updated figure keeps the sentences it adds).
"""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.dedupe import NearDedupe, sentence_key

BASE = ("The cold-storage room must be kept at a constant temperature. Staff must log readings twice a day. "
        "The freezer alarm sounds if the room reaches the limit. Doors must stay closed during deliveries. "
        "The room is cleaned every Friday. Only trained staff may enter. Spoiled stock is recorded in the waste log. "
        "Readings are audited monthly by the quality team.")

PAIRS = [
    ("The target temperature is 5 °C.", "The target temperature is -5 °C.", "-5 °C"),
    ("The annual fee is $120 per seat.", "The annual fee is €120 per seat.", "€120"),
    ("Revenue changed by -3.2% compared with last year.", "Revenue changed by +3.2% compared with last year.", "+3.2%"),
    ("The error rate is 2 % of requests.", "The error rate is 2 ‰ of requests.", "2 ‰"),
    ("Dose must stay < 40 mg per day.", "Dose must stay > 40 mg per day.", "> 40"),
    ("Sensor accuracy: 0.5 degrees.", "Sensor accuracy: ±0.5 degrees.", "±0.5"),
]


@pytest.mark.parametrize(("old", "new", "figure"), PAIRS)
def test_a_corrected_copy_keeps_the_sentence_whose_symbol_changed(old, new, figure):
    chunks = [Chunk(id="old", text=f"{BASE} {old}", title="Procedure (2019)", score=0.9),
              Chunk(id="new", text=f"{BASE} {new}", title="Procedure (2024)", score=0.8)]
    out = NearDedupe()("what is the figure?", chunks, StageContext.default())
    assert [c.text for c in out] == [chunks[0].text, new]
    assert out.reasons["new"].endswith("kept the 1 sentence it adds")
    assert figure in Pipeline.preset("default").run("What is the figure?", chunks, budget=1.0).text


def test_typography_alone_is_no_new_sentence():
    """Quotes, brackets, dashes between words and spacing still do not count: a scraped copy with curly quotes adds nothing."""
    assert sentence_key("The fee is “$120”, paid (yearly) — see the terms!") == sentence_key('the fee is "$120" paid yearly - see the terms')
    assert sentence_key("A well-known 3-5 range.") == sentence_key("A well known 3 5 range")
    assert sentence_key("It is -5 °C.") != sentence_key("It is 5 °C.")


def test_a_minus_is_a_minus_however_typed_and_markup_is_no_difference():
    """The review of the first fix: a mirror with ``-7`` of a page with ``−7`` (U+2212), or without a
    Markdown backtick, printed its sentence twice; an en dash used as a minus was no minus."""
    assert sentence_key("It is −5 °C.") == sentence_key("It is -5 °C.") == sentence_key("It is –5 °C.") != sentence_key("It is 5 °C.")
    assert sentence_key("Run `pip install ragtrim` first ✅") == sentence_key("Run pip install ragtrim first")
    assert sentence_key("> Note that the API is stable.") == sentence_key("Note that the API is stable.")
    assert sentence_key("Dose must stay < 40 mg.") != sentence_key("Dose must stay > 40 mg.")
    wiki = Chunk(id="wiki", title="Oslo", score=0.9, text="In January the average low in Oslo is −7 °C. Snow covers the ground "
                 "for about four months. The fjord rarely freezes over. Daylight lasts about six hours at the solstice.")
    mirror = Chunk(id="mirror", title="Oslo", score=0.5, text=wiki.text.replace("−7", "-7"))
    out = NearDedupe()("How cold is Oslo?", [wiki, mirror], StageContext.default())
    assert [c.id for c in out] == ["wiki"]

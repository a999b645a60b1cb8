"""A sentence that ranked above sentences the selection took, but was left out only because it is
longer than the room left, gives that room (what the fill could not spend) to its prefix, cut at a
word within the budget, instead of leaving it unused."""

from __future__ import annotations

import random
import re
import string

import pytest

from optimizer import Pipeline

CLAUSE = ("Subject to the limitations set out in this Agreement, including without limitation the exclusions in Section 9, "
          "the liability caps in Section 10, the notice requirements in Section 14 and any applicable statutory provisions "
          "of the governing jurisdiction, the Supplier shall indemnify, defend and hold harmless the Customer, its affiliates, "
          "officers, directors, employees and agents from and against any and all losses, damages, liabilities, costs and "
          "expenses, including reasonable attorneys' fees, arising out of any third-party claim alleging infringement, provided "
          "that the Customer notifies the Supplier in writing within thirty (30) days of becoming aware of such claim.")
CHUNKS = [{"id": "p", "text": "The liability caps of the Agreement are negotiated per customer. Caps are reviewed every year."},
          {"id": "c", "title": "Agreement §12 Indemnification", "text": CLAUSE},
          {"id": "f", "text": "The museum reopened after a two-year renovation. The new wing holds modern sculpture."}]
QUERY = "Which section of the Agreement sets the liability caps?"


@pytest.mark.parametrize("budget", [100, 120])
def test_the_room_left_goes_to_the_prefix_of_the_best_sentence_that_did_not_fit(budget):
    result = Pipeline.preset("default", budget=budget).run(QUERY, CHUNKS)
    assert "the liability caps in Section 10" in result.text
    assert result.tokens <= budget
    kept = next(c for c in result.chunks if c.id == "c")
    assert CLAUSE.startswith(kept.text) and kept.text[-1] != " " and CLAUSE[len(kept.text)] in " ,"  # a prefix, cut at a word
    reasons = [d.reason for d in result.dropped if d.chunk_id == "c"]
    assert reasons and all("cut to the room left" in r for r in reasons)


def test_no_prefix_when_the_sentence_fits_or_nothing_was_refused():
    whole = Pipeline.preset("default", budget=1000).run(QUERY, CHUNKS)
    assert CLAUSE in whole.text and not whole.dropped


AMOUNTS = ("The liability caps of the Agreement, as amended on 12 March 2024 by the parties' joint resolution, equal 1 250 000 EUR "
           "per claim, 3 000 000 EUR in aggregate per contract year, and are not applicable to gross negligence, wilful misconduct, "
           "breach of confidentiality, data protection obligations or indemnities under Section 12.")
NUMBERS = re.compile(r"\d+(?: \d{3})*(?: (?:EUR|March|2024))*")


@pytest.mark.parametrize("budget", range(66, 100, 2))
def test_a_prefix_never_ends_inside_a_number_or_between_a_number_and_its_unit(budget):
    chunks = [*CHUNKS[:1], {"id": "c", "title": "Agreement §12", "text": AMOUNTS}, CHUNKS[2]]
    result = Pipeline.preset("default", budget=budget).run(QUERY, chunks)
    assert result.tokens <= budget
    kept = next((c.text for c in result.chunks if c.id == "c"), None)
    if kept is None or kept == AMOUNTS:
        return
    assert AMOUNTS.startswith(kept)
    whole = {m.start(): m.group() for m in NUMBERS.finditer(AMOUNTS)}  # "12 March 2024", "1 250 000 EUR", ...
    assert all(whole.get(m.start()) == m.group() for m in NUMBERS.finditer(kept)), kept  # no "equal 1", "on 12", "3 000"


def test_no_prefix_shorter_than_a_fragment_after_backing_up_to_a_word():
    blob = "".join(random.Random(3).choice(string.ascii_letters + string.digits) for _ in range(400))
    long = "Nimbus https://support.example.com/nimbus14/reset?token=" + blob + "&lang=en explains the router reset."
    chunks = [{"id": "a", "text": "The Nimbus 14 router ships with a default admin password. Change it after setup."},
              {"id": "t", "title": "Nimbus 14 reset", "text": long},
              {"id": "b", "text": "Firmware updates for the Nimbus 14 are released every quarter. They install automatically."}]
    for budget in range(40, 160, 5):
        result = Pipeline.preset("default", budget=budget).run("What is the Nimbus 14 router reset key?", chunks)
        kept = next((c.text for c in result.chunks if c.id == "t"), None)
        assert kept is None or len(kept.split()) > 1, (budget, kept)  # not "Nimbus" alone under its header


FAQ = ("How do I reset the Nimbus 14 router to its factory settings when the admin password is lost?\n"
       "Hold the recessed reset button on the back panel for at least thirty seconds while the router is powered on, "
       "then release it and wait about two minutes until the status light turns solid green before logging in with the "
       "default password printed on the label.")


def test_a_question_and_answer_is_never_cut_to_its_question_alone():
    chunks = [{"id": "a", "text": "The Nimbus 14 router ships with a default admin password. Change it after setup."},
              {"id": "faq", "title": "Nimbus 14 FAQ", "text": FAQ},
              {"id": "b", "text": "Firmware updates for the Nimbus 14 are released every quarter. They install automatically."}]
    answer = FAQ.index("\n") + 1
    prefixes = 0
    for budget in range(40, 130, 2):
        result = Pipeline.preset("default", budget=budget).run("How do I reset the Nimbus 14 router to factory settings?", chunks)
        assert result.tokens <= budget
        kept = next((c.text for c in result.chunks if c.id == "faq"), None)
        if kept is not None and kept != FAQ:
            prefixes += 1
            assert FAQ.startswith(kept) and len(kept) > answer, (budget, kept)  # some of the answer, not the question alone
    assert prefixes  # the rule still gives the room left to a prefix that holds some of the answer


@pytest.mark.parametrize("text, cut, kept", [
    ("caps equal 1\u00a0250\u00a0000 EUR per claim", 16, "caps equal"),  # digits grouped by no-break spaces
    ("meet at 10:30 pm sharp", 14, "meet at"),
    ("doses of 5 mg/kg daily", 12, "doses of"),
    ("the limit is 3 km/h here", 16, "the limit is"),
    ("it weighs 12 kilograms now", 14, "it weighs"),
])
def test_a_prefix_does_not_end_a_figure_its_unit_or_group_goes_on_with(text, cut, kept):
    from optimizer.stages.prefix_end import word_end

    assert text[: word_end(text, cut)] == kept

"""On a help-centre page the question line matches the query best and says nothing: `default` kept
the questions of several entries and not one answer. A question and the sentence after it are one
unit of the sentence choice now (``optimizer.stages.sentence_signals.with_answers``)."""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.sentence_signals import split_chunks

FAQ = [
    ("How do I reset my password?", "Open Settings, choose Security, then click Send link; the email arrives within 5 minutes.", "Send link"),
    ("Can I change my username?", "No. Usernames are permanent once the account is created.", "permanent"),
    ("How do I delete my account?", "Write to support@example.com from the address on file; deletion takes 30 days.", "support@example.com"),
    ("Which payment methods do you accept?", "Visa, Mastercard and American Express, plus bank transfer for annual plans.", "Mastercard"),
    ("When am I charged?", "On the first day of each billing cycle, in the currency shown at checkout.", "first day of each billing cycle"),
    ("Can I get a refund?", "Yes, within 14 days of purchase, to the original card.", "14 days"),
    ("Is my data encrypted?", "Yes: AES-256 at rest and TLS 1.3 in transit.", "AES-256"),
    ("Where are your servers located?", "In Frankfurt and Dublin; EU customers' data never leaves the EU.", "Frankfurt"),
    ("How many people can join a workspace?", "Up to 50 on Team, unlimited on Enterprise.", "Up to 50"),
    ("Do you offer a discount for nonprofits?", "Registered charities get 40 percent off any paid plan.", "40 percent"),
]


@pytest.mark.parametrize("layout", ["{q}\n{a}", "Q: {q}\nA: {a}"])
@pytest.mark.parametrize("preset", ["default", "quality"])
def test_each_asked_question_keeps_its_answer_where_bm25_pack_does(layout, preset):
    chunks = [Chunk(id=f"q{i}", title="Help center", text=layout.format(q=q, a=a)) for i, (q, a, _) in enumerate(FAQ)]
    kept = {name: sum(ans.lower() in Pipeline.preset(name).run(q, chunks, budget=40).text.lower() for q, _, ans in FAQ)
            for name in (preset, "bm25-pack")}
    assert kept[preset] >= kept["bm25-pack"] == 10, kept  # it kept 6-8 of 10


def test_a_question_is_one_unit_with_the_sentence_after_it_and_a_lone_question_stays_alone():
    text = "Why is the sky blue? Sunlight scatters off air. It scatters blue most. Why? Who knows?"
    units = [s.text for s in split_chunks([Chunk(id="a", text=text)], StageContext.default())]
    assert units == ["Why is the sky blue? Sunlight scatters off air.", "It scatters blue most.", "Why?", "Who knows?"]

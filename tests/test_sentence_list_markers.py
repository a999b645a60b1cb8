"""A numbered list's marker starts its item's sentence; it never ends the sentence before.

A block of ``1. Open the lid`` lines read as prose (the ``1. O`` looked like a sentence end inside a
line), and blingfire cut after each ``N.``, so each marker was glued to the item before it
(``Open the lid\\n2.`` | ``Remove the filter\\n3.`` | ...): a kept item showed the next item's number,
and the last one a bare ``5.``. A list marker is read as no sentence end: the lines are records, and in
prose a bare marker goes with the item it opens.
"""

from __future__ import annotations

import re

import pytest

from optimizer import Pipeline
from optimizer.sentences import split_sentences


def texts(text):
    return [text[s:e] for s, e in split_sentences(text)]


@pytest.mark.parametrize("text, expected", [
    ("Steps:\n1. Open the lid\n2. Remove the filter\n3. Rinse it",
     ["Steps:", "1. Open the lid", "2. Remove the filter", "3. Rinse it"]),
    ("1. Open the lid.\n2. Remove the filter.\n3. Rinse it.",
     ["1. Open the lid.", "2. Remove the filter.", "3. Rinse it."]),
    ("Steps:\n1. Open the lid.\n2. Remove the filter.\n3. Rinse it.",
     ["Steps:", "1. Open the lid.", "2. Remove the filter.", "3. Rinse it."]),
    ("Do this:\ni. Open the lid\nii. Remove it\niii. Rinse it", ["Do this:", "i. Open the lid", "ii. Remove it", "iii. Rinse it"]),
    ("Do this:\n1. Open the lid. Wait a minute\n2. Remove it\n3. Rinse it",
     ["Do this:", "1. Open the lid.", "Wait a minute", "2. Remove it", "3. Rinse it"]),
    ("Do this:\n(a) Open the lid\n(b) Remove it\n(c) Rinse it", ["Do this:", "(a) Open the lid", "(b) Remove it", "(c) Rinse it"]),
])
def test_each_item_keeps_its_own_marker(text, expected):
    assert texts(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Do this:\n1) Open the lid\n2) Remove it\n3) Rinse it", ["Do this:", "1) Open the lid", "2) Remove it", "3) Rinse it"]),
    ("It cost 12. Then it rose to 14.", ["It cost 12.", "Then it rose to 14."]),
    ("The vote was 5-4. In 2024. We met.", ["The vote was 5-4.", "In 2024.", "We met."]),
    ("See Art. 12. It applies.", ["See Art. 12.", "It applies."]),
])
def test_other_text_is_split_as_before(text, expected):
    assert texts(text) == expected


def test_no_sentence_ends_on_a_marker_of_the_next_item():
    text = ("To factory-reset the router:\n1. Unplug the power cable\n2. Hold the reset button for 30 seconds\n"
            "3. Plug the power cable back in\n4. Wait for the LED to turn green\n5. Log in with the default password")
    for sentence in texts(text):
        assert not re.search(r"(?:^|\n)\s*\d+\.$", sentence), sentence


CHUNKS = [
    {"id": "reset", "title": "Router runbook", "text": "To factory-reset the router:\n1. Unplug the power cable\n"
     "2. Hold the reset button for 30 seconds\n3. Plug the power cable back in\n4. Wait for the LED to turn green\n"
     "5. Log in with the default password printed on the label"},
    {"id": "fw", "title": "Firmware update", "text": "To update the firmware:\n1. Download the image from the support site\n"
     "2. Open the admin page\n3. Upload the image under System > Firmware\n4. Do not unplug the router during the update"},
    {"id": "other", "title": "Office", "text": "The office is closed on public holidays. Visitors sign in at reception."},
]


@pytest.mark.parametrize("share", [0.25, 0.35])
def test_a_kept_step_carries_its_own_number(share):
    query = "What is step 3 of the factory reset?"
    full = Pipeline.preset("full").run(query, CHUNKS).tokens
    out = Pipeline.preset("default", budget=int(share * full)).run(query, CHUNKS).text
    source = {line for chunk in CHUNKS for line in chunk["text"].split("\n")}
    steps = re.findall(r"^\d+\..*$", out, re.M)
    assert steps, out
    assert all(step in source for step in steps), out  # each kept step as written, never a bare "5."

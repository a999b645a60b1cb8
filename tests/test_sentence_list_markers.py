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

from kept_answers import lost_runs


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


@pytest.mark.parametrize("text, expected", [
    ("The recommended dose for adults is\n2. Children should take half of that amount.",
     ["The recommended dose for adults is\n2.", "Children should take half of that amount."]),
    ("The maximum load of the bridge is about\n40. Trucks above it must detour.",
     ["The maximum load of the bridge is about\n40.", "Trucks above it must detour."]),
    ("The population in the last census was about\n120. Most of them were farmers.",
     ["The population in the last census was about\n120.", "Most of them were farmers."]),
    ("In the final the home team scored\n3 goals. The visitors scored\n2. It was a close game.",
     ["In the final the home team scored\n3 goals.", "The visitors scored\n2.", "It was a close game."]),
    ("The answer to the quiz question was option\nC. Most people got it wrong though.",
     ["The answer to the quiz question was option\nC.", "Most people got it wrong though."]),
    ("Results of the survey were mixed\nii. The second group disagreed strongly with the plan.",
     ["Results of the survey were mixed\nii.", "The second group disagreed strongly with the plan."]),
])
def test_a_hard_wrapped_sentence_keeps_the_number_that_ends_it(text, expected):
    """Review: any line that was nothing but ``2.`` before a sentence read as the next item's marker, so a wrapped
    ``... adults is`` | ``2. Children ...`` lost its answer. A marker opens an item only after a line that ends a
    sentence, a lead-in's colon or another item."""
    assert texts(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Send letters to:\n12. Main Street\nSpringfield. They will arrive in a week.",
     ["Send letters to:", "12. Main Street\nSpringfield.", "They will arrive in a week."]),
    ("Options:\na. Red\nb. Blue.\nc. Green.", ["Options:", "a. Red\nb. Blue.\nc. Green."]),
    ("We checked it twice.\n2. Then we sent it out.", ["We checked it twice.", "2. Then we sent it out."]),
])
def test_a_marker_after_a_lead_in_a_stop_or_an_item_still_opens_its_item(text, expected):
    assert texts(text) == expected


def test_the_wrapped_dose_reaches_the_reader_at_a_small_budget():
    fill = ("The clinic reopened in March after the renovation of the east wing. Staff were retrained on the new "
            "booking system, and the pharmacy moved to the ground floor next to the main entrance. Parking remains "
            "limited on weekdays, so visitors are asked to use the public garage on Station Road. ")
    dose = ("Paracetamol is widely used for mild pain and fever. The recommended dose for adults is\n2. "
            "Children should take half of that amount. Do not combine it with other products containing the same "
            "ingredient. Consult a doctor if the fever lasts more than three days.")
    chunks = [{"id": "a", "text": dose}, {"id": "b", "text": fill * 2}, {"id": "c", "text": fill.replace("March", "May") * 2}]
    out = Pipeline.preset("default").run("What is the recommended dose of paracetamol for adults?", chunks, budget=0.15)
    assert "adults is\n2." in out.text, out.text


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


@pytest.mark.parametrize("text, expected", [
    ("Number of employees:\n250.\nThe company was founded in 1990 in Lyon.",
     ["Number of employees:\n250.", "The company was founded in 1990 in Lyon."]),
    ("Version:\n3.\nReleased in March.", ["Version:\n3.", "Released in March."]),
    ("Correct answer:\nB.\nThe others are wrong.", ["Correct answer:\nB.", "The others are wrong."]),
    ("Room capacity;\n40.\nFire code applies.", ["Room capacity;\n40.", "Fire code applies."]),
    ("How many moons does Mars have?\n2.\nPhobos is the larger one.",
     ["How many moons does Mars have?", "2.", "Phobos is the larger one."]),
    ("Step 3 of the recipe.\n4.\nServe warm.", ["Step 3 of the recipe.", "4.", "Serve warm."]),
])
def test_a_value_alone_on_its_line_stays_with_what_it_answers(text, expected):
    """Review: a line that is only ``250.`` or ``B.`` after ``key:``, ``?`` or ``;`` was read as the next item's marker and
    moved into the next sentence, so the answer went with a sentence about something else. A marker opens an item when
    the item's text follows it on its line, or when it is alone on its line in a run of such lines (n-1 or n+1)."""
    assert texts(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("1.\nOpen the lid.\n2.\nClose it.", ["1.\nOpen the lid.", "2.\nClose it."]),
    ("Steps:\n1.\nOpen the lid.\n2.\nClose it.\n3.\nRinse it.", ["Steps:", "1.\nOpen the lid.", "2.\nClose it.", "3.\nRinse it."]),
    ("It has three steps.\n1.\nOpen the lid.\n2.\nRemove the filter.\n3.\nRinse it.",
     ["It has three steps.", "1.\nOpen the lid.", "2.\nRemove the filter.", "3.\nRinse it."]),
])
def test_a_list_with_each_marker_on_a_line_of_its_own_keeps_them_with_their_items(text, expected):
    """A PDF's list (the marker on a line, the item's text on the next): the markers are a sequence, so they open items."""
    assert texts(text) == expected


def test_the_value_on_its_own_line_reaches_the_reader_at_a_small_budget():
    doc = ("Acme Robotics company profile.\n\n"
           "Acme Robotics builds warehouse robots for grocery chains in France and Spain. Its robots pick crates from shelves "
           "and carry them to the loading docks at night.\nHeadquarters:\nLyon.\nNumber of employees:\n250.\n"
           "The company was founded in 1990 by two engineers from Grenoble. It sold its first robot in 1994 to a dairy.\n"
           "Its main rival is Zeta Systems, which makes drones for inventory counts. Acme plans to open an office in Madrid.")
    other = ["Zeta Systems makes inventory drones and employs 1,200 people in Germany and Poland. It was founded in 2005.",
             "Grocery chains in Spain are automating their warehouses quickly; labour costs rose 12 percent last year."]
    assert not lost_runs("How many employees does Acme Robotics have?", [doc, *other], "employees:\n250.", (30, 50, 80))


def test_a_list_with_blank_lines_between_its_items_keeps_each_marker_with_its_item():
    """Review of d9ad91b: the lone markers were gathered per paragraph, so a PDF list with a blank line between its items
    (``1.`` / ``Switch off ...`` / blank / ``2.`` / ``Rinse ...``) found no neighbour and cut each marker off alone."""
    text = ("Cleaning the machine\n\n1.\nSwitch off the machine and unplug it.\n\n2.\nRinse the filter under warm water.\n\n"
            "3.\nOpen the lid and remove the drip tray.")
    assert texts(text) == ["Cleaning the machine", "1.\nSwitch off the machine and unplug it.",
                           "2.\nRinse the filter under warm water.", "3.\nOpen the lid and remove the drip tray."]


def test_values_alone_on_their_lines_in_other_paragraphs_stay_values():
    text = ("Acme profile.\n\nNumber of employees:\n250.\nThe company was founded in 1990 in Lyon.\n\n"
            "Version:\n3.\nReleased in March.")
    assert texts(text) == ["Acme profile.", "Number of employees:\n250.", "The company was founded in 1990 in Lyon.",
                           "Version:\n3.", "Released in March."]

"""A near-copy whose changed sentence differs only in a character that changes its meaning keeps that sentence.

``sentence_key`` folded ``_ . -`` inside a word into spaces, case everywhere, and took a sign only
right before a digit: ``--max-upload-size`` was ``--max_upload_size``, ``>= 3.9`` was ``<= 3.9``,
``5 mW`` was ``5 MW``, and a corrected copy was dropped whole even at ``budget=1.0``. Typography
(case of ordinary words, spacing, quotes, a hyphen between words) still does not count.
"""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.dedupe import NearDedupe, sentence_key

DIFFERENT = [
    ("Use --max-upload-size.", "Use --max_upload_size."),
    ("Set server.port to 8080.", "Set server_port to 8080."),
    ("Requires Python >= 3.9.", "Requires Python <= 3.9."),
    ("x != 5", "x == 5"),
    ("Link speed 10 Gb/s.", "Link speed 10 GB/s."),
    ("Output 5 mW.", "Output 5 MW."),
    ("Written in C++.", "Written in C#."),
    ("The power is given in mW.", "The power is given in MW."),
]
SAME = [
    ("The Fee is “$120”, paid yearly!", 'the fee is "$120" paid yearly'),
    ("THE STORE OPENS AT 9.", "The store opens at 9."),
    ("It’s open  daily.", "It's open daily."),
    ("A well-known 3-5 range.", "A well known 3 5 range"),
    ("Press Ctrl+C to stop.", "press ctrl c to stop"),
    ("Python 3.9 is required.", "Python  3.9 is required"),
    ("Written in C++.", "written in c++"),
    ("THE SPAN IS 103 METRES LONG.", "The span is 103 metres long."),  # a copy in capitals (tests/test_long_running_process.py)
    ("It Opened In 1903 After 6 Years.", "It opened in 1903 after 6 years."),
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_a_character_that_changes_the_meaning_changes_the_key(a, b):
    assert sentence_key(a) != sentence_key(b)


@pytest.mark.parametrize(("a", "b"), SAME)
def test_typography_still_does_not(a, b):
    assert sentence_key(a) == sentence_key(b)


BODY = ("The sensor module draws its power over USB and reports readings every second. It stores up to 30 days of data "
        "on the internal flash. Firmware updates are installed from the companion app. The enclosure is rated IP54 "
        "against dust and splashing water. {line}")


@pytest.mark.parametrize(("old", "new"), [
    ("Output power: 5 MW.", "Output power: 5 mW."),
    ("Configure it with --max-upload-size.", "Configure it with --max_upload_size."),
    ("It needs Python >= 3.9.", "It needs Python <= 3.9."),
])
@pytest.mark.parametrize("preset", ["default", "quality"])
def test_a_corrected_copy_keeps_its_changed_sentence(old, new, preset):
    """Both versions reach the reader: the sentence stage's word-for-word repeat reads case where it counts too."""
    chunks = [Chunk(id="old", title="Sensor S1 datasheet", text=BODY.format(line=old), score=0.9),
              Chunk(id="new", title="Sensor S1 datasheet", text=BODY.format(line=new), score=0.8)]
    out = NearDedupe()("q", chunks, StageContext.default())
    assert [c.text for c in out] == [chunks[0].text, new]
    result = Pipeline.preset(preset).run("What is the figure?", chunks, budget=1.0)
    assert old in result.text and new in result.text and result.text.count("reports readings every second") == 1

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
    ("It draws 20 mA at most.", "It draws 20 MA at most."),
    ("The file is 20 MB in size.", "The file is 20 Mb in size."),
    ("A 100 Mbps link.", "A 100 MBps link."),
    ("It stores 4 kB of state.", "It stores 4 kb of state."),
    ("A 2 mHz tone.", "A 2 MHz tone."),
    # a comparison standing alone between two words (not only before a number)
    ("A request is rejected when used >= quota.", "A request is rejected when used > quota."),
    ("Keep x <= y.", "Keep x >= y."),
    ("Fail when a == b.", "Fail when a != b."),
    ("Retry while tries < limit.", "Retry while tries limit."),
    ("Retry while x < n_max.", "Retry while x > n_max."),
    ("Stop when Used >= Quota.", "Stop when Used > Quota."),
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
    # case that is style, not meaning: only an m/M prefix (milli, mega) or b/B (bit, byte) after a figure counts
    ("The store opens at 9 AM on weekdays.", "The store opens at 9 am on weekdays."),
    ("Kickoff is at 8 PM ET.", "Kickoff is at 8 pm ET."),
    ("Top speed is 100 MPH on the track.", "Top speed is 100 mph on the track."),
    ("It weighs 5 KG when full.", "It weighs 5 kg when full."),
    ("Revenue rose to $4.2bn in 2023.", "Revenue rose to $4.2BN in 2023."),
    ("He scored 3 TDs in the game.", "He scored 3 tds in the game."),
    ("The PhD program lasts 5 years.", "The PHD program lasts 5 years."),
    ("He was born in 1946 in McAllen, Texas.", "He was born in 1946 in Mcallen, Texas."),
    ("The iPhone 15 Pro costs $999.", "The IPhone 15 Pro costs $999."),
    ("The power is given in mW.", "The power is given in MW."),  # no figure: the case is the writer's
    ("Windows 10/11 are supported.", "Windows 10 / 11 are supported."),
    ("> Keep the quota.", "Keep the quota."),  # a quote's leading '>'
    ("Press Ctrl + C to stop.", "press ctrl c to stop"),
    ("Open File -> Save as.", "Open File Save as."),  # an arrow is no comparison
    ("Use a => b here.", "Use a b here."),
    # a menu path's '>' between capitalised words is no comparison (review: the copies with '›' or '→' were kept)
    ("Go to Settings > Privacy to turn it off.", "Go to Settings → Privacy to turn it off."),
    ("Go to Settings > Privacy to turn it off.", "Go to Settings › Privacy to turn it off."),
    ("Click File > Save As.", "Click File / Save As."),
    ("Open Settings > Account > Export now.", "Open Settings Account Export now."),
]


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_a_character_that_changes_the_meaning_changes_the_key(a, b):
    assert sentence_key(a) != sentence_key(b)


@pytest.mark.parametrize(("a", "b"), SAME)
def test_typography_still_does_not(a, b):
    assert sentence_key(a) == sentence_key(b)


@pytest.mark.parametrize(("a", "b"), [pair for pair in SAME if "/" not in pair[0]])
def test_a_repeat_reads_case_as_the_key_does(a, b):
    """The sentence stage's word-for-word repeat: ``9 AM`` repeats ``9 am`` (spacing and punctuation still count there)."""
    from optimizer.stages.sentence_select import repeat_key

    if a.isupper() or b.isupper() or a.lower() != b.lower():
        pytest.skip("the repeat key reads words as written, case folded")
    assert repeat_key(a) == repeat_key(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_a_repeat_reads_the_case_that_changes_the_meaning(a, b):
    from optimizer.stages.sentence_select import repeat_key

    if a.lower() == b.lower() and repeat_key(a) is not None:  # a line of 4 words or more
        assert repeat_key(a) != repeat_key(b)


def test_case_marks_are_a_prefix_or_a_bit_after_a_figure():
    from optimizer.text import case_marks

    assert case_marks("Output 5 mW at 3 GHz on iOS, 9 AM, 100 MPH, 10 Gb/s, 4 kB.") == "mW Gb/s"
    assert case_marks("No figure here: mW, iPhone, McAllen.") == ""


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


RATE = ("Rate limits ({v})\nEach token has a quota per minute. A request is rejected when used {op} quota. "
        "Rejected requests get a 429 with Retry-After. Quotas reset every minute.")


@pytest.mark.parametrize("preset", ["default", "quality"])
def test_a_version_that_flips_a_comparison_between_words_keeps_it(preset):
    """v2 changed ``used >= quota`` to ``used > quota``: near-dedupe read it as v1's sentence and dropped it at 1.0."""
    chunks = [{"id": "v1", "title": "Rate limits", "text": RATE.format(v="v1", op=">=")},
              {"id": "v2", "title": "Rate limits", "text": RATE.format(v="v2", op=">")}]
    out = Pipeline.preset(preset).run("When is a request rejected for rate limits?", chunks, budget=1.0)
    assert "used >= quota" in out.text and "used > quota" in out.text
    assert out.text.count("Quotas reset every minute.") == 1


HELP = ("To stop sharing your location, open Settings > Privacy > Location Services and turn the switch off. "
        "The change applies to every app at once. To export your data, open Settings > Account > Export and choose a "
        "format. Exports are ready within 24 hours and stay available for seven days.")


@pytest.mark.parametrize("arrow", [" › ", " → "])
def test_a_help_page_mirrored_with_another_menu_arrow_is_a_copy(arrow):
    """Review: ``Settings > Privacy`` counted as a comparison, so the mirror with ``›`` was kept whole (default at
    1.0 rendered 185 tokens, not 147)."""
    chunks = [Chunk(id="h1", text=HELP, score=0.9), Chunk(id="h2", text=HELP.replace(" > ", arrow), score=0.8)]
    out = NearDedupe()("q", chunks, StageContext.default())
    assert [c.id for c in out] == ["h1"]
    result = Pipeline.preset("default").run("How long are data exports available?", chunks, budget=1.0)
    assert result.text.count("seven days") == 1, result.text

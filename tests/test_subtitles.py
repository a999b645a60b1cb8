"""Subtitle tracks (SRT, WebVTT): a sentence that runs over cues is one unit, printed with its cues' timing lines,
scored on its words (optimizer/subtitles.py)."""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.sentences import MAX_SENTENCE_CHARS, sentence_weight, split_sentences
from optimizer.stage import StageContext
from optimizer.stages.paragraphs import ParagraphViews
from optimizer.stages.sentence_signals import split_chunks
from optimizer.subtitles import TIMING

LINES = ["Welcome back to the kitchen.", "Today we're making a classic French omelette.", "You'll need three eggs,",
         "a knob of butter,", "and a pinch of salt.", "Heat the pan over medium heat.", "Don't let the butter brown.",
         "Pour in the beaten eggs", "and stir constantly with a fork.", "After about forty seconds,",
         "tilt the pan and roll the omelette.", "Now for the sauce.", "Reduce two hundred millilitres of cream",
         "with a sprig of tarragon", "for about six minutes.", "Season with white pepper.",
         "Plate it up and serve immediately.", "Next week: duck confit.", "It takes two days to prepare,",
         "so start on Saturday.", "Thanks for watching."]
FILL = ["The committee reviewed the quarterly figures and noted no material change.",
        "Operations continued as planned across all regions during the period.",
        "Further analysis is expected in the next reporting cycle.",
        "Staff training sessions were held in March and April."]


def srt(first: int, lines: list[str], t0: int) -> str:
    """SRT cues numbered from ``first``, four seconds apart from ``t0`` seconds."""
    cues = []
    for k, line in enumerate(lines):
        s = t0 + k * 4
        cues.append(f"{first + k}\n00:{s // 60:02d}:{s % 60:02d},000 --> 00:{(s + 3) // 60:02d}:{(s + 3) % 60:02d},500\n{line}")
    return "\n\n".join(cues)


VTT = ("WEBVTT\n\n00:01:00.000 --> 00:01:03.000\nFor the souffle, preheat the oven to 190 degrees.\n\n"
       "01:04.000 --> 01:07.000 align:start position:10%\nBake for twenty-two\n\n01:07.500 --> 01:09.000\nminutes.\n\n"
       "00:01:10.000 --> 00:01:11.000\nDon't open the door!")


def chunks() -> list[dict[str, str]]:
    """A cooking video's SRT cut into chunks of four cues (the answer's sentence runs over three), a WebVTT file, notes."""
    out = [{"id": f"s{i}", "title": "omelette.srt", "text": srt(1 + i, LINES[i : i + 4], 10 + i * 4)} for i in range(0, len(LINES), 4)]
    out.append({"id": "vtt", "title": "souffle.vtt", "text": VTT})
    out += [{"id": f"n{i}", "title": "Notes", "text": " ".join(FILL[(i + k) % 4] for k in range(4))} for i in range(4)]
    return out


def sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def test_a_sentence_over_cues_is_one_unit_with_every_cue_timing():
    text = srt(13, ["Reduce two hundred millilitres of cream", "with a sprig of tarragon", "for about six minutes.",
                    "Season with white pepper."], 58)
    got = sentences(text)
    assert got == [text[: text.index("\n\n16")], text[text.index("16\n") :]]
    assert got[0].startswith("13\n00:00:58,000 --> ") and got[0].endswith("for about six minutes.")
    assert got[0].count("-->") == 3  # every cue's timing line, the first one included


def test_no_index_or_timing_line_is_a_sentence_of_its_own():
    """Before, some cues were split into index | timing | text and others left whole."""
    text = srt(12, LINES[11:17], 54)
    for sentence in sentences(text):
        lines = sentence.split("\n")
        assert any(ch.isalpha() for ch in sentence), sentence
        assert TIMING.fullmatch(lines[1]) or TIMING.fullmatch(lines[0]), sentence  # opens with its cue's frame


def test_webvtt_header_and_settings():
    got = sentences(VTT)
    assert got[0].startswith("WEBVTT\n\n00:01:00.000") and got[0].endswith("190 degrees.")
    assert got[1].startswith("01:04.000 --> 01:07.000 align:start") and got[1].endswith("minutes.")
    assert got[1].count("-->") == 2
    assert got[2].endswith("Don't open the door!")


def test_a_unit_is_scored_on_its_words_not_its_timings():
    text = srt(13, ["Reduce the cream", "for about six minutes."], 58)
    (sent,) = split_chunks([Chunk(id="c", text=text)], StageContext.default())
    assert sent.text.split() == "Reduce the cream for about six minutes.".split()
    assert text[sent.start : sent.end] == text  # printed with its cues' index and timing lines
    assert len(sent.text) == sent.end - sent.start  # offsets into it are offsets into the chunk


def test_unpunctuated_captions_are_cut_between_cues():
    text = srt(1, [f"and then we talk about item number {k} of the list" for k in range(60)], 0)
    got = split_sentences(text)
    assert len(got) > 1
    for s, e in got:
        assert sentence_weight(text, s, e) <= MAX_SENTENCE_CHARS
        assert TIMING.fullmatch(text[s:e].split("\n")[1])  # each unit opens with a whole cue


def test_the_index_line_titles_no_paragraph_view():
    c = Chunk(id="c", title="omelette.srt", text=srt(12, LINES[11:15], 54))
    views = ParagraphViews([c]).views
    assert views is None or all(v.title == "omelette.srt" for v in views)


def test_arrows_in_prose_are_no_cues():
    text = "Click File --> Save.\n\nThen 00:01 --> 00:02 is the range. It ends there."
    assert sentences(text) == ["Click File --> Save.", "Then 00:01 --> 00:02 is the range.", "It ends there."]


@pytest.mark.parametrize("preset", ["default", "quality", "bm25-pack"])
@pytest.mark.parametrize("share", [0.15, 0.25, 0.35, 0.5])
def test_the_cue_with_the_answer_is_kept_with_its_time(preset, share):
    """'for about six minutes.' completes 'Reduce ... cream / with a sprig of tarragon'; default lost it at all four
    shares and quality at 0.15, while bm25-pack kept it."""
    given = chunks()
    query = "How long should the cream be reduced with tarragon?"
    full = Pipeline.preset("full").run(query, given).tokens
    result = Pipeline.preset(preset, budget=int(share * full)).run(query, given)
    assert "for about six minutes." in result.text
    assert "00:00:58,000 --> 00:01:01,500\nReduce two hundred millilitres of cream" in result.text
    texts = {c["id"]: c["text"] for c in given}
    for span in result.spans:  # provenance exact
        assert texts[span.chunk_id][span.start : span.end] == result.text[span.context_start : span.context_end]


def test_kept_cues_apart_are_set_off_by_a_blank_line():
    text = srt(12, LINES[11:17], 54)
    c = Chunk(id="c", text=text)
    first, _, third = split_sentences(text)[:3]
    kept = c.keep([first, third]).text
    assert kept == text[slice(*first)] + "\n\n" + text[slice(*third)]

"""Pages built from one template keep what each copy says about the subject a query asks for.

A product variant's spec sheet, a city's store page or a version's reference page repeats its
sibling's text with another name. Near-dedupe cut such a copy to "the sentences it adds" (its name
line, or nothing when the name was only in the title) and the sentence stage dropped every line a
sibling said word for word, so the copy's facts were lost even at ``budget=1.0``. A copy whose
subject (title and heading line) the query names, where its original's does not, is kept whole with
its repeated lines; a copy the query does not tell apart is a duplicate as before: a mirror under
another file name (``report (1).pdf``), or a sibling of a question naming neither (``store hours?``).
"""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stage import StageContext
from optimizer.stages.dedupe import NearDedupe, SemanticDedupe

SHEET = """{m} cordless drill - technical specifications
Motor: brushless, 18 V
Max torque: {t} Nm
No-load speed: 0-2000 rpm
Chuck: 13 mm keyless
Battery: 5.0 Ah Li-ion
Battery life: {b}
Weight: {w} kg
Warranty: 3 years
"""
DRILLS = [{"id": m, "text": SHEET.format(m=m, t=t, b=b, w=w)} for m, t, b, w in
          [("X100", 50, "about 4 hours", 1.5), ("X200", 60, "about 5 hours", 1.6), ("X300", 60, "about 5 hours", 1.6)]]
STORE = ("Our store is open {h}. Customers can collect online orders at the service desk on the ground floor. "
         "Returns are accepted within 30 days with a receipt. Parking is free for the first two hours with a purchase.")
HOURS = [("Paris", "Monday to Saturday from 9:00 to 20:00"), ("Marseille", "Monday to Saturday from 9:00 to 20:00"),
         ("Lyon", "Monday to Saturday from 10:00 to 19:00")]
PRESETS = ["default", "quality"]


def block(text: str, name: str) -> str:
    """The rendered chunk (``[n] ...``) of ``text`` that names ``name``."""
    found = [b for b in text.split("\n\n[") if name in b]
    assert len(found) == 1, (name, text)
    return found[0]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_variant_named_only_in_its_heading_line_keeps_its_sheet(preset):
    """X300's sheet equals X200's but for the model line: it was cut to that line, then dropped."""
    out = Pipeline.preset(preset).run("What is the max torque of the X300 drill?", DRILLS, budget=1.0)
    assert "Max torque: 60 Nm" in block(out.text, "X300 cordless drill")
    assert not [d for d in out.dropped if d.chunk_id == "X300"]
    near = next(t for t in out.trace if t.name == "dedupe-near")
    assert "the query names X300's subject (x300), not its own" in dict((d.chunk_id, d.reason) for d in near.dropped)["X200"]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_sibling_sheet_keeps_the_lines_it_shares_with_another_sheet(preset):
    """X200's Motor, speed, chuck and battery lines were dropped because X100's sheet says them too;
    the sheets the query does not ask for (X100's, X300's) are X200's copies and repeat them."""
    out = Pipeline.preset(preset).run("Which motor does the X200 drill have?", DRILLS, budget=1.0)
    assert "Motor: brushless, 18 V" in block(out.text, "X200 cordless drill")
    assert out.text.count("Motor: brushless, 18 V") == 1 and "X300" not in out.text


@pytest.mark.parametrize("preset", PRESETS)
def test_a_comparison_keeps_both_variants_whichever_ranks_first(preset):
    scored = [dict(c, score=s) for c, s in zip(DRILLS, [0.70, 0.80, 0.90])]
    out = Pipeline.preset(preset).run("Compare the battery life of the X200 and X300 drills.", scored, budget=1.0)
    for model in ("X200", "X300"):
        assert "Battery life: about 5 hours" in block(out.text, f"{model} cordless drill")
    assert out.text.count("Battery life: about 5 hours") == 2


@pytest.mark.parametrize("preset", PRESETS)
def test_a_city_named_only_in_the_title_keeps_its_page(preset):
    """Marseille's page has Paris's text word for word under its own title: it was dropped whole (jaccard 1.00)."""
    stores = [{"id": c, "title": f"{c} store", "text": STORE.format(h=h)} for c, h in HOURS]
    out = Pipeline.preset(preset).run("What are the opening hours of the Marseille store?", stores, budget=1.0)
    assert STORE.format(h=HOURS[1][1]) in block(out.text, "Marseille store")
    assert not [d for d in out.dropped if d.chunk_id == "Marseille"]
    assert out.text.count("Returns are accepted") == 1  # the pages not asked for (Paris, Lyon) repeat Marseille's


@pytest.mark.parametrize("preset", PRESETS)
def test_a_city_named_in_a_heading_line_keeps_its_hours(preset):
    stores = [{"id": c, "text": f"{c} store\n" + STORE.format(h=h)} for c, h in HOURS]
    out = Pipeline.preset(preset).run("What are the opening hours of the Marseille store?", stores, budget=1.0)
    # whole under its city's name (before: cut to its first line)
    assert STORE.format(h=HOURS[1][1]) in block(out.text, "Marseille store")


def test_near_dedupe_keeps_the_copy_whose_subject_the_query_names_and_dedupes_the_other():
    """The query names the copy's subject and not its original's: the roles swap (the named copy is the original)."""
    text = STORE.format(h="daily")
    ctx = StageContext.default()
    titled = [Chunk(id="p", title="Paris store", text=text), Chunk(id="m", title="Marseille store", text=text)]
    out = NearDedupe()("Marseille store hours?", titled, ctx)
    assert [c.id for c in out] == ["m"] and out.reasons["p"].startswith("near-duplicate of m (jaccard 1.00; the query names m's subject")
    assert [c.id for c in NearDedupe()("store hours?", titled, ctx)] == ["p"]  # the query names neither apart
    headed = [Chunk(id="p", text="Paris store\n" + text), Chunk(id="m", text="Marseille store\n" + text)]
    out = NearDedupe()("When does Marseille open?", headed, ctx)
    assert out[1].text == headed[1].text and out[0].text == "Paris store\nOur store is open daily."  # what it adds
    plain = [Chunk(id="p", text=text, score=0.9), Chunk(id="m", text="Marseille store\n" + text, score=0.1)]
    out = NearDedupe()("Is the Marseille store open daily?", plain, ctx)  # the copy's subject is asked for: it is the original
    assert [c.id for c in out] == ["p", "m"] and out[1].text == plain[1].text and out[0].text == "Our store is open daily."
    assert out.reasons["p"] == ("near-duplicate of m (jaccard 0.95; the query names m's subject (marseille), not its own): "
                                "kept the 1 sentence it adds")
    out = NearDedupe()("Is it open daily?", plain, ctx)  # names neither
    assert out[1].text == "Marseille store\nOur store is open daily." and "kept_whole" not in out.notes  # the sentence it adds
    assert out.reasons["m"] == ("near-duplicate of p (jaccard 0.95; another subject, but the query names no subject of its own): "
                                "kept the 1 sentence it adds")
    both = [Chunk(id="p", title="Paris store", text=text), Chunk(id="m", title="Marseille store", text=text)]
    out = NearDedupe()("Compare the Paris and Marseille stores.", both, ctx)  # a comparison: both kept whole
    assert [c.text for c in out] == [text, text] and out.notes["kept_whole"] == {
        "m": "near-duplicate of p (jaccard 1.00) kept whole: the query names its subject (marseille) and p's (paris)"}


def test_semantic_dedupe_keeps_the_copy_whose_subject_the_query_names():
    text = STORE.format(h="daily")
    titled = [Chunk(id="p", title="Paris store", text=text), Chunk(id="m", title="Marseille store", text=text)]
    out = SemanticDedupe()("Marseille store hours?", titled, StageContext.default())
    assert [c.id for c in out] == ["m"] and "the query names m's subject (marseille)" in out.reasons["p"]
    assert len(SemanticDedupe()("Paris or Marseille store hours?", titled, StageContext.default())) == 2
    out = SemanticDedupe()("store hours?", titled, StageContext.default())
    assert [c.id for c in out] == ["p"] and "the query names no subject of its own" in out.reasons["m"]


ARTICLE = ("Acme Corp said on Tuesday that revenue for the third quarter rose 12 percent to 4.2 billion dollars, beating "
           "analyst forecasts. The company credited strong demand for its cloud storage products in Europe and Asia. "
           "Operating margin widened to 18 percent from 15 percent a year earlier. Acme also raised its full-year outlook "
           "and announced a share buyback of 2 billion dollars. Shares rose 6 percent in after-hours trading on the news.")
ACME = [{"id": "a", "text": ARTICLE, "title": "Acme third-quarter results", "score": 0.9},
        {"id": "b", "text": ARTICLE, "title": "Acme Q3 earnings report", "score": 0.85},
        {"id": "ceo", "title": "Acme Corp leadership", "score": 0.7,
         "text": "Acme Corp is led by chief executive Maria Lindqvist, who took over in 2019 after a decade running the "
                 "company's storage division. She previously worked at a chip maker."},
        {"id": "o1", "title": "Globex quarterly results", "score": 0.6,
         "text": "Globex Corp reported third-quarter revenue of 3.1 billion dollars, down 4 percent, as demand for its "
                 "printers slowed. Globex cut 800 jobs."}]


@pytest.mark.parametrize("preset", PRESETS)
def test_one_article_under_two_titles_is_printed_once_when_the_query_names_a_word_of_one(preset):
    """The verb "report" names the copy's title ("Acme Q3 earnings report"), "third quarter" is in both texts: one
    article, not a comparison; it was printed twice and squeezed the chief executive out at 90-110 tokens."""
    for verb in ("report", "post"):
        query = f"How much revenue did Acme {verb} for the third quarter, and who is its chief executive?"
        for budget in (90, 100, 110, 150):
            out = Pipeline.preset(preset).run(query, ACME, budget=budget)
            assert out.text.count("4.2 billion") == 1 and "Lindqvist" in out.text, (verb, budget, out.text)


MIRROR = ("The Q3 report shows revenue grew 12 percent to 4.1 billion dollars. Operating margin rose to 18 percent. "
          "The board approved a dividend of 0.40 per share. Headcount fell by 300.")


@pytest.mark.parametrize("preset", PRESETS)
def test_a_mirror_under_another_file_name_is_printed_once(preset):
    """One file ingested twice (LlamaIndex titles a node with its file_name): the copy goes, the budget stays whole."""
    chunks = [{"id": "a", "text": MIRROR, "title": "report.pdf"}, {"id": "b", "text": MIRROR, "title": "report (1).pdf"},
              {"id": "c", "text": "Unrelated text about weather in Lyon and other things.", "title": "w"}]
    for budget in (1.0, 0.5):
        out = Pipeline.preset(preset, budget=budget).run("What dividend did the board approve?", chunks)
        assert out.text.count("The board approved a dividend of 0.40 per share.") == 1
        assert MIRROR in out.text and "report (1).pdf" not in out.text
        near = next(t for t in out.trace if t.name == "dedupe-near")
        assert "b" in [d.chunk_id for d in near.dropped]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_query_naming_neither_sibling_dedupes_them(preset):
    stores = [{"id": c, "title": f"{c} store", "text": STORE.format(h=h)} for c, h in HOURS]
    out = Pipeline.preset(preset).run("What are the store opening hours?", stores, budget=1.0)
    assert out.text.count("Returns are accepted within 30 days with a receipt.") == 1
    assert "Marseille" not in out.text  # Paris's page word for word
    assert "from 10:00 to 19:00" in out.text  # Lyon's copy keeps the sentence it adds
    drills = Pipeline.preset(preset).run("What is the warranty of the drill?", DRILLS, budget=1.0)
    assert drills.text.count("Motor: brushless, 18 V") == 1 and "X300" not in drills.text  # X200's copy, X100's repeat


@pytest.mark.parametrize("preset", PRESETS)
def test_a_comparison_naming_both_siblings_keeps_both(preset):
    stores = [{"id": c, "title": f"{c} store", "text": STORE.format(h=h)} for c, h in HOURS]
    out = Pipeline.preset(preset).run("Compare the Paris and Marseille stores: parking, returns and hours.", stores, budget=1.0)
    for city, hours in HOURS[:2]:
        assert STORE.format(h=hours) in block(out.text, f"{city} store")
    assert out.text.count("Returns are accepted within 30 days with a receipt.") == 2


@pytest.mark.parametrize("preset", PRESETS)
def test_true_duplicates_still_go(preset):
    """A chunk a retriever hands over twice, a mirror under the same title, an untitled mirror, a sheet given twice."""
    article = ("The Harbour Bridge was opened in March 1932. It took eight years to build. The arch spans 503 metres "
               "across the harbour. About 160,000 vehicles cross it each day. The toll is paid electronically.")
    cases = [
        [{"id": "a", "title": "Harbour Bridge", "text": article}, {"id": "b", "title": "Harbour Bridge", "text": article}],
        [{"id": "a", "title": "Harbour Bridge", "text": article},
         {"id": "b", "title": "harbour bridge", "text": article.replace("March 1932", "March  1932") + " "}],
        [{"id": "a", "text": article}, {"id": "b", "text": article.replace(". ", ".  ")}],
        [{"id": "a", "text": DRILLS[1]["text"]}, {"id": "b", "text": DRILLS[1]["text"]}],
        [{"id": "a", "title": "Bridges", "text": article}, {"id": "b", "text": article}],  # the copy names no subject
    ]
    for chunks in cases:
        out = Pipeline.preset(preset).run("When was the bridge opened?", chunks, budget=1.0)
        assert [d.chunk_id for d in out.dropped] == ["b"], chunks
        assert out.text.count("eight years") + out.text.count("Motor: brushless") == 1


def test_a_repeated_line_stays_only_in_a_chunk_whose_subject_the_query_names():
    """The sentence stage's word-for-word repeat: it goes unless the query names the repeating chunk's subject."""
    line = "Returns are accepted within 30 days with a receipt."
    same = [Chunk(id="a", title="Paris store", text=f"Open daily. {line}"),
            Chunk(id="b", title="Paris store", text=f"Parking is free. {line}")]
    out = Pipeline.preset("default").run("Are returns accepted?", same, budget=1.0)
    assert out.text.count(line) == 1
    other = [same[0], Chunk(id="b", title="Lyon store", text=f"Parking is free. {line}")]
    out = Pipeline.preset("default").run("Are returns accepted?", other, budget=1.0)
    assert out.text.count(line) == 1
    out = Pipeline.preset("default").run("Are returns accepted at the Lyon store?", other, budget=1.0)
    assert line in block(out.text, "Lyon store") and out.text.count(line) == 1  # the chunk not asked for drops it
    both = Pipeline.preset("default").run("Are returns accepted at the Lyon and Paris stores?", other, budget=1.0)
    assert both.text.count(line) == 2
    compress = next(t for t in both.trace if t.name == "compress-sentences")
    assert set(compress.notes["named_repeats"]) == {"a", "b"}


def test_a_query_word_names_a_subject_word_it_begins_or_equals():
    from optimizer.headings import named_words

    assert named_words(["drills", "x300", "getuserbyid"], {"drill", "x3000", "getusersettings"}) == frozenset({"drills"})
    assert named_words(["car", "x300"], {"cargo", "x300"}) == frozenset({"x300"})


def test_subject_is_the_title_and_the_heading_line():
    from optimizer.headings import heading_of, subject

    assert heading_of("X300 drill\nMotor: 18 V") == "X300 drill"
    assert heading_of("One line only") is None and heading_of("It rained.\nThen it stopped.") is None
    assert subject(Chunk(id="a", title="Paris  Store", text="Open daily.")) == subject(Chunk(id="b", title="paris store", text="x"))
    assert subject(Chunk(id="a", text="X100\nMotor")) != subject(Chunk(id="b", text="X200\nMotor"))


def test_a_repeated_line_goes_from_the_chunk_the_query_does_not_ask_about_whichever_ranks_first():
    line = "Returns are accepted within 30 days with a receipt."
    chunks = [Chunk(id="a", title="Paris store", text=f"Open daily. {line}", score=0.9),
              Chunk(id="b", title="Lyon store", text=f"Parking is free. {line}", score=0.1)]
    out = Pipeline.preset("default").run("Are returns accepted at the Lyon store?", chunks, budget=1.0)
    assert line in block(out.text, "Lyon store") and out.text.count(line) == 1

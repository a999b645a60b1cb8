"""A group of ``key: value`` records under a first line of its own keeps that line as its heading.

40ae72c read a block opening with two ``key: value`` lines as a definition list (``Retention period: how long
...`` over ``Quota: ...``), its first line no heading. A staff directory (``Tom Lee: Head of Support`` over
``Phone:``, ``Email:``, ``Room:``), a plan list or numbered recipe steps are groups of records, each under its
own first line: without it, ``Phone: 555-0199`` was scored without its name (``default`` printed ``Tom Lee: Head
of Support`` and no phone at 0.15 of the full context) and the Enterprise plan's values were printed under
Premium's. The first line stays a heading when another paragraph of the chunk repeats the lines' keys.
"""

from __future__ import annotations

import pytest

from optimizer import Chunk, Pipeline
from optimizer.stages.paragraphs import paragraph_parts

from test_faq_layouts import DEFLIST, kept_at_shares
from test_faq_sections import OTHERS

DIRECTORY = ("Staff directory\n\nJane Smith: Head of Sales\nPhone: 555-0101\nEmail: jane@acme.com\nRoom: 201\n\n"
             "Tom Lee: Head of Support\nPhone: 555-0199\nEmail: tom@acme.com\nRoom: 305\n\n"
             "Ana Ruiz: Head of Finance\nPhone: 555-0142\nEmail: ana@acme.com\nRoom: 110")
PLANS = ("Basic: for individuals\nPrice: $10 per month\nStorage: 100 GB\nUsers: 1\n\n"
         "Premium: for growing teams\nPrice: $30 per month\nStorage: 1 TB\nUsers: 10\n\n"
         "Enterprise: for large companies\nPrice: contact sales\nStorage: unlimited\nUsers: unlimited")
RECIPE = ("Step 1: Mix the dough\nTime: 10 minutes\nTools: large bowl\n\nStep 2: Let it rise\nTime: 2 hours\nTools: towel\n\n"
          "Step 3: Bake the bread\nTime: 35 minutes at 220C\nTools: oven, baking stone")


def headings(text: str) -> list[str | None]:
    return [p.heading and text[slice(*p.heading)] for p in paragraph_parts(Chunk(id="r", text=text))]


def test_each_group_of_records_is_headed_by_its_first_line():
    assert headings(DIRECTORY) == [None, "Jane Smith: Head of Sales", "Tom Lee: Head of Support", "Ana Ruiz: Head of Finance"]
    assert headings(PLANS) == ["Basic: for individuals", "Premium: for growing teams", "Enterprise: for large companies"]
    assert headings(RECIPE) == ["Step 1: Mix the dough", "Step 2: Let it rise", "Step 3: Bake the bread"]


def test_a_definition_list_stays_without_a_heading():
    (part,) = paragraph_parts(DEFLIST)
    assert DEFLIST.text[slice(*part.heading)] == "Settings reference"
    two = "Retention period: how long messages are kept\nQuota: the mailbox size\n\nArchive: cold storage\nAlias: another address"
    assert headings(two) == [None, None]  # two paragraphs of one list: no key repeated


@pytest.mark.parametrize("preset", ["default", "quality"])
def test_the_asked_records_are_printed_under_their_group(preset):
    cases = [("What is Tom Lee's phone number?", DIRECTORY, "555-0199", "Tom Lee: Head of Support", "KKKK"),  # 648b5a9 -KKK
             ("How long do I bake the bread?", RECIPE, "35 minutes", "Step 3: Bake the bread", "-KKK")]  # 648b5a9 --KK
    for query, text, needle, group, expected in cases:
        chunks = [Chunk(id=f"c{i}", text=t) for i, t in enumerate([text] + OTHERS)]
        got = kept_at_shares(query, chunks, needle, preset)
        assert all(g == "K" for g, e in zip(got, expected) if e == "K"), (query, got)
        full = Pipeline.preset("full").run(query, chunks, budget=1.0).tokens
        for share in (0.15, 0.25, 0.35, 0.5):
            r = Pipeline.preset(preset).run(query, chunks, budget=int(full * share))
            assert needle not in r.text or group in r.text, (share, r.text)


@pytest.mark.parametrize("preset", ["default", "quality"])
def test_no_plans_values_are_printed_under_another_plan(preset):
    """648b5a9 printed ``Price: contact sales`` and ``Users: unlimited`` (Enterprise's) under Premium's lines."""
    query = "How much does the Premium plan cost per month?"
    chunks = [Chunk(id=f"c{i}", text=t) for i, t in enumerate([PLANS] + OTHERS)]
    parts = paragraph_parts(chunks[0])
    full = Pipeline.preset("full").run(query, chunks, budget=1.0).tokens
    for share in (0.15, 0.25, 0.35, 0.5):
        r = Pipeline.preset(preset).run(query, chunks, budget=int(full * share))
        printed = {(s.start, s.end) for s in r.spans if s.chunk_id == "c0"}
        for p in parts:
            body = [(s, e) for s, e in printed if p.body[0] <= s < p.body[1]]
            assert not body or any(s <= p.heading[0] < e for s, e in printed), (share, r.text)
        assert "$30 per month" in r.text, (share, r.text)  # a73d3e0 and 648b5a9: KKKK


def test_a_lone_record_keeps_its_name_line_a_definition_list_does_not():
    """One person's card in a chunk of its own: ``Tom Lee: Head of Support`` over ``Phone:`` heads it (a73d3e0's;
    648b5a9 read it as a definition list: default and quality -KKK -> --KK). A definition list's first entry
    describes as the others do (``how long ...`` over ``the maximum ...``): no heading."""
    card = "Tom Lee: Head of Support\nPhone: 555-0199\nEmail: tom@acme.com\nRoom: 305"
    assert headings(card) == ["Tom Lee: Head of Support"]
    titled = "Retention period: How long messages are kept\nQuota: The mailbox size\nAlias: Another address"
    assert headings(titled) == [None]
    chunks = [Chunk(id=f"c{i}", text=t) for i, t in enumerate([card] + OTHERS)]
    for preset in ("default", "quality"):
        assert kept_at_shares("What is Tom Lee's phone number?", chunks, "555-0199", preset)[1:] == "KKK", preset

"""Two kept pieces with a blank line or a change of quote depth (``>``) between them are joined with a line break, and
a piece that starts inside a quoted line gets that line's quote marks back.

The joiner put a space between two pieces whenever the first did not end its line and the second did not start one,
so an e-mail reply printed ``Thanks Tom, confirmed. Could we push it a week?``, the question being a sentence of Tom's
quoted message two paragraphs further down: the reader saw the replier asking it (hunt genres39).
"""

from __future__ import annotations

import pytest

from optimizer import Pipeline
from optimizer.records import Chunk, join_pieces, piece_joiner
from optimizer.render import Renderer


def pieces_of(text, *parts):
    return [(text.index(p), text.index(p) + len(p)) for p in parts]


@pytest.mark.parametrize("text, parts, joined", [
    ("Yes, approved. We ship Friday.\n\n> On Mon Ann wrote:\n> Stock is low. Can we cancel the order?",
     ("Yes, approved.", "Can we cancel the order?"), "Yes, approved.\n> Can we cancel the order?"),
    ("Reply here. More of it.\n> Quoted one. Quoted two.", ("Reply here.", "Quoted two."), "Reply here.\n> Quoted two."),
    ("> Outer one. Outer two.\n> > Inner one. Inner two.", ("> Outer one.", "Inner two."), "> Outer one.\n> > Inner two."),
    ("> Quoted one. Quoted two.\nReply one. Reply two.", ("Quoted one.", "Reply two."), "Quoted one.\nReply two."),
    ("A one. A two.\n\nB one. B two.", ("A one.", "B two."), "A one.\nB two."),
    ("> A one. A two.\n>\n> B one. B two.", ("> A one.", "B two."), "> A one.\n> B two."),
    ("Thanks.\n\n> Stock is low. Can we cancel?", ("Thanks.", "Can we cancel?"), "Thanks.\n> Can we cancel?"),
])
def test_pieces_across_a_blank_line_or_a_quote_depth_keep_their_lines(text, parts, joined):
    assert join_pieces(text, pieces_of(text, *parts)) == joined


@pytest.mark.parametrize("text, parts, joined", [
    ("Run it. It needs\nPython 3. Done.", ("Run it.", "Done."), "Run it. Done."),  # a wrapped paragraph
    ("> Alpha one. Alpha two\n> goes on. Beta.", ("> Alpha one.", "Beta."), "> Alpha one. Beta."),  # a wrapped quote
    ("One. Two. Three.", ("One.", "Three."), "One. Three."),  # one line
    ("## Install\n\nRun it. It needs Python.", ("## Install", "It needs Python."), "## Install\nIt needs Python."),
    ("Intro\n- a\n- b\n- c", ("Intro", "- b", "- c"), "Intro\n- b\n- c"),  # a piece that starts its line
    ("Hi.\n\n> On Mon Ann wrote:\n> Stock is low.", ("Hi.", "> Stock is low."), "Hi.\n> Stock is low."),
    ("Try it. Then:\n>>> run(1) works. Good.", ("Try it.", "Good."), "Try it. Good."),  # a Python prompt is no quote
])
def test_other_pieces_join_as_before(text, parts, joined):
    assert join_pieces(text, pieces_of(text, *parts)) == joined


def test_the_subtitle_cue_after_a_blank_line_is_still_set_off():
    t = "1\n00:01.000 --> 00:02.000\nHi.\n\n2\n00:03.000 --> 00:04.000\nBye."
    assert piece_joiner(t, 29, 31) == "\n\n"


def test_every_kept_character_maps_back_and_spans_match_the_source():
    doc = ("Thanks Tom, confirmed. We move it to the 22nd.\n\nBest,\nPriya\n\n"
           "> On Mon Tom wrote:\n> Priya, DHL says they cannot collect. Could we push it a week?\n>\n"
           "> > On Fri Priya wrote:\n> > Cutover is on the 14th. Please confirm.")
    chunk = Chunk(id="m", text=doc)
    kept = chunk.keep(pieces_of(doc, "Thanks Tom, confirmed.", "Could we push it a week?", "Please confirm."))
    assert kept.text == "Thanks Tom, confirmed.\n> Could we push it a week?\n> > Please confirm."
    joiner_chars = 0
    for k, char in enumerate(kept.text):
        mapped = kept.map_range(k, k + 1)
        if mapped:
            assert [doc[s:e] for s, e in mapped] == [char], (k, char, mapped)
        else:
            joiner_chars += 1
    assert joiner_chars == len("\n> ") + len("\n> > ")
    rendered = Renderer().render([kept])
    assert [doc[s.start:s.end] for s in rendered.spans] == [rendered.text[s.context_start:s.context_end] for s in rendered.spans]
    assert kept.keep_text_range(kept.text.index("Could"), len(kept.text)).text == "Could we push it a week?\n> > Please confirm."


EMAIL1 = """From: Priya Nair <priya@northwind.io>
Sent: Tuesday, March 4, 2025 9:12 AM
To: Ops Team <ops@northwind.io>
Subject: RE: Warehouse cutover weekend

Thanks Tom, confirmed. We'll move the cutover to Saturday 22 March starting at 06:00 CET so the carriers have a full day.

Best,
Priya
--
Priya Nair | Logistics Lead | Northwind
+44 20 7946 0321

> On Mon, Mar 3, 2025 at 4:40 PM Tom Berger <tom@northwind.io> wrote:
> Priya, the original plan was Friday 14 March at 22:00 CET, but DHL says
> they cannot collect on Saturday 15th. Could we push it a week?
>
> > On Fri, Feb 28, 2025 Priya Nair wrote:
> > Cutover is scheduled for Friday 14 March at 22:00 CET. Please confirm.
"""
EMAIL2 = """From: Tom Berger <tom@northwind.io>
To: Ops Team <ops@northwind.io>
Subject: Re: Badge access for the new site

Facilities said badges for the Leeds site will be printed on Thursday. Bring photo ID to reception.

Cheers,
Tom
Sent from my iPhone
"""
EMAIL3 = """From: Helpdesk <it@northwind.io>
Subject: Scheduled maintenance

The VPN concentrator will be patched on Sunday 16 March between 01:00 and 03:00 CET. Expect two short disconnects.

--
Northwind IT | it@northwind.io | ext. 4400
This e-mail and any attachments are confidential and intended solely for the addressee.
"""


@pytest.mark.parametrize("tokenizer, budget", [("cl100k_base", 37), ("o200k_base", 36), ("cl100k_base", 45), ("cl100k_base", 60)])
def test_a_quoted_question_is_never_printed_as_the_replier_s(tokenizer, budget):
    chunks = [{"id": "a", "text": EMAIL1}, {"id": "b", "text": EMAIL2}, {"id": "c", "text": EMAIL3}]
    result = Pipeline.preset("default", tokenizer=tokenizer).run("Why was the warehouse cutover moved?", chunks, budget=budget)
    assert result.tokens <= budget
    for line in result.text.split("\n"):
        assert "Could we push" not in line or line.startswith(">"), result.text

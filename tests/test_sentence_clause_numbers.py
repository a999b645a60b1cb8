"""A numbered clause (``7.1 ...``, ``7.2(a) ...``, ``3.2.1. ...``) opens a sentence of its own.

blingfire never ends a sentence before a number like ``1.2``, and the list markers the splitter knew were one level
deep (``7.``, ``(a)``): a contract section's clauses came out as one unit of 111 tokens, which default and quality
could only keep or leave whole, so they lost the answer in clause 7.1 at shares where bm25-pack kept it (hunt
genres39). A line break before a multi-level clause number now ends the sentence when the line before ends a
sentence or a lead-in (``.:;``) and the number has a neighbour opening a line nearby (``7.1`` / ``7.2``, ``3.2`` /
``3.2.1``); a wrapped sentence, a version, a decimal, a date or an address at a line's start stays where it was.
"""

from __future__ import annotations

import pytest

from optimizer import Pipeline
from optimizer.sentences import split_sentences

from kept_answers import lost_runs


def texts(text):
    return [text[s:e] for s, e in split_sentences(text)]


C7 = ("7. TERMINATION\n"
      "7.1 Either party may terminate this Agreement for convenience upon ninety (90) days' prior written notice.\n"
      "7.2 Either party may terminate this Agreement immediately by written notice if the other party:\n"
      "(a) commits a material breach and fails to cure it within thirty (30) days of notice;\n"
      "(b) becomes insolvent or makes an assignment for the benefit of creditors; or\n"
      "(c) ceases to carry on business.\n"
      "7.3 Upon termination, Customer shall pay all fees accrued up to the effective date of termination.")
C8 = ("8. CONFIDENTIALITY\n"
      "8.1 Each party shall keep the other's Confidential Information confidential for five (5) years after termination.\n"
      "8.2 Clause 8.1 does not apply to information that (a) is public, or (b) was lawfully known to the receiving party "
      "before disclosure.")
C9 = ("9. LIABILITY\n"
      "9.1 Neither party's aggregate liability shall exceed the fees paid in the twelve (12) months preceding the claim.\n"
      "9.2 Nothing in this Agreement limits liability for death or personal injury caused by negligence.")


def test_each_clause_of_a_contract_section_is_a_sentence_and_keeps_its_lettered_items():
    lines = C7.split("\n")
    assert texts(C7) == ["\n".join(lines[:2]), "\n".join(lines[2:6]), lines[6]]


@pytest.mark.parametrize("text, expected", [
    ("1.1 Alpha beta gamma delta.\n1.2 Upon termination, pay.", ["1.1 Alpha beta gamma delta.", "1.2 Upon termination, pay."]),
    ("1.1. Alpha beta gamma delta.\n1.2. Upon termination, pay.", ["1.1. Alpha beta gamma delta.", "1.2. Upon termination, pay."]),
    ("The parties agree as follows:\n2.1 The fee is due monthly;\n2.2 it is paid in euros.",
     ["The parties agree as follows:", "2.1 The fee is due monthly;", "2.2 it is paid in euros."]),
    ("We ran it.\n2.2 Methods\nWe measured x.\n2.3 Results\nIt worked.",
     ["We ran it.", "2.2 Methods\nWe measured x.", "2.3 Results\nIt worked."]),
    ("3.2.  Title Here\n3.2.1.  Sub title\n   Text of it here.\n3.2.2.  Other\n   More text.",
     ["3.2.  Title Here", "3.2.1.  Sub title\n   Text of it here.", "3.2.2.  Other\n   More text."]),
    ("Scope.\n4.1(a) The vendor shall pay.\n4.1(b) The buyer shall not.",
     ["Scope.", "4.1(a) The vendor shall pay.", "4.1(b) The buyer shall not."]),
])
def test_a_clause_number_opens_its_sentence(text, expected):
    """Contract clauses, with or without a dot after the number, scientific sections and RFC-style headings."""
    assert texts(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("Upgrade the client to version\n1.2 of the SDK before May.", ["Upgrade the client to version\n1.2 of the SDK before May."]),
    ("The dose is 5.\n2 mg for children.", ["The dose is 5.\n2 mg for children."]),
    ("Take the tablets at\n10.30 and again at 18.30 each day.", ["Take the tablets at\n10.30 and again at 18.30 each day."]),
    ("It was signed on\n12.03.2024 in Paris.", ["It was signed on\n12.03.2024 in Paris."]),
    ("Revenue rose.\n3.2 percent was the growth rate.", ["Revenue rose.\n3.2 percent was the growth rate."]),
    ("The fee is due as set out in clause\n7.2 and clause 7.3, each in full.\nIt is paid in euros. It is final.",
     ["The fee is due as set out in clause\n7.2 and clause 7.3, each in full.", "It is paid in euros.", "It is final."]),
    ("For the details see Sec.\n3.2 of the manual, the part on setup.\nSec. 3.3 covers the rest of it.",
     ["For the details see Sec.\n3.2 of the manual, the part on setup.", "Sec. 3.3 covers the rest of it."]),
    ("The release notes say it was fixed in version 2.\n2.1 was the first one with the fix, they said.",
     ["The release notes say it was fixed in version 2.\n2.1 was the first one with the fix, they said."]),
    ("Options:\na. Red\nb. Blue.\nc. Green.", ["Options:", "a. Red\nb. Blue.\nc. Green."]),
])
def test_other_numbers_at_a_line_start_are_split_as_before(text, expected):
    """A version or a decimal wrapped to the next line, a time, a date, a clause cited mid-sentence, a section cited
    after ``Sec.``, a number after a stop with no neighbour: as before (the expected units are those of 8e89674)."""
    assert texts(text) == expected


def test_the_notice_period_in_clause_7_1_reaches_the_reader_at_small_budgets():
    """The hunt's repro: default and quality lost clause 7.1 at 0.2, 0.3 and 0.4 of the full context; bm25-pack kept it."""
    chunks = [{"id": "c8", "text": C8}, {"id": "c7", "text": C7}, {"id": "c9", "text": C9}]
    query = "How much notice is needed to terminate for convenience?"
    full = Pipeline.preset("full").run(query, chunks).tokens
    assert not lost_runs(query, chunks, "ninety (90) days", [int(share * full) for share in (0.2, 0.3, 0.4)])

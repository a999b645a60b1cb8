"""A sentence that ranked above sentences the selection took, but was left out only because it is
longer than the room left, gives that room (what the fill could not spend) to its prefix, cut at a
word within the budget, instead of leaving it unused."""

from __future__ import annotations

import pytest

from optimizer import Pipeline

CLAUSE = ("Subject to the limitations set out in this Agreement, including without limitation the exclusions in Section 9, "
          "the liability caps in Section 10, the notice requirements in Section 14 and any applicable statutory provisions "
          "of the governing jurisdiction, the Supplier shall indemnify, defend and hold harmless the Customer, its affiliates, "
          "officers, directors, employees and agents from and against any and all losses, damages, liabilities, costs and "
          "expenses, including reasonable attorneys' fees, arising out of any third-party claim alleging infringement, provided "
          "that the Customer notifies the Supplier in writing within thirty (30) days of becoming aware of such claim.")
CHUNKS = [{"id": "p", "text": "The liability caps of the Agreement are negotiated per customer. Caps are reviewed every year."},
          {"id": "c", "title": "Agreement §12 Indemnification", "text": CLAUSE},
          {"id": "f", "text": "The museum reopened after a two-year renovation. The new wing holds modern sculpture."}]
QUERY = "Which section of the Agreement sets the liability caps?"


@pytest.mark.parametrize("budget", [100, 120])
def test_the_room_left_goes_to_the_prefix_of_the_best_sentence_that_did_not_fit(budget):
    result = Pipeline.preset("default", budget=budget).run(QUERY, CHUNKS)
    assert "the liability caps in Section 10" in result.text
    assert result.tokens <= budget
    kept = next(c for c in result.chunks if c.id == "c")
    assert CLAUSE.startswith(kept.text) and kept.text[-1] != " " and CLAUSE[len(kept.text)] in " ,"  # a prefix, cut at a word
    reasons = [d.reason for d in result.dropped if d.chunk_id == "c"]
    assert reasons and all("cut to the room left" in r for r in reasons)


def test_no_prefix_when_the_sentence_fits_or_nothing_was_refused():
    whole = Pipeline.preset("default", budget=1000).run(QUERY, CHUNKS)
    assert CLAUSE in whole.text and not whole.dropped

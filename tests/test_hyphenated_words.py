"""A word hyphenated at a line end by PDF extraction ("devel-\\nopment") is one word for scoring.

Before, ``words`` split it into "devel" and "opment", so the answer sentence lost its BM25 and
coverage match on the query's "development", and `default` lost the answer at budgets where the
same report without hyphenation kept it. The rendered text and the spans are the chunk's own.
"""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import Chunk, Pipeline
from optimizer.embeddings import HashingEmbedder, embed_texts
from optimizer.stage import StageContext
from optimizer.text import content_words, dehyphenated, shingles, words
from optimizer.tokenizer import get_tokenizer


@pytest.mark.parametrize("text", [
    "research and devel-\nopment", "research and devel-\r\nopment", "research and devel- \nopment",
    "research and devel-\n  opment", "research and devel-\ropment", "research and devel\u2010\nopment",
])
def test_a_word_broken_at_a_line_end_is_read_whole(text):
    assert "development" in words(text)
    assert dehyphenated(text) == "research and development"


def test_the_halves_stay_so_a_compound_broken_at_its_own_hyphen_still_matches():
    """ "long-\\nterm" cannot be told from "devel-\\nopment" without a dictionary: both halves stay, the joined word is added."""
    assert words("long-\nterm debt") == ["long", "term", "longterm", "debt"]
    assert words("devel-\nopment, or") == ["devel", "opment", "development", "or"]
    assert {"long", "term"} <= set(content_words("Our long-\nterm debt")) and "longterm" in content_words("Our long-\nterm debt")


@pytest.mark.parametrize("text", [
    "Asia-\nPacific revenue",      # upper case after the break: a name, not joined
    "pages 12-\n14",               # no letter before the hyphen, nor after the break
    "item-\n- next item",          # a list marker after the break
    "end of a line -\nthen more",  # a dash after a space, not a hyphen in a word
    "one-\n\ntwo",                 # a blank line between: a paragraph ends there
    "well-known facts",            # no line break
])
def test_what_is_not_a_line_end_hyphenation_reads_as_before(text):
    assert dehyphenated(text) == text
    assert not ({"asiapacific", "1214", "itemnext", "linethen", "onetwo", "wellknown"} & set(words(text)))


def test_unicode_text_follows_the_same_rule():
    assert "naïveté" in words("la naï-\nveté du projet")
    assert "straße" in words("die Stra-\nße")
    assert dehyphenated("Zü-\nrich") == "Zürich" and "zürich" in words("Zü-\nrich")
    assert dehyphenated("Ζ-\nΑ") == "Ζ-\nΑ"  # upper case after the break, in any script


def test_the_ascii_and_unicode_readings_agree():
    ascii_text, accented = "We invested in devel-\nopment.", "We invested in devel-\nopment, café."
    assert words(ascii_text) == words(accented)[:-1]


def test_a_hyphenated_copy_shares_the_joined_word_shingles():
    clean, broken = "spent on development, or 4.1 percent", "spent on devel-\nopment, or 4.1 percent"
    assert shingles(clean) & shingles(broken) > shingles(clean) & shingles("spent on devel opment, or 4.1 percent")


def test_the_embedders_read_the_joined_text():
    e = HashingEmbedder(dim=64)
    broken, clean = embed_texts(e, ["devel-\nopment costs"]), embed_texts(e, ["development costs"])
    assert np.allclose(broken, clean)
    ctx = StageContext(tokenizer=get_tokenizer("cl100k_base"))  # the run's memo keeps each text's own vector
    vecs = embed_texts(e, ["devel-\nopment costs", "development costs", "devel- \r\nopment costs"], ctx)
    assert np.allclose(vecs[0], vecs[1]) and np.allclose(vecs[0], vecs[2])
    assert set(ctx.cache.memo("embeddings:hashing")) == {"devel-\nopment costs", "development costs", "devel- \r\nopment costs"}


# ---- end to end: the hunt's annual report, trimmed

BODIES = [
    "Letter from the Chair. Dear shareholders, 2023 was a year of disciplined execu-\ntion across all our segments. We "
    "invested in new capacity while keeping our\nbalance sheet strong, and we returned cash to shareholders through dividends.",
    "Our strategy rests on three pillars: customer focus, operational excellence and\nsustainable growth. Each segment "
    "sets its own targets under this frame-\nwork, and the Board reviews progress every quarter.",
    "North America segment. Revenue in North America was broadly flat year on year\nas softer demand for industrial "
    "equipment offset growth in services. Operating\nmargin improved by 60 basis points thanks to pricing actions.",
    "Europe segment. European revenue declined 3 percent, reflecting weaker con-\nstruction markets in Germany and "
    "France. We closed two smaller plants and con-\nsolidated production in Poland.",
    "Research and devel-\nopment. We spent $812 million on re-\nsearch and devel-\nopment, or 4.1 percent of revenue. "
    "Our engineers filed 214 patent applications,\nmost of them in battery management and industrial software.",
    "Sustainability. Scope 1 and 2 emissions fell 11 percent against the 2019 base-\nline. All European plants now run "
    "on renewable electricity, and we aim to reach\nthe same in Asia-Pacific by 2026.",
    "Risk management. The main risks to our outlook are a slowdown in global in-\ndustrial demand, supply chain "
    "disruption and currency volatility. The Audit\nCommittee oversees our risk register.",
    "Outlook. For fiscal 2024 we expect revenue growth of 4 to 6 percent, with Asia-\nPacific again leading. Capital "
    "expenditure will be about $1.1 billion.",
    "Employees. At year end we employed 41,300 people in 38 countries. Employee en-\ngagement scored 78 percent in our "
    "annual survey, up from 74 percent.",
    "Governance. The Board met eleven times in 2023. Two new independent direc-\ntors joined, bringing the share of "
    "independent members to 80 percent.",
]
DISTRACTORS = [
    "Capital allocation. Our capital expenditure policy and research and development priorities are set by the Board. "
    "Patent applications and engineers are reviewed yearly.",
    "Investor FAQ. Questions about capital expenditure, research and development, and patent applications can be sent "
    "to investor relations.",
]
CHUNKS = [Chunk(id=f"p{i}", text=b) for i, b in enumerate(BODIES)]
CHUNKS += [Chunk(id=f"d{i}", text=t) for i, t in enumerate(DISTRACTORS)]
QUERY = "How much did ACME spend on research and development in 2023?"


@pytest.mark.parametrize("budget", [0.2, 0.25])
def test_default_keeps_the_hyphenated_answer_and_its_exact_spans(budget):
    """Before: `default` kept "$812 million" only from budget 0.3 on (the same report unhyphenated: from 0.15 on)."""
    snapshot = [(c.id, c.text) for c in CHUNKS]
    result = Pipeline.preset("default").run(QUERY, CHUNKS, budget=budget)
    assert "$812 million" in result.text
    assert "re-\nsearch and devel-\nopment" in result.text  # rendered as the chunk has it, never joined
    assert result.tokens <= result.budget
    by_id = {c.id: c.text for c in CHUNKS}
    assert result.spans
    for span in result.spans:
        assert result.text[span.context_start:span.context_end] == by_id[span.chunk_id][span.start:span.end]
    assert [(c.id, c.text) for c in CHUNKS] == snapshot

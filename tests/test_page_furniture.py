"""Page furniture: running headers, page-number footers and site menus repeated in a call's chunks.

A PDF's header and footer (and a web page's menu) end no sentence, so the splitter glued them to
the sentence beside them (an answer across a page break grew from 40 to 53 tokens and was lost at
15 %), and a header as each chunk's first line titled every paragraph and was printed with every
kept block. Found per call by repetition (optimizer.furniture), they are sentence boundaries,
never headings, and never kept.
"""

from __future__ import annotations

import re

import pytest

from optimizer import Chunk, Pipeline
from optimizer.furniture import REASON, find_furniture, line_key, strip_furniture
from optimizer.stages.paragraphs import ParagraphViews

HEADER = "ACME Corporation Annual Report 2023"
BODIES = [
    "Letter from the Chair. Dear shareholders, 2023 was a year of disciplined execu-\ntion across all our segments. We invested in new capacity while keeping our\nbalance sheet strong, and we returned cash to shareholders through dividends.",
    "Our strategy rests on three pillars: customer focus, operational excellence and\nsustainable growth. Each segment sets its own targets under this frame-\nwork, and the Board reviews progress every quarter.",
    "North America segment. Revenue in North America was broadly flat year on year\nas softer demand for industrial equipment offset growth in services. Operating\nmargin improved by 60 basis points thanks to pricing actions.",
    "Europe segment. European revenue declined 3 percent, reflecting weaker con-\nstruction markets in Germany and France. We closed two smaller plants and con-\nsolidated production in Poland.",
    "Asia-Pacific segment. The region was our fastest growing market in 2023. Asia-\nPacific revenue reached\n{break}$4.7 billion in fiscal 2023, up 14 percent, driven by demand for cloud ser-\nvices in Japan and Australia.",
    "Latin America segment. Revenue in Latin America grew 5 percent in local cur-\nrencies, although currency movements reduced reported growth to 1 percent.\nBrazil and Mexico remained our largest markets in the region.",
    "Research and development. We spent $812 million on research and develop-\nment, or 4.1 percent of revenue. Our engineers filed 214 patent applications,\nmost of them in battery management and industrial software.",
    "Sustainability. Scope 1 and 2 emissions fell 11 percent against the 2019 base-\nline. All European plants now run on renewable electricity, and we aim to reach\nthe same in Asia-Pacific by 2026.",
    "Risk management. The main risks to our outlook are a slowdown in global in-\ndustrial demand, supply chain disruption and currency volatility. The Audit\nCommittee oversees our risk register.",
    "Outlook. For fiscal 2024 we expect revenue growth of 4 to 6 percent, with Asia-\nPacific again leading. Capital expenditure will be about $1.1 billion.",
    "Employees. At year end we employed 41,300 people in 38 countries. Employee en-\ngagement scored 78 percent in our annual survey, up from 74 percent.",
    "Governance. The Board met eleven times in 2023. Two new independent direc-\ntors joined, bringing the share of independent members to 80 percent.",
]
QUESTION = "What was Asia-Pacific revenue in fiscal 2023?"


def annual_pages() -> list[dict[str, str]]:
    """PDF pages 4-15: a running header, a ``- N -`` footer, and a page break inside the answer's sentence (page 8)."""
    pages = []
    for i, body in enumerate(BODIES):
        n = i + 4
        body = body.replace("{break}", f"- {n} -\n{HEADER}\n")
        pages.append({"id": f"p{n}", "text": f"{HEADER}\n{body}\n- {n} -"})
    return pages


RUNNING_HEAD = "Proceedings of the 2022 Conference on Neural Text Processing, pages 112-124"
PAPER = [
    "Abstract\nWe study context compression for retrieval-augmented generation. Our method selects sentences with a learned scorer.",
    "1 Introduction\nLarge language models benefit from retrieved passages, but long contexts are costly.",
    "2 Related work\nExtractive compression has a long history in summarization. Recent methods prune tokens.",
    "3 Method\nOur scorer is a two-layer network over sentence features, trained with Adam at a learning rate of 3e-4.",
    "4 Experimental setup\nWe used a dropout rate of 0.35 in all layers and trained for 20 epochs.",
    "5 Results\nOur method keeps 94 percent of the answer recall of the full context with 40 percent of its tokens.",
]

SIDEBAR = "Getting started\nInstallation\nConfiguration\nDeployment\nAPI reference\nFAQ"
FOOTER = "Was this page helpful? Yes No\nEdit this page on GitHub\nLast updated on March 3, 2024"
DOCS = [
    "Configuration\nZephyr reads its settings from zephyr.toml in the working directory.",
    "Configuration\nThe server listens on port 7420 by default. Set ZEPHYR_PORT to use another port.",
    "Configuration\nLogging goes to standard error. Set log_level to debug for more detail.",
    "Deployment\nRun Zephyr behind a reverse proxy such as nginx. Forward the port the server listens on.",
    "Installation\nInstall Zephyr with pip install zephyr-server. Python 3.9 or later is required.",
    "API reference\nGET /health returns 200 when the server is ready. GET /metrics returns Prometheus metrics.",
    "Deployment\nIn Docker, publish the server port with -p and mount zephyr.toml read-only.",
    "Getting started\nStart the server with zephyr serve and open the dashboard in a browser.",
]


def paper_chunks() -> list[Chunk]:
    return [Chunk(id=f"s{i}", text=f"{RUNNING_HEAD}\n{t}") for i, t in enumerate(PAPER)]


def docs_chunks() -> list[Chunk]:
    return [Chunk(id=f"d{i}", text=f"{SIDEBAR}\n{t}\n{FOOTER}") for i, t in enumerate(DOCS)]


def furniture_key(line: str) -> str:
    return re.sub(r"\d+", "0", line.strip())


def test_an_answer_across_a_page_break_is_kept_at_15_percent():
    # before: the footer and the next page's header were glued into the answer's sentence (53 tokens, not 40),
    # and default left it out for the shorter sentences of other pages
    result = Pipeline.preset("default").run(QUESTION, annual_pages(), budget=0.15)
    assert "$4.7 billion" in result.text


@pytest.mark.slow
def test_quality_keeps_the_answer_across_a_page_break_too():
    assert "$4.7 billion" in Pipeline.preset("quality").run(QUESTION, annual_pages(), budget=0.15).text


@pytest.mark.parametrize("budget", [0.15, 0.35, 0.5])
def test_no_header_or_footer_is_kept(budget):
    result = Pipeline.preset("default").run(QUESTION, annual_pages(), budget=budget)
    lines = [re.sub(r"^\[\d+\] ", "", ln).strip() for ln in result.text.split("\n")]
    assert HEADER not in lines
    assert not [ln for ln in lines if re.fullmatch(r"- \d+ -", ln)]
    paper = Pipeline.preset("default").run("What dropout rate did the authors use?", paper_chunks(), budget=budget)
    assert RUNNING_HEAD not in paper.text and "0.35" in paper.text


def test_provenance_stays_exact_and_the_trace_names_the_furniture():
    pages = annual_pages()
    by_id = {p["id"]: p["text"] for p in pages}
    result = Pipeline.preset("default").run(QUESTION, pages, budget=0.35)
    for span in result.spans:
        kept = by_id[span.chunk_id][span.start : span.end]
        assert result.text[span.context_start : span.context_end] == kept
        assert HEADER not in kept and not re.search(r"^- \d+ -$", kept, re.M)
    furniture = [d for d in result.dropped if d.reason == REASON]
    for c in result.chunks:  # each kept page's header and footer (page 8's two of each) are named as furniture
        lines = [ln for d in furniture if d.chunk_id == c.id for ln in by_id[c.id][d.start : d.end].split("\n")]
        assert sorted(map(furniture_key, lines)) == sorted(["- 0 -", furniture_key(HEADER)] * (1 + (c.id == "p8")))


def test_the_page_break_is_a_sentence_boundary_and_both_copies_go():
    chunks = [Chunk(id=p["id"], text=p["text"]) for p in annual_pages()]
    found = find_furniture(chunks)
    page8 = chunks[4]
    assert [page8.text[s:e] for s, e in found["p8"]] == [HEADER, "- 8 -", HEADER, "- 8 -"]
    stripped = strip_furniture(chunks, found)[4]
    assert stripped.text.startswith("Asia-Pacific segment.") and "Pacific revenue reached\n$4.7 billion" in stripped.text
    assert len(stripped.kept_pieces) == 2  # the answer's page-8 part is a piece of its own: no sentence crosses the break


def test_headings_fall_back_to_the_section_line():
    chunks = paper_chunks()
    found = find_furniture(chunks)
    views = ParagraphViews(strip_furniture(chunks, found), skip=found).views
    assert [v.title for v in views] == ["Abstract", "1 Introduction", "2 Related work", "3 Method", "4 Experimental setup", "5 Results"]
    # before: every paragraph was titled by the running head
    assert {v.title for v in ParagraphViews(chunks).views} == {RUNNING_HEAD}


def test_a_sidebar_item_that_is_also_the_sections_heading_titles_the_section():
    chunks = docs_chunks()
    found = find_furniture(chunks)
    views = ParagraphViews(strip_furniture(chunks, found), skip=found).views
    assert [v.title for v in views] == [t.split("\n")[0] for t in DOCS]
    assert all(not v.text.startswith(("Getting started", "Was this")) for v in views)
    result = Pipeline.preset("default").run("What is the default port of the Zephyr server?", chunks, budget=0.3)
    assert "7420" in result.text and "Was this page helpful" not in result.text
    assert "Getting started\nInstallation" not in result.text


def test_a_call_of_two_chunks_never_has_furniture():
    pages = annual_pages()[3:5]
    assert find_furniture([Chunk(id=p["id"], text=p["text"]) for p in pages]) == {}
    result = Pipeline.preset("default").run(QUESTION, pages, budget=1.0)
    assert result.text.count(HEADER) == 3


def test_lines_chunks_truly_share_are_not_furniture():
    section = [Chunk(id=f"c{i}", text=t) for i, t in enumerate(DOCS + ["FAQ\nWhy does it refuse connections? Check the port."])]
    assert find_furniture(section) == {}  # "Configuration" heads 3 of 9 chunks: less than half
    md = [Chunk(id=f"m{i}", text=f"# Zephyr guide\n{t}") for i, t in enumerate(PAPER)]
    assert find_furniture(md) == {}  # a Markdown heading: the title logic's
    answers = ["Open the settings page.", "Ask your administrator.", "Use the mobile app.", "Call support."]
    faq = [Chunk(id=f"q{i}", text=f"How do I reset my password?\n{a}") for i, a in enumerate(answers)]
    assert find_furniture(faq) == {}  # a question, joined to its answer
    templated = [Chunk(id=f"r{i}", text=f"Fund {n}\nIt returned {i}.{i} percent in 202{i}.") for i, n in enumerate("ABCD")]
    assert find_furniture(templated) == {}  # a sentence repeats word for word, or it is text: its numbers are its own
    specs = [Chunk(id=f"v{i}", text=f"Model {n}\nWeight: {i + 3}40 g\nPower: {i + 5} W") for i, n in enumerate("ABCD")]
    assert find_furniture(specs) == {}  # a labelled number is a datum
    csv = [Chunk(id=f"t{i}", text="station,city,hours\n" + "\n".join(f"s{i}{j},lyon,9-2{j}" for j in range(4))) for i in range(4)]
    assert find_furniture(csv) == {}  # a header row over its data
    pipe = [Chunk(id=f"u{i}", text=f"| year | revenue |\n|---|---|\n| 20{i}0 | {i}.5 |\n| 20{i}1 | {i}.7 |") for i in range(4)]
    assert find_furniture(pipe) == {}
    numbers = [Chunk(id=f"n{i}", text="Readings\n" + "\n".join(f"{i}.{j}" for j in range(5))) for i in range(4)]
    assert [numbers[0].text[s:e] for s, e in find_furniture(numbers)["n0"]] == ["Readings"]  # the cells repeat many times a chunk
    code = [Chunk(id=f"k{i}", text=f"Example {'abcd'[i]} runs:\n```python\nimport os\nprint({i})\n```") for i in range(4)]
    assert find_furniture(code) == {}


def test_a_chunk_given_twice_counts_once():
    text = "Zephyr manual\nThe server listens on port 7420."
    chunks = [Chunk(id=f"x{i}", text=text) for i in range(3)] + [Chunk(id="y", text="Zephyr manual\nTLS is off.")]
    assert find_furniture(chunks) == {}  # two distinct chunks


def test_line_key_masks_digits_and_white_space():
    assert line_key("Page 7") == line_key("Page 19") and line_key("- 8 -") == line_key(" -  9 - ")
    assert line_key("Page 7") != line_key("Page seven")


def test_overlapping_windows_are_text_not_furniture():
    text = [f"Step {n}: the server reads setting number {n} from zephyr.toml." for n in range(20)]
    windows = [Chunk(id=f"w{k}", text="\n".join(text[k : k + 6])) for k in range(0, 12, 2)]  # each line in three windows
    assert find_furniture(windows) == {}
    result = Pipeline.preset("sentence-dense").run("Which setting does the server read?", windows, budget=1.0)
    assert all(line in result.text for line in text[:16])

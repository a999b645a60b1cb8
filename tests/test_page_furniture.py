"""Page furniture (optimizer/furniture.py): running headers, page-number footers and menus cut narrowly.

Wins from the hunt (/tmp/hunt-boilerplate) and, as negative tests, every repro of the review that
reverted the first, broad rule (digits masked, wrapped passages, labels, code, speed).
"""

import re

import pytest

from optimizer import Chunk, Pipeline, make_stage
from optimizer.furniture import REASON, find_furniture, line_key, page_number_key, strip_furniture
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


def annual_pages(title: str | None = None) -> list[dict]:
    """PDF pages 4-15: a running header, a ``- N -`` footer, and a page break inside the answer's sentence (page 8)."""
    pages = []
    for i, body in enumerate(BODIES):
        n = i + 4
        body = body.replace("{break}", f"- {n} -\n{HEADER}\n")
        pages.append({"id": f"p{n}", "text": f"{HEADER}\n{body}\n- {n} -", **({"title": title} if title else {})})
    return pages


def chunks_of(pages: list[dict]) -> list[Chunk]:
    return [Chunk(**p) for p in pages]


RUNNING_HEAD = "Proceedings of the 2022 Conference on Neural Text Processing, pages 112-124"
PAPER = [
    "Abstract\nWe study context compression for retrieval-augmented generation. Our method selects sentences with a learned scorer.",
    "1 Introduction\nLarge language models benefit from retrieved passages, but long contexts are costly.",
    "2 Related work\nExtractive compression has a long history in summarization. Recent methods prune tokens.",
    "3 Method\nOur scorer is a two-layer network over sentence features, trained with Adam at a learning rate of 3e-4.",
    "4 Experimental setup\nWe used a dropout rate of 0.35 in all layers and trained for 20 epochs.",
    "5 Results\nOur method keeps 94 percent of the answer recall of the full context with 40 percent of its tokens.",
]


def paper_chunks() -> list[Chunk]:
    return [Chunk(id=f"s{i}", title="Learned Context Compression", text=f"{RUNNING_HEAD}\n{t}") for i, t in enumerate(PAPER)]


def custom(budget):
    return Pipeline([("s", make_stage("compress-sentences"))], budget=budget)


def cut_lines(chunks: list[Chunk]) -> dict[str, list[str]]:
    found = find_furniture(chunks)
    return {c.id: [c.original_text[s:e] for s, e in found.get(c.id, ())] for c in chunks if found.get(c.id)}


# ---- the hunt's wins


@pytest.mark.parametrize("preset", ["default", pytest.param("quality", marks=pytest.mark.slow)])
def test_an_answer_across_a_page_break_is_kept_at_15_percent(preset):
    # before: the footer and the next page's header were glued into the answer's sentence (53 tokens, not 40),
    # and default/quality left it out for the shorter sentences of other pages
    assert "$4.7 billion" in Pipeline.preset(preset).run(QUESTION, annual_pages(), budget=0.15).text


def test_the_page_break_is_a_sentence_boundary_and_the_footers_go():
    chunks = chunks_of(annual_pages())
    found = find_furniture(chunks)
    page8 = chunks[4]
    # the untitled chunk's first line is its title (its only identifier): it stays; its copy at the break goes
    assert [page8.text[s:e] for s, e in found["p8"]] == ["- 8 -", HEADER, "- 8 -"]
    stripped = strip_furniture(chunks, found)[4]
    assert stripped.text.startswith(HEADER + "\nAsia-Pacific segment.") and "Pacific revenue reached\n$4.7 billion" in stripped.text
    assert len(stripped.kept_pieces) == 2  # the answer's page-8 part is a piece of its own: no sentence crosses the break


@pytest.mark.parametrize("budget", [0.15, 0.35, 0.5])
def test_no_footer_or_break_header_is_kept(budget):
    pages = annual_pages()
    by_id = {p["id"]: p["text"] for p in pages}
    result = Pipeline.preset("default").run(QUESTION, pages, budget=budget)
    for span in result.spans:
        kept = by_id[span.chunk_id][span.start : span.end]
        assert result.text[span.context_start : span.context_end] == kept
        assert not re.search(r"^- \d+ -$", kept, re.M) and f"\n{HEADER}" not in kept
    # a titled chunk: the title identifies it, the running header goes too
    titled = Pipeline.preset("default").run(QUESTION, annual_pages("ACME annual report"), budget=budget)
    assert HEADER not in titled.text and not re.search(r"^- \d+ -$", titled.text, re.M)
    paper = Pipeline.preset("default").run("What dropout rate did the authors use?", paper_chunks(), budget=budget)
    assert RUNNING_HEAD not in paper.text and "0.35" in paper.text


def test_the_trace_names_the_furniture():
    result = Pipeline.preset("default").run(QUESTION, annual_pages(), budget=0.35)
    by_id = {p["id"]: p["text"] for p in annual_pages()}
    named = [ln for d in result.dropped if d.reason == REASON for ln in by_id[d.chunk_id][d.start : d.end].split("\n")]
    assert named and all(re.fullmatch(r"- \d+ -", t) or t == HEADER for t in named) and HEADER in named


def test_headings_fall_back_to_the_section_line():
    chunks = paper_chunks()
    found = find_furniture(chunks)
    views = ParagraphViews(strip_furniture(chunks, found), skip=found).views
    assert [v.title.split(": ")[-1] for v in views] == [t.split("\n")[0] for t in PAPER]
    # before: every paragraph was headed by the running head
    assert {v.title for v in ParagraphViews(chunks).views} == {f"Learned Context Compression: {RUNNING_HEAD}"}


def test_a_sidebar_menu_and_a_page_footer_go_the_sections_heading_stays():
    sidebar = "Getting started\nInstallation\nConfiguration\nDeployment\nAPI reference\nFAQ"
    footer = "Was this page helpful? Yes No\nEdit this page on GitHub\nPage {n} of 5"
    docs = ["Configuration\nZephyr reads its settings from zephyr.toml.", "Configuration\nThe server listens on port 7420 by default.",
            "Deployment\nRun Zephyr behind a reverse proxy such as nginx.", "Installation\nInstall Zephyr with pip install zephyr-server.",
            "Getting started\nStart the server with zephyr serve."]
    chunks = [Chunk(id=f"d{i}", title="Zephyr docs", text=f"{sidebar}\n{t}\n{footer.format(n=i + 1)}") for i, t in enumerate(docs)]
    found = cut_lines(chunks)
    # the page's menu and paged footer go; the section's own heading (a copy of a menu line) stays
    assert all(found[c.id] == sidebar.split("\n") + footer.format(n=i + 1).split("\n") for i, c in enumerate(chunks))
    stripped = strip_furniture(chunks, find_furniture(chunks))
    assert [c.text for c in stripped] == docs
    result = Pipeline.preset("default").run("What is the default port of the Zephyr server?", chunks, budget=0.3)
    assert "7420" in result.text and "Was this page helpful" not in result.text and "Installation\nConfiguration" not in result.text


def test_a_menu_and_footer_with_no_page_number_are_kept():
    # a line at most chunks' edge with no page number beside it is a field as often as a menu (In stock, Serves 4)
    sidebar = "Getting started\nInstallation\nConfiguration"
    chunks = [Chunk(id=f"d{i}", title="Zephyr docs", text=f"{sidebar}\n{t}\nEdit this page on GitHub")
              for i, t in enumerate(["Zephyr reads zephyr.toml.", "The server listens on port 7420.", "Run it behind nginx."])]
    assert find_furniture(chunks) == {}


def test_page_number_lines_differ_only_in_their_page_number():
    assert page_number_key("Page 7")[0] == page_number_key("Page 19")[0] == "Page #"
    assert page_number_key("- 8 -")[0] == page_number_key(" -  9 - ")[0]
    assert page_number_key("Annual Report 2023 | Page 9")[0] == "Annual Report 2023 | Page #"
    assert page_number_key("Seite 3 von 12")[0] == page_number_key("Seite 4 von 12")[0]
    for content in ("Galaxy S21", "$29.99", "2 eggs", "4.5 out of 5", "Week 3", "Model X2"):
        assert page_number_key(content) == (content, False)
    ocr = [f"HARLOW HISTORICAL SOCIETY BULLETIN No. 14   -   {n} -\nThe mill closed in {1950 + n}." for n in range(3, 8)]
    chunks = [Chunk(id=f"o{i}", title="Harlow bulletin", text=t) for i, t in enumerate(ocr)]  # untitled: the line is the title
    assert all(v == [c.text.split("\n")[0]] for c in chunks for v in [cut_lines(chunks)[c.id]])


def test_a_call_of_two_chunks_never_has_furniture():
    assert find_furniture(chunks_of(annual_pages()[3:5])) == {}


# ---- the review's repros (/tmp/hunt-review-core34): nothing of them is furniture


def test_products_prices_and_labels_are_content():  # r1
    p = [("Acme Kettle", "29.99", "4.5"), ("Bolt Toaster", "45.00", "4.1"), ("Cirrus Blender", "89.50", "3.9"),
         ("Delta Mixer", "120.00", "4.7"), ("Echo Grinder", "35.25", "4.0")]
    chunks = [Chunk(id=f"c{i}", text=f"{n}\nPrice\n${pr}\nRating\n{r} out of 5\nA fine appliance.") for i, (n, pr, r) in enumerate(p)]
    assert find_furniture(chunks) == {}
    assert "$89.50" in custom(400).run("How much does the Cirrus Blender cost?", chunks).text


def test_chat_speakers_are_content():  # r2
    t = [("Alice", "can we ship the billing fix friday", "Bob", "no, QA found a regression in invoices"),
         ("Alice", "who owns the invoice regression", "Bob", "Carol does, she is on it today"),
         ("Alice", "what about the EU rollout", "Bob", "postponed to March 12 because of the audit"),
         ("Alice", "and the mobile release", "Bob", "app store review passed this morning"),
         ("Alice", "ok thanks", "Bob", "the database migration runs tonight at 22:00")]
    assert find_furniture([Chunk(id=f"m{i}", text="\n".join(x)) for i, x in enumerate(t)]) == {}


def test_unfenced_code_lines_are_content():  # r3
    f = ["def load_config(path):\n    try:\n        return json.load(open(path))\n    except FileNotFoundError:\n        return {}",
         "def read_token(path):\n    try:\n        return Path(path).read_text()\n    except FileNotFoundError:\n        return None",
         "def parse_port(value):\n    try:\n        return int(value)\n    except ValueError:\n        return 8080",
         "def remove(path):\n    try:\n        os.remove(path)\n    except FileNotFoundError:\n        pass"]
    chunks = [Chunk(id=f"f{i}", text=t) for i, t in enumerate(f)]
    assert find_furniture(chunks) == {}
    assert "except FileNotFoundError:" in custom(300).run("what does load_config return when the file is missing", chunks).text


WARRANTY = ("The warranty covers defects in materials and workmanship\n"
            "for a period of 36 months from the date of purchase, provided\n"
            "that the product was registered within 30 days\n"
            "and used according to the instructions in this manual.")


def test_a_hard_wrapped_passage_near_copies_share_is_content():  # r4, r5
    heads = ["Warranty terms (2021 edition)", "Warranty terms (2022 edition)", "Support article 4411", "Retail copy, store 18"]
    others = [Chunk(id="o0", text="The kettle must be descaled every month."), Chunk(id="o1", text="Never immerse the base in water.")]
    mirrors = [Chunk(id=f"w{i}", text=f"{h}\n{WARRANTY}") for i, h in enumerate(heads)] + others
    assert find_furniture(mirrors) == {}
    assert "36 months" in custom(300).run("How long is the warranty period?", mirrors).text
    bodies = ["The Acme Kettle boils 1.7 litres.", "The Bolt Toaster has four slots.", "The Cirrus Blender has a 1200 watt motor.", "The Delta Mixer has ten speeds."]
    manuals = [Chunk(id=f"m{i}", text=f"{b}\n\nWarranty\n{WARRANTY}") for i, b in enumerate(bodies)] + others
    assert find_furniture(manuals) == {}


@pytest.mark.parametrize("end", [".", "।", "۔", "։", "።"])
def test_sentences_in_any_script_are_content(end):  # r6
    lines = {".": ["The dam was finished in 1936", "It holds back Lake Mead", "It produces power for three states"],
             "।": ["बांध 1936 में बनकर तैयार हुआ", "यह लेक मीड को रोकता है", "यह तीन राज्यों को बिजली देता है"],
             "۔": ["ڈیم 1936 میں مکمل ہوا", "یہ لیک میڈ کو روکتا ہے", "یہ تین ریاستوں کو بجلی دیتا ہے"],
             "։": ["Ամբարտակը կառուցվել է 1936 թվականին", "Այն պահում է Միդ լիճը", "Այն էլեկտրաէներգիա է տալիս"],
             "።": ["ግድቡ በ1936 ተጠናቀቀ", "የሚድ ሐይቅን ይይዛል", "ለሦስት ግዛቶች ኃይል ይሰጣል"]}[end]
    passage = "\n".join(ln + end for ln in lines)
    heads = ["Mirror A", "Mirror B 2", "Copy from wiki", "Cached page"]
    chunks = [Chunk(id=f"w{i}", text=f"{h}\n{passage}") for i, h in enumerate(heads)] + [Chunk(id="x", text="Unrelated text" + end)]
    assert find_furniture(chunks) == {}


def test_labels_titles_and_tables_are_content():  # r7
    qa = [("How do I reset my password?", "Use the link on the sign-in page"), ("Can I change my email?", "Yes, under Settings"),
          ("Where are invoices?", "Billing shows every invoice"), ("Is there a mobile app?", "Yes, for iOS and Android")]
    assert find_furniture([Chunk(id=f"q{i}", text=f"Question\n{q}\nAnswer\n{a}") for i, (q, a) in enumerate(qa)]) == {}
    title = "Acme X200 Cordless Drill User Manual"
    bodies = ["The battery charges fully in 90 minutes.", "The warranty lasts 24 months.", "Use only Acme 18 V batteries.", "Store the drill in a dry place."]
    manual = [Chunk(id=f"t{i}", text=f"{title}\n{b}") for i, b in enumerate(bodies)]
    assert find_furniture(manual) == {}  # an untitled chunk's first line is its identifier
    assert title in Pipeline.preset("default").run("How long is the warranty?", manual, budget=20).text
    assert find_furniture([Chunk(id=f"v{i}", text=f"id,city,population\n{i},City{i},{1000 * i}") for i in range(5)]) == {}
    assert find_furniture([Chunk(id=f"m{i}", text=f"| Model | Price |\n|---|---|\n| X{i} | ${i}00 |") for i in range(5)]) == {}
    specs = [Chunk(id=f"s{i}", text=f"Model X{i}\nWeight\n{i + 1}.2 kg\nBattery life\n{i + 5} hours\nThe X{i} is a laptop.") for i in range(5)]
    assert find_furniture(specs) == {}


def test_model_names_differing_in_digits_are_content():  # r8
    g = [("Galaxy S21", "4000 mAh"), ("Galaxy S22", "3700 mAh"), ("Galaxy S23", "3900 mAh"), ("Galaxy S24", "4000 mAh")]
    chunks = [Chunk(id=f"g{i}", text=f"{n}\nThe battery holds {b} and charges at 25 W.") for i, (n, b) in enumerate(g)]
    assert find_furniture(chunks) == {}
    assert "Galaxy S23" in custom(400).run("What is the battery capacity of the Galaxy S23?", chunks).text


def test_recipe_ingredients_are_content():  # r16
    r = [("Pancakes", "2 eggs\n250 g flour\n300 ml milk\n1 pinch salt", "Whisk and fry in a hot pan."),
         ("Crepes", "3 eggs\n125 g flour\n250 ml milk\n1 pinch salt", "Rest the batter, then fry thin."),
         ("Yorkshire pudding", "4 eggs\n200 g flour\n200 ml milk\n1 pinch salt", "Bake in very hot fat."),
         ("Waffles", "2 eggs\n280 g flour\n425 ml milk\n1 tbsp sugar", "Cook in a greased waffle iron."),
         ("Clafoutis", "3 eggs\n60 g flour\n300 ml milk\n500 g cherries", "Bake at 180 C for 40 minutes.")]
    chunks = [Chunk(id=f"r{i}", text=f"{n}\nIngredients\n{ing}\nMethod\n{m}") for i, (n, ing, m) in enumerate(r)]
    assert find_furniture(chunks) == {}
    text = custom(400).run("How many eggs and how much milk do crepes need?", chunks).text
    assert "3 eggs" in text and "250 ml milk" in text


def test_overlapping_windows_are_text():
    text = [f"Step {n}: the server reads setting number {n} from zephyr.toml" for n in range(20)]
    windows = [Chunk(id=f"w{k}", text="\n".join(text[k : k + 6])) for k in range(0, 12, 2)]
    assert find_furniture(windows) == {}


def test_line_shapes_that_are_never_furniture():
    never = ["## Usage", "How do I reset it?", "    except ValueError:", "It rose.", "Weight: 340 g", "- first item",
             "return {", "}", "x = 1;", "wrapped prose continues here", "A line of many words that goes on for more than twelve words in all"]
    assert [line_key(x) for x in never] == [None] * len(never)
    assert line_key("The warranty covers defects in materials", "for a period of 36 months from purchase,") is None


# ---- linear, and inside the run's deadline (r10, r13): a call-count proxy, no timing


def test_2000_chunks_key_each_line_once_and_check_the_deadline_per_chunk(monkeypatch):
    import optimizer.furniture as furniture

    keyed = []
    real = furniture.line_key
    monkeypatch.setattr(furniture, "line_key", lambda *a: keyed.append(1) or real(*a))
    body = [f"Paragraph {k} of the report says something about topic {k % 17}." for k in range(20)]
    chunks = [Chunk(id=str(i), text="\n".join(["ACME Report", "Confidential", *body[: 10 + i % 10], f"Page {i}"])) for i in range(2000)]
    checks = []
    found = furniture.find_furniture(chunks, check=checks.append)
    assert len(checks) == len(chunks)
    assert len(keyed) == sum(len(c.text.split("\n")) for c in chunks)  # each line keyed once: no pairwise comparison
    assert all(len(v) == 2 for v in found.values()) and len(found) == 2000  # "Confidential" and the page line; the title stays


def test_the_deadline_stops_the_search():
    chunks = [Chunk(id=str(i), text=f"ACME Report\nPart {i}.\nPage {i}") for i in range(50)]

    class Late(Exception):
        pass

    def check(where):
        if "chunk 10 " in where:
            raise Late(where)

    with pytest.raises(Late, match="finding page furniture"):
        find_furniture(chunks, check=check)


# ---- the second review's repros (/tmp/hunt-review-core34b f1-f3): a number alone on an edge line is no page number


def _answer_kept(chunks, question, answer, budget):
    return all(answer in Pipeline.preset(p).run(question, chunks, budget=budget).text for p in ("default", "quality"))


MOVIES = [("Inception", "A thief who steals corporate secrets through dream-sharing technology is given a final task.", "2010"),
          ("Heat", "A group of professional bank robbers is tracked by a detective in Los Angeles.", "1995"),
          ("Alien", "The crew of a commercial spacecraft encounters a deadly lifeform.", "1979"),
          ("Memento", "A man with short-term memory loss hunts for his wife's killer using notes and tattoos.", "2000"),
          ("Arrival", "A linguist works with the military to talk with alien lifeforms after twelve spacecraft land.", "2016")]


def test_a_year_alone_on_the_last_line_is_content():  # f1 A
    chunks = [Chunk(id=f"m{i}", text=f"{t}\n{d}\n{y}") for i, (t, d, y) in enumerate(MOVIES)]
    assert find_furniture(chunks) == {}
    assert _answer_kept(chunks, "What year was Memento released?", "2000", 60)
    site = [Chunk(id=f"m{i}", title=t, text=f"Movie Database\n{d}\n{y}") for i, (t, d, y) in enumerate(MOVIES)]
    assert all(v == ["Movie Database"] for v in cut_lines(site).values())  # a plain number only beside text in its own run


def test_prices_sections_and_ratings_alone_on_a_line_are_content():  # f1 B, C, D
    p = [("Acme Kettle", "Stainless steel kettle that boils 1.7 litres in three minutes.", "$30"),
         ("Bolt Toaster", "Four slots with a defrost setting and a crumb tray.", "$45"),
         ("Cirrus Blender", "A 1200 watt motor and a glass jug that holds 2 litres.", "$90"),
         ("Delta Mixer", "Ten speeds, a dough hook and a splash guard.", "$120")]
    products = [Chunk(id=f"p{i}", title=t, text=f"{t}\n{d}\n{y}") for i, (t, d, y) in enumerate(p)]
    assert find_furniture(products) == {}
    assert _answer_kept(products, "How much does the Cirrus Blender cost?", "$90", 60)
    s = [("§ 1", "Geltungsbereich", "Dieses Gesetz gilt für alle Mietverträge über Wohnraum."),
         ("§ 2", "Mietzahlung", "Die Miete ist spätestens am dritten Werktag des Monats zu zahlen."),
         ("§ 3", "Kaution", "Die Kaution darf drei Monatsmieten nicht übersteigen."),
         ("§ 4", "Kündigung", "Die Kündigungsfrist beträgt drei Monate.")]
    statute = [Chunk(id=f"s{i}", text=f"{a}\n{b}\n{c}") for i, (a, b, c) in enumerate(s)]
    assert find_furniture(statute) == {}
    assert _answer_kept(statute, "Was regelt § 3?", "§ 3\nKaution", 40)
    r = [("Hotel Aurora", "Quiet rooms near the station, breakfast included.", "4/5"),
         ("Hotel Borealis", "Rooftop pool and a busy bar on weekends.", "3/5"),
         ("Hotel Cygnus", "Family rooms, free parking and a playground.", "5/5"),
         ("Hotel Draco", "Budget rooms, shared bathrooms on each floor.", "2/5")]
    assert find_furniture([Chunk(id=f"h{i}", title=t, text=f"{t}\n{d}\nRated\n{y}") for i, (t, d, y) in enumerate(r)]) == {}
    hotels = [Chunk(id=f"h{i}", title=t, text=f"{d}\n{y}") for i, (t, d, y) in enumerate(r)]
    assert find_furniture(hotels) == {}
    assert _answer_kept(hotels, "How is Hotel Cygnus rated?", "5/5", 40)


def test_a_label_beside_a_number_line_is_content():  # f2 E
    n = [("Oat Porridge", "A warm bowl of rolled oats cooked in milk.", "250", "9"),
         ("Greek Salad", "Tomato, cucumber, olives and feta with olive oil.", "320", "11"),
         ("Lentil Soup", "Red lentils simmered with cumin and carrots.", "280", "18"),
         ("Chicken Wrap", "Grilled chicken, lettuce and yogurt sauce in a tortilla.", "450", "32")]
    cards = [Chunk(id=f"n{i}", title=t, text=f"{d}\nCalories\n{c}\nProtein (g)\n{p}\nVegetarian recipe card, printable.")
             for i, (t, d, c, p) in enumerate(n)]
    assert find_furniture(cards) == {}
    assert _answer_kept(cards, "How many calories does the Lentil Soup have?", "Calories\n280", 60)


def test_a_street_address_is_no_page_number():  # f2 F
    s = [("Filiale Mitte", "Geöffnet Montag bis Samstag, 9 bis 20 Uhr.", "Berliner Str. 12"),
         ("Filiale Nord", "Geöffnet Montag bis Freitag, 8 bis 18 Uhr.", "Berliner Str. 140"),
         ("Filiale Süd", "Geöffnet täglich von 10 bis 22 Uhr.", "Berliner Str. 7"),
         ("Filiale Ost", "Geöffnet Montag bis Samstag, 7 bis 19 Uhr.", "Berliner Str. 88")]
    shops = [Chunk(id=f"f{i}", title=t, text=f"{d}\n{a}") for i, (t, d, a) in enumerate(s)]
    assert find_furniture(shops) == {}
    assert _answer_kept(shops, "Wo ist die Filiale Süd?", "Berliner Str. 7", 40)


def test_a_signature_name_on_most_but_not_nearly_all_chunks_stays():  # f3 G
    b = [("Your refund of $45.20 was approved today and will reach your card in 5 days.", "Maria Lopez"),
         ("We replaced the charger under warranty; the courier collects the old one on Monday.", "Maria Lopez"),
         ("Your account was unlocked after we verified your identity by phone.", "Tom Becker"),
         ("The upgrade to the Pro plan starts with your next invoice.", "Maria Lopez"),
         ("We cancelled order 5512 as you asked; no charge was made.", "Tom Becker"),
         ("Your delivery address is now 4 Elm Road, Leeds.", "Maria Lopez")]
    tickets = [Chunk(id=f"t{i}", title=f"Ticket {1000 + i}", text=f"Hello,\n\n{x}\n\nKind regards,\n{n}\nCustomer Support Team\nAcme Electronics")
               for i, (x, n) in enumerate(b)]
    cut = {ln for lines in cut_lines(tickets).values() for ln in lines}
    # the team and company lines stand in every reply (a footer); the name in 4 of 6 is the reply's, not the page's
    assert cut <= {"Customer Support Team", "Acme Electronics"} and "Maria Lopez" not in cut


def test_only_a_number_with_a_page_word_or_dashes_brackets_spaces_is_a_page_number():
    for content in ("$30", "€ 45", "£12", "50%", "§ 3", "4/5", "7/20", "12:30", "Berliner Str. 12", "Abs. 3", "Rated 4 of 5 stars"):
        assert page_number_key(content) == (content, False)
    for page in ("7", "- 7 -", "[7]", "(7)", "— 7 —", "Page 7", "p. 7", "S. 12", "Seite 3 von 12", "7 of 20"):
        assert page_number_key(page)[1], page
    assert line_key("See page 12.") is None and line_key("- see page 12") is None  # a page line keeps every other shape check


def test_a_page_number_alone_is_furniture_only_beside_a_running_header_or_footer():
    bare = [Chunk(id=f"b{i}", title="Report", text=f"Part {i} says something new.\n- {i + 3} -") for i in range(5)]
    assert find_furniture(bare) == {}  # a page number with no text furniture at the chunk's edges: nothing
    framed = [Chunk(id=f"b{i}", title="Report", text=f"ACME Report\nPart {i} says something new.\n- {i + 3} -") for i in range(5)]
    assert all(v == ["ACME Report", f"- {i + 3} -"] for i, v in enumerate(cut_lines(framed).values()))


def test_an_untitled_chunks_first_line_stays_though_it_holds_a_page_number():
    chunks = [Chunk(id=f"o{i}", text=f"HARLOW BULLETIN No. 14 - {n} -\nThe mill closed in {1950 + n}.\nHarlow Historical Society")
              for i, n in enumerate(range(3, 8))]
    assert all(v == ["Harlow Historical Society"] for v in cut_lines(chunks).values())
    titled = [replace_title(c, "Harlow bulletin") for c in chunks]
    assert all(v == [c.text.split("\n")[0], "Harlow Historical Society"] for c, v in zip(titled, cut_lines(titled).values()))


def replace_title(chunk: Chunk, title: str) -> Chunk:
    return Chunk(id=chunk.id, text=chunk.text, title=title)


# ---- review core34c b1: a per-item field line at most chunks' edge, with no page number, is content

SHOP = [("Acme Kettle", "Stainless steel kettle that boils 1.7 litres.", "$30", "In stock"),
        ("Bolt Toaster", "Four slots with a defrost setting.", "$45", "Out of stock"),
        ("Cirrus Blender", "A 1200 watt motor and a 2 litre glass jug.", "$90", "In stock"),
        ("Delta Mixer", "Ten speeds, a dough hook and a splash guard.", "$120", "In stock")]
RECIPES = [("Lentil Soup", "Simmer red lentils with cumin for 25 minutes.", "Serves 4"),
           ("Oat Porridge", "Cook rolled oats in milk for five minutes.", "Serves 2"),
           ("Chicken Wrap", "Roll grilled chicken with lettuce and yogurt.", "Serves 4"),
           ("Tomato Pasta", "Toss the pasta with a tomato and garlic sauce.", "Serves 4")]
MAILS = ["Could you send the signed purchase order by Friday?", "The vendor confirmed delivery on 12 March.",
         "The invoice total is 38,400 GBP including VAT.", "The laptops need asset tags before they go out."]
NEWS = [("BoE holds rates", "The Bank of England kept rates at 5.25% on Thursday."), ("UK inflation falls", "UK inflation fell to 4.0% in January."),
        ("Sterling slips", "Sterling fell after weak retail sales data."), ("Gilt yields rise", "Gilt yields rose for a third day.")]


def field_sets():
    """(question, chunks, answer line, a tight budget at which 7a590f5 kept it with default and quality)."""
    shop = [Chunk(id=f"p{i}", title=t, text=f"{d}\nPrice: {p}\n{st}") for i, (t, d, p, st) in enumerate(SHOP)]
    recipes = [Chunk(id=f"r{i}", title=t, text=f"{d}\n{s}") for i, (t, d, s) in enumerate(RECIPES)]
    mails = [Chunk(id=f"e{i}", title=f"Re: Laptop order ({i})", text=f"Hi Tom,\n\n{e}\n\nBest,\nPriya Shah\nHead of Procurement\nNorthwind Ltd")
             for i, e in enumerate(MAILS)]
    news = [Chunk(id=f"n{i}", title=t, text=f"By Jane Doe\nLONDON (Reuters) - {x}\nReporting by Jane Doe; Editing by Alex Smith")
            for i, (t, x) in enumerate(NEWS)]
    return {"stock": ("Is the Cirrus Blender in stock?", shop, "In stock", 30),
            "serves": ("How many people does the lentil soup serve?", recipes, "Serves 4", 25),
            "signature": ("Who sent the laptop order emails and what is her role?", mails, "Priya Shah", 110),
            "byline": ("Who wrote the story on the Bank of England rate decision?", news, "By Jane Doe", 30)}


@pytest.mark.parametrize("name", ["stock", "serves", "signature", "byline"])
def test_a_field_line_at_most_chunks_edge_is_content(name):
    question, chunks, answer, tight = field_sets()[name]
    assert find_furniture(chunks) == {}
    # before: cut as furniture at any budget, while the minority value (Out of stock, Serves 2) stayed
    assert _answer_kept(chunks, question, answer, 1000)
    assert _answer_kept(chunks, question, answer, tight)


# ---- what a footer says beside its page number stays once

PRICE_ITEMS = [
    "The X200 cordless drill costs 129 euros and ships with two batteries.",
    "The X300 hammer drill costs 189 euros and has a side handle.",
    "The S10 jigsaw costs 99 euros and cuts wood up to 65 mm.",
    "The G5 angle grinder costs 79 euros with a 125 mm disc.",
    "The C7 circular saw costs 149 euros and has a laser guide.",
    "The P2 planer costs 119 euros and planes up to 2 mm per pass.",
]


def price_pages(title: str | None = "Tool price list") -> list[dict]:
    return [{"id": f"q{n}", "text": f"ACME Tools 2024\n{item}\nAll prices exclude VAT | Page {n + 1}", **({"title": title} if title else {})}
            for n, item in enumerate(PRICE_ITEMS)]


@pytest.mark.parametrize("title", ["Tool price list", None])
def test_a_footer_that_says_something_stays_once(title):
    chunks = chunks_of(price_pages(title))
    found = find_furniture(chunks)
    assert all("All prices exclude VAT | Page" in " ".join(c.original_text[s:e] for s, e in found[c.id]) for c in chunks)
    result = Pipeline.preset("default").run("Do the prices include VAT?", price_pages(title), budget=0.5)
    # before: every copy was cut as furniture, and the only answer went with them
    assert result.text.count("All prices exclude VAT") == 1
    assert all(not re.search(r"^ACME Tools 2024$", result.text[s.context_start : s.context_end], re.M) or not title for s in result.spans)
    named = {price_pages(title)[int(d.chunk_id[1:])]["text"][d.start : d.end] for d in result.dropped if d.reason == REASON}
    assert "All prices exclude VAT | Page 1" not in named and any(t.startswith("All prices exclude VAT | Page") for t in named)


def test_a_bare_page_number_and_a_running_header_go_everywhere():
    pages = annual_pages("ACME annual report")
    result = Pipeline.preset("default").run(QUESTION, pages, budget=1.0)
    assert HEADER not in result.text and not re.search(r"^- \d+ -$", result.text, re.M)

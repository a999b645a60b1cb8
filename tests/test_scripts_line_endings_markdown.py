"""Second text-handling hunt: the candidate cut, CR and CRLF line endings, combining marks, scripts whose
sentences were not split, CJK closing quotes, and citation markers before block-level Markdown."""

from __future__ import annotations

import re
import unicodedata

import pytest

from optimizer import Chunk, Pipeline
from optimizer.presets import SENTENCES_DEFAULT
from optimizer.render import Renderer
from optimizer.sentences import (
    MAX_SENTENCE_CHARS,
    code_blocks,
    is_fence_close,
    paragraph_spans,
    sentence_weight,
    split_range,
    split_sentences,
)
from optimizer.stage import StageContext, StageOutput
from optimizer.stages.compress import SentenceExtract
from optimizer.stages.dedupe import ExactDedupe, NearDedupe
from optimizer.stages.paragraphs import ParagraphViews, paragraph_parts
from optimizer.text import entities, normalized, shingles, words
from optimizer.tokenizer import get_tokenizer


def texts(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def lexical_default(**over) -> Pipeline:
    """The default preset's steps without the embedding model (no model to load)."""
    return Pipeline([NearDedupe(), SentenceExtract(**{**SENTENCES_DEFAULT, "model": None, **over})])


# -- 1. the candidate cut ----------------------------------------------------------------

ITEMS = [{"id": f"c{i}", "text": f"Item {i} is stored in warehouse {i % 7}. It weighs {i * 3} kilograms."} for i in range(80)]


def test_budget_one_keeps_every_chunk_past_the_candidate_cut():
    result = lexical_default().run("Where is item 42 stored?", ITEMS, budget=1.0)
    assert len(result.chunks) == 80 and result.tokens == result.tokens_full
    assert not [d for d in result.dropped if d.reason.startswith("sentences: not among")]


@pytest.mark.parametrize("share, candidates", [(0.9, 80), (0.6, 64)])
def test_the_cut_leaves_no_room_that_more_chunks_would_fill(share, candidates):
    result = lexical_default().run("Where is item 42 stored?", ITEMS, budget=share)
    assert result.budget - result.tokens <= 30, (result.tokens, result.budget)  # the 64 best hold 1,216 of 1,520 tokens
    assert result.trace[1].notes.get("candidates", 80) == candidates and "Item 42 is stored" in result.text


def test_candidates_grow_only_while_their_text_fits_the_budget():
    chunks = [Chunk(id=c["id"], text=c["text"]) for c in ITEMS]
    query = "Where is item 42 stored?"
    tight = SentenceExtract(model=None, candidates=10)(query, chunks, StageContext.default(budget=60))
    assert tight.notes["candidates"] == 10  # ten chunks hold more than 60 tokens: the cut stays (the speed-up)
    assert "not among the 10 best of 80 chunks" in tight.reasons["c79"]
    roomy = SentenceExtract(model=None, candidates=10)(query, chunks, StageContext.default(budget=600))
    assert 30 < roomy.notes["candidates"] < 80 and sum(len(c.text.split()) for c in roomy.chunks) > 250
    everything = SentenceExtract(model=None, candidates=10)(query, chunks, StageContext.default(budget=5000))
    assert len(everything.chunks) == 80 and "candidates" not in everything.notes
    unbudgeted = SentenceExtract(model=None, candidates=10)(query, chunks, StageContext.default())
    assert unbudgeted.notes["candidates"] == 10  # no budget: the ratio of the candidates, as before


@pytest.mark.slow
def test_default_preset_keeps_all_eighty_chunks_at_budget_one():
    result = Pipeline.preset("default").run("Where is item 42 stored?", ITEMS, budget=1.0)
    assert result.tokens == result.tokens_full and len(result.chunks) == 80


# -- 2. CRLF: a closing fence with a carriage return ---------------------------------------

CODE_LF = "Intro: install it first.\n```sh\npip install x\n```\nAfter the code block, the secret answer is 42. Filler here."


def test_a_crlf_closing_fence_closes_the_block():
    crlf = CODE_LF.replace("\n", "\r\n")
    assert is_fence_close("```\r") and is_fence_close("  ~~~~ \r")
    (block,) = code_blocks(crlf)
    assert crlf[block[0] : block[1]].rstrip() == "```sh\r\npip install x\r\n```"
    assert [t.replace("\r", "") for t in texts(crlf)] == texts(CODE_LF)
    assert [crlf[slice(*p)] for p in paragraph_spans(crlf)] == [CODE_LF[slice(*p)].replace("\n", "\r\n") for p in paragraph_spans(CODE_LF)]


def test_bm25_pack_keeps_the_sentence_after_a_crlf_code_block():
    crlf = (CODE_LF + "\n\n" + "More filler text follows here with many words. " * 20).replace("\n", "\r\n")
    result = Pipeline.preset("bm25-pack").run("What is the secret answer?", [crlf], budget=40)
    assert "42" in result.text


# -- 3. bare CR line endings ---------------------------------------------------------------

STRUCTURED = ("# Settings\n\n| key | value |\n|---|---|\n| port | 8080 |\n| retries | 5 |\n\n"
              "- first bullet about speed\n- the timeout is 30 seconds\n- third bullet\n\n"
              "```sh\nrun --fast\n```\n\nSee the docs for more. Contact support if stuck.")


def test_a_lone_carriage_return_ends_a_line():
    cr = STRUCTURED.replace("\n", "\r")
    assert split_sentences(cr) == split_sentences(STRUCTURED)
    assert paragraph_spans(cr) == paragraph_spans(STRUCTURED)
    assert code_blocks(cr) == code_blocks(STRUCTURED) != ()
    s, e = code_blocks(STRUCTURED)[0]
    assert split_range(cr, s + 6, e - 4) == split_range(STRUCTURED, s + 6, e - 4)
    mixed = "a line\rnext line\r\nthird: x\r\n\r\n| a |\r| b |"
    assert texts(mixed) == ["a line\rnext line\r\nthird: x", "| a |", "| b |"]


def test_paragraph_headings_are_found_with_lone_carriage_returns():
    lf = "Paris\nParis is big.\n\nLyon\nLyon is old."
    cr = lf.replace("\n", "\r")
    assert paragraph_parts(Chunk(id="c", text=cr)) == paragraph_parts(Chunk(id="c", text=lf))
    assert [(v.title, v.text) for v in ParagraphViews([Chunk(id="c", text=cr)]).views] == [("Paris", "Paris is big."), ("Lyon", "Lyon is old.")]


def test_the_timeout_line_of_a_cr_list_is_kept_as_with_lf():
    cr = STRUCTURED.replace("\n", "\r")
    result = lexical_default().run("What is the timeout?", [cr], budget=25)
    assert "timeout is 30 seconds" in result.text


# -- 4. words: combining marks and normalization ---------------------------------------

def test_indic_thai_and_decomposed_words_are_whole():
    assert words("लाल किला कब बना?") == ["लाल", "किला", "कब", "बना"]
    assert words("ก้านกล้วย") == ["ก้า", "าน", "นก", "กล้", "ล้ว", "วย"]  # Thai: pairs of letters with their marks
    nfd = unicodedata.normalize("NFD", "Rösti Zürich café crème brûlée")
    assert words(nfd) == words("Rösti Zürich café crème brûlée") == ["rösti", "zürich", "café", "crème", "brûlée"]
    assert shingles(nfd) == shingles(unicodedata.normalize("NFC", nfd))
    assert entities(unicodedata.normalize("NFD", "She moved to Zürich.")) == ["She", unicodedata.normalize("NFD", "Zürich")]
    assert words("km² ½ snake_case") == ["km2", "1", "2", "snake_case"]  # read as NFKC, as normalized() does


def test_vowel_signs_keep_exact_duplicate_keys_apart():
    assert normalized("लाल किला") != normalized("लाल कोला")
    out = ExactDedupe()("q", [Chunk(id="a", text="लाल किला"), Chunk(id="b", text="लाल कोला")], StageContext.default())
    assert [c.id for c in out] == ["a", "b"]


def test_a_decomposed_copy_is_a_near_duplicate():
    t = ("Le musée d'Orsay à Paris présente des œuvres créées entre 1848 et 1914. "
         "Il a été inauguré en décembre 1986 par le président François Mitterrand.")
    out = NearDedupe()("q", [Chunk(id="nfc", text=t), Chunk(id="nfd", text=unicodedata.normalize("NFD", t))], StageContext.default())
    assert [c.id for c in out] == ["nfc"] and "nfd" in out.reasons


def test_bm25_ranks_the_hindi_passage_that_answers_first():
    chunks = [{"id": "red-fort", "text": "लाल किला मुगल बादशाह शाहजहाँ ने सत्रहवीं सदी में बनवाया था।"},
              {"id": "other", "text": "कमला कल बाजार गई और लाल रंग का कपड़ा लेकर लौटी, फिर कल ही कपड़ा सिलवाया।"}]
    for preset in ("bm25-pack", "default"):  # default: its lexical half, no model loaded
        pipe = Pipeline.preset(preset) if preset == "bm25-pack" else lexical_default()
        assert [c.id for c in pipe.run("लाल किला कब बना?", chunks, budget=40).chunks] == ["red-fort"], preset


# -- 5 and 6. sentence ends in other scripts, closing quotes ------------------------------

@pytest.mark.parametrize("sentences, sep", [
    (["दिल्ली भारत की राजधानी है।", "यमुना नदी शहर के पास से बहती है॥", "शहर में कई बाज़ार हैं।"], " "),
    (["東京は日本の首都です．", "人口は約千四百万人です｡", "円周率は３．１４です．"], ""),
    (["Բարեւ։", "Ինչպես ես։"], " "),
    (["ሰላም።", "እንዴት ነህ።"], " "),
    (["မင်္ဂလာပါ။", "နေကောင်းလား။"], " "),
    (["กรุงเทพมหานครเป็นเมืองหลวง", "ในอดีตกรุงเทพเคยเป็นหมู่บ้านเล็กๆ ริมแม่น้ำ", "กรุงเทพฯ เป็นเมืองใหญ่"], " "),
    (["ວຽງຈັນເປັນນະຄອນຫຼວງ", "ລາວມີແມ່ນ້ຳຂອງ"], " "),
    (["ភ្នំពេញគឺជារាជធានី", "ប្រទេសកម្ពុជា"], " "),
    (["「长城很长。」", "长城在中国。", "他说：「真的吗？！」", "是的。"], ""),
    (["你好！？", "我是谁。"], ""),
])
def test_sentences_end_at_each_scripts_stops(sentences, sep):
    assert texts(sep.join(sentences)) == sentences


def test_english_quotes_and_latin_text_split_as_before():
    assert texts('She said “Go.” He went. “Why?” she asked.') == ["She said “Go.”", "He went.", "“Why?” she asked."]
    assert texts("Thai: ก้านกล้วย is a film. It was made in 2006.") == ["Thai: ก้านกล้วย is a film.", "It was made in 2006."]


@pytest.mark.parametrize("text", ["长城是中国古代的军事防御工程" * 400, "กรุงเทพมหานครเป็นเมืองหลวงและนคร" * 300, "दिल्लीभारतकीराजधानीहै" * 400])
def test_a_long_unpunctuated_cjk_thai_or_indic_text_is_cut_to_pieces_of_a_few_hundred_tokens(text):
    tok = get_tokenizer("cl100k_base")
    spans = split_sentences(text)
    assert len(spans) > 1 and "".join(text[s:e] for s, e in spans) == text
    assert all(sentence_weight(text, s, e) <= MAX_SENTENCE_CHARS for s, e in spans)
    assert max(tok.count(text[s:e]) for s, e in spans) <= 600  # was 1,200-1,800 tokens at 1,200 characters
    assert not any(unicodedata.category(text[s])[0] == "M" for s, _ in spans)  # no piece starts with a vowel sign


# -- 7. the citation marker before block-level Markdown ------------------------------------

FENCED = "```bash\npip install ragtrim\n```\nThen run it."


def test_a_block_opening_with_a_fence_gets_its_marker_on_a_line_of_its_own():
    chunks = [Chunk(id="a", text="Install it first."), Chunk(id="b", text=FENCED), Chunk(id="c", text="| a | b |\n|---|---|\n| 1 | 2 |"),
              Chunk(id="d", text="## Usage\nRun it."), Chunk(id="e", text="- one\n- two"), Chunk(id="f", text="> quoted"),
              Chunk(id="g", text="1968) is a film."), Chunk(id="h", text=FENCED, title="Guide")]
    out = Renderer().render(chunks).text
    assert out.split("\n\n") == ["[1] Install it first.", "[2]\n" + FENCED, "[3]\n| a | b |\n|---|---|\n| 1 | 2 |", "[4]\n## Usage\nRun it.",
                                 "[5]\n- one\n- two", "[6]\n> quoted", "[7] 1968) is a film.", "[8] Guide\n" + FENCED]
    assert all(len(re.findall(r"^```", block, re.M)) % 2 == 0 for block in out.split("\n\n"))


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
def test_overhead_counts_the_marker_the_renderer_prints(encoding):
    tok = get_tokenizer(encoding)
    r = Renderer()
    for text in (FENCED, "Plain prose.", "# Title\nbody"):
        c = Chunk(id="x", text=text)
        header = r.render([c]).text[: -len(text)]
        assert header == r.header(1, None, None, r.lead(c)) and r.overhead([c], tok) == tok.count(header)
    framed = Renderer(frames="frame")
    c = Chunk(id="y", text="body", metadata={"frame": ["```\n", "\n```"]})
    assert framed.render([c]).text.startswith("[1]\n```\nbody") and framed.overhead([c], tok) == tok.count("[1]\n") + tok.count("```\n") + tok.count("\n```")


def test_paragraph_view_overhead_counts_the_marker_of_the_merged_block_from_above():
    text = "Some intro prose here.\n\n```bash\npip install ragtrim\nragtrim serve\n```\n\nThen it runs. It is fast."
    c = Chunk(id="c", text=text)
    tok = get_tokenizer("cl100k_base")
    renderer = Renderer()
    base = StageContext(tokenizer=tok, budget=None, render_overhead=lambda cs, grouped=False: renderer.overhead(cs, tok, grouped=grouped))
    split = ParagraphViews([c])
    ctx = split.context(base)
    views = split.views
    for taken in ([views[1]], [views[0], views[1]], [views[1], views[2]], [views[2]]):
        merged = split.merge(StageOutput(list(taken))).chunks
        rendered = renderer.render(merged).text
        estimate = ctx.overhead(list(taken)) + sum(tok.count(v.text) for v in taken)
        assert 0 <= estimate - tok.count(rendered) <= len(taken) + 1, (rendered, estimate)


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_fences_stay_balanced_at_every_budget(line_end):
    text = (CODE_LF + "\n\n" + "More filler text follows here with many words. " * 20).replace("\n", line_end)
    chunks = [Chunk(id="a", text="An unrelated passage about the weather."), Chunk(id="b", text=text)]
    pipe = lexical_default()
    for budget in range(30, 90, 5):
        result = pipe.run("What is the secret answer?", chunks, budget=budget)
        assert result.tokens <= budget and result.tokens == pipe.tokenizer.count(result.text)
        assert len(re.findall(r"^```", result.text, re.M)) % 2 == 0, (budget, result.text)

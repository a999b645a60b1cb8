"""Third text-handling hunt: words in scripts past Latin (combining marks, CJK next to digits and Latin,
Thai without spaces, Unicode folding), Thai sentences after a number, float32 noise in min-max
scaling, and the sentence stage's choice when the exact rendering is longer than its estimate."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from optimizer import Chunk, Pipeline
from optimizer.scoring import bm25_scores, minmax
from optimizer.sentences import split_sentences
from optimizer.stage import StageContext
from optimizer.stages.dedupe import NearDedupe
from optimizer.text import jaccard, normalized, shingles, words


def texts(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


# -- 1. min-max scaling of float32 noise ---------------------------------------------------

def test_minmax_treats_float32_noise_as_equal():
    noise = [float(x) for x in np.array([0.99999994, 0.99999982, 0.9999999], dtype=np.float32)]
    assert minmax(noise) == [1.0, 1.0, 1.0]
    assert minmax([-1e9, -1e9 + 1e-4]) == [0.0, 0.0]  # relative to the values' size
    assert minmax([0.0, 1e-5, 2e-5]) == [0.0, 0.5, 1.0]  # small values that really differ still spread


# the static model gives every sentence of all-unknown (Thai) words the same vector: the cosines
# differ by rounding only and must not outweigh BM25, which ranks the answer first
THAI_AIRPORT = ("สนามบินหลักของกรุงเทพชื่ออะไร",
                "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย ประชากรประมาณสิบล้านคน วัดพระแก้วเป็นวัดที่มีชื่อเสียง "
                "อาหารริมทางมีชื่อเสียงมาก สนามบินสุวรรณภูมิเป็นสนามบินหลักของกรุงเทพ แม่น้ำเจ้าพระยาไหลผ่านเมือง "
                "ตลาดนัดจตุจักรเป็นตลาดขนาดใหญ่")


def test_default_keeps_the_thai_answer_sentence():
    q, text = THAI_AIRPORT
    r = Pipeline.preset("default", budget=0.25).run(q, [{"id": "t", "text": text}])
    assert "สุวรรณภูมิ" in r.text


# -- 2 and 3. words: CJK next to digits and Latin, combining marks, Thai ---------------------

def test_cjk_characters_are_tokens_and_other_runs_stay_whole():
    assert words("2023年收入") == ["2023", "年", "收", "入"]
    assert words("使用Python编写") == ["使", "用", "python", "编", "写"]
    assert words("iPhone15发布") == ["iphone15", "发", "布"]


def test_words_keep_their_combining_marks():
    assert words("दिल्ली कहाँ है?") == ["दिल्ली", "कहाँ", "है"]
    scores = bm25_scores("दिल्ली कहाँ है?", ["दाल और दलिया दिल को भाते हैं। दाल दलिया दिन भर।",
                                              "दिल्ली यमुना नदी के किनारे उत्तर भारत में है।"])
    assert scores[1] > scores[0]


def test_thai_runs_become_overlapping_character_pairs():
    assert words("สนามบิน") == ["สน", "นา", "าม", "มบิ", "บิน"]  # a vowel or tone mark stays with its letter
    assert words("ก") == ["ก"]
    assert words("ในปี 2542 iPhoneมาก") == ["ใน", "นปี", "2542", "iphone", "มา", "าก"]
    q, text = THAI_AIRPORT
    sents = texts(text)
    scores = bm25_scores(q, sents)
    assert "สุวรรณภูมิ" in sents[int(np.argmax(scores))]


# -- 5. Unicode folding -----------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Hà Nội là thủ đô của Việt Nam. Thành phố có hơn tám triệu dân.",
    "서울은 대한민국의 수도입니다. 인구는 약 940만 명입니다.",
])
def test_nfc_and_nfd_copies_read_the_same(text):
    nfd = unicodedata.normalize("NFD", text)
    assert words(nfd) == words(text)
    assert jaccard(shingles(nfd), shingles(text)) == 1.0
    out = NearDedupe()("q", [Chunk(id="nfc", text=text), Chunk(id="nfd", text=nfd)], StageContext.default())
    assert [c.id for c in out] == ["nfc"] and "nfd" in out.reasons


def test_fullwidth_and_invisible_characters_fold_away():
    assert words("２０２３年") == ["2023", "年"]
    assert words("Donau\u00addampf\u00adschiff") == ["donaudampfschiff"]
    assert words("zero\u200bwidth word\u2060joiner \ufeffbom") == ["zerowidth", "wordjoiner", "bom"]
    assert normalized("Donau\u00addampf") == normalized("Donaudampf")
    scores = bm25_scores("2023年の売上は？", ["2019年の売上は3億円でした。", "２０２３年の売上は５億円でした。"])
    assert scores[1] > scores[0]


# -- 6. a Thai number keeps its unit ----------------------------------------------------------

def test_a_thai_number_stays_with_its_unit():
    # Thai puts a space around numbers and foreign words, so a space after a number does not end a
    # sentence: splitting there read "about 10" apart from "million people" (a longer sentence is the
    # lesser harm); a space between two Thai letters still does
    assert texts("กรุงเทพมีประชากรประมาณ 10 ล้านคน") == ["กรุงเทพมีประชากรประมาณ 10 ล้านคน"]
    assert texts("ราคา 500 บาทต่อคน") == ["ราคา 500 บาทต่อคน"]
    assert texts("สนามบินสุวรรณภูมิเป็นสนามบินหลัก ตลาดนัดจตุจักรเป็นตลาดขนาดใหญ่") == [
        "สนามบินสุวรรณภูมิเป็นสนามบินหลัก", "ตลาดนัดจตุจักรเป็นตลาดขนาดใหญ่"]


# -- 4. the exact rendering longer than the greedy estimate -----------------------------------

def test_sentence_choice_fits_when_tokens_merge_across_the_marker():
    # with cl100k the space after "[1]" merges with the first byte of 公: the greedy estimate (23) is one
    # short, and the packer then cut the two chosen sentences in text order, dropping the answer
    q = "公司2023年的收入是多少？"
    text = ("公司成立于1990年。2003年公司在上海上市。2013年收入首次超过一亿元。2023年收入达到五亿元。"
            "2020年受疫情影响收入下降。2032年计划进入欧洲市场。")
    r = Pipeline.preset("default", budget=23).run(q, [{"id": "h", "text": text}])
    assert "五亿" in r.text and r.tokens <= 23

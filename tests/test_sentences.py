import pytest

from optimizer.sentences import MAX_SENTENCE_CHARS, split_sentences


def texts(text):
    return [text[s:e] for s, e in split_sentences(text)]


def test_english_with_abbreviations():
    assert texts("Dr. Smith went to the U.S. Army in 1917. He stayed. Did he?") == [
        "Dr. Smith went to the U.S. Army in 1917.",
        "He stayed.",
        "Did he?",
    ]


def test_cjk_full_stops():
    assert texts("東京は首都です。大阪は二番目です！本当？") == ["東京は首都です。", "大阪は二番目です！", "本当？"]


def test_tables_and_code_split_per_line():
    assert texts("| a | b |\n|---|---|\n| 1 | 2 |") == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    assert texts("def f(x):\n    return x + 1\n\nprint(f(2))") == ["def f(x):", "return x + 1", "print(f(2))"]


def test_blank_lines_end_sentences():
    assert texts("A heading without stop\n\nBody text here.") == ["A heading without stop", "Body text here."]


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_empty(text):
    assert split_sentences(text) == ()


def test_long_unpunctuated_text_is_split_and_covered():
    text = " ".join(["word"] * 1000)
    spans = split_sentences(text)
    assert all(e - s <= MAX_SENTENCE_CHARS for s, e in spans)
    assert "".join(text[s:e] for s, e in spans).replace(" ", "") == text.replace(" ", "")


@pytest.mark.parametrize(
    "text",
    ["Emoji 😀 test. Another 🎉! x", "mixed\tTabs. and\u200bzero width.", "e\u0301 combining. ok", "a.b.c. d"],
)
def test_every_non_space_character_is_covered_once(text):
    spans = split_sentences(text)
    covered = "".join(text[s:e] for s, e in spans)
    assert "".join(covered.split()) == "".join(text.split())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_blingfire_sentences_match_the_library_offsets_on_bundled_and_unicode_text():
    import blingfire

    from evals.datasets import load_dataset
    from optimizer.sentences import blingfire_sentences

    samples = [c.text for name in ("hotpotqa", "nq-multidoc") for ex in load_dataset(name, limit=60).examples for c in ex.chunks]
    samples += [
        "Dr. Smith arrived. Então, café às 9h. Größe: 3 m.",
        "😀 Emoji first. Then 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 text! And e\u0301 combining?",
        "東京は首都です。大阪は二番目です。",
        "Line one\nline two. Three.",
        "x",
    ]
    for text in samples:
        assert blingfire_sentences(text) == list(blingfire.text_to_sentences_and_offsets(text)[1]), text


def test_blingfire_sentences_reuse_buffers_safely_across_sizes_and_threads(monkeypatch):
    """A long text after a short one, a short after a long, NUL bytes, text past the scratch cap, four threads."""
    import threading

    import blingfire

    from evals.datasets import load_dataset
    from optimizer import sentences

    monkeypatch.setattr(sentences, "_SCRATCH_MAX", 4000)  # texts over 2,000 bytes get buffers of their own
    samples = [c.text for ex in load_dataset("squad2-pools", limit=40).examples for c in ex.chunks]
    samples += ["Short. One.", "a\x00b. c d. e.", "Long one. " * 400, "x", "Then short again. Yes.", "End.\n\nNew block."]
    want = [list(blingfire.text_to_sentences_and_offsets(t)[1]) for t in samples]
    got: dict[int, list] = {}

    def work(k: int) -> None:
        order = samples[k:] + samples[:k]  # each thread meets the sizes in another order
        got[k] = [sentences.blingfire_sentences(t) for t in order]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert got[k] == want[k:] + want[:k]


def test_joins_cheap_test_first_says_what_the_patterns_say(monkeypatch):
    """joins reads its patterns only when the piece ends in one of their words or a digit before its full stop;
    on every piece built from those words, digits of any script and plain words, it answers as with every pattern read."""
    from optimizer import abbreviations

    prefixes = ["", "In Miranda ", "See ", "on ", "Sie endet am ", "x", "abc", "1", "Lt. ", "the report,\n", "№"]
    ends = [*abbreviations._LAST_WORDS, "15", "3", "31", "0", "١٥", "٣", "²", "word", "Kiev", "group", "stop", "Mrs", "NO", "Fig3", ""]
    nexts = [" Arizona", " 45", " A", " Mai 2024.", " August nach Hause.", " it", " ١٢"]
    cases = [(p + w + ".", n) for p in prefixes for w in ends for n in nexts]
    fast = [abbreviations.joins(a + b, (0, len(a)), (len(a) + 1, len(a + b))) for a, b in cases]
    monkeypatch.setattr(abbreviations, "_LAST_WORDS", ("",))  # every piece passes the cheap test: the patterns alone
    slow = [abbreviations.joins(a + b, (0, len(a)), (len(a) + 1, len(a + b))) for a, b in cases]
    assert fast == slow and sum(slow) > 50  # and many of them join

"""Sentence extraction: whole sentences with exact offsets, the budget, and the second hop."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from optimizer import Chunk, Pipeline
from optimizer.sentences import split_sentences
from optimizer.stage import StageContext
from optimizer.stages.compress import SentenceExtract
from optimizer.stages.sentence_signals import query_mentions

LEXICAL = {"model": None}  # no embedding model: fast and deterministic

CHUNKS = [
    Chunk(
        id="film",
        title="Kiss and Tell",
        text="Kiss and Tell is a 1945 comedy film. It starred Shirley Temple as Corliss Archer. "
        "The film was shot in Los Angeles. It was followed by a sequel in 1949.",
        score=0.9,
    ),
    Chunk(
        id="actress",
        title="Shirley Temple",
        text="Shirley Temple Black was an American actress and diplomat. "
        "As an adult, she served as Chief of Protocol of the United States. "
        "She was known for her curly hair.",
        score=0.5,
    ),
    Chunk(id="d1", title="Meet Corliss Archer", text="Meet Corliss Archer was a radio program. It ran from 1943 to 1956.", score=0.4),
    Chunk(id="d2", title="Janet Waldo", text="Janet Waldo was a voice actress. She voiced Corliss Archer on the radio.", score=0.3),
    Chunk(id="d3", title="Comedy", text="Comedy is a genre of fiction. It aims to make people laugh. Films and plays use it.", score=0.2),
]
QUESTION = "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?"


def run(stage, chunks=CHUNKS, budget=None, query=QUESTION):
    return stage(query, chunks, StageContext.default(budget=budget))


def test_kept_text_is_whole_sentences_that_map_back_to_the_original():
    out = run(SentenceExtract(**LEXICAL), budget=60)
    by_id = {c.id: c for c in CHUNKS}
    assert out.chunks
    for c in out:
        original = by_id[c.id].text
        sentences = {original[s:e] for s, e in split_sentences(original)}
        for s, e in c.kept_pieces:
            piece = original[s:e]
            # every kept piece is a run of whole sentences
            assert all(sent in sentences for sent in [original[a:b] for a, b in split_sentences(original) if s <= a and b <= e])
            assert piece.startswith(tuple(sentences)) and piece.endswith(tuple(x[-3:] for x in sentences))
        assert c.text == " ".join(original[s:e] for s, e in c.kept_pieces)


@pytest.mark.parametrize("budget", [25, 40, 80])
def test_selection_respects_the_budget_with_renderer_overhead(budget):
    pipe = Pipeline([SentenceExtract(**LEXICAL)])
    result = pipe.run(QUESTION, CHUNKS, budget=budget)
    assert result.tokens <= budget
    sentence_step = result.trace[0]
    assert sentence_step.notes["target_tokens"] <= budget
    # filled without the packer having to cut mid-sentence
    assert result.trace[-1].notes["cuts"] == 0
    assert result.tokens >= budget * 0.5


def test_second_hop_keeps_the_answer_sentence_that_shares_no_word_with_the_question():
    answer = "As an adult, she served as Chief of Protocol of the United States."
    assert not set(answer.lower().split()) & set(QUESTION.lower().rstrip("?").split()) - {"the", "of", "as"}
    two = run(SentenceExtract(**LEXICAL, hops=2), budget=85)
    one = run(SentenceExtract(**LEXICAL, hops=1), budget=85)
    text_two = " ".join(c.text for c in two)
    text_one = " ".join(c.text for c in one)
    assert "Chief of Protocol" in text_two
    assert "Chief of Protocol" not in text_one  # the hop is what finds it
    assert "Shirley Temple" in text_two  # the bridge sentence stays too


def test_sentences_stay_in_document_order_inside_a_chunk_and_chunks_by_relevance():
    out = run(SentenceExtract(**LEXICAL, lead=1.0), budget=70)
    for c in out:
        assert list(c.kept_pieces) == sorted(c.kept_pieces)
    rel = [c.relevance for c in out]
    assert rel == sorted(rel, reverse=True)
    doc = run(SentenceExtract(**LEXICAL, order="document"), budget=70)
    positions = [[c.id for c in CHUNKS].index(c.id) for c in doc]
    assert positions == sorted(positions)


def test_without_budget_keeps_about_ratio_of_the_tokens():
    ctx = StageContext.default()
    total = sum(ctx.count(c.text) for c in CHUNKS)
    out = run(SentenceExtract(**LEXICAL, ratio=0.5))
    kept = sum(ctx.count(c.text) for c in out)
    assert 0 < kept <= total * 0.5 + 5


def test_drop_reasons_and_numeric_cue():
    out = run(SentenceExtract(**LEXICAL), budget=30)
    assert any("sentences:" in r for r in out.reasons.values())
    when = SentenceExtract(**LEXICAL, numeric=5.0, hops=1, lead=0.0, chunk_prior=0.0)
    got = run(when, chunks=CHUNKS[:1], budget=14, query="When was the sequel of Kiss and Tell?")
    assert "1949" in got[0].text


def test_invalid_settings_raise_with_the_value():
    with pytest.raises(ValueError, match="hops must be 1 or 2, got 3"):
        SentenceExtract(hops=3)
    with pytest.raises(ValueError, match="model"):
        SentenceExtract(model="bert")
    with pytest.raises(ValueError, match="fill"):
        SentenceExtract(fill=0)


def test_respects_pieces_cut_by_an_earlier_stage():
    cut = CHUNKS[1].keep([(0, 58)])  # only the first sentence survives
    out = run(SentenceExtract(**LEXICAL), chunks=[cut], budget=100)
    assert out[0].kept_pieces == ((0, 58),)


COMPARISON = [
    Chunk(id="a", title="Alpha Film", text="Alpha Film is a long 1951 drama film directed by Ann Lee in the city of Rome."),
    Chunk(id="b", title="Beta Movie", text="Beta Movie is a 1931 comedy film. Beta Movie was shot in Berlin. Beta Movie won a prize."),
    Chunk(id="c", title="Gamma", text="Gamma is a Greek letter. It is used in physics."),
]
COMPARISON_Q = "Which film came out first, Alpha Film or Beta Movie?"


def test_coverage_brings_in_the_second_thing_a_question_names():
    """Greedy order: after Beta's best sentence, Alpha's (the other film named) beats Beta's next ones."""
    stage = SentenceExtract(**LEXICAL, redundancy=0.0, lead=0.0)
    covering = SentenceExtract(**LEXICAL, redundancy=0.0, lead=0.0, coverage=1.0)
    sents, _ = stage.scores(COMPARISON_Q, COMPARISON, StageContext.default(budget=100))
    value = np.array([2.0, 2.4, 2.1, 2.1, 0.0, 0.0])  # Beta's sentences ahead of Alpha's one
    mentions, weight = query_mentions(COMPARISON_Q, COMPARISON, sents)
    plain_order = list(stage.selector.greedy(sents, value, mentions, weight, 0.0))
    covered_order = list(covering.selector.greedy(sents, value, mentions, weight, 0.0))
    assert [sents[i].chunk for i in plain_order[:3]] == [1, 1, 1]
    assert [sents[i].chunk for i in covered_order[:2]] == [1, 0]


def test_coverage_weights_ignore_query_words_no_sentence_mentions():
    stage = SentenceExtract(**LEXICAL, coverage=1.0)
    context = StageContext.default(budget=100)
    sents, _ = stage.scores(COMPARISON_Q, COMPARISON, context)
    mentions, weight = query_mentions(COMPARISON_Q + " zzzunknown", COMPARISON, sents)
    assert weight[-1] == 0.0  # "zzzunknown" is in no sentence
    assert weight.sum() == pytest.approx(1.0)
    assert mentions.shape == (len(sents), len(weight))


def test_tight_sentences_fades_spreading_and_density_as_the_budget_grows():
    stage = SentenceExtract(**LEXICAL, tight_sentences=4)
    context = StageContext.default(budget=1000)
    sents, _ = stage.scores(QUESTION, CHUNKS, context)
    mean = sum(s.tokens for s in sents) / len(sents)
    tight = stage.selector.tight
    assert tight(sents, int(4 * mean), 1) == pytest.approx(1.0)  # room for 4: tight, full strength
    assert tight(sents, int(8 * mean), 1) == pytest.approx(0.5, abs=0.05)  # room for 8: half the spreading
    assert tight(sents, int(8 * mean), 2) == pytest.approx(0.25, abs=0.05)  # and a quarter of the density
    assert SentenceExtract(**LEXICAL).selector.tight(sents, 10_000, 1) == 1.0  # 0 turns the fade off


def test_with_room_for_many_sentences_the_best_chunk_is_kept_whole():
    """Spreading over chunks is for tight budgets; with room, the best passage stays whole."""
    text = " ".join(f"Kiss and Tell fact number {i} is about the film." for i in range(8))
    chunks = [Chunk(id="film", title="Kiss and Tell", text=text), *CHUNKS[2:]]
    budget = 160
    spread = run(SentenceExtract(**LEXICAL, redundancy=0.3), chunks, budget)
    faded = run(SentenceExtract(**LEXICAL, redundancy=0.3, tight_sentences=2), chunks, budget)
    kept = lambda out: next(c for c in out.chunks if c.id == "film").text  # noqa: E731
    assert kept(faded) == text
    assert len(kept(spread)) < len(text)


def test_a_sentence_left_out_for_the_budget_does_not_use_up_query_coverage():
    from optimizer.stages.sentence_select import SentenceSelector
    from optimizer.stages.sentence_signals import split_chunks

    chunks = [Chunk(id="a", text="Alpha and beta appear in this very long sentence that goes on and on and on without end. "
                                 "Alpha is here. Other words stand here.")]
    query = "alpha beta"
    probe = StageContext.default()
    sents = split_chunks(chunks, probe)
    long_s, alpha_s, other_s = sents
    budget = max(alpha_s.tokens, other_s.tokens) + 1  # one short sentence fits, the long one never does
    assert long_s.tokens > budget
    ctx = StageContext.default(budget=budget)
    # the long sentence is offered first and skipped; "alpha" must still earn its bonus for the next one
    out = SentenceSelector(coverage=1.0, redundancy=0.0)(query, chunks, sents, np.array([1.0, 0.3, 0.5]), ctx)
    assert out.chunks[0].text == "Alpha is here."
    # without coverage the higher base score wins: the bonus is what chose it
    plain = SentenceSelector(coverage=0.0, redundancy=0.0)(query, chunks, sents, np.array([1.0, 0.3, 0.5]), ctx)
    assert plain.chunks[0].text == "Other words stand here."


def test_the_retriever_score_moves_the_chunk_prior_unless_ignored():
    paris, rome = "The capital city is Paris.", "The capital city is Rome."
    budget = StageContext.default().count(paris) + 4  # room for one sentence

    def kept(chunks, **params):
        out = SentenceExtract(**LEXICAL, **params)("capital city", chunks, StageContext.default(budget=budget))
        return [c.id for c in out.chunks]

    plain = [Chunk(id="paris", text=paris), Chunk(id="rome", text=rome)]
    scored = [Chunk(id="paris", text=paris, score=0.1), Chunk(id="rome", text=rome, score=0.9)]
    assert kept(plain) == ["paris"]  # a tie: the first
    assert kept(scored) == ["rome"]
    assert kept(scored, retriever="ignore") == ["paris"]
    assert kept(scored, retriever_weight=0.0) == ["paris"]
    assert kept(list(reversed(plain)), retriever="order") == ["rome"]  # the given order read as the ranking
    assert kept(list(reversed(plain))) == ["rome"]  # a tie again: the first given
    lyon = Chunk(id="lyon", text="The capital city is Lyon.", score=0.2)
    # a chunk without a score counts as the lowest given one
    assert kept([Chunk(id="paris", text=paris), Chunk(id="rome", text=rome, score=0.5), lyon]) == ["rome"]


def test_distances_handed_best_first_are_read_as_distances():
    cities = ["Paris", "Rome", "Lyon", "Oslo"]
    texts = {c: f"The capital city is {c}." for c in cities}
    budget = StageContext.default().count(texts["Paris"]) + 4  # room for one sentence

    def kept(scores, order=cities, **params):
        chunks = [Chunk(id=c, text=texts[c], score=scores[c]) for c in order]
        out = SentenceExtract(**LEXICAL, **params)("capital city", chunks, StageContext.for_chunks(chunks, tokenizer=StageContext.default().tokenizer, budget=budget))
        return [c.id for c in out.chunks]

    l2 = dict(zip(cities, [0.2, 0.5, 0.5, 1.3]))  # a FAISS L2 retriever: best first, rising
    assert kept(l2) == ["Paris"]
    assert kept(l2, retriever="distance") == ["Paris"]
    assert kept(l2, retriever="similarity") == ["Oslo"]
    shuffled = ["Rome", "Oslo", "Paris", "Lyon"]  # not rising in the given order: a similarity
    assert kept(l2, order=shuffled) == ["Oslo"]
    assert kept(l2, order=shuffled, retriever="distance") == ["Paris"]
    cosine = dict(zip(cities, [0.9, 0.7, 0.7, 0.1]))  # the usual: best first, falling
    assert kept(cosine) == ["Paris"]


def test_an_unknown_retriever_mode_names_the_choices():
    with pytest.raises(ValueError, match="similarity, distance"):
        SentenceExtract(retriever="l2")


def _argmax_greedy(selector, sents, value, mentions, weight, redundancy, accept):
    """The selector's greedy as it was: one argmax over every sentence per offer."""
    chunk_of = np.array([s.chunk for s in sents])
    lead_of: dict[int, int] = {}
    for i, s in enumerate(sents):
        lead_of.setdefault(s.chunk, i)
    current, left, touched = value.astype(float).copy(), np.ones(len(sents), dtype=bool), set()
    open_words = np.ones(mentions.shape[1])
    while left.any():
        bonus = selector.coverage * (mentions @ (weight * open_words))
        total = current * (1.0 + bonus) if selector.coverage_mode == "scale" else current + bonus
        i = int(np.argmax(np.where(left, total, -np.inf)))
        left[i] = False
        yield i
        if not accept(i):
            continue
        c = sents[i].chunk
        if redundancy:
            current[chunk_of == c] -= redundancy
        if selector.lead_follow and c not in touched:
            current[lead_of[c]] += selector.lead_follow
        open_words[mentions[i]] = 0.0
        touched.add(c)


@pytest.mark.parametrize("seed", range(12))
def test_greedy_offers_sentences_in_the_same_order_as_one_argmax_per_offer(seed):
    from optimizer.stages.sentence_signals import Sentence
    from optimizer.stages.sentence_select import SentenceSelector

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    chunk_of = np.sort(rng.integers(0, max(1, n // 4), n))
    sents = [Sentence(int(c), 0, 1, "x", 0, int(rng.integers(1, 40))) for c in chunk_of]
    value = rng.choice([0.0, 0.5, 1.0, 1.5], n) if seed % 3 == 0 else rng.normal(size=n)  # ties, then none
    mentions = rng.random((n, 4)) < 0.3
    weight = rng.dirichlet(np.ones(4))
    selector = SentenceSelector(coverage=float(rng.choice([0.0, 0.5])), lead_follow=float(rng.choice([0.0, 0.2])),
                                coverage_mode=str(rng.choice(["add", "scale"])))
    redundancy = float(rng.choice([0.0, 0.3]))
    budget = int(rng.integers(1, 300))

    def taker():
        spent = [0]

        def accept(i):
            if spent[0] + sents[i].tokens > budget:
                return False
            spent[0] += sents[i].tokens
            return True

        return accept

    got = list(selector.greedy(sents, value, mentions, weight, redundancy, taker()))
    expected = list(_argmax_greedy(selector, sents, value, mentions, weight, redundancy, taker()))
    assert got == expected


def test_chunk_terms_put_together_from_sentences_equal_the_texts_own():
    from evals.datasets import load_dataset
    from optimizer.scoring import chunk_texts
    from optimizer.stages.sentence_signals import chunk_terms, split_chunks, terms, titled

    odd = [
        Chunk(id="s", title="ΟΔΟΣ", text="ΣΑΣ ΟΔΟΣ. Σ is a letter.  Ἐν ἀρχῇ ἦν ὁ λόγος."),
        Chunk(id="c", title="東京", text="東京は首都です。大阪は二番目です。 Tokyo's 2nd-largest."),
        Chunk(id="l", title="Long", text="x" * 1500 + " tail words here."),  # cut inside a word: no space between
        Chunk(id="e", title="Empty", text="   "),
        Chunk(id="n", text="No title here. Just text."),
        Chunk(id="p", title="Piece", text="One two. Three four. Five six.").keep([(0, 8), (21, 30)]),
    ]
    sets = [odd] + [list(ex.chunks) for ex in load_dataset("hotpotqa").examples[:40]]
    for chunks in sets:
        sents = split_chunks(chunks, StageContext.default())
        for use_title in (True, False):
            for stem in (0, 5):
                own = [terms(t, stem) for t in titled(sents, chunks, use_title)]
                got = chunk_terms(chunks, sents, own, use_title=use_title, stem=stem, memo={})
                assert got == [terms(t, stem) for t in chunk_texts(chunks, use_title=use_title)]


def _many(n: int) -> list[Chunk]:
    chunks = [Chunk(id=f"c{i}", text=f"Filler passage {i} says little. It goes on a bit, line {i}.") for i in range(n)]
    chunks[57] = Chunk(id="c57", text="The Eiffel Tower is in Paris. It was built in 1889.")
    return chunks


def test_candidates_score_only_the_best_chunks_and_say_why_the_rest_went():
    chunks, ctx = _many(100), StageContext.default(budget=40)
    query = "Where is the Eiffel Tower?"
    out = SentenceExtract(model="static", candidates=10)(query, chunks, ctx)
    assert "c57" in [c.id for c in out.chunks]
    assert out.notes["candidates"] == 10 and out.notes["chunks_in"] == 100
    assert len(out.chunks) + len(out.reasons) >= 100 and all(c.id not in out.reasons or "left out" in out.reasons[c.id] for c in out.chunks)
    assert "not among the 10 best of 100 chunks" in out.reasons["c99"]
    # the same as scoring the ten candidates (c57, then ties in the given order) alone
    picked = [c for c in chunks if c.id in {"c57", *(f"c{i}" for i in range(9))}]
    alone = SentenceExtract(model="static")(query, picked, ctx)
    assert [(c.id, c.text) for c in out.chunks] == [(c.id, c.text) for c in alone.chunks]


def test_candidates_off_or_not_reached_change_nothing():
    chunks, ctx = _many(60), StageContext.default(budget=40)
    plain = SentenceExtract(model="static")("Where is the Eiffel Tower?", chunks, ctx)
    for n in (0, 60, 64):
        same = SentenceExtract(model="static", candidates=n)("Where is the Eiffel Tower?", chunks, ctx)
        assert [(c.id, c.text) for c in same.chunks] == [(c.id, c.text) for c in plain.chunks]
        assert dict(same.reasons) == dict(plain.reasons)


def test_the_retriever_score_brings_a_chunk_into_the_candidates():
    chunks = [Chunk(id=f"c{i}", text=f"Filler passage {i} says little.", score=0.0) for i in range(30)]
    chunks[20] = Chunk(id="c20", text="A filler line that says one query word.", score=5.0)
    chunks[29] = Chunk(id="c29", text="Nothing to see here.", score=0.0)
    ctx = StageContext.default(budget=15)  # three chunks' text exceeds it: the cut stays at three
    kept = SentenceExtract(model=None, candidates=3)("filler passage", chunks, ctx)
    assert kept.notes["candidates"] == 3 and "not among" not in kept.reasons.get("c20", "")
    ignored = SentenceExtract(model=None, candidates=3, retriever="ignore")("filler passage", chunks, ctx)
    assert ignored.notes["candidates"] == 3 and "not among the 3 best" in ignored.reasons["c20"]


@pytest.mark.parametrize("bad", [-1, 2.5, "64"])
def test_candidates_must_be_a_whole_number(bad):
    with pytest.raises(ValueError, match="candidates must be a whole number"):
        SentenceExtract(candidates=bad)


def test_candidates_follow_an_earlier_rerank_and_say_so():
    chunks = [Chunk(id=f"c{i}", text=f"The Eiffel Tower fact number {i}.", relevance=1.0 if i == 3 else 0.0) for i in range(20)]
    # a budget below one chunk's tokens, so the cut stays at one (with more room, more chunks would join it)
    out = SentenceExtract(model=None, candidates=1)("Where is the Eiffel Tower?", chunks, StageContext.default(budget=8))
    assert [c.id for c in out.chunks] == ["c3"]  # the rerank's pick; by BM25 alone the first given would win the tie
    assert "by an earlier rerank's relevance" in out.reasons["c0"]


# A bridge question whose answer sits in the lead of the chunk the second hop brings in.
BRIDGE_QUESTION = "Where was the director of Moon Harbor born?"
BRIDGE = [
    Chunk(id="film", title="Moon Harbor", text="Moon Harbor is a 1998 drama film directed by Ana Ruiz. "
          "The film is set in a fishing town and follows a harbor pilot. It premiered at a festival in Venice."),
    Chunk(id="person", title="Ana Ruiz", text="Ana Ruiz (1961 - 2020) was a Chilean filmmaker from Valparaiso. "
          "Her films often show a harbor at night. She made three features."),
    Chunk(id="d1", title="Harbor pilot", text="A harbor pilot is a mariner who guides ships through a harbor. "
          "Pilots board ships near the harbor entrance."),
    Chunk(id="d2", title="Venice Film Festival", text="The Venice Film Festival is the oldest film festival. "
          "Each film in competition is shown in Venice."),
]
TIGHT = {"model": None, "coverage": 0.5, "density": 0.3, "tight_sentences": 4}


def test_link_lead_keeps_the_lead_of_the_chunk_the_second_hop_brings_in():
    def kept(link_lead: float) -> str:
        return " ".join(c.text for c in run(SentenceExtract(**TIGHT, link_lead=link_lead), BRIDGE, budget=50, query=BRIDGE_QUESTION))

    with_gain, without = kept(1.0), kept(0.0)
    assert "Valparaiso" in with_gain and "directed by Ana Ruiz" in with_gain  # the bridge and the entity's lead
    assert "Valparaiso" not in without  # without the gain the lead loses to the chunk's other sentences


def test_link_lead_skips_chunks_that_share_their_title():
    # two passages of one document: the link cannot say which one it means, so neither lead gains
    second = Chunk(id="person-2", title="Ana Ruiz", text="Ruiz taught film in Santiago. She retired in 2015.")
    chunks = [*BRIDGE, second]
    outs = [run(SentenceExtract(**TIGHT, link_lead=v), chunks, budget=50, query=BRIDGE_QUESTION) for v in (0.0, 1.0)]
    assert [(c.id, c.text) for c in outs[0]] == [(c.id, c.text) for c in outs[1]]


def test_link_lead_names_an_untitled_chunk_by_its_first_capitalized_phrase():
    untitled = [replace(c, title=None) for c in BRIDGE]  # "Ana Ruiz (1961 - 2020) was ..." is about Ana Ruiz

    def kept(chunks, link_lead):
        return [(c.id, c.text) for c in run(SentenceExtract(**TIGHT, link_lead=link_lead), chunks, budget=50, query=BRIDGE_QUESTION)]

    assert "Valparaiso" in " ".join(text for _, text in kept(untitled, 1.0))
    assert "Valparaiso" not in " ".join(text for _, text in kept(untitled, 0.0))
    # a second untitled passage about the same name: neither is "the" chunk the link means
    shared = [*untitled, Chunk(id="person-2", text="Ana Ruiz taught film in Santiago. She retired in 2015.")]
    assert kept(shared, 1.0) == kept(shared, 0.0)


@pytest.mark.parametrize("bad", [-0.5, "1", True])
def test_link_lead_must_be_a_non_negative_number(bad):
    with pytest.raises(ValueError, match="link_lead"):
        SentenceExtract(link_lead=bad)


def _lead_gains(**params) -> dict[str, float]:
    """How much each chunk's lead sentence gains from link_lead, against link_lead 0."""
    sents, score = SentenceExtract(**TIGHT, link_lead=1.0, **params).scores(BRIDGE_QUESTION, BRIDGE, StageContext.default(budget=50))
    _, base = SentenceExtract(**TIGHT, link_lead=0.0).scores(BRIDGE_QUESTION, BRIDGE, StageContext.default(budget=50))
    return {BRIDGE[s.chunk].id: float(a - b) for s, a, b in zip(sents, score, base) if a != b}


def test_link_chunks_keeps_the_gain_on_the_best_linked_chunk():
    every = _lead_gains(link_chunks=0)
    # the hop touches the person, "Harbor pilot" and the festival; the person's link is the strongest
    assert set(every) == {"person", "d1", "d2"} and max(every, key=every.get) == "person"
    assert _lead_gains(link_chunks=1) == {"person": every["person"]}
    two = _lead_gains(link_chunks=2)
    assert set(two) == {"person", "d1"} and two == {k: every[k] for k in two}
    assert _lead_gains(link_chunks=3) == every  # as many as the hop brings in: all of them


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_link_chunks_must_be_a_whole_number(bad):
    with pytest.raises(ValueError, match="link_chunks"):
        SentenceExtract(link_chunks=bad)


def _bridge_scores(chunks=BRIDGE, **params) -> np.ndarray:
    stage = SentenceExtract(**{**TIGHT, "model": "static"}, link_lead=1.0, **params)
    return stage.scores(BRIDGE_QUESTION, chunks, StageContext.default(budget=50))[1]


def test_dense_linked_moves_the_cosine_weight_by_the_link_strength(static_as_hashing):
    static_as_hashing(64)
    shipped = _bridge_scores()
    assert np.array_equal(_bridge_scores(dense_linked=1.0), shipped)  # = dense: the shipped scores
    less, more = _bridge_scores(dense_linked=0.0) - shipped, _bridge_scores(dense_linked=2.0) - shipped
    # the hop brings "Ana Ruiz" in, so the question counts as linked: the cosine weighs less (or more)
    assert np.all(less <= 0) and np.any(less < 0)
    np.testing.assert_allclose(more, -less, atol=1e-12)  # linear in dense_linked around dense
    # the shift is g * cosine with g <= 1: never more than the whole cosine term (at most 1 per sentence)
    assert np.all(less >= -1.0 - 1e-12)


def test_dense_linked_changes_nothing_when_the_hop_brings_no_chunk_in(static_as_hashing):
    static_as_hashing(64)
    # every chunk shares one title: no chunk is "the" one the link means, so g = 0
    chunks = [replace(c, title="Moon Harbor") for c in BRIDGE]
    assert np.array_equal(_bridge_scores(chunks, dense_linked=0.0), _bridge_scores(chunks))


def test_dense_linked_works_when_dense_is_zero(static_as_hashing):
    # no cosine in unlinked questions, some in linked ones: the sentences must still be embedded
    static_as_hashing(64)
    assert not np.array_equal(_bridge_scores(dense=0.0, dense_linked=1.0), _bridge_scores(dense=0.0))


@pytest.mark.parametrize("bad", [-0.5, "1", True])
def test_dense_linked_must_be_none_or_a_non_negative_number(bad):
    with pytest.raises(ValueError, match="dense_linked"):
        SentenceExtract(dense_linked=bad)


# The bridge question over a retriever's chunks of split documents: every passage cut in two, titles kept.
def _split(chunk: Chunk) -> list[Chunk]:
    cut = split_sentences(chunk.text)[1][0]  # where the second sentence starts
    return [replace(chunk, id=f"{chunk.id}#0", text=chunk.text[:cut].strip()), replace(chunk, id=f"{chunk.id}#1", text=chunk.text[cut:].strip())]


SPLIT_BRIDGE = [piece for c in BRIDGE for piece in _split(c)]


def test_documents_keeps_the_bridge_lead_when_passages_come_in_pieces():
    def kept(documents: bool) -> str:
        stage = SentenceExtract(**TIGHT, link_lead=1.0, documents=documents)
        return " ".join(c.text for c in run(stage, SPLIT_BRIDGE, budget=50, query=BRIDGE_QUESTION))

    assert "Valparaiso" in kept(True)  # "Ana Ruiz#0" opens with the name: the lead of the document the hop reaches
    assert "Valparaiso" not in kept(False)  # each name is shared by two pieces, so no lead gains


def test_documents_gives_the_lead_gain_only_to_a_piece_that_names_its_document():
    def gained(link_chunks: int) -> set[str]:
        ctx = StageContext.default(budget=50)
        stage = SentenceExtract(**TIGHT, link_lead=1.0, link_chunks=link_chunks, documents=True)
        sents, score = stage.scores(BRIDGE_QUESTION, SPLIT_BRIDGE, ctx)
        _, base = SentenceExtract(**TIGHT, link_lead=0.0, documents=True).scores(BRIDGE_QUESTION, SPLIT_BRIDGE, ctx)
        return {SPLIT_BRIDGE[s.chunk].id for s, a, b in zip(sents, score, base) if a != b}

    # the first pieces open with their document's name; no second piece names its document
    # ("Her films often show ...", "Pilots board ships ...", "Each film in competition ...")
    assert gained(0) == {"person#0", "d1#0", "d2#0"}
    assert gained(1) == {"person#0"}  # the best-linked, as with whole passages


def test_documents_never_links_a_piece_to_its_own_document():
    from optimizer.stages.sentence_signals import entity_links

    # the film's second piece is about "Moon Harbor" too; only its own first piece mentions that name
    film = [c for c in SPLIT_BRIDGE if c.id.startswith("film")]
    other = Chunk(id="x", title="Harbor pilot", text="A harbor pilot guides ships.")
    chunks = [*film, other]
    ctx = StageContext.default(budget=50)
    stage = SentenceExtract(**TIGHT)
    from optimizer.stages.sentence_signals import split_chunks

    sents = split_chunks(chunks, ctx)
    p1 = np.array([1.0, 0.0, 0.0])
    score = np.array([1.0 if s.chunk == 0 else 0.0 for s in sents])
    alone = entity_links(sents, chunks, p1, score, hop_chunks=3)
    documents = entity_links(sents, chunks, p1, score, hop_chunks=3, documents=True)
    assert alone[1] > 0  # as separate chunks, "Moon Harbor is ..." links the film's other piece
    assert documents[1] == 0 and documents[0] == 0
    assert stage.documents is False


def test_documents_changes_nothing_when_every_chunk_has_its_own_name(static_as_hashing):
    static_as_hashing(64)
    assert np.array_equal(_bridge_scores(documents=True), _bridge_scores())


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_documents_must_be_true_or_false(bad):
    with pytest.raises(ValueError, match="documents must be true or false"):
        SentenceExtract(documents=bad)


def test_documents_leaves_untitled_chunks_alone():
    # untitled pieces: the name is only guessed from the text, so they are not read as one document
    person = [Chunk(id="p0", text="Ana Ruiz (1961 - 2020) was a Chilean filmmaker from Valparaiso."),
              Chunk(id="p1", text="Ana Ruiz made three features. Her films often show a harbor at night.")]
    untitled = [replace(c, title=None) for c in (BRIDGE[0], *person, *BRIDGE[2:])]
    ctx = StageContext.default(budget=50)
    on = SentenceExtract(**TIGHT, link_lead=1.0, documents=True).scores(BRIDGE_QUESTION, untitled, ctx)[1]
    off = SentenceExtract(**TIGHT, link_lead=1.0).scores(BRIDGE_QUESTION, untitled, ctx)[1]
    assert np.array_equal(on, off)


def test_default_preset_keeps_the_bridge_lead_of_a_split_document():
    from optimizer.presets import preset_config

    def kept(documents: bool) -> str:
        config = preset_config("default")
        for step in config["steps"]:
            if step["stage"] == "compress-sentences":
                step["params"]["documents"] = documents
        return Pipeline.from_config(config).run(BRIDGE_QUESTION, SPLIT_BRIDGE, budget=60).text

    assert "Valparaiso" in Pipeline.preset("default").run(BRIDGE_QUESTION, SPLIT_BRIDGE, budget=60).text
    assert "Valparaiso" in kept(True) and "Valparaiso" not in kept(False)


def test_default_preset_matches_words_by_their_first_six_letters():
    # "directed" in the question, "director" in the answer: only truncation stemming (stem 6) connects them
    from optimizer.presets import preset_config

    question = "Who directed the film Blue Lantern?"
    chunks = [
        Chunk(id="a", title="Blue Lantern", text="Blue Lantern is a 1994 drama film. Its director was Mara Quill. "
              "It was shot in Lisbon over two winters."),
        Chunk(id="b", title="Red Lantern", text="Red Lantern is a 1996 film that was directed by Tom Ashe. It was a success in France."),
        Chunk(id="c", title="Green Lantern", text="Green Lantern was directed by Ida Brun in 1991. The film was shot in Oslo."),
        Chunk(id="d", title="Lantern festival", text="A lantern festival is held in many cities. "
              "Films about it were directed by several people."),
    ]

    def kept(stem: int | None) -> str:
        config = preset_config("default")
        for step in config["steps"]:
            if step["stage"] == "compress-sentences" and stem is not None:
                step["params"]["stem"] = stem
        return Pipeline.from_config(config).run(question, chunks, budget=40).text

    assert "Mara Quill" in kept(None)  # the preset as shipped
    assert "Mara Quill" not in kept(0)  # whole words: the literal "directed" of another film wins

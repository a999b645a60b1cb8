"""Dedupe stages drop the right copy, keep the better-scored one, and say why."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer import Chunk
from optimizer.embeddings import HashingEmbedder
from optimizer.stage import StageContext
from optimizer.stages.dedupe import ExactDedupe, MergeOverlaps, NearDedupe, SemanticDedupe

CTX = StageContext.default


def test_exact_keeps_the_better_scored_copy_in_input_order():
    chunks = [
        Chunk(id="low", text="The Eiffel Tower is 330 m tall.", score=0.2),
        Chunk(id="other", text="Paris is in France.", score=0.5),
        Chunk(id="high", text="the eiffel tower is 330 m tall", score=0.9),
    ]
    out = ExactDedupe()("q", chunks, CTX())
    assert [c.id for c in out] == ["other", "high"]
    assert out.reasons == {"low": "exact duplicate of high"}


def test_exact_with_titles_keeps_same_text_under_different_titles():
    chunks = [Chunk(id="a", title="A", text="Same text."), Chunk(id="b", title="B", text="Same text.")]
    assert len(ExactDedupe(use_title=True)("q", chunks, CTX())) == 2
    assert len(ExactDedupe()("q", chunks, CTX())) == 1


BASE = "Gustave Eiffel's company designed and built the tower for the 1889 World's Fair in Paris, France"


def test_near_drops_the_lower_scored_near_copy_with_jaccard_in_the_reason():
    chunks = [
        Chunk(id="copy", text=BASE + " last year.", score=0.3),
        Chunk(id="orig", text=BASE + ".", score=0.8),
        Chunk(id="diff", text="The Statue of Liberty was dedicated in 1886 in New York Harbor.", score=0.1),
    ]
    out = NearDedupe(threshold=0.8, differences="drop")("q", chunks, CTX())
    assert [c.id for c in out] == ["orig", "diff"]
    assert out.reasons["copy"].startswith("near-duplicate of orig (jaccard 0.")


STORY = (
    "The flood closed the river road on Monday. Officials said 12 people were rescued from the valley. "
    "Schools in the district stayed shut. The weather service expects more rain on Thursday."
)


def test_near_keeps_the_sentence_a_near_copy_changes_and_drops_the_rest():
    # an updated copy of a news story listed first: dropping it whole would lose "15"
    update = Chunk(id="update", text=STORY.replace("12 people", "15 people"), score=0.5)
    story = Chunk(id="story", text=STORY, score=0.9)
    before = (update.text, update.pieces)
    out = NearDedupe(threshold=0.5)("q", [update, story], CTX())
    assert [c.id for c in out] == ["update", "story"]
    assert out[0].text == "Officials said 12 people were rescued from the valley.".replace("12", "15")
    s, e = out[0].pieces[0]
    assert update.text[s:e] == out[0].text  # provenance: the span of the original text it came from
    assert out[1].text == STORY
    assert out.reasons["update"].startswith("near-duplicate of story (jaccard 0.")
    assert out.reasons["update"].endswith("kept the 1 sentence it adds")
    assert (update.text, update.pieces) == before  # the input chunk is not changed


def test_near_drops_a_copy_that_adds_no_sentence_and_keeps_a_shared_change_once():
    trimmed = Chunk(id="trimmed", text=STORY.rsplit(" The weather", 1)[0], score=0.1)  # a subset: adds nothing
    first = Chunk(id="first", text=STORY.replace("Monday", "Tuesday"), score=0.5)
    second = Chunk(id="second", text=STORY.replace("Monday", "Tuesday") + " ", score=0.4)
    story = Chunk(id="story", text=STORY, score=0.9)
    chunks = [trimmed, second, first, story]
    # scores that rise along the given order would read as distances: say they are similarities
    similarities = StageContext.for_chunks(chunks, tokenizer=CTX().tokenizer, score_mode="similarity")
    out = NearDedupe(threshold=0.5)("q", chunks, similarities)
    assert [c.id for c in out] == ["first", "story"]  # the better-scored copy keeps the shared change
    assert out[0].text == "The flood closed the river road on Tuesday."
    assert out.reasons["trimmed"].startswith("near-duplicate of story (jaccard")
    assert out.reasons["second"].startswith("near-duplicate of story (jaccard")
    assert "kept" not in out.reasons["second"]


def test_dedupers_reject_an_unknown_differences_setting():
    for stage in (NearDedupe, SemanticDedupe):
        with pytest.raises(ValueError, match="differences must be 'keep'.*got 'merge'"):
            stage(differences="merge")


def test_near_with_lsh_finds_the_same_duplicates():
    chunks = [Chunk(id=f"n{i}", text=f"Filler passage number {i} about topic {i * 7} and nothing else at all.") for i in range(70)]
    chunks.append(Chunk(id="dup", text=chunks[5].text + " ok", score=-1.0))
    exact = NearDedupe(threshold=0.7, lsh_above=1000, differences="drop")("q", chunks, CTX())
    lsh = NearDedupe(threshold=0.7, lsh_above=10, differences="drop")("q", chunks, CTX())
    assert "dup" in exact.reasons and "dup" in lsh.reasons
    assert len(lsh) == len(exact) == 70


def test_semantic_keeps_the_better_scored_of_two_identical_embeddings(static_as_hashing):
    static_as_hashing(512)
    chunks = [
        Chunk(id="a", text="tower built paris 1889", score=0.1),
        Chunk(id="b", text="paris tower 1889 built", score=0.7),  # same words, other order
        Chunk(id="c", text="new york statue liberty harbor", score=0.5),
    ]
    out = SemanticDedupe(threshold=0.95, differences="drop")("q", chunks, CTX())
    assert [c.id for c in out] == ["b", "c"]
    assert out.reasons["a"].startswith("semantic duplicate of b (cosine 1.000")


def test_semantic_duplicate_keeps_the_sentence_it_adds_and_drops_a_reordered_copy(static_as_hashing):
    static_as_hashing(512)
    chunks = [
        Chunk(id="shuffled", text="The arch is iron. The tower in Paris was built in 1889.", score=0.1),
        Chunk(id="orig", text="The tower in Paris was built in 1889. The arch is iron.", score=0.9),
        Chunk(id="changed", text="The tower in Paris was in 1889 built. The arch is iron.", score=0.5),
    ]
    out = SemanticDedupe(threshold=0.95)("q", chunks, CTX())
    assert [c.id for c in out] == ["orig", "changed"]
    assert out[1].text == "The tower in Paris was in 1889 built."
    assert out.reasons["shuffled"] == "semantic duplicate of orig (cosine 1.000)"
    assert out.reasons["changed"] == "semantic duplicate of orig (cosine 1.000): kept the 1 sentence it adds"


def test_semantic_faiss_path_agrees_with_matrix_path(static_as_hashing):
    static_as_hashing(256)
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(400)]
    chunks = [Chunk(id=str(i), text=" ".join(rng.choice(vocab, 12)), score=float(rng.random())) for i in range(30)]
    chunks.append(Chunk(id="dup", text=chunks[3].text, score=-1.0))
    small = SemanticDedupe(threshold=0.9, faiss_above=10_000)("q", chunks, CTX())
    big = SemanticDedupe(threshold=0.9, faiss_above=5)("q", chunks, CTX())
    assert small.reasons.keys() == big.reasons.keys() and "dup" in small.reasons


DOC = "".join(f"Sentence {i} of the long document says something. " for i in range(12))


def test_merge_overlaps_trims_the_window_overlap_from_the_lower_ranked_chunk_by_text():
    first, second = DOC[:300], DOC[200:500]
    chunks = [Chunk(id="w2", text=second, score=0.4), Chunk(id="w1", text=first, score=0.9)]
    out = MergeOverlaps(min_overlap=40)("q", chunks, CTX())
    w2 = [c for c in out if c.id == "w2"][0]
    assert w2.kept_pieces == ((100, 300),)  # second[100:] == DOC[300:500]: only the new text
    assert w2.text == second[100:300]
    assert first + w2.text == DOC[:500]
    assert "overlaps w1" in out.reasons["w2"]


def test_merge_overlaps_uses_document_offsets_and_drops_contained_windows():
    chunks = [
        Chunk(id="a", text=DOC[0:250], score=0.9, metadata={"doc_id": "d", "start": 0}),
        Chunk(id="b", text=DOC[150:400], score=0.5, metadata={"doc_id": "d", "start": 150}),
        Chunk(id="c", text=DOC[20:120], score=0.1, metadata={"doc_id": "d", "start": 20}),
        Chunk(id="x", text=DOC[150:400], score=0.2, metadata={"doc_id": "other", "start": 150}, title="T"),
    ]
    out = MergeOverlaps(min_overlap=40)("q", chunks, CTX())
    by_id = {c.id: c for c in out}
    assert by_id["b"].text == DOC[250:400].strip()  # what "a" already covers is gone
    assert by_id["b"].kept_pieces == ((101, 250),)  # (100 is a space, stripped by Chunk.keep)
    assert "c" not in by_id and out.reasons["c"] == "contained in a"
    assert by_id["x"].text == DOC[150:400].strip()  # other document and other title: untouched


def _near_copies(n: int) -> list[Chunk]:
    base = [
        Chunk(id=f"p{i}", text=" ".join(f"w{i}x{k}" for k in range(60)) + f" topic {i}.", score=float(i % 5))
        for i in range(n)
    ]
    copies = [Chunk(id=f"c{i}", text=base[i].text + " again", score=-1.0) for i in range(0, n, 3)]
    return base + copies


def test_near_lsh_path_drops_exactly_what_comparing_every_pair_drops():
    chunks = _near_copies(150)
    every_pair = NearDedupe(threshold=0.8, lsh_above=10_000)("q", chunks, CTX())
    lsh = NearDedupe(threshold=0.8)("q", chunks, CTX())
    assert dict(lsh.reasons) == dict(every_pair.reasons)
    assert len(lsh.reasons) == 50
    assert [c.id for c in lsh] == [c.id for c in every_pair]


def test_near_lsh_band_search_runs_once_per_setting(monkeypatch):
    import datasketch.lsh

    from optimizer.stages import dedupe

    calls = []
    search = datasketch.lsh._optimal_param
    monkeypatch.setattr(datasketch.lsh, "_optimal_param", lambda *a: calls.append(a) or search(*a))
    dedupe.lsh_bands.cache_clear()
    stage = NearDedupe(threshold=0.75, num_perm=64)
    for _ in range(3):
        stage("q", _near_copies(80), CTX())
    assert len(calls) == 1
    assert dedupe.lsh_bands(0.75, 64) == (lambda m: (m.b, m.r))(datasketch.MinHashLSH(threshold=0.75, num_perm=64))


def _every_minhash(stage: NearDedupe, chunks: list[Chunk]) -> dict[str, str]:
    """The LSH path as it was before the exact pre-filter: a MinHash for every chunk, all in the LSH."""
    from datasketch import MinHash, MinHashLSH

    from optimizer.stages.dedupe import _best_first, lsh_bands
    from optimizer.text import jaccard, shingles

    sets = [shingles(c.text, stage.shingle) for c in chunks]
    lsh = MinHashLSH(num_perm=stage.num_perm, params=lsh_bands(float(stage.threshold), stage.num_perm))
    hashes = dict(enumerate(MinHash.bulk(([x.encode() for x in s] for s in sets), num_perm=stage.num_perm, seed=stage.seed)))
    reasons: dict[str, str] = {}
    for i in _best_first(chunks, CTX()):
        if not sets[i]:
            continue
        best, best_j = -1, 0.0
        for j in sorted(int(k) for k in lsh.query(hashes[i])):
            sim = jaccard(sets[i], sets[j])
            if sim >= stage.threshold and sim > best_j:
                best, best_j = j, sim
        if best >= 0:
            reasons[chunks[i].id] = f"near-duplicate of {chunks[best].id} (jaccard {best_j:.2f})"
            continue
        lsh.insert(str(i), hashes[i])
    return reasons


def test_near_lsh_path_with_the_pre_filter_drops_what_minhashing_every_chunk_drops():
    """Copies just above the threshold, which LSH finds only some of: the same ones, with the same reasons."""
    rng = np.random.default_rng(7)
    vocab = [f"v{k}" for k in range(400)] + ["the", "of", "in"] * 20
    chunks = [Chunk(id=f"p{i}", text=" ".join(rng.choice(vocab, 50)), score=float(rng.integers(0, 4))) for i in range(120)]
    for i in range(0, 120, 2):
        words = chunks[i].text.split()
        k = int(rng.integers(1, 4))  # change 1-3 words near the end: Jaccard about 0.8-0.95
        chunks.append(Chunk(id=f"c{i}", text=" ".join(words[:-k - 2] + ["new"] * k + words[-2:]), score=float(rng.integers(0, 4))))
    for stage in (
        NearDedupe(differences="drop"),
        NearDedupe(threshold=0.9, num_perm=64, differences="drop"),
        NearDedupe(shingle=2, threshold=0.7, differences="drop"),
    ):
        out = stage("q", chunks, CTX())
        expected = _every_minhash(stage, chunks)
        assert dict(out.reasons) == expected
        assert [c.id for c in out] == [c.id for c in chunks if c.id not in expected]
    every_pair = NearDedupe(lsh_above=10_000, differences="drop")("q", chunks, CTX())
    assert 0 < len(_every_minhash(NearDedupe(), chunks)) < len(every_pair.reasons)  # LSH missed some: a real check


def test_near_drops_a_copy_exactly_at_the_threshold_the_size_cut_must_not_skip_it():
    # a's 4 word 3-grams are all in b's 5: Jaccard 4 / 5 = 0.8 exactly, which counts as a copy at 0.8
    a = Chunk(id="a", text="one two three four five six", score=1.0)
    b = Chunk(id="b", text="one two three four five six seven", score=0.0)
    out = NearDedupe(threshold=0.8, differences="drop")("q", [a, b], CTX())
    assert [c.id for c in out] == ["a"] and "jaccard 0.80" in out.reasons["b"]
    # one word longer (6 shingles): 4 / 6 < 0.8, kept without comparing the sets
    c = Chunk(id="c", text="one two three four five six seven eight", score=0.0)
    assert [x.id for x in NearDedupe(threshold=0.8, differences="drop")("q", [a, c], CTX())] == ["a", "c"]


def test_jaccard_from_the_intersection_equals_the_set_formula():
    from optimizer.text import jaccard

    rng = np.random.default_rng(3)
    for _ in range(300):
        x = set(rng.integers(0, 30, int(rng.integers(0, 25))).tolist())
        y = set(rng.integers(0, 30, int(rng.integers(0, 25))).tolist())
        assert jaccard(x, y) == (len(x & y) / len(x | y) if x | y else 0.0)


def test_the_size_cut_survives_rounding_at_the_threshold():
    # 0.28 * 25 is 7.000000000000001 in floating point, while Jaccard 7 / 25 == 0.28: still a copy
    words = [f"w{k}" for k in range(27)]  # 25 word 3-grams; the first 9 words hold 7 of them
    a = Chunk(id="a", text=" ".join(words[:9]), score=1.0)
    b = Chunk(id="b", text=" ".join(words), score=0.0)
    out = NearDedupe(threshold=0.28, differences="drop")("q", [a, b], CTX())
    assert [c.id for c in out] == ["a"] and "jaccard 0.28" in out.reasons["b"]

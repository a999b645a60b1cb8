"""``POST /v1/embeddings`` bodies in OpenAI's shape, checked, and their input tokens counted exactly.

``input`` is a string, a list of strings, a list of token ids, or a list of token-id lists (OpenAI's four forms), at
most :data:`MAX_INPUTS` inputs, none empty; ``encoding_format`` is ``"float"`` or ``"base64"``; ``dimensions`` a whole
number from 1; no text anywhere holds a lone UTF-16 surrogate. Anything else is a 400 naming the value and the fix.
The body goes upstream as it came (``model`` set to the upstream's name), less ragtrim's own ``feature`` tag; who and
what a request is for are ``user`` (OpenAI's field, forwarded) and ``feature``, else the ``X-Ragtrim-User`` /
``X-Ragtrim-Feature`` headers (:func:`ragtrim.serve.bodies.tags_of`).

>>> req = parse_embeddings({"model": "te3", "input": ["a", "b"], "user": "alice"}, {"x-ragtrim-feature": "indexer"})
>>> req.inputs, req.tags, req.forwarded
(('a', 'b'), Tags(user='alice', feature='indexer'), {'model': 'te3', 'input': ['a', 'b'], 'user': 'alice'})
>>> count_inputs(("hello world", (1, 2, 3)), "cl100k_base", limit=8192)
[2, 3]
>>> parse_embeddings({"model": "te3", "input": ""}, {})
Traceback (most recent call last):
...
ragtrim.serve.errors.ApiError: input is an empty string; send the text to embed (an empty input has no embedding)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from optimizer.tokenizer import get_tokenizer
from ragtrim.serve.bodies import Tags, _name, check_surrogates, tags_of
from ragtrim.serve.errors import bad_request

MAX_INPUTS = 2048  # OpenAI's limit of inputs per request
MAX_TOKEN_ID = 2**31 - 1
ENCODING_FORMATS = ("float", "base64")
OWN_FIELDS = ("feature",)  # ragtrim's own fields of an embeddings body: read, never forwarded

Input = Union[str, tuple[int, ...]]


@dataclass(frozen=True)
class EmbeddingRequest:
    """A checked embeddings body: the model asked, each input (a text, or token ids), the tags, and the body to forward."""

    model: str
    inputs: tuple[Input, ...]
    tags: Tags
    forwarded: Mapping[str, Any]


def parse_embeddings(body: Mapping[str, Any], headers: Mapping[str, str]) -> EmbeddingRequest:
    """The request ``body`` (with its ``headers``' tags) checked, or a 400 naming the field, the value and the fix."""
    check_surrogates(body, aside=())  # a lone surrogate anywhere (it is all forwarded): a 400 naming the field
    if body.get("model") is None:
        raise bad_request("model is required: name the embedding model to use (GET /v1/models lists them)", "model")
    model = _name(body.get("model"), "model", "model_asked", required=True)
    inputs = parse_input(body.get("input"))
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ENCODING_FORMATS:
        raise bad_request(f"encoding_format must be 'float' or 'base64' (or left out: float), got {fmt!r:.80}", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise bad_request(f"dimensions must be a whole number from 1 (the length of each vector; left out: the model's "
                          f"own), got {dims!r:.80}", "dimensions")
    tags = tags_of({"user": body.get("user")}, {"feature": body.get("feature")}, headers)  # no metadata: not an embeddings field
    forwarded = {k: v for k, v in body.items() if k not in OWN_FIELDS}
    return EmbeddingRequest(model=model, inputs=inputs, tags=tags, forwarded=forwarded)


def parse_input(value: Any) -> tuple[Input, ...]:
    """``input`` as its inputs, each a text or a tuple of token ids, or a 400.

    >>> parse_input("hi"), parse_input([1, 2]), parse_input([[1], [2, 3]])
    (('hi',), ((1, 2),), ((1,), (2, 3)))
    >>> parse_input(["a", 1])
    Traceback (most recent call last):
    ...
    ragtrim.serve.errors.ApiError: input mixes strings and token ids (input[1] is 1); send a list of strings, a list of token ids, or a list of token-id lists
    """
    if isinstance(value, str):
        return (_text(value, "input"),)
    if not isinstance(value, list):
        raise bad_request(f"input must be a string, a list of strings, a list of token ids or a list of token-id lists, got "
                          f"{value!r:.80}", "input")
    if not value:
        raise bad_request("input is an empty list; send at least one text (or token ids) to embed", "input")
    if isinstance(value[0], int) and not isinstance(value[0], bool):  # one input, as token ids
        return (_ids(value, "input"),)
    if len(value) > MAX_INPUTS:
        raise bad_request(f"input has {len(value)} items; at most {MAX_INPUTS} go in one request: send them in batches of "
                          f"{MAX_INPUTS}", "input")
    kind = str if isinstance(value[0], str) else list if isinstance(value[0], list) else None
    if kind is None:
        raise bad_request(f"input[0] must be a string, a token id or a list of token ids, got {value[0]!r:.40}", "input")
    for i, item in enumerate(value):
        if not isinstance(item, kind):
            raise bad_request(f"input mixes strings and token ids (input[{i}] is {item!r:.40}); send a list of strings, a list "
                              "of token ids, or a list of token-id lists", "input")
    if kind is str:
        return tuple(_text(item, f"input[{i}]") for i, item in enumerate(value))
    return tuple(_ids(item, f"input[{i}]") for i, item in enumerate(value))


def _text(value: str, where: str) -> str:
    if not value:
        raise bad_request(f"{where} is an empty string; send the text to embed (an empty input has no embedding)", "input")
    return value


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_ID


def _ids(value: list[Any], where: str) -> tuple[int, ...]:
    if not value:
        raise bad_request(f"{where} is an empty list of token ids; send at least one token", "input")
    for j, token in enumerate(value):
        if not _token_id(token):
            raise bad_request(f"{where}[{j}] must be a token id, a whole number from 0 to {MAX_TOKEN_ID}, got {token!r:.40}", "input")
    return tuple(value)


def count_inputs(inputs: Sequence[Input], tokenizer: str, *, limit: int, model: str = "") -> list[int]:
    """Each input's tokens (a text counted with ``tokenizer``, token ids by their number), or a 400 for an input above
    ``limit`` (the ``model``'s ``max_input_tokens``). Blocking: run it on a thread."""
    tok = get_tokenizer(tokenizer)
    counts = []
    for i, item in enumerate(inputs):
        n = tok.count(item) if isinstance(item, str) else len(item)
        if n > limit:
            where = "input" if len(inputs) == 1 else f"input[{i}]"
            raise bad_request(f"{where} is {n} tokens ({tokenizer if isinstance(item, str) else 'token ids'}); "
                              f"{f'model {model!r}' if model else 'the model'} takes at most {limit} per input "
                              "(max_input_tokens): split it into smaller chunks", "input")
        counts.append(n)
    return counts


def input_bytes(inputs: Sequence[Input], bytes_per_token: int) -> int:
    """The size the upstream's reported count is judged against (:func:`ragtrim.serve.chat.trusted_count`): each text's
    UTF-8 bytes, and ``bytes_per_token`` per token id (a count below the number of ids sent is never trusted).

    >>> input_bytes(("héllo", (1, 2)), 32)
    70
    """
    return sum(len(i.encode("utf-8", "replace")) if isinstance(i, str) else bytes_per_token * len(i) for i in inputs)


def embeddings_schema() -> dict[str, Any]:
    """The JSON schema of a ``POST /v1/embeddings`` body (for the OpenAPI spec): OpenAI's, plus ragtrim's ``feature``."""
    ids = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
    return {"type": "object", "required": ["model", "input"], "additionalProperties": True, "properties": {
        "model": {"type": "string", "description": "a model configured with kind = \"embedding\""},
        "input": {"oneOf": [{"type": "string", "minLength": 1},
                            {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": {"type": "string", "minLength": 1}},
                            ids, {"type": "array", "minItems": 1, "maxItems": MAX_INPUTS, "items": ids}],
                  "description": f"at most {MAX_INPUTS} inputs, each at most the model's max_input_tokens"},
        "encoding_format": {"type": "string", "enum": list(ENCODING_FORMATS)},
        "dimensions": {"type": "integer", "minimum": 1}, "user": {"type": "string"},
        "feature": {"type": "string", "description": "ragtrim's feature tag (not forwarded); else the X-Ragtrim-Feature header"}}}

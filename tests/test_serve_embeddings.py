"""``POST /v1/embeddings``: OpenAI's route, every input token accounted to the tenant, within its budgets.

Real HTTP on loopback: the fake upstream (:mod:`ragtrim.serve.fake_upstream`, which serves ``/v1/embeddings`` with
deterministic vectors) behind the gateway, both under uvicorn, driven with the official ``openai`` SDK and httpx.
"""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from optimizer.tokenizer import get_tokenizer
from ragtrim.serve.app import create_app
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.schema import budget_usage, reservations
from ragtrim.serve.fake_upstream import create_fake_upstream, fake_vector
from ragtrim.serve.plan import with_margin
from ragtrim.serve.service import Service
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import PEPPER, budget, final_rows, gateway_config, spent_and_reserved, tenant_with_key

EMBED = "text-embedding-3-small"
PRICE = 0.02  # USD per million input tokens
MODELS = {EMBED: {"upstream": "fake", "kind": "embedding", "tokenizer": "cl100k_base", "input_per_million": PRICE},
          "tiny-embed": {"upstream": "fake", "kind": "embedding", "input_per_million": PRICE, "max_input_tokens": 5}}


@dataclass
class Gateway:
    url: str
    service: Any
    key: str
    fake: Any  # the fake upstream's state: calls, bodies, reported_prompt

    def auth(self, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", **headers}

    def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/embeddings", json=body, headers=self.auth(**headers), timeout=30)


@contextmanager
def gateway(tmp_path: Any, *, tokens: int | None = 1_000_000, latency_ms: float = 0.0, models: dict[str, Any] = MODELS,
            limits: dict[str, Any] | None = None, **upstream: Any) -> Iterator[Gateway]:
    """The fake upstream and the gateway on loopback (serving ``models`` besides the chat ones, with ``[limits]``
    ``limits``); tenant ``acme`` with a key and (unless None) a token budget."""
    fake = create_fake_upstream(latency_ms=latency_ms)
    with serve_in_thread(fake) as up:
        config = gateway_config(up, upstream, extra_models=models, **({"limits": limits} if limits else {}))
        service = Service(config, db_url=f"sqlite:///{tmp_path}/serve.sqlite", pepper=PEPPER)
        with serve_in_thread(create_app(service)) as base:
            key = tenant_with_key(service, "acme")
            if tokens is not None:
                budget(service, "acme", "tokens", tokens)
            yield Gateway(base, service, key, fake.state.fake)


def nothing_spent(service: Any) -> bool:
    """No budget counter has moved this period (none may even have been read), and no reservation is held."""
    with service.engine.connect() as c:
        usage = c.execute(budget_usage.select()).all()
        return all(u.spent == u.reserved == 0 for u in usage) and c.execute(reservations.select()).all() == []


def count(text: str) -> int:
    return get_tokenizer("cl100k_base").count(text)


def cost(tokens: int) -> int:
    return math.ceil(tokens * PRICE)


# 1. the official SDK, every input form


@pytest.mark.parametrize("given, inputs", [
    ("The capital of France is Paris.", ["The capital of France is Paris."]),
    (["Paris is in France.", "Lyon is on the Rhone.", "Marseille is a port."],
     ["Paris is in France.", "Lyon is on the Rhone.", "Marseille is a port."]),
    ([9906, 1917, 0, 5], [[9906, 1917, 0, 5]]),
    ([[9906, 1917], [15339, 11, 1917, 0, 7]], [[9906, 1917], [15339, 11, 1917, 0, 7]]),
])
@pytest.mark.parametrize("encoding", ["float", "base64", None])
def test_the_openai_sdk_embeds_each_input_form_and_each_token_is_charged(tmp_path, given, inputs, encoding):
    openai = pytest.importorskip("openai")
    with gateway(tmp_path) as g:
        client = openai.OpenAI(base_url=f"{g.url}/v1", api_key=g.key, max_retries=0)
        extra = {"encoding_format": encoding} if encoding else {}  # the SDK asks for base64 when not told, and decodes it
        out = client.embeddings.create(model=EMBED, input=given, user="alice", **extra)
        if encoding == "base64":  # asked for explicitly, the SDK hands the strings on as they came
            vectors = [list(struct.unpack("<8f", base64.b64decode(d.embedding))) for d in out.data]
        else:
            vectors = [d.embedding for d in out.data]
        assert vectors == [pytest.approx(fake_vector(i, 8), abs=1e-6) for i in inputs]  # base64 carries float32
        tokens = sum(count(i) if isinstance(i, str) else len(i) for i in inputs)
        assert out.usage.prompt_tokens == tokens
        [row] = final_rows(g.service)
        assert (row["endpoint"], row["action"], row["status"], row["model_used"], row["user"]) == ("embeddings", "ok", 200, EMBED, "alice")
        assert (row["prompt_tokens"], row["completion_tokens"], row["usage_source"]) == (tokens, 0, "upstream"), row
        assert row["reserved_tokens"] == tokens and row["cost_micro"] == cost(tokens) == row["reserved_micro"], row
        assert spent_and_reserved(g.service) == (tokens, 0)
        assert g.fake.bodies[-1]["model"] == EMBED and g.fake.bodies[-1]["input"] == given and g.fake.bodies[-1]["user"] == "alice"


def test_the_body_is_relayed_as_it_came_with_the_gateways_headers(tmp_path):
    with gateway(tmp_path) as g:
        r = g.post({"model": EMBED, "input": ["a b c"], "dimensions": 3, "encoding_format": "float"},
                   **{"X-Ragtrim-Feature": "indexer", "X-Ragtrim-User": "job-7"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"object", "model", "data", "usage"} and len(body["data"][0]["embedding"]) == 3
        assert r.headers["X-Ragtrim-Model"] == EMBED and r.headers["X-Ragtrim-Action"] == "ok"
        assert r.headers["X-Ragtrim-Cost-Micro"] == str(cost(3))
        [row] = final_rows(g.service)
        assert (row["user"], row["feature"], row["id"]) == ("job-7", "indexer", r.headers["X-Ragtrim-Request-Id"])
        assert g.fake.bodies[-1]["dimensions"] == 3


def test_feature_in_the_body_tags_the_row_and_is_not_forwarded(tmp_path):
    with gateway(tmp_path) as g:
        assert g.post({"model": EMBED, "input": "x", "feature": "retriever"}).status_code == 200
        assert final_rows(g.service)[0]["feature"] == "retriever" and "feature" not in g.fake.bodies[-1]


# 2. budgets hold under a burst


def test_a_burst_never_spends_past_a_token_budget(tmp_path):
    text = "one two three four five six seven eight nine"  # 9 tokens
    n = count(text)
    with gateway(tmp_path, tokens=10 * n, latency_ms=30) as g:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(*(client.post(f"{g.url}/v1/embeddings", json={"model": EMBED, "input": text},
                                                          headers=g.auth()) for _ in range(30)))

        responses = asyncio.run(burst())
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 429]
        assert len(ok) + len(refused) == 30 and 1 <= len(ok) <= 10, [r.status_code for r in responses]
        assert {r.json()["error"]["code"] for r in refused} <= {"insufficient_quota", "rate_limit_exceeded"}
        rows = final_rows(g.service)
        assert sum(r["prompt_tokens"] for r in rows) == len(ok) * n
        assert sum(r["action"] == "refused" for r in rows) == len(refused) and g.fake.calls == len(ok)
        spent, reserved = spent_and_reserved(g.service)
        assert spent == len(ok) * n <= 10 * n and reserved == 0


def test_a_spent_budget_refuses_before_the_upstream_and_says_why(tmp_path):
    with gateway(tmp_path, tokens=5) as g:
        r = g.post({"model": EMBED, "input": "a sentence of more than five tokens, surely"})
        assert r.status_code == 429, r.text
        error = r.json()["error"]
        assert error["code"] == "insufficient_quota" and "never trimmed or sent to another model" in error["message"], error
        assert int(r.headers["Retry-After"]) >= 1 and g.fake.calls == 0
        [row] = final_rows(g.service)
        assert (row["endpoint"], row["action"], row["status"], row["cost_micro"], row["prompt_tokens"]) == ("embeddings", "refused", 429, 0, 0)


def test_a_dollar_budget_holds_too(tmp_path):
    with gateway(tmp_path, tokens=None) as g:
        budget(g.service, "acme", "usd", 1)  # one micro-dollar: 50 tokens at $0.02 per million
        assert g.post({"model": EMBED, "input": [[1] * 50]}).status_code == 200
        assert g.post({"model": EMBED, "input": [[1]]}).status_code == 429
        assert [r["cost_micro"] for r in final_rows(g.service)] == [1, 0]


# 3. usage totals and metrics


def test_usage_totals_and_metrics_count_the_embeddings(tmp_path):
    with gateway(tmp_path) as g:
        for text in ("alpha beta", "gamma delta epsilon"):
            assert g.post({"model": EMBED, "input": text}).status_code == 200
        r = httpx.get(f"{g.url}/v1/usage", params={"by": "endpoint,model"}, headers=g.auth())
        assert r.status_code == 200, r.text
        [group] = r.json()["rows"]
        tokens = count("alpha beta") + count("gamma delta epsilon")
        assert (group["endpoint"], group["model"], group["ok"], group["prompt_tokens"], group["completion_tokens"]) == (
            "embeddings", EMBED, 2, tokens, 0)
        assert group["cost_micro"] == cost(count("alpha beta")) + cost(count("gamma delta epsilon"))
        metrics = g.service.metrics.exposition()[0].decode()
        assert 'ragtrim_requests_total{action="ok",endpoint="embeddings",status="200"} 2.0' in metrics
        assert f'ragtrim_prompt_tokens_total{{model="{EMBED}",tenant="acme"}} {float(tokens)}' in metrics


# 4. errors: clear 400s, nothing charged, nothing sent


@pytest.mark.parametrize("body, param, words", [
    ({"input": "x"}, "model", "model is required"),
    ({"model": "gpt-4o", "input": "x"}, "model",
     f"served on POST /v1/chat/completions and POST /v1/responses; POST /v1/embeddings serves: {EMBED}, tiny-embed"),
    ({"model": "nope", "input": "x"}, "model", f"unknown model 'nope'; this gateway serves on POST /v1/embeddings: {EMBED}, tiny-embed"),
    ({"model": EMBED}, "input", "input must be a string"),
    ({"model": EMBED, "input": ""}, "input", "input is an empty string"),
    ({"model": EMBED, "input": []}, "input", "input is an empty list"),
    ({"model": EMBED, "input": ["a", ""]}, "input", "input[1] is an empty string"),
    ({"model": EMBED, "input": ["a", 1]}, "input", "mixes strings and token ids"),
    ({"model": EMBED, "input": [[1], []]}, "input", "input[1] is an empty list of token ids"),
    ({"model": EMBED, "input": [1, -2]}, "input", "input[1] must be a token id"),
    ({"model": EMBED, "input": ["a"] * 2049}, "input", "at most 2048 go in one request"),
    ({"model": "tiny-embed", "input": ["ok", "one two three four five six"]}, "input",
     "input[1] is 6 tokens (cl100k_base); model 'tiny-embed' takes at most 5 per input (max_input_tokens)"),
    ({"model": EMBED, "input": "x", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
    ({"model": EMBED, "input": "x", "dimensions": 0}, "dimensions", "dimensions must be a whole number from 1"),
])
def test_a_bad_request_is_a_400_naming_the_value_and_the_fix(tmp_path, body, param, words):
    with gateway(tmp_path) as g:
        r = g.post(body)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", param) and words in error["message"], error
        [row] = final_rows(g.service)
        assert (row["endpoint"], row["action"], row["status"], row["cost_micro"]) == ("embeddings", "failed", 400, 0)
        assert g.fake.calls == 0 and nothing_spent(g.service)


def test_a_batch_openai_takes_is_not_refused_for_its_size(tmp_path):
    """LangChain's OpenAIEmbeddings sends token ids, packed up to OpenAI's 300,000 tokens per request: a body of about
    1.8 MB, above the chat routes' ``max_body_bytes`` (1 MiB); the embeddings route reads up to its own
    ``embeddings_body_bytes`` (4 MiB by default)."""
    inputs = [[10_000 + (i * 7 + j) % 90_000 for j in range(7_500)] for i in range(40)]  # 300,000 five-digit ids
    body = {"model": EMBED, "input": inputs}
    with gateway(tmp_path) as g:
        assert len(httpx.Request("POST", "/", json=body).content) > 1.5 * 2**20
        r = g.post(body)
        assert r.status_code == 200, r.text[:300]
        assert len(r.json()["data"]) == 40 and r.json()["usage"]["prompt_tokens"] == 300_000
        [row] = final_rows(g.service)
        assert (row["action"], row["prompt_tokens"]) == ("ok", 300_000)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_embeddings_body_bytes_is_a_413_saying_how_to_send_fewer_inputs(tmp_path, chunked):
    body = {"model": EMBED, "input": ["Paris is in France."] * 200}  # about 4.5 KB
    with gateway(tmp_path, limits={"embeddings_body_bytes": 2_000, "max_body_bytes": 100_000}) as g:
        content = httpx.Request("POST", "/", json=body).content
        sent = iter([content[:1000], content[1000:]]) if chunked else content  # chunked: no Content-Length
        r = httpx.post(f"{g.url}/v1/embeddings", content=sent, timeout=30, headers=g.auth(**{"Content-Type": "application/json"}))
        assert r.status_code == 413, r.text
        message = r.json()["error"]["message"]
        for words in ("2000", "limits.embeddings_body_bytes", "fewer inputs per request", "OpenAIEmbeddings(chunk_size=",
                      "embed_batch_size"):
            assert words in message, message
        assert g.fake.calls == 0 and nothing_spent(g.service)


def test_the_embeddings_body_limit_is_its_own(tmp_path):
    """A body over max_body_bytes but within embeddings_body_bytes is read on /v1/embeddings, and still refused on chat."""
    body = {"model": EMBED, "input": ["Paris is in France."] * 200}
    with gateway(tmp_path, limits={"max_body_bytes": 2_000}) as g:
        assert g.post(body).status_code == 200
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 3000}]}
        r = httpx.post(f"{g.url}/v1/chat/completions", json=chat, headers=g.auth(), timeout=30)
        assert r.status_code == 413 and "limits.max_body_bytes" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("raw, param, words", [
    ('"input":"abc \\ud800 def"', "input", "input has a lone UTF-16 surrogate '\\ud800' at character 4"),
    ('"input":["ok","\\udc00"]', "input", "input[1] has a lone UTF-16 surrogate"),
    ('"input":"x","extra":{"k":"\\ud800"}', "extra", "extra.k has a lone UTF-16 surrogate"),
    ('"input":"x","documents":"\\ud800"', "documents", "documents has a lone UTF-16 surrogate"),
])
def test_a_lone_surrogate_anywhere_in_the_body_is_a_400_naming_it(tmp_path, raw, param, words):
    with gateway(tmp_path) as g:
        content = ('{"model":"%s",%s}' % (EMBED, raw)).encode()
        r = httpx.post(f"{g.url}/v1/embeddings", content=content, timeout=30,
                       headers=g.auth(**{"Content-Type": "application/json"}))
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == param and words in error["message"], error
        [row] = final_rows(g.service)
        assert (row["action"], row["status"], row["reserved_tokens"]) == ("failed", 400, 0), row
        assert g.fake.calls == 0 and nothing_spent(g.service)


def test_an_embedding_model_on_optimize_is_a_400_naming_the_models_optimize_serves(tmp_path):
    body = {"query": "capital of France", "chunks": ["Paris is the capital of France."], "budget": 50}
    with gateway(tmp_path) as g:
        for model, words in ((EMBED, f"'{EMBED}' is an embedding model, served on POST /v1/embeddings; "
                                     "POST /v1/optimize serves: gpt-4o, gpt-4o-mini"),
                             ("nope", "unknown model 'nope'; this gateway serves on POST /v1/optimize: gpt-4o, gpt-4o-mini")):
            r = httpx.post(f"{g.url}/v1/optimize", json={**body, "model": model}, headers=g.auth(), timeout=30)
            assert r.status_code == 400 and r.json()["error"]["param"] == "model", r.text
            assert words in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("route, endpoint, body", [
    ("/v1/chat/completions", "chat", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/responses", "responses", {"input": "hi"}),
])
def test_an_embedding_model_on_a_chat_route_is_a_400_naming_the_models_that_route_serves(tmp_path, route, endpoint, body):
    with gateway(tmp_path) as g:
        r = httpx.post(f"{g.url}{route}", headers=g.auth(), timeout=30, json={"model": EMBED, **body})
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == "model", error
        assert f"'{EMBED}' is an embedding model, served on POST /v1/embeddings" in error["message"], error
        assert f"POST {route} serves: gpt-4o, gpt-4o-mini" in error["message"], error
        unknown = httpx.post(f"{g.url}{route}", headers=g.auth(), timeout=30, json={"model": "nope", **body}).json()["error"]
        assert f"unknown model 'nope'; this gateway serves on POST {route}: gpt-4o, gpt-4o-mini" in unknown["message"], unknown
        assert [(row["endpoint"], row["status"]) for row in final_rows(g.service)] == [(endpoint, 400)] * 2
        assert g.fake.calls == 0 and nothing_spent(g.service)


def test_a_failed_upstream_call_is_released_and_a_502(tmp_path):
    with gateway(tmp_path) as g:
        r = g.post({"model": EMBED, "input": ["fine", "FAIL_UPSTREAM"]})
        assert r.status_code == 502 and r.json()["error"]["type"] == "upstream_error", r.text
        [row] = final_rows(g.service)
        assert (row["action"], row["status"], row["cost_micro"], row["prompt_tokens"]) == ("failed", 502, 0, 0)
        assert row["reserved_tokens"] > 0 and spent_and_reserved(g.service) == (0, 0)


def test_an_upstream_that_dies_after_the_request_is_charged_its_reservation(tmp_path):
    with gateway(tmp_path, timeout=0.5, latency_ms=3000) as g:
        r = g.post({"model": EMBED, "input": "one two three"})
        assert r.status_code == 502 and r.headers["x-should-retry"] == "false", r.text
        [row] = final_rows(g.service)
        assert (row["action"], row["usage_source"], row["cost_micro"]) == ("ok", "estimated", cost(3)), row
        assert spent_and_reserved(g.service) == (3, 0)


@pytest.mark.parametrize("reported, charged, source", [(0, None, "counted"), (None, None, "counted"), (5, 5, "upstream")])
def test_the_reported_count_is_trusted_as_chat_trusts_one(tmp_path, reported, charged, source):
    text = "a text the upstream may count wrongly, as some servers do"
    with gateway(tmp_path) as g:
        g.fake.reported_prompt = lambda counted: reported
        assert g.post({"model": EMBED, "input": text}).status_code == 200
        [row] = final_rows(g.service)
        assert (row["prompt_tokens"], row["usage_source"]) == (charged or count(text), source), row
        assert spent_and_reserved(g.service)[0] == (charged or count(text))


@pytest.mark.parametrize("given, counted", [([1, 2, 3], 3), ("one two three four five six seven eight", 8)])
@pytest.mark.parametrize("margin", [0.0, 0.25])
def test_an_over_reported_count_is_charged_at_most_the_reservation(tmp_path, given, counted, margin):
    """An embedding has no output: the upstream cannot have read more than the inputs the gateway counted (token ids
    exactly, a text with the model's tokenizer, within its count_margin), so the reservation is the worst case."""
    with gateway(tmp_path, tokens=100, models={EMBED: {**MODELS[EMBED], "count_margin": margin}}) as g:
        g.fake.reported_prompt = lambda n: n * 10_000
        r = g.post({"model": EMBED, "input": given})
        assert r.status_code == 200, r.text
        [row] = final_rows(g.service)
        reserved = with_margin(counted, margin)
        assert (row["prompt_tokens"], row["reserved_tokens"], row["usage_source"]) == (reserved, reserved, "counted"), row
        assert row["cost_micro"] == row["reserved_micro"] == int(r.headers["X-Ragtrim-Cost-Micro"]), row
        assert f"upstream reported prompt_tokens {counted * 10_000}" in row["error"], row
        assert spent_and_reserved(g.service) == (reserved, 0)


def test_a_count_within_the_margin_is_charged_as_reported(tmp_path):
    with gateway(tmp_path, models={EMBED: {**MODELS[EMBED], "count_margin": 0.25}}) as g:
        g.fake.reported_prompt = lambda n: n + 2  # 8 counted, 10 reserved
        assert g.post({"model": EMBED, "input": "one two three four five six seven eight"}).status_code == 200
        [row] = final_rows(g.service)
        assert (row["prompt_tokens"], row["reserved_tokens"], row["usage_source"], row["error"]) == (10, 10, "upstream", ""), row


def test_an_embedding_charged_its_reservation_books_it_all_as_input(tmp_path):
    with gateway(tmp_path, timeout=0.5, latency_ms=3000, models={EMBED: {**MODELS[EMBED], "count_margin": 0.25}}) as g:
        assert g.post({"model": EMBED, "input": "one two three four five six seven eight"}).status_code == 502
        [row] = final_rows(g.service)
        assert (row["action"], row["usage_source"], row["prompt_tokens"], row["completion_tokens"], row["reserved_tokens"]) == (
            "ok", "estimated", 10, 0, 10), row
        assert "charged its reservation as an estimate, 10 prompt + 0 completion tokens" in row["error"], row
        usage = httpx.get(f"{g.url}/v1/usage", params={"by": "endpoint"}, headers=g.auth()).json()["rows"][0]
        assert (usage["prompt_tokens"], usage["completion_tokens"], usage["estimated_tokens"]) == (10, 0, 10), usage
        assert spent_and_reserved(g.service) == (10, 0)


@pytest.mark.parametrize("usage_last", [True, False])
def test_the_answer_is_never_parsed_whole_on_the_event_loop_nor_kept_parsed(tmp_path, monkeypatch, usage_last):
    """A batch of vectors can be tens of MB of JSON, whose parse holds the GIL (a thread alone would not help): its
    usage is read from its end; an answer that does not end with it is parsed whole on a thread. Either way the body
    is relayed as it came and no parsed copy is kept."""
    import ragtrim.serve.embeddings as emb

    parses: list[str] = []
    whole = httpx.Response.json

    def json_(self: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            parses.append("event loop")
        except RuntimeError:
            parses.append("thread")
        return whole(self, **kwargs)

    monkeypatch.setattr(httpx.Response, "json", json_)
    if not usage_last:  # as an answer that does not end with its usage is read
        monkeypatch.setattr(emb, "EMBEDDINGS_WIRE", replace(emb.EMBEDDINGS_WIRE, peek=lambda raw: None))
    with gateway(tmp_path) as g:
        upstream, replies = g.service.upstreams["fake"], []
        complete = upstream.complete

        async def recording(*args: Any, **kwargs: Any) -> Any:
            replies.append(await complete(*args, **kwargs))
            return replies[-1]

        monkeypatch.setattr(upstream, "complete", recording)
        r = g.post({"model": EMBED, "input": ["a", "b"]})
        assert parses == ([] if usage_last else ["thread"])  # the gateway's parses (before this test reads the body)
        assert r.status_code == 200 and len(r.json()["data"]) == 2, r.text
        [reply] = replies
        assert reply.body is None and reply.raw == r.content and reply.prompt_tokens == 2
        assert final_rows(g.service)[0]["usage_source"] == "upstream"


def test_a_client_that_leaves_while_the_call_waits_is_not_sent(tmp_path):
    with gateway(tmp_path, latency_ms=2500, max_connections=1) as g:

        async def two() -> None:
            async with httpx.AsyncClient(timeout=30) as slow, httpx.AsyncClient(timeout=0.8) as impatient:
                first = asyncio.create_task(slow.post(f"{g.url}/v1/embeddings", json={"model": EMBED, "input": "a"},
                                                      headers=g.auth()))
                await asyncio.sleep(0.3)  # the first holds the upstream's one connection
                with pytest.raises(httpx.TimeoutException):
                    await impatient.post(f"{g.url}/v1/embeddings", json={"model": EMBED, "input": "b"}, headers=g.auth())
                assert (await first).status_code == 200

        asyncio.run(two())
        rows = sorted(final_rows(g.service), key=lambda r: r["status"])
        assert [(r["action"], r["status"]) for r in rows] == [("ok", 200), ("failed", 499)], rows
        assert "not sent" in rows[1]["error"] and g.fake.calls == 1
        assert spent_and_reserved(g.service) == (1, 0)


# 5. the config and the model list


def test_models_list_the_embedding_models_and_the_404_says_which_route_serves_which(tmp_path):
    with gateway(tmp_path) as g:
        r = httpx.get(f"{g.url}/v1/models", headers=g.auth())
        assert [m["id"] for m in r.json()["data"]] == ["gpt-4o", "gpt-4o-mini", EMBED, "tiny-embed"]
        message = httpx.get(f"{g.url}/v1/models/nope", headers=g.auth()).json()["error"]["message"]
        assert (f"gpt-4o, gpt-4o-mini (POST /v1/chat/completions and POST /v1/responses); {EMBED}, tiny-embed "
                "(POST /v1/embeddings)") in message


BASE = {"upstreams": {"o": {"base_url": "http://127.0.0.1:9/v1"}}}


@pytest.mark.parametrize("models, words", [
    ({"gpt-4o": {"upstream": "o", "cheaper": "te3"}, "te3": {"upstream": "o", "kind": "embedding"}},
     "cheaper = 'te3' is an embedding model, not a chat one"),
    ({"gpt-4o": {"upstream": "o"}, "te3": {"upstream": "o", "kind": "embedding", "cheaper": "te2"},
      "te2": {"upstream": "o", "kind": "embedding"}}, "an embedding model has no cheaper fallback"),
    ({"gpt-4o": {"upstream": "o", "max_input_tokens": 10}}, "max_input_tokens is an embedding model's setting"),
    ({"te3": {"upstream": "o", "kind": "embedding", "max_tokens_default": 10}}, "an embedding model writes no completion"),
    ({"te3": {"upstream": "o", "kind": "embedding", "max_input_tokens": 0}}, "max_input_tokens must be a whole number from 1"),
    ({"te3": {"upstream": "o", "kind": "vision"}}, "kind must be one of 'chat', 'embedding'"),
])
def test_the_config_refuses_what_an_embedding_model_cannot_be(models, words):
    with pytest.raises(ValueError) as caught:
        ServeConfig.from_dict({**BASE, "models": models})
    assert words in str(caught.value)


def test_an_embedding_model_on_the_local_upstream_is_refused_when_the_config_is_read():
    with pytest.raises(ValueError, match="needs an OpenAI-compatible upstream"):
        ServeConfig.from_dict({"models": {"gemma-3-270m": {"upstream": "local"},
                                          "minilm": {"upstream": "local", "kind": "embedding", "input_per_million": 0}}})


def test_the_default_model_is_the_first_chat_model_and_never_an_embedding_one():
    cfg = ServeConfig.from_dict({**BASE, "models": {"te3": {"upstream": "o", "kind": "embedding"}, "gpt-4o": {"upstream": "o"}}})
    assert cfg.default_model == "gpt-4o"
    with pytest.raises(ValueError, match="default_model 'te3' is an embedding model"):
        ServeConfig.from_dict({**BASE, "default_model": "te3",
                               "models": {"te3": {"upstream": "o", "kind": "embedding"}, "gpt-4o": {"upstream": "o"}}})


def test_the_readme_embeddings_example_runs(tmp_path):
    import re
    from pathlib import Path

    pytest.importorskip("openai")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "embeddings.create" in b]
    with gateway(tmp_path) as g:
        import openai

        scope = {"client": openai.OpenAI(base_url=f"{g.url}/v1", api_key=g.key, max_retries=0)}
        exec(compile(block, "README.md (embeddings example)", "exec"), scope)
        assert len(scope["vectors"].data) == 2
        [row] = final_rows(g.service)
        assert (row["endpoint"], row["user"], row["feature"]) == ("embeddings", "alice", "indexer")


def test_the_usage_table_and_page_show_the_billed_tokens_the_budget_counts(tmp_path, monkeypatch):
    """An embeddings call sends no optimized context (tokens_full/tokens_sent 0): the CLI table and the usage page show
    its billed prompt and completion tokens, whose sum is what the token budget was charged."""
    import re

    from typer.testing import CliRunner

    import typer
    from ragtrim.serve.commands import register

    text = "word " * 500
    with gateway(tmp_path) as g:
        assert g.post({"model": EMBED, "input": [text] * 4, "user": "ann"}).status_code == 200
        link = httpx.post(f"{g.url}/v1/usage/page-link", headers=g.auth()).json()["url"]
        page = httpx.get(f"{g.url}{link}").text
        spent, _ = spent_and_reserved(g.service)
    tokens = 4 * count(text)
    assert spent == tokens
    assert re.search(rf'id="total-billed">{tokens:,} / 0<', page), page
    assert re.search(rf"<td>ann</td><td>1</td><td>0</td><td>0</td><td>0</td><td>{tokens:,}</td><td>0</td>", page), page
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    app = typer.Typer()
    register(app)
    table = CliRunner().invoke(app, ["usage", "--by", "endpoint", "--db", f"sqlite:///{tmp_path}/serve.sqlite"]).stdout
    head, row = table.splitlines()[:2]
    columns = dict(zip(head.split(), row.split()))
    assert (columns["endpoint"], columns["prompt_tokens"], columns["completion_tokens"], columns["tokens_sent"]) == (
        "embeddings", str(tokens), "0", "0"), table


def test_an_embedding_only_gateway_optimizes_unpriced_and_refuses_an_embedding_model(tmp_path):
    """With no chat model to price the savings, /v1/optimize still runs: tokens saved, no dollars (price null)."""
    from starlette.testclient import TestClient

    cfg = ServeConfig.from_dict({"preset": "bm25-pack", "upstreams": {"up": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                                                                              "api_key_env": "X"}},
                                 "models": {EMBED: {"upstream": "up", "kind": "embedding", "input_per_million": PRICE}}})
    service = Service(cfg, db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    chunks = [{"id": "a", "text": "Paris is the capital of France."}, {"id": "b", "text": "Bananas are yellow. " * 40}]
    body = {"query": "capital of France", "chunks": chunks, "budget": 30}
    with TestClient(create_app(service)) as client:
        h = {"Authorization": f"Bearer {tenant_with_key(service, 'acme')}"}
        r = client.post("/v1/optimize", json=body, headers=h)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["tokens_saved"] > 0 and (out["saved_micro"], out["saved_usd"], out["price"]) == (0, "0.000000", None), out
        named = client.post("/v1/optimize", json={**body, "model": EMBED}, headers=h)
        assert named.status_code == 400 and f"'{EMBED}' is an embedding model" in named.json()["error"]["message"], named.text
    ok, failed = sorted(final_rows(service), key=lambda row: row["status"])
    assert (ok["action"], ok["model_used"], ok["price_ref"], ok["saved_micro"]) == ("ok", "", "", 0), ok
    assert (failed["action"], failed["status"], failed["model_asked"]) == ("failed", 400, EMBED), failed

"""``POST /v1/optimize`` takes ``score_direction`` (``auto``, ``similarity``, ``distance``), as ``Pipeline`` and
``ragtrim optimize --score-direction`` do. Without it a client whose similarities rise along the order it sent
(best-first results put back into reading order) had them read as distances, with no way to say otherwise."""

from __future__ import annotations

import pytest

from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import auth, gateway, ledger_rows, tenant_with_key

QUERY = "Who is Acme's CEO?"
# reading order, the answer last; cosine similarities, so they rise along the order sent
CHUNKS = [{"id": "c0", "text": "Acme Corp was founded in 1990 in Ohio. It makes tools.", "score": 0.21},
          {"id": "c1", "text": "The company has offices in three countries. Its staff is 400.", "score": 0.34},
          {"id": "c2", "text": "Acme's products include hammers and wrenches. They sell online.", "score": 0.47},
          {"id": "c3", "text": "Acme's CEO since 2019 is Maria Lopez. She previously led Bolt Inc.", "score": 0.88}]


@pytest.fixture(scope="module")
def fake():
    app = create_fake_upstream(latency_ms=1, answer_tokens=12)
    with serve_in_thread(app) as url:
        yield url


def body(**extra):
    # "full" packs by the chunks' scores alone, so the reading decides what fits in 20 tokens
    return {"query": QUERY, "chunks": CHUNKS, "budget": 20, "preset": "full", **extra}



def scores_note(out):
    return out["trace"][-1]["notes"]["scores"]


def test_similarity_said_so_keeps_the_best_chunk_where_auto_drops_it(fake):
    with gateway(fake) as (client, service):
        h = auth(tenant_with_key(service, "acme"))
        auto = client.post("/v1/optimize", json=body(), headers=h)
        said = client.post("/v1/optimize", json=body(score_direction="similarity"), headers=h)
        assert auto.status_code == 200 and said.status_code == 200, (auto.text, said.text)
        assert "Maria Lopez" not in auto.json()["text"] and "Maria Lopez" in said.json()["text"]
        assert scores_note(auto.json()).startswith("distance (rising along the given order")
        assert scores_note(said.json()) == "given: similarity"
        # the default is "auto", as when the field is left out; null is left out
        assert client.post("/v1/optimize", json=body(score_direction="auto"), headers=h).json()["text"] == auto.json()["text"]
        assert client.post("/v1/optimize", json=body(score_direction=None), headers=h).json()["text"] == auto.json()["text"]


def test_each_direction_gets_its_own_cached_pipeline(fake):
    with gateway(fake) as (client, service):
        h = auth(tenant_with_key(service, "acme"))
        for direction in ("similarity", "auto", "distance", "similarity"):
            r = client.post("/v1/optimize", json=body(score_direction=direction), headers=h)
            assert r.status_code == 200, r.text
        assert service.pipeline("full", "cl100k_base") is service.pipeline("full", "cl100k_base", "auto")
        assert service.pipeline("full", "cl100k_base").score_direction == "auto"
        assert service.pipeline("full", "cl100k_base", "similarity").score_direction == "similarity"
        assert service.pipeline("full", "cl100k_base", "distance").score_direction == "distance"


@pytest.mark.parametrize("value", ["cosine", "Similarity", 1, True, ["similarity"]])
def test_a_bad_direction_is_a_400_naming_the_field_the_value_and_the_choices(fake, value):
    with gateway(fake) as (client, service):
        r = client.post("/v1/optimize", json=body(score_direction=value), headers=auth(tenant_with_key(service, "acme")))
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == "score_direction"
        assert err["message"].startswith("score_direction must be one of 'auto', 'similarity', 'distance', got ")
        assert repr(value) in err["message"]
        assert [(row["action"], row["status"]) for row in ledger_rows(service)] == [("failed", 400)]


def test_the_openapi_spec_lists_the_field(fake):
    with gateway(fake) as (client, service):
        spec = client.get("/openapi.json").json()
        text = str(spec["paths"]["/v1/optimize"])
        assert "score_direction" in text and "'similarity'" in text

"""A budget too small for even the smallest form of a request (its prompt with the floor's share
of the documents, and ``max_tokens``) is refused before any optimizer run, so a spent tenant's
requests cost a few database reads, not optimizer runs; a budget with that much room still gets
its answer."""

from __future__ import annotations

import pytest

from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.schema import ledger
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import auth, budget, chat_body, gateway, tenant_with_key

MAX_TOKENS = 20  # chat_body's
FLOOR = 40  # gateway_config's degrade.floor, in tokens


@pytest.fixture(scope="module")
def fake():
    app = create_fake_upstream(latency_ms=1, answer_tokens=12)
    with serve_in_thread(app) as url:
        yield url


class CountRuns:
    def __init__(self, service):
        self.real, self.calls = service.optimize, 0

    async def __call__(self, *args, **kwargs):
        self.calls += 1
        return await self.real(*args, **kwargs)


def around_context(client, key) -> int:
    """Prompt tokens of the request at the floor, less its context: the prompt around the documents."""
    r = client.post("/v1/chat/completions", json=chat_body(budget=FLOOR), headers=auth(key))
    assert r.status_code == 200, r.text
    return r.json()["usage"]["prompt_tokens"] - int(r.headers["X-Ragtrim-Tokens-Sent"])


def test_room_for_less_than_the_floor_is_refused_without_an_optimizer_run(fake):
    with gateway(fake) as (client, service):
        around = around_context(client, tenant_with_key(service, "probe"))
        key = tenant_with_key(service, "spent")
        budget(service, "spent", "tokens", around + MAX_TOKENS + FLOOR // 4)  # room for a quarter of the floor's context
        runs = CountRuns(service)
        service.optimize = runs
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 429, r.text
        assert "smallest form of this request" in r.json()["error"]["message"] and int(r.headers["Retry-After"]) >= 1
        assert runs.calls == 0
        with service.engine.connect() as c:
            row = c.execute(ledger.select().where(ledger.c.tenant_id == "spent")).one()._asdict()
        assert row["action"] == "refused" and row["detail"] == "refused before optimizing: budget exhausted"


def test_room_for_the_floor_is_answered_at_the_floor(fake):
    with gateway(fake) as (client, service):
        around = around_context(client, tenant_with_key(service, "probe"))
        key = tenant_with_key(service, "tight")
        limit = around + MAX_TOKENS + FLOOR
        budget(service, "tight", "tokens", limit)
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 200, r.text
        assert r.headers["X-Ragtrim-Action"] == "degraded" and int(r.headers["X-Ragtrim-Tokens-Sent"]) <= FLOOR
        st = client.get("/v1/usage", headers=auth(key)).json()["budgets"][0]
        assert 0 < st["spent"] <= limit and st["reserved"] == 0


def test_a_cheaper_model_with_the_same_tokenizer_reuses_the_optimizer_run(fake):
    with gateway(fake) as (client, service):
        around = around_context(client, tenant_with_key(service, "probe"))
        key = tenant_with_key(service, "cheap")
        # $ for gpt-4o-mini at the asked budget, not for gpt-4o at the floor: the plan tries gpt-4o first
        budget(service, "cheap", "usd", (around + 200) * 15 // 100 + MAX_TOKENS * 60 // 100)
        runs = CountRuns(service)
        service.optimize = runs
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 200, r.text
        assert r.headers["X-Ragtrim-Model"] == "gpt-4o-mini"
        steps = r.headers["X-Ragtrim-Degrade"].split("; ")
        assert "model gpt-4o -> gpt-4o-mini" in steps
        assert runs.calls == len([s for s in steps if s.startswith("budget ")]) + 1  # once per context budget tried

"""What a refusal says, and when a request is refused at all.

* A dead worker's hold whose lease has lapsed never refuses a request: it is expired first, also in
  the early check that refuses a spent tenant before any optimizer run (after a restart the new
  worker's lease keeper has not run yet).
* Room held by requests in flight, not spent, is a 429 ``rate_limit_exceeded`` that says so, with a
  Retry-After of seconds; a spent budget is OpenAI's ``insufficient_quota`` (``param`` null), to retry
  when its period ends.
* A failing pipeline stage is the gateway's fault, not the client's: a 500 naming the stage and the
  request id (the ledger row's, failed, nothing held); an input the optimizer refuses stays a 400.
* ``PUT /v1/admin/budgets`` names a bad ``period``, ``scope`` or ``scope_value``.
"""

from __future__ import annotations

import math
import time

import pytest

from ragtrim.serve.budgets import period_reset
from ragtrim.serve.chat import IN_FLIGHT_RETRY_SECONDS
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.quota import DEAD_WORKER_NOTE, Need, QuotaStore, Reservation
from ragtrim.serve.schema import budget_usage, reservations
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import admin_key, auth, budget, chat_body, gateway, ledger_rows, spent_and_reserved, tenant_with_key

LIMIT = 2_000


@pytest.fixture(scope="module")
def fake():
    app = create_fake_upstream(latency_ms=0, answer_tokens=5)
    with serve_in_thread(app) as url:
        yield url


def hold_room(service, worker: str, *, lapsed: bool, tokens: int = LIMIT - 50) -> QuotaStore:
    """Another worker's hold on most of the tenant's budget: live, or one whose lease lapsed long ago (a dead worker's)."""
    now = time.time()
    store = QuotaStore(service.engine, worker_id=worker, lease_seconds=5, clock=lambda: now - 60 if lapsed else now)
    row = LedgerEntry(id=f"r-{worker}", ts=now, tenant_id="acme", endpoint="chat", action="pending", reserved_tokens=tokens)
    assert isinstance(store.reserve(row.id, store.budgets_for("acme", user="", feature=""), Need(tokens, 0), row), Reservation)
    return store


def test_a_dead_workers_lapsed_hold_is_expired_before_it_could_refuse_a_request(fake):
    with gateway(fake) as (client, service):  # its lease keeper has run its first pass already: the hold comes after
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", LIMIT)
        hold_room(service, "dead", lapsed=True)
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 200, r.text  # was a 429 with Retry-After at midnight until the next lease pass
        rows = {row["id"]: row for row in ledger_rows(service)}
        assert (rows["r-dead"]["action"], rows["r-dead"]["error"]) == ("failed", DEAD_WORKER_NOTE)
        ok = rows[r.headers["X-Ragtrim-Request-Id"]]
        assert spent_and_reserved(service) == (ok["prompt_tokens"] + ok["completion_tokens"], 0)


def test_room_held_by_a_request_in_flight_is_a_short_retry_and_a_spent_budget_waits_for_its_period(fake):
    with gateway(fake) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", LIMIT)
        other = hold_room(service, "other", lapsed=False)  # a live worker's request in flight
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 429 and r.headers["Retry-After"] == str(IN_FLIGHT_RETRY_SECONDS), r.text
        error = r.json()["error"]
        assert (error["type"], error["code"], error["param"]) == ("rate_limit_error", "rate_limit_exceeded", None)
        assert f"has {LIMIT} tokens left after what it spent (0)" in error["message"]
        assert "1 request(s) in flight hold that room" in error["message"] and "resets" not in error["message"]
        other.release("r-other")  # it ended: the retry is answered
        assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(key)).status_code == 200
        spent, _ = spent_and_reserved(service)
        budget(service, "acme", "tokens", spent + 10)  # now spent: nothing fits until the period ends
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 429, r.text
        error = r.json()["error"]
        assert (error["type"], error["code"], error["param"]) == ("insufficient_quota", "insufficient_quota", None)
        until_reset = math.ceil(period_reset("day", time.time()) - time.time())
        assert abs(int(r.headers["Retry-After"]) - until_reset) <= 2 and f"it resets in {r.headers['Retry-After']} s" in error["message"]


class Buggy:
    """A stage with a bug (``None + 1``)."""

    name = "buggy"

    def __call__(self, query, chunks, context):
        return None + 1


@pytest.mark.parametrize("endpoint", ["chat", "optimize"])
def test_a_stage_with_a_bug_is_a_500_naming_the_stage_and_the_request_id(fake, endpoint):
    from optimizer.pipeline import Pipeline

    with gateway(fake) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", LIMIT)
        service.pipeline = lambda preset, tokenizer: Pipeline([Buggy()], tokenizer=tokenizer)
        body = chat_body() if endpoint == "chat" else {"query": "capital of France?", "chunks": chat_body()["documents"]}
        r = client.post(f"/v1/{'chat/completions' if endpoint == 'chat' else 'optimize'}", json=body, headers=auth(key))
        assert r.status_code == 500, r.text
        error, rid = r.json()["error"], r.headers["X-Ragtrim-Request-Id"]
        assert error["type"] == "server_error" and f"(request id {rid})" in error["message"]
        assert "TypeError: unsupported operand" in error["message"] and "in stage 'buggy' (test_serve_refusals.Buggy)" in error["message"]
        [row] = ledger_rows(service)
        assert (row["id"], row["action"], row["status"]) == (rid, "failed", 500) and "in stage 'buggy'" in row["error"]
        with service.engine.connect() as c:  # nothing was reserved (the optimizer runs first), so nothing is held
            assert c.execute(reservations.select()).all() == [] and c.execute(budget_usage.select()).all() == []


def test_an_input_the_optimizer_refuses_is_still_the_clients_400(fake):
    class Refusing:
        def run(self, query, chunks, budget=None, **kw):
            raise ValueError("chunk 'd2' has no text: send its text, or leave it out")

        def full_tokens(self, chunks):
            return 100

    with gateway(fake) as (client, service):
        key = tenant_with_key(service, "acme")
        service.pipeline = lambda preset, tokenizer: Refusing()
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["message"] == "chunk 'd2' has no text: send its text, or leave it out"


@pytest.mark.parametrize("field, value, words", [("period", "week", "period must be one of ('day', 'month'), got 'week'"),
                                                 ("scope", "team", "scope must be one of ('tenant', 'user', 'feature'), got 'team'"),
                                                 ("scope_value", "bob", "a tenant budget needs no user/feature name, got 'bob'")])
def test_a_budget_with_a_bad_period_or_scope_is_a_400_naming_it(fake, field, value, words):
    with gateway(fake) as (client, service):
        root = admin_key(service)
        tenant_with_key(service, "acme")
        body = {"tenant": "acme", "unit": "tokens", "period": "day", "limit": 5, field: value}
        r = client.put("/v1/admin/budgets", json=body, headers=auth(root))
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {"type": "invalid_request_error", "param": field, "code": None, "message": words}


def test_the_openai_sdk_does_not_retry_a_spent_budget(tmp_path):
    """A spent budget resets at its period's end, often hours away: its 429 says ``x-should-retry: false``, so the
    SDK's two retries do not each write one more refused row (they did: three rows for one call)."""
    openai = pytest.importorskip("openai")
    from serve_fixtures import stack
    from starlette.responses import JSONResponse

    answer = {"id": "c", "object": "chat.completion", "model": "gpt-4o", "usage": {"prompt_tokens": 9, "completion_tokens": 1},
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}]}
    with stack(tmp_path, lambda body: JSONResponse(answer)) as s:
        budget(s.service, "acme", "tokens", 5)
        client = openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key, max_retries=2)
        with pytest.raises(openai.RateLimitError) as spent:
            client.chat.completions.create(model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        rows = ledger_rows(s.service)
    assert spent.value.response.headers["x-should-retry"] == "false" and spent.value.code == "insufficient_quota"
    assert [r["action"] for r in rows] == ["refused"]  # one try, not three

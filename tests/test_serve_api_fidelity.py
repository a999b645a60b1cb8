"""The gateway keeps faith with the client and with its own books.

* A budget created partway through a period starts with what its scope was already charged in
  that period (the ledger's ``ok``/``degraded`` rows), on SQLite and PostgreSQL; deleting and
  setting it again does not reset it; changing its limit keeps its counters.
* A null that OpenAI accepts (``max_tokens``, ``max_completion_tokens``, ``n``, ``stream``) is the
  field left out, not a 400.
* The upstream gets the client's own fields: its completion cap under the name it used,
  ``metadata``; a cap is added (``max_completion_tokens``) only when the request holds room in a budget.
* The admin API takes ``admin`` only as a JSON boolean, names a missing ``tenant``, and a bad ``unit``.
* A 413 for a long message names the setting to raise.
* /openapi.json lists the fields the chat endpoint reads, ``max_completion_tokens`` among them.
"""

from __future__ import annotations

import datetime as dt

import pytest

from ragtrim.serve.budgets import delete_budget, set_budget
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.keys import create_key, list_keys
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.quota import QuotaStore
from ragtrim.serve.testing import serve_in_thread

from quota_fixtures import Clock, engine, pg_engine, pg_url, require_postgres  # noqa: F401 (fixtures)
from serve_fixtures import admin_key, auth, budget, gateway, ledger_rows, tenant_with_key

QUESTION = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fake():
    app = create_fake_upstream(latency_ms=0, answer_tokens=5)
    with serve_in_thread(app) as url:
        yield url, app.state.fake


def chat(client, key, **fields):
    """POST a chat with no documents (the fake answers 5 words); ``fields`` are added to the body as given."""
    return client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": QUESTION, **fields}, headers=auth(key))


def spent(client, key, unit):
    """The ``spent`` /v1/usage shows for the tenant's budget in ``unit``."""
    [b] = [b for b in client.get("/v1/usage", headers=auth(key)).json()["budgets"] if b["unit"] == unit]
    return b["spent"]


def charged(client, key):
    """What /v1/usage says was charged today: (tokens, micro-dollars)."""
    totals = client.get("/v1/usage", params={"by": "day"}, headers=auth(key)).json()["totals"]
    return totals["prompt_tokens"] + totals["completion_tokens"], totals["cost_micro"]


# -- 4. a budget set partway through a period ------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    """A database URL with tenant ``acme``: a SQLite file, or the throwaway PostgreSQL cluster (emptied)."""
    if request.param == "sqlite":
        request.getfixturevalue("engine")
        return f"sqlite:///{tmp_path / 'q.sqlite'}"
    require_postgres()
    request.getfixturevalue("pg_engine")
    return request.getfixturevalue("pg_url")


@pytest.mark.parametrize("unit", ["tokens", "usd"])
def test_a_budget_set_after_spending_counts_the_periods_spend_and_refuses_over_it(fake, db, unit):
    with gateway(fake[0], db_url=db) as (client, service):
        key = create_key(service.engine, service.pepper, tenant_id="acme")[1]
        for _ in range(5):
            assert chat(client, key, max_tokens=5).status_code == 200
        tokens, micro = charged(client, key)
        assert tokens > 40 and micro > 0
        limit = 40 if unit == "tokens" else micro - 1
        budget(service, "acme", unit, limit)
        assert spent(client, key, unit) == (tokens if unit == "tokens" else micro)
        r = chat(client, key, max_tokens=5)
        assert r.status_code == 429, r.text
        assert charged(client, key) == (tokens, micro)
        assert spent(client, key, unit) == (tokens if unit == "tokens" else micro)


def test_a_changed_limit_keeps_the_counters_and_deleting_and_setting_again_does_not_reset_them(fake):
    with gateway(fake[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 1_000)
        for _ in range(3):
            assert chat(client, key, max_tokens=5).status_code == 200
        tokens, _ = charged(client, key)
        budget(service, "acme", "tokens", 2_000)
        [b] = client.get("/v1/usage", headers=auth(key)).json()["budgets"]
        assert (b["spent"], b["limit"]) == (tokens, 2_000)  # kept, and not counted twice
        assert delete_budget(service.engine, b["id"])
        budget(service, "acme", "tokens", 1_000)
        assert spent(client, key, "tokens") == tokens


def test_a_budget_set_over_the_admin_api_counts_the_periods_spend(fake):
    with gateway(fake[0]) as (client, service):
        key, root = tenant_with_key(service, "acme"), admin_key(service)
        for _ in range(2):
            assert chat(client, key, max_tokens=5).status_code == 200
        r = client.put("/v1/admin/budgets", json={"tenant": "acme", "unit": "tokens", "period": "month", "limit": 500}, headers=auth(root))
        assert r.status_code == 200, r.text
        assert spent(client, key, "tokens") == charged(client, key)[0] > 0


NOW = dt.datetime(2025, 6, 15, 12, 0, tzinfo=dt.timezone.utc).timestamp()
HOUR, DAY = 3600.0, 86400.0


def _row(n: int, ts: float, action: str = "ok", tenant: str = "acme", user: str = "", feature: str = "", *,
         prompt: int = 0, completion: int = 0, cost: int = 0, endpoint: str = "chat") -> LedgerEntry:
    return LedgerEntry(id=f"r{n}", ts=ts, tenant_id=tenant, endpoint=endpoint, action=action, user=user, feature=feature,
                       prompt_tokens=prompt, completion_tokens=completion, cost_micro=cost)


LEDGER = [
    _row(1, NOW - HOUR, "ok", user="alice", feature="faq", prompt=10, completion=5, cost=100),
    _row(2, NOW - 2 * HOUR, "degraded", user="bob", feature="faq", prompt=20, completion=2, cost=50),
    _row(3, NOW - HOUR, "pending", user="alice", prompt=1_000, cost=9_000),  # in flight: not charged yet
    _row(4, NOW - HOUR, "failed", user="alice"),
    _row(5, NOW - 13 * DAY, "ok", user="alice", prompt=100, cost=1_000),  # 2 June: this month, not today
    _row(6, NOW - 15 * DAY, "ok", user="alice", prompt=10_000, cost=90_000),  # 31 May: last month
    _row(7, NOW - HOUR, "ok", tenant="beta", prompt=5_000, cost=70_000),  # another tenant
    _row(8, NOW - HOUR, "ok", user="alice", endpoint="optimize"),  # an optimize run: saves, costs nothing
]


@pytest.mark.parametrize("unit, period, scope, value, expected", [
    ("tokens", "day", "tenant", "", 37),
    ("usd", "day", "tenant", "", 150),
    ("tokens", "month", "tenant", "", 137),
    ("usd", "month", "tenant", "", 1_150),
    ("tokens", "day", "user", "alice", 15),
    ("usd", "month", "user", "alice", 1_100),
    ("tokens", "day", "feature", "faq", 37),
    ("tokens", "month", "feature", "search", 0),
])
def test_a_new_budget_is_seeded_from_the_ledger_of_its_scope_and_period(db, unit, period, scope, value, expected):
    from ragtrim.serve.db import make_engine

    engine = make_engine(db)
    store = QuotaStore(engine, worker_id="w1", clock=Clock(NOW))
    for entry in LEDGER:
        store.record(entry)
    b = set_budget(engine, tenant_id="acme", unit=unit, period=period, limit=10**6, scope=scope, scope_value=value, now=NOW)
    [standing] = store.standings([b])
    assert (standing.spent, standing.reserved) == (expected, 0)
    store.record(_row(9, NOW, "ok", user="alice", feature="faq", prompt=7, completion=7, cost=7))
    set_budget(engine, tenant_id="acme", unit=unit, period=period, limit=10**5, scope=scope, scope_value=value, now=NOW)
    assert store.standings([b])[0].spent == expected  # a changed limit keeps the counters: nothing counted again
    engine.dispose()


# -- 5. nulls OpenAI accepts ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "n", "stream"])
def test_a_null_field_is_the_field_left_out(fake, field):
    url, state = fake
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        r = chat(client, key, **{field: None})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]  # not a stream
        sent = state.bodies[-1]
        assert field not in sent and "max_tokens" not in sent and "max_completion_tokens" not in sent


def test_null_max_tokens_with_max_completion_tokens_uses_the_latter(fake):
    url, state = fake
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        r = chat(client, key, max_tokens=None, max_completion_tokens=7)
        assert r.status_code == 200, r.text
        sent = state.bodies[-1]
        assert sent["max_completion_tokens"] == 7 and "max_tokens" not in sent
        [row] = ledger_rows(service)
        assert row["reserved_tokens"] == row["prompt_tokens"] + 7  # the hold reserved the client's cap


def test_a_bad_max_completion_tokens_is_a_400_naming_it(fake):
    with gateway(fake[0]) as (client, service):
        key = tenant_with_key(service, "acme")
        r = chat(client, key, max_tokens=None, max_completion_tokens=0)
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["param"] == "max_completion_tokens" and err["message"].startswith("max_completion_tokens must be")
        assert chat(client, key, n=True).status_code == 400  # true is not 1


# -- 6. the request as the client sent it ------------------------------------------------------------


def test_max_completion_tokens_and_metadata_reach_the_upstream_as_sent(fake):
    url, state = fake
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 10_000)
        r = chat(client, key, max_completion_tokens=7, store=True, metadata={"run": "eval-42"}, temperature=0.1)
        assert r.status_code == 200, r.text
        sent = state.bodies[-1]
        assert {k: v for k, v in sent.items() if k != "messages"} == {
            "model": "gpt-4o", "max_completion_tokens": 7, "store": True, "metadata": {"run": "eval-42"}, "temperature": 0.1}
        assert sent["messages"] == QUESTION
        assert chat(client, key, max_tokens=9).status_code == 200
        sent = state.bodies[-1]
        assert sent["max_tokens"] == 9 and "max_completion_tokens" not in sent


def test_no_cap_is_added_when_no_budget_holds_the_request(fake):
    url, state = fake
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        assert chat(client, key).status_code == 200
        sent = state.bodies[-1]
        assert "max_tokens" not in sent and "max_completion_tokens" not in sent


@pytest.mark.parametrize("stream", [False, True])
def test_a_budget_holding_an_uncapped_request_bounds_it_with_max_completion_tokens(fake, stream):
    url, state = fake
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 10_000)
        r = chat(client, key, stream=stream)
        assert r.status_code == 200, r.text
        sent = state.bodies[-1]
        default = service.config.limits.max_tokens_default
        assert sent["max_completion_tokens"] == default and "max_tokens" not in sent
        [row] = ledger_rows(service)
        assert row["reserved_tokens"] - row["prompt_tokens"] == default  # what the hold reserved is what the upstream may write


# -- 7. the admin API's field types ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["false", "true", 0, 1])
def test_admin_must_be_a_json_boolean(fake, value):
    with gateway(fake[0]) as (client, service):
        root = admin_key(service)
        tenant_with_key(service, "acme")
        before = len(list_keys(service.engine))
        for body in ({"admin": value}, {"tenant": "acme", "admin": value}):
            r = client.post("/v1/admin/keys", json=body, headers=auth(root))
            assert r.status_code == 400, r.text
            err = r.json()["error"]
            assert err["param"] == "admin" and f"got {value!r}" in err["message"] and "true or false" in err["message"]
        assert len(list_keys(service.engine)) == before  # no key was made
        r = client.post("/v1/admin/keys", json={"tenant": "acme", "admin": False}, headers=auth(root))
        assert r.status_code == 201 and r.json()["admin"] is False and r.json()["tenant"] == "acme"
        assert client.get("/v1/admin/tenants", headers=auth(r.json()["key"])).status_code == 403
        r = client.post("/v1/admin/keys", json={"admin": True}, headers=auth(root))
        assert r.status_code == 201 and r.json()["admin"] is True


@pytest.mark.parametrize("tenant", [None, ""])
def test_a_budget_without_a_tenant_says_the_field_is_missing(fake, tenant):
    with gateway(fake[0]) as (client, service):
        root = admin_key(service)
        body = {"unit": "tokens", "limit": 5} if tenant is None else {"tenant": tenant, "unit": "tokens", "limit": 5}
        r = client.put("/v1/admin/budgets", json=body, headers=auth(root))
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == "tenant" and "tenant is missing" in err["message"] and "None" not in err["message"]


@pytest.mark.parametrize("unit", ["euro", None])
def test_a_budget_with_a_bad_unit_is_a_400_naming_unit(fake, unit):
    with gateway(fake[0]) as (client, service):
        root = admin_key(service)
        tenant_with_key(service, "acme")
        r = client.put("/v1/admin/budgets", json={"tenant": "acme", "unit": unit, "period": "day", "limit": 5}, headers=auth(root))
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {"type": "invalid_request_error", "param": "unit", "code": None,
                                     "message": f"unit must be one of tokens, usd, got {unit!r}"}
        body = {"tenant": "acme", "unit": "tokens", "period": "day", "limit": -5}
        r = client.put("/v1/admin/budgets", json=body, headers=auth(root))
        assert (r.status_code, r.json()["error"]["param"]) == (400, "limit")


# -- 8. a long message names its setting ------------------------------------------------------------


def test_a_too_long_message_names_the_setting_to_raise(fake):
    with gateway(fake[0], limits={"max_query_chars": 100}) as (client, service):
        key = tenant_with_key(service, "acme")
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * 401}]
        r = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": messages}, headers=auth(key))
        assert r.status_code == 413
        message = r.json()["error"]["message"]
        assert message.startswith("messages[1] is 401 characters; the limit is 400") and "limits.max_query_chars" in message
        [row] = ledger_rows(service)
        assert (row["action"], row["status"]) == ("failed", 413)


# -- 9. the OpenAPI schema says what the chat endpoint takes -------------------------------------------


def test_the_openapi_schema_lists_max_completion_tokens_up_to_the_configured_limit(fake):
    with gateway(fake[0], limits={"max_tokens_limit": 1000}) as (client, service):
        r = client.get("/openapi.json")
        assert r.status_code == 200
        schema = r.json()["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        fields = schema["properties"]
        for cap in ("max_tokens", "max_completion_tokens"):
            assert "integer" in fields[cap]["type"] and (fields[cap]["minimum"], fields[cap]["maximum"]) == (1, 1000), fields[cap]
        assert fields["n"]["enum"] == [1, None] and "include_usage" in fields["stream_options"]["properties"]
        key = tenant_with_key(service, "acme")
        assert chat(client, key, max_completion_tokens=1000).status_code == 200  # what the schema allows is taken
        r = chat(client, key, max_completion_tokens=1001)
        assert (r.status_code, r.json()["error"]["param"]) == (400, "max_completion_tokens")  # and what it refuses is refused

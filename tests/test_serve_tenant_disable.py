"""Suspending a tenant without revoking its keys: ``ragtrim tenants disable|enable NAME`` and
``POST /v1/admin/tenants/{tenant}/disable|enable`` (admin key only).

A disabled tenant's keys are refused as a revoked key is (401 ``authentication_error``, nothing
written to the ledger), with the reason (``code: tenant_disabled``) told only to a caller that holds
the key's secret; a request already running finishes and is charged; enabling restores the same keys.
Both commands are idempotent, and an unknown tenant is an error naming it and how to list them.
On a SQLite file and on PostgreSQL (``db_engine``; PostgreSQL skipped where it is not installed,
except under ``CI=true``).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from ragtrim.serve.app import create_app
from ragtrim.serve.db import make_engine
from ragtrim.serve.keys import authenticate, create_key, key_id, list_tenants, revoke_key
from ragtrim.serve.service import Service

from quota_fixtures import db_engine, engine, pg_engine, pg_url  # noqa: F401 (fixtures)
from serve_fixtures import PEPPER, admin_key, auth, chat_body, final_rows, gateway_config, ledger_rows, stack, wait_for
from test_serve_cli import cli


@contextmanager
def client_on(engine: Any):  # type: ignore[no-untyped-def]
    """A TestClient on a gateway over ``engine`` (tenant ``acme`` already there), acme's key and an admin key's header."""
    service = Service(gateway_config("http://127.0.0.1:9"), db_url=engine.url.render_as_string(hide_password=False),
                      engine=engine, pepper=PEPPER)
    key = create_key(engine, PEPPER, tenant_id="acme")[1]
    with TestClient(create_app(service)) as client:
        yield client, service, key, auth(admin_key(service))


def disabled(engine: Any, name: str) -> bool:
    return {t.id: t.disabled for t in list_tenants(engine)}[name]


# the command line


def test_cli_disable_and_enable_round_trip_keeps_the_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.setenv("RAGTRIM_SERVE_PEPPER", PEPPER.decode())
    db, run, app = f"sqlite:///{tmp_path}/s.sqlite", CliRunner().invoke, cli()
    assert run(app, ["tenants", "create", "acme", "--db", db]).exit_code == 0
    assert run(app, ["tenants", "create", "other", "--db", db]).exit_code == 0
    key = run(app, ["keys", "create", "--tenant", "acme", "--db", db]).stdout.strip().splitlines()[0]
    other = run(app, ["keys", "create", "--tenant", "other", "--db", db]).stdout.strip().splitlines()[0]
    engine = make_engine(db)

    out = run(app, ["tenants", "disable", "acme", "--db", db])
    assert out.exit_code == 0 and out.stdout.startswith("tenant acme disabled") and "ragtrim tenants enable acme" in out.stdout, out.output
    assert authenticate(engine, PEPPER, key) is None
    assert authenticate(engine, PEPPER, other).tenant_id == "other"  # only that tenant
    listed = run(app, ["tenants", "list", "--db", db]).stdout.splitlines()
    assert listed == ["acme  (disabled)", "other"], listed
    again = run(app, ["tenants", "disable", "acme", "--db", db])  # idempotent: exit 0, says nothing changed
    assert again.exit_code == 0 and "already disabled" in again.stdout, again.output

    out = run(app, ["tenants", "enable", "acme", "--db", db])
    assert out.exit_code == 0 and out.stdout.strip() == "tenant acme enabled", out.output
    assert authenticate(engine, PEPPER, key).tenant_id == "acme"  # the same key works again
    assert run(app, ["tenants", "list", "--db", db]).stdout.splitlines() == ["acme", "other"]
    again = run(app, ["tenants", "enable", "acme", "--db", db])
    assert again.exit_code == 0 and "already enabled" in again.stdout, again.output
    assert "revoked" not in run(app, ["keys", "list", "--db", db]).stdout  # no key was touched


@pytest.mark.parametrize("command", ["disable", "enable"])
def test_cli_unknown_tenant_is_an_error_naming_it_and_the_fix(tmp_path, monkeypatch, command):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    db, run, app = f"sqlite:///{tmp_path}/s.sqlite", CliRunner().invoke, cli()
    out = run(app, ["tenants", command, "acme", "--db", db])  # no database there: not made by a mistyped path
    assert out.exit_code == 2 and "no database at" in out.output and not (tmp_path / "s.sqlite").exists(), out.output
    assert run(app, ["tenants", "create", "acme", "--db", db]).exit_code == 0
    out = run(app, ["tenants", command, "acmee", "--db", db])
    assert out.exit_code == 2 and "unknown tenant 'acmee'" in out.output and "ragtrim tenants list" in out.output, out.output
    assert not disabled(make_engine(db), "acme")


# the admin routes


def test_http_disable_refuses_the_tenants_keys_and_enable_restores_them(db_engine):
    with client_on(db_engine) as (client, service, key, admin):
        assert client.get("/v1/usage", headers=auth(key)).status_code == 200
        r = client.post("/v1/admin/tenants/acme/disable", headers=admin)
        assert r.status_code == 200, r.text
        assert {k: r.json()[k] for k in ("id", "disabled", "changed")} == {"id": "acme", "disabled": True, "changed": True}
        r = client.post("/v1/admin/tenants/acme/disable", headers=admin)  # idempotent
        assert r.status_code == 200 and r.json()["disabled"] is True and r.json()["changed"] is False, r.text
        listed = client.get("/v1/admin/tenants", headers=admin).json()["data"]
        assert [(t["id"], t["disabled"]) for t in listed] == [("acme", True)], listed

        for method, path, body in (("GET", "/v1/usage", None), ("POST", "/v1/chat/completions", chat_body()),
                                   ("POST", "/v1/optimize", {"query": "q", "chunks": ["a b c"]}),
                                   ("POST", "/v1/usage/page-link", None)):
            r = client.request(method, path, json=body, headers=auth(key))
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, r.text)
            err = r.json()["error"]
            assert err["type"] == "authentication_error" and err["code"] == "tenant_disabled", (path, err)
            assert "'acme' is disabled" in err["message"] and "operator" in err["message"], err

        r = client.post("/v1/admin/tenants/acme/enable", headers=admin)
        assert r.status_code == 200 and r.json()["disabled"] is False and r.json()["changed"] is True, r.text
        assert client.post("/v1/admin/tenants/acme/enable", headers=admin).json()["changed"] is False
        assert client.get("/v1/usage", headers=auth(key)).status_code == 200  # the same key
        assert client.get("/v1/admin/tenants", headers=admin).json()["data"][0]["disabled"] is False


@pytest.mark.parametrize("action", ["disable", "enable"])
def test_http_unknown_tenant_is_a_404_naming_it(db_engine, action):
    with client_on(db_engine) as (client, service, key, admin):
        r = client.post(f"/v1/admin/tenants/nobody/{action}", headers=admin)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", r.text
        assert "unknown tenant 'nobody'" in r.json()["error"]["message"] and "GET /v1/admin/tenants" in r.text, r.text
        r = client.post(f"/v1/admin/tenants/ac%00me/{action}", headers=admin)  # checked before any database call
        assert r.status_code == 400 and r.json()["error"]["param"] == "tenant", r.text
        assert not disabled(db_engine, "acme")


@pytest.mark.parametrize("action", ["disable", "enable"])
def test_http_routes_need_an_admin_key(db_engine, action):
    with client_on(db_engine) as (client, service, key, admin):
        r = client.post(f"/v1/admin/tenants/acme/{action}", headers=auth(key))  # the tenant's own key
        assert r.status_code == 403 and "admin key" in r.json()["error"]["message"], r.text
        assert client.post(f"/v1/admin/tenants/acme/{action}").status_code == 401  # no key
        assert not disabled(db_engine, "acme")


# what a refused caller is told, and what is recorded


def test_the_reason_is_told_only_to_a_holder_of_the_keys_secret(db_engine):
    with client_on(db_engine) as (client, service, key, admin):
        revoked = create_key(db_engine, PEPPER, tenant_id="acme")[1]
        revoke_key(db_engine, key_id(revoked))
        assert client.post("/v1/admin/tenants/acme/disable", headers=admin).status_code == 200
        forged = f"rtk_{key_id(key)}_{'x' * 43}"  # the key's id (it is logged and listed) with a wrong secret
        for presented in (forged, revoked):
            r = client.get("/v1/usage", headers=auth(presented))
            err = r.json()["error"]
            assert r.status_code == 401 and err["code"] is None and err["message"] == "invalid or revoked API key", err
            assert "acme" not in r.text and "disabled" not in r.text, r.text
        assert client.post("/v1/admin/tenants/acme/enable", headers=admin).status_code == 200
        assert client.get("/v1/usage", headers=auth(revoked)).status_code == 401  # enabling does not bring a revoked key back


def test_a_refused_request_is_not_written_to_the_ledger_as_for_a_revoked_key_and_the_log_says_why(db_engine, caplog):
    with client_on(db_engine) as (client, service, key, admin):
        revoked = create_key(db_engine, PEPPER, tenant_id="acme")[1]
        revoke_key(db_engine, key_id(revoked))
        with caplog.at_level(logging.INFO, logger=service.log.name):
            assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(revoked)).status_code == 401
            assert ledger_rows(service) == []  # the rule today: a refused key leaves no row
            client.post("/v1/admin/tenants/acme/disable", headers=admin)
            assert client.post("/v1/chat/completions", json=chat_body(), headers=auth(key)).status_code == 401
            assert ledger_rows(service) == []
        failed = [r.fields for r in caplog.records if r.getMessage() == "auth_failed"]
        assert [(f["key_id"], f["reason"], f.get("tenant")) for f in failed] == [
            (key_id(revoked), "invalid", None), (key_id(key), "tenant_disabled", "acme")], failed


def test_a_request_running_when_its_tenant_is_disabled_finishes_and_is_charged(tmp_path):
    from starlette.responses import JSONResponse

    gate, arrived = threading.Event(), threading.Event()
    answer = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}}

    async def upstream(body: dict[str, Any]) -> Any:
        arrived.set()
        assert await wait_for(gate, 30)
        return JSONResponse(answer)

    with stack(tmp_path, upstream) as s:
        admin = auth(admin_key(s.service))
        got: list[Any] = []
        running = threading.Thread(target=lambda: got.append(s.post()))
        running.start()
        assert arrived.wait(30)
        import httpx

        r = httpx.post(f"{s.url}/v1/admin/tenants/acme/disable", headers=admin, timeout=30)
        assert r.status_code == 200, r.text
        gate.set()
        running.join(60)
        assert got and got[0].status_code == 200 and got[0].json()["choices"][0]["message"]["content"] == "Paris", got
        [row] = final_rows(s.service)
        assert row["action"] == "ok" and row["tenant_id"] == "acme" and row["prompt_tokens"] == 30 and row["cost_micro"] > 0, row
        r = s.post()
        assert r.status_code == 401 and r.json()["error"]["code"] == "tenant_disabled", r.text
        assert len(final_rows(s.service)) == 1 and len(s.calls) == 1

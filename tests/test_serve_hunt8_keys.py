"""Key, tenant and admin lifecycle: admin body fields checked before the database, one tenant per name under
concurrent creation, one pepper for processes starting together, revoking by the whole key, and a usage-page
link that ends with its key."""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from ragtrim.serve.app import create_app
from ragtrim.serve.keys import authenticate, create_tenant, key_id, load_pepper
from ragtrim.serve.service import Service

from quota_fixtures import db_engine, engine, pg_engine, pg_url  # noqa: F401 (fixtures)
from serve_fixtures import PEPPER, admin_key, auth, gateway, gateway_config, tenant_with_key
from test_serve_cli import cli


@contextmanager
def client_on(engine: Any):  # type: ignore[no-untyped-def]
    """A TestClient on a gateway over ``engine`` (one tenant, ``acme``, already there) and an admin key's header."""
    service = Service(gateway_config("http://127.0.0.1:9"), db_url=engine.url.render_as_string(hide_password=False),
                      engine=engine, pepper=PEPPER)
    with TestClient(create_app(service)) as client:
        yield client, auth(admin_key(service))


BAD_FIELDS = [
    ("POST", "/v1/admin/keys", {"tenant": "acme", "label": "a\x00b"}, "label"),
    ("POST", "/v1/admin/keys", {"tenant": "acme", "label": "ops\n3f2a9c1b0d4e  admin  active  fake"}, "label"),
    ("POST", "/v1/admin/keys", {"tenant": "ac\x00me"}, "tenant"),
    ("PUT", "/v1/admin/budgets", {"tenant": "ac\x00me", "unit": "tokens", "limit": 10}, "tenant"),
    ("PUT", "/v1/admin/budgets", {"tenant": "acme", "scope": "user", "scope_value": "al\x00ice", "unit": "tokens", "limit": 10},
     "scope_value"),
    ("PUT", "/v1/admin/budgets", {"tenant": "acme", "scope": "user", "scope_value": "u" * 201, "unit": "tokens", "limit": 10},
     "scope_value"),
]


@pytest.mark.parametrize("method,path,body,param", BAD_FIELDS, ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD_FIELDS)])
def test_admin_body_fields_with_control_characters_or_too_long_are_a_400_naming_the_field(db_engine, method, path, body, param):
    with client_on(db_engine) as (client, admin):
        r = client.request(method, path, json=body, headers=admin)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param, r.text


def test_a_200_character_scope_value_is_still_a_budget(db_engine):
    with client_on(db_engine) as (client, admin):
        body = {"tenant": "acme", "scope": "user", "scope_value": "u" * 200, "unit": "tokens", "limit": 10}
        r = client.put("/v1/admin/budgets", json=body, headers=admin)
    assert r.status_code == 200 and r.json()["scope_value"] == "u" * 200, r.text


def test_concurrent_creation_of_one_tenant_makes_it_once_and_tells_the_rest_it_exists(db_engine):
    for name in ("race-a", "race-b", "race-c"):  # a few rounds: a lost race is a timing matter
        barrier, made, errors = threading.Barrier(8), [], []

        def go() -> None:
            barrier.wait()
            try:
                made.append(create_tenant(db_engine, name))
            except ValueError as exc:
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 (the bug: a database error)
                errors.append(f"unexpected {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=go) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(made) == 1, errors
        assert errors == [f"tenant {name!r} already exists"] * 7, errors


def _race_pepper(folders: list[str], barrier: Any, out: Any) -> None:
    """In a spawned process: for each folder, wait for the other racer, then load the pepper (or the error) into ``out``.

    Both start on the next 10 ms tick: a barrier's wake-up alone is skewed by more than the race's window."""
    for folder in folders:
        barrier.wait()
        tick = math.ceil(time.time() * 100) / 100
        while time.time() < tick:
            pass
        try:
            out.put((folder, load_pepper("RAGTRIM_NO_SUCH_PEPPER_ENV", Path(folder), env={})))
        except Exception as exc:  # noqa: BLE001 (reported to the test)
            out.put((folder, f"{type(exc).__name__}: {exc}"))


def test_two_processes_starting_on_a_fresh_folder_share_one_pepper(tmp_path):
    folders = [str(tmp_path / f"cache{i}") for i in range(30)]
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    racers = [ctx.Process(target=_race_pepper, args=(folders, barrier, out)) for _ in range(2)]
    [p.start() for p in racers]
    got: dict[str, list[Any]] = {}
    for _ in range(2 * len(folders)):
        folder, pepper = out.get(timeout=120)
        got.setdefault(folder, []).append(pepper)
    [p.join(30) for p in racers]
    for folder, (a, b) in got.items():
        assert isinstance(a, bytes) and isinstance(b, bytes), (folder, a, b)
        assert a == b and len(a) >= 16, (folder, a, b)


def test_a_short_pepper_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "serve-pepper").write_bytes(b"abc")
    with pytest.raises(ValueError, match="serve-pepper") as err:
        load_pepper("RAGTRIM_NO_SUCH_PEPPER_ENV", tmp_path, env={})
    assert "16" in str(err.value)


def test_deleting_a_key_by_its_whole_text_revokes_it_and_an_unknown_one_is_not_echoed():
    with gateway("http://127.0.0.1:9") as (client, service):
        key, admin = tenant_with_key(service, "acme"), auth(admin_key(service))
        r = client.delete(f"/v1/admin/keys/{key}", headers=admin)
        assert r.status_code == 200 and r.json()["id"] == key_id(key), r.text
        assert client.get("/v1/usage", headers=auth(key)).status_code == 401
        unknown = "rtk_0123456789ab_" + "s" * 43
        r = client.delete(f"/v1/admin/keys/{unknown}", headers=admin)
        assert r.status_code == 404 and "s" * 43 not in r.text and "0123456789ab" in r.text, r.text


def test_ragtrim_keys_revoke_takes_the_whole_key_and_does_not_echo_an_unknown_ones_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.setenv("RAGTRIM_SERVE_PEPPER", PEPPER.decode())
    db, run, app = f"sqlite:///{tmp_path}/s.sqlite", CliRunner().invoke, cli()
    assert run(app, ["tenants", "create", "acme", "--db", db]).exit_code == 0
    key = run(app, ["keys", "create", "--tenant", "acme", "--db", db]).stdout.strip().splitlines()[0]
    out = run(app, ["keys", "revoke", key, "--db", db])
    assert out.exit_code == 0 and key_id(key) in out.output and key not in out.output, out.output
    from ragtrim.serve.db import make_engine

    assert authenticate(make_engine(db), PEPPER, key) is None
    out = run(app, ["keys", "revoke", "rtk_0123456789ab_" + "s" * 43, "--db", db])
    assert out.exit_code != 0 and "s" * 43 not in out.output and "0123456789ab" in out.output, out.output


def test_a_usage_page_link_ends_when_its_key_is_revoked_but_an_operators_link_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.setenv("RAGTRIM_SERVE_PEPPER", PEPPER.decode())
    db = f"sqlite:///{tmp_path}/s.sqlite"
    with gateway("http://127.0.0.1:9", db_url=db) as (client, service):
        key, admin = tenant_with_key(service, "acme"), admin_key(service)
        links = [client.post("/v1/usage/page-link", headers=auth(k)).json()["url"] for k in (key, admin)]
        assert [client.get(link).status_code for link in links] == [200, 200]
        for k in (key, admin):
            assert client.delete(f"/v1/admin/keys/{key_id(k)}", headers=auth(admin_key(service))).status_code == 200
        assert [client.get(link).status_code for link in links] == [401, 401]
        out = CliRunner().invoke(cli(), ["usage", "--page-link", "http://testserver", "--db", db])
        assert out.exit_code == 0, out.output
        assert client.get(out.stdout.strip().removeprefix("http://testserver")).status_code == 200


@pytest.mark.parametrize("command", [["keys", "revoke", "0123456789ab"], ["budgets", "delete", "nosuchbudget"]])
def test_commands_that_hash_no_key_do_not_need_the_pepper(tmp_path, monkeypatch, command):
    db = f"sqlite:///{tmp_path}/s.sqlite"
    monkeypatch.setenv("RAGTRIM_SERVE_PEPPER", PEPPER.decode())
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    assert CliRunner().invoke(cli(), ["tenants", "create", "acme", "--db", db]).exit_code == 0
    monkeypatch.delenv("RAGTRIM_SERVE_PEPPER")
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path / "file" / "cache"))  # no pepper file can be made here
    out = CliRunner().invoke(cli(), [*command, "--db", db])
    assert "pepper" not in out.output and "no " in out.output, out.output

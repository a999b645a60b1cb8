"""The admin list commands: ``budgets list`` shows the id ``budgets delete`` takes; ``tenants list``, ``keys list`` and
``budgets list`` print JSON with ``--format json`` (as ``usage`` does); ``keys create`` for a disabled tenant warns."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from ragtrim.serve.app import create_app
from ragtrim.serve.keys import set_tenant_disabled
from ragtrim.serve.service import Service

from serve_fixtures import PEPPER, admin_key, gateway_config
from test_serve_cli import cli


@pytest.fixture()
def admin(tmp_path, monkeypatch):
    """``run(*args)``: the admin command line on a fresh SQLite file with tenant ``acme`` and ``other``."""
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.setenv("RAGTRIM_SERVE_PEPPER", PEPPER.decode())
    db, app = f"sqlite:///{tmp_path}/s.sqlite", cli()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(app, [*args, "--db", db])

    for name in ("acme", "other"):
        assert run("tenants", "create", name).exit_code == 0
    return run


def test_budgets_list_shows_the_id_budgets_delete_takes(admin):
    made = admin("budgets", "set", "--tenant", "acme", "--unit", "usd", "--limit", "5").stdout.split()[1].rstrip(":")
    admin("budgets", "set", "--tenant", "acme", "--unit", "tokens", "--limit", "1000", "--user", "bob")
    out = admin("budgets", "list")
    assert out.exit_code == 0, out.output
    head, *rows = out.stdout.strip().splitlines()
    assert head.split() == ["id", "tenant", "scope", "unit/period", "spent", "reserved", "limit"], out.stdout
    ids = [row.split()[0] for row in rows]
    assert made in ids and len(ids) == 2, out.stdout
    bob = next(row.split()[0] for row in rows if "user=bob" in row)
    assert admin("budgets", "delete", bob).exit_code == 0  # the id as listed works
    assert [row.split()[0] for row in admin("budgets", "list").stdout.strip().splitlines()[1:]] == [made]


def test_list_commands_print_json_with_format_json(admin):
    key_line = admin("keys", "create", "--tenant", "acme", "--label", "ci").stdout.strip()
    admin("budgets", "set", "--tenant", "acme", "--unit", "tokens", "--limit", "1000")
    admin("tenants", "disable", "other")

    tenants = json.loads(admin("tenants", "list", "--format", "json").stdout)
    assert [(t["id"], t["name"], t["disabled"]) for t in tenants["data"]] == [("acme", "acme", False), ("other", "other", True)]
    assert all(isinstance(t["created"], float) for t in tenants["data"])

    keys = json.loads(admin("keys", "list", "-f", "json").stdout)
    (k,) = keys["data"]
    assert k["tenant"] == "acme" and k["label"] == "ci" and k["revoked"] is None and not k["admin"]
    assert key_line.startswith(f"rtk_{k['id']}") and key_line not in json.dumps(keys)  # the id, never the key

    budgets = json.loads(admin("budgets", "list", "--tenant", "acme", "--format", "json").stdout)
    (b,) = budgets["data"]
    assert (b["tenant"], b["scope"], b["unit"], b["limit"], b["spent"], b["reserved"]) == ("acme", "tenant", "tokens", 1000, 0, 0)
    assert admin("budgets", "delete", b["id"]).exit_code == 0
    empty = admin("budgets", "list", "--format", "json")
    assert empty.exit_code == 0 and json.loads(empty.stdout) == {"data": []}, empty.output


@pytest.mark.parametrize("command", [["tenants", "list"], ["keys", "list"], ["budgets", "list"], ["usage"]])
def test_an_unknown_format_is_one_line_exit_2(admin, command):
    out = admin(*command, "--format", "xml")
    assert out.exit_code == 2 and out.output.strip() == "error: --format must be table or json, got 'xml'", out.output


def test_keys_create_for_a_disabled_tenant_warns_and_still_makes_the_key(admin):
    admin("tenants", "disable", "acme")
    out = admin("keys", "create", "--tenant", "acme")
    assert out.exit_code == 0, out.output
    assert out.stdout.strip().startswith("rtk_") and len(out.stdout.strip().splitlines()) == 1  # stdout: the key alone
    warning = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "tenant acme is disabled" in warning[0], out.stderr
    assert "refused" in warning[0] and "'ragtrim tenants enable acme'" in warning[0], out.stderr
    assert len(json.loads(admin("keys", "list", "--format", "json").stdout)["data"]) == 1

    fine = admin("keys", "create", "--tenant", "other")
    assert fine.exit_code == 0 and "warning" not in fine.stderr, fine.stderr
    assert "warning" not in admin("keys", "create", "--admin").stderr


def test_admin_api_key_for_a_disabled_tenant_says_so(tmp_path):
    service = Service(gateway_config("http://127.0.0.1:9"), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    with TestClient(create_app(service)) as client:
        headers = {"Authorization": f"Bearer {admin_key(service)}"}
        for name in ("acme", "other"):
            assert client.post("/v1/admin/tenants", json={"name": name}, headers=headers).status_code == 201
        set_tenant_disabled(service.engine, "acme", True)
        off = client.post("/v1/admin/keys", json={"tenant": "acme"}, headers=headers)
        assert off.status_code == 201 and off.json()["tenant_disabled"] is True, off.text
        assert off.json()["key"].startswith("rtk_") and "disabled" in off.json()["note"]
        on = client.post("/v1/admin/keys", json={"tenant": "other"}, headers=headers).json()
        assert on["tenant_disabled"] is False and "disabled" not in on["note"]
        assert client.post("/v1/admin/keys", json={"admin": True}, headers=headers).json()["tenant_disabled"] is False

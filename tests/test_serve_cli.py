"""The service's command line: admin commands against the database, usage reports, errors."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from ragtrim.serve.commands import register
from ragtrim.serve.db import make_engine
from ragtrim.serve.keys import authenticate
from ragtrim.serve.ledger import LedgerEntry
from ragtrim.serve.quota import QuotaStore


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_admin_commands_make_a_working_key_and_budgets(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.delenv("RAGTRIM_SERVE_PEPPER", raising=False)
    db = f"sqlite:///{tmp_path}/s.sqlite"
    run = CliRunner().invoke
    app = cli()
    assert run(app, ["tenants", "create", "acme", "--db", db]).exit_code == 0
    out = run(app, ["keys", "create", "--tenant", "acme", "--db", db])
    assert out.exit_code == 0
    key = out.stdout.strip().splitlines()[0]
    assert key.startswith("rtk_")
    pepper = (tmp_path / "serve-pepper").read_bytes().strip()  # made once, 0600
    assert oct((tmp_path / "serve-pepper").stat().st_mode & 0o777) == "0o600"
    engine = make_engine(db)
    assert authenticate(engine, pepper, key).tenant_id == "acme"
    assert key not in run(app, ["keys", "list", "--db", db]).stdout
    out = run(app, ["budgets", "set", "--tenant", "acme", "--unit", "usd", "--limit", "2.50", "--period", "day", "--db", db])
    assert out.exit_code == 0 and "$2.500000" in out.stdout
    QuotaStore(engine, worker_id="w").record(LedgerEntry(id="r1", ts=1_750_000_000.0, tenant_id="acme", endpoint="chat", action="ok",
                                                         user="ann", cost_micro=1234, saved_micro=99, status=200))
    report = json.loads(run(app, ["usage", "--by", "user", "--format", "json", "--db", db]).stdout)
    assert report["rows"][0]["user"] == "ann" and report["totals"]["cost_micro"] == 1234
    assert report["budgets"][0]["limit"] == 2_500_000
    table = run(app, ["usage", "--by", "day", "--db", db]).stdout
    assert "2025-06-15" in table and "$0.001234" in table
    link = run(app, ["usage", "--tenant", "acme", "--page-link", "http://127.0.0.1:8080", "--db", db]).stdout.strip()
    assert link.startswith("http://127.0.0.1:8080/usage?token=") and key not in link


def test_cli_errors_name_the_value_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    db = f"sqlite:///{tmp_path}/s.sqlite"
    run = CliRunner().invoke
    app = cli()
    cases = [
        (["keys", "create", "--tenant", "nobody", "--db", db], "unknown tenant 'nobody'"),
        (["keys", "create", "--db", db], "pass --tenant NAME or --admin"),
        (["tenants", "create", "bad name!", "--db", db], "tenant name must be"),
        (["budgets", "set", "--tenant", "x", "--unit", "euro", "--limit", "5", "--db", db], "unit must be one of tokens, usd, got 'euro'"),
        (["budgets", "set", "--tenant", "x", "--unit", "usd", "--limit", "5", "--db", db], "unknown tenant 'x'"),
        (["usage", "--by", "colour", "--db", db], "cannot group usage by 'colour'"),
        (["serve", "--config", str(tmp_path / "missing.toml")], "does not exist"),
        (["usage", "--db", "mysql://x"], "supports sqlite:/// and postgresql://"),
    ]
    for args, text in cases:
        out = run(app, args)
        assert out.exit_code == 2 and text in out.output, (args, out.output)


def noted(exc: Exception, note: str) -> Exception:
    exc.add_note(note)
    return exc


def test_cli_errors_carry_the_exceptions_notes(tmp_path, monkeypatch):
    """An error's notes (a pipeline stage names itself in one) are printed after its message, as the rest of the CLI does."""
    import ragtrim.serve.keys as keys

    def create_tenant(engine, name):
        raise noted(ValueError(f"tenant {name!r} is taken"), "in stage 'lookup' (plugin.Lookup)")

    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.setattr(keys, "create_tenant", create_tenant)
    out = CliRunner().invoke(cli(), ["tenants", "create", "acme", "--db", f"sqlite:///{tmp_path}/s.sqlite"])
    assert out.exit_code == 2
    assert "error: tenant 'acme' is taken; in stage 'lookup' (plugin.Lookup)" in out.output, out.output


def test_models_build_errors_carry_the_exceptions_notes(monkeypatch):
    import optimizer.embeddings as embeddings
    from ragtrim.cli import app

    def build_models(only, force=False):
        raise noted(RuntimeError("building the static model failed (exit 1)"), "while building 'static'")

    monkeypatch.setattr(embeddings, "build_models", build_models)
    out = CliRunner().invoke(app, ["models", "build", "--only", "static"])
    assert out.exit_code == 1
    assert "error: building the static model failed (exit 1); while building 'static'" in out.output, out.output

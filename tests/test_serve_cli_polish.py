"""The service's command line, small things: help texts, unusable database paths, ``budgets list``, a missing extra."""

from __future__ import annotations

import sys

import pytest
import typer
from typer.testing import CliRunner

from ragtrim.serve.commands import register


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def flat(text: str) -> str:
    """``--help`` output with rich's boxes and line wraps removed, so a sentence can be searched whole."""
    lines = [line.strip().strip("│").strip() for line in text.splitlines()]
    return " ".join(" ".join(lines).split())


@pytest.mark.parametrize("command", [["serve"], ["usage"], ["tenants", "create"], ["keys", "list"], ["budgets", "set"]])
def test_help_shows_the_config_tables_in_brackets(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERMINAL_WIDTH", "100")
    out = CliRunner().invoke(cli(), [*command, "--help"])
    assert out.exit_code == 0, out.output
    text = flat(out.output)
    assert "[degrade], [upstreams.NAME], [models.NAME], [limits]" in text, text
    assert "\\[" not in text  # the escapes are rich markup, not shown


@pytest.mark.parametrize("args", [["tenants", "create", "acme"], ["keys", "create", "--admin"],
                                  ["budgets", "set", "--tenant", "acme", "--unit", "usd", "--limit", "5"]])
def test_a_database_path_that_cannot_be_created_is_one_line_with_the_fix(args, tmp_path, monkeypatch):
    # a folder under a regular file cannot be made, even by root (chmod would not stop root)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RAGTRIM_CACHE", str(blocker / "sub"))
    monkeypatch.delenv("RAGTRIM_SERVE_PEPPER", raising=False)
    out = CliRunner().invoke(cli(), args)
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1, out.output
    assert f"{blocker}/sub/serve.sqlite" in lines[0]
    assert "--db" in lines[0] and "RAGTRIM_CACHE" in lines[0]


def test_a_sqlite_file_that_cannot_be_opened_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    folder = tmp_path / "serve.sqlite"
    folder.mkdir()  # a folder where the database file should be: "unable to open database file", root too
    out = CliRunner().invoke(cli(), ["tenants", "create", "acme", "--db", f"sqlite:///{folder}"])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "unable to open database file" in lines[0], out.output
    assert str(folder) in lines[0] and "--db" in lines[0] and "RAGTRIM_CACHE" in lines[0]


def test_a_pepper_that_cannot_be_written_is_one_line_with_the_fix(tmp_path, monkeypatch):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    monkeypatch.setenv("RAGTRIM_CACHE", str(blocker))  # the pepper file would go under a file
    monkeypatch.delenv("RAGTRIM_SERVE_PEPPER", raising=False)
    out = CliRunner().invoke(cli(), ["keys", "create", "--admin", "--db", f"sqlite:///{tmp_path}/s.sqlite"])  # hashes a key
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "RAGTRIM_SERVE_PEPPER" in lines[0] and "RAGTRIM_CACHE" in lines[0], out.output


def test_budgets_list_prints_the_budgets_only(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.delenv("RAGTRIM_SERVE_PEPPER", raising=False)
    db = f"sqlite:///{tmp_path}/s.sqlite"
    run, app = CliRunner().invoke, cli()
    assert run(app, ["tenants", "create", "acme", "--db", db]).exit_code == 0
    empty = run(app, ["budgets", "list", "--db", db])
    assert empty.exit_code == 0 and empty.stdout == "", empty.output
    assert run(app, ["budgets", "set", "--tenant", "acme", "--unit", "usd", "--limit", "2.50", "--db", db]).exit_code == 0
    out = run(app, ["budgets", "list", "--db", db])
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["id", "tenant", "scope", "unit/period", "spent", "reserved", "limit"], out.stdout
    assert len(lines) == 2 and lines[1].split()[1:4] == ["acme", "tenant", "usd/month"] and "$2.500000" in lines[1]
    assert "requests" not in out.stdout and "tokens_full" not in out.stdout


@pytest.mark.parametrize(("module", "args"), [
    ("uvicorn", ["serve"]),
    ("fastapi", ["serve"]),
    ("sqlalchemy", ["serve"]),
    ("sqlalchemy", ["tenants", "create", "acme"]),
    ("sqlalchemy", ["usage"]),
    ("sqlalchemy", ["budgets", "list"]),
])
def test_a_missing_serve_extra_is_one_line_naming_the_install(module, args, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    for name in [m for m in sys.modules if m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)  # a cached submodule would still import
    monkeypatch.setitem(sys.modules, module, None)  # importing it, or any of its submodules, fails as if it were not installed
    out = CliRunner().invoke(cli(), args)
    assert out.exit_code == 2, (out.output, out.exception)
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and f"'{module}'" in lines[0] and "pip install 'ragtrim[serve]'" in lines[0], out.output


FRESH = """
import json, sys
sys.modules[sys.argv[1]] = None  # as if it were not installed, before anything imported it
import typer
from typer.testing import CliRunner
from ragtrim.serve.commands import register
app = typer.Typer()
register(app)
out = []
for args in json.loads(sys.argv[2]):
    r = CliRunner().invoke(app, args)
    out.append([args, r.exit_code, r.output])
print(json.dumps(out))
"""

ADMIN = [["usage"], ["usage", "--page-link", "http://127.0.0.1:8080"], ["tenants", "list"], ["keys", "create", "--admin"],
         ["keys", "list"], ["keys", "revoke", "abc"], ["budgets", "list"], ["budgets", "delete", "abc"],
         ["budgets", "set", "--tenant", "acme", "--unit", "usd", "--limit", "5"], ["tenants", "create", "acme"]]


@pytest.mark.parametrize(("module", "failing", "working"), [
    ("sqlalchemy", [["serve"], *ADMIN], []),
    ("fastapi", [["serve"], ["usage", "--page-link", "http://127.0.0.1:8080"], ["budgets", "set", "--tenant", "acme", "--unit", "usd", "--limit", "5"]],
     [["tenants", "create", "acme"], ["tenants", "list"], ["budgets", "list"]]),
])
def test_a_missing_serve_extra_in_a_fresh_process(module, failing, working, tmp_path):
    """Nothing imported yet (the modules that import SQLAlchemy at the top included): each command says one line, or works."""
    import json
    import os
    import subprocess

    env = {**os.environ, "RAGTRIM_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    env.pop("RAGTRIM_SERVE_PEPPER", None)
    run = subprocess.run([sys.executable, "-c", FRESH, module, json.dumps(working + failing)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    for args, code, output in json.loads(run.stdout):
        if args in working:
            assert code == 0, (args, output)
            continue
        lines = output.strip().splitlines()
        assert code == 2 and len(lines) == 1, (args, output)
        assert f"'{module}'" in lines[0] and "pip install 'ragtrim[serve]'" in lines[0], (args, output)


def test_an_unparsable_database_url_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    for args in (["tenants", "create", "acme"], ["tenants", "list"]):
        out = CliRunner().invoke(cli(), [*args, "--db", "sqlite:://x:s3cret@h"])
        assert out.exit_code == 2, out.output
        assert "does not parse" in out.output and "s3cret" not in out.output and len(out.output.strip().splitlines()) == 1

"""Settings ``ragtrim serve`` took at start and then failed every request on are refused at start, one line, exit 2.

``[upstreams.X] max_connections = 0`` held every request the whole upstream ``timeout`` waiting for a pool slot; a
model's (or the top-level) ``tokenizer = "bogus"`` made every chat (or ``/v1/optimize``) request a 400 blaming the
client; ``api_key_env = 5`` was a 500, ``upstream_model = 5`` was sent upstream as ``"model": 5``, an ``ftp://``
``base_url`` a 502; ``template = 5`` a TypeError; ``lease_seconds = inf`` or ``true`` accepted; a port above 65535
a traceback when binding.
"""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import ragtrim.serve.commands as commands
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.service import Service

from serve_fixtures import PEPPER, gateway_config
from test_serve_cli import cli

UP = {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
PRICED = {"upstream": "fake", "input_per_million": 1.0, "output_per_million": 1.0, "price_date": "2026-01-01"}


def config(top: dict[str, Any] | None = None, upstream: dict[str, Any] | None = None,
           model: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config with one upstream ``fake`` and one model ``gpt-4o`` on it, with these settings added."""
    return {"preset": "bm25-pack", **(top or {}), "upstreams": {"fake": {**UP, **(upstream or {})}},
            "models": {"gpt-4o": {"upstream": "fake", **(model or {})}}}


BAD = [
    # (where, setting, value, words the error must carry)
    ("upstream", "max_connections", 0, "upstream 'fake': max_connections must be a whole number >= 1"),
    ("upstream", "max_connections", -1, "max_connections must be a whole number >= 1"),
    ("upstream", "max_connections", True, "max_connections must be a whole number >= 1"),
    ("upstream", "max_connections", 2.5, "max_connections must be a whole number >= 1"),
    ("upstream", "api_key_env", 5, "upstream 'fake': api_key_env must be the name of the environment variable"),
    ("upstream", "base_url", "ftp://127.0.0.1/v1", "upstream 'fake': base_url must be an http:// or https:// URL"),
    ("upstream", "base_url", "127.0.0.1:8000/v1", "base_url must be an http:// or https:// URL"),
    ("upstream", "base_url", 5, "base_url must be an http:// or https:// URL"),
    ("model", "upstream_model", 5, "model 'gpt-4o': upstream_model must be"),
    ("model", "tokenizer", 5, "model 'gpt-4o': tokenizer must be"),
    ("model", "upstream", ["fake"], "model 'gpt-4o': upstream must be"),
    ("model", "price", 5, "model 'gpt-4o': price must be"),
    ("model", "price_date", 20261201, "model 'gpt-4o': price_date must be"),
    ("top", "tokenizer", 5, "tokenizer must be"),
    ("top", "template", 5, "template must be a string"),
    ("top", "lease_seconds", float("inf"), "lease_seconds must be a finite number of seconds from 1 to 86400"),
    ("top", "lease_seconds", float("nan"), "lease_seconds must be a finite number"),
    ("top", "lease_seconds", True, "lease_seconds must be a finite number"),
    ("top", "lease_seconds", 10**9, "lease_seconds must be a finite number"),
    ("top", "port", 70000, "port must be a whole number from 0 to 65535"),
    ("top", "port", -1, "port must be a whole number from 0 to 65535"),
    ("top", "host", 5, "host must be"),
    ("top", "preset", 5, "preset must be"),
    ("top", "db", 5, "db must be"),
    ("top", "prices", 5, "prices must be"),
    ("top", "pepper_env", 5, "pepper_env must"),
]


@pytest.mark.parametrize(("where", "setting", "value", "words"), BAD, ids=[f"{b[1]}={b[2]!r}" for b in BAD])
def test_a_setting_no_request_could_use_is_refused_when_read(where, setting, value, words):
    data = config(**{where: {setting: value}})
    with pytest.raises(ValueError) as err:
        ServeConfig.from_dict(data)
    message = str(err.value)
    assert words in message, message
    assert repr(value) in message, message  # the value given, named


@pytest.mark.parametrize("value", [1, 1000])
def test_max_connections_of_one_or_more_is_fine(value):
    assert ServeConfig.from_dict(config(upstream={"max_connections": value})).upstreams["fake"].max_connections == value


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "4MiB"])
def test_embeddings_body_bytes_is_a_positive_integer(value):
    with pytest.raises(ValueError) as err:
        ServeConfig.from_dict(config({"limits": {"embeddings_body_bytes": value}}))
    assert f"limits.embeddings_body_bytes must be a positive integer, got {value!r}" in str(err.value)


def test_embeddings_body_bytes_is_4_mib_unless_set():
    assert ServeConfig.from_dict(config()).limits.embeddings_body_bytes == 4 * 2**20
    assert ServeConfig.from_dict(config({"limits": {"embeddings_body_bytes": 10**7}})).limits.embeddings_body_bytes == 10**7


@pytest.mark.parametrize("text", ['[upstreams]\nfake = 5\n', 'upstreams = 5\n', '[models]\n"gpt-4o" = "fake"\n', 'models = 5\n'])
def test_a_section_that_is_not_a_table_is_an_error_not_a_traceback(tmp_path, text):
    path = tmp_path / "serve.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="must be a table"):
        ServeConfig.load(path)


@pytest.mark.parametrize("tokenizer", ["o200k_base", "gpt-4o", "cl100k_base"])
def test_a_tokenizer_that_resolves_offline_starts(tokenizer):
    cfg = gateway_config("http://127.0.0.1:9", tokenizer=tokenizer,
                         extra_models={"o4-mini": {**PRICED, "tokenizer": tokenizer}})
    Service(cfg, db_url="sqlite://", pepper=PEPPER).engine.dispose()


@pytest.mark.parametrize(("overrides", "words"), [
    ({"extra_models": {"llama": {**PRICED, "tokenizer": "bogus"}}}, "model 'llama': tokenizer = 'bogus' cannot be used"),
    ({"tokenizer": "bogus"}, "tokenizer = 'bogus' cannot be used"),
    ({"extra_models": {"llama": {**PRICED, "tokenizer": "hf:/nowhere/tokenizer.json"}}},
     "model 'llama': tokenizer = 'hf:/nowhere/tokenizer.json' cannot be used"),
])
def test_a_tokenizer_that_cannot_be_resolved_stops_the_service_at_start(overrides, words):
    cfg = gateway_config("http://127.0.0.1:9", **overrides)  # the file itself reads: a name is only known by resolving it
    with pytest.raises(ValueError) as err:
        Service(cfg, db_url="sqlite://", pepper=PEPPER)
    message = str(err.value)
    assert words in message and "\n" not in message, message
    assert "hf:/path/to/tokenizer.json" in message or "tokenizer.json" in message, message  # the way to fix it


def serve(tmp_path, monkeypatch, text: str, *args: str) -> Any:
    """``ragtrim serve`` on a config of ``text``; uvicorn never runs (a run is recorded and fails the test)."""
    ran = []

    class FakeUvicorn:
        @staticmethod
        def run(*a: Any, **k: Any) -> None:
            ran.append(k)

    monkeypatch.setenv("RAGTRIM_CACHE", str(tmp_path))
    monkeypatch.setenv("RAGTRIM_SERVE_PEPPER", PEPPER.decode())
    monkeypatch.setattr(commands, "_need", lambda *m, **k: [FakeUvicorn])
    path = tmp_path / "serve.toml"
    path.write_text('preset = "bm25-pack"\n' + text, encoding="utf-8")
    out = CliRunner().invoke(cli(), ["serve", "--config", str(path), "--db", f"sqlite:///{tmp_path}/s.sqlite", *args])
    assert not ran, out.output
    return out


GOOD = '[upstreams.fake]\nkind = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n[models."gpt-4o"]\nupstream = "fake"\n'


@pytest.mark.parametrize(("text", "words"), [
    (GOOD.replace('upstream = "fake"', 'upstream = "fake"\ntokenizer = "bogus"'), "model 'gpt-4o': tokenizer = 'bogus' cannot be used"),
    ('tokenizer = "bogus"\n' + GOOD, "tokenizer = 'bogus' cannot be used"),
    (GOOD.replace('kind = "openai"', 'kind = "openai"\nmax_connections = 0'), "max_connections must be a whole number >= 1"),
    ('port = 70000\n' + GOOD, "port must be a whole number from 0 to 65535 (0: any free port), got 70000"),
    ('lease_seconds = inf\n' + GOOD, "lease_seconds must be a finite number of seconds from 1 to 86400"),
    (GOOD.replace("http://", "ftp://"), "upstream 'fake': base_url must be an http:// or https:// URL"),
])
def test_serve_refuses_such_a_config_in_one_line_exit_2(tmp_path, monkeypatch, text, words):
    out = serve(tmp_path, monkeypatch, text)
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1, out.output
    assert lines[0].startswith("error: ") and words in lines[0], out.output


def test_serve_port_option_outside_the_range_is_a_usage_error(tmp_path, monkeypatch):
    out = serve(tmp_path, monkeypatch, GOOD, "--port", "70000")
    assert out.exit_code == 2 and "--port" in out.output and "65535" in out.output, out.output
    assert "Traceback" not in out.output


def test_configs_that_worked_before_the_checks_still_load():
    # found by the review of the checks: a keyless upstream (api_key_env = ""), an unquoted TOML date and an
    # empty upstream_model (the model's own name is sent) were valid and must stay so
    import tomllib

    from ragtrim.serve.config import ServeConfig

    text = """
[upstreams.vllm]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
api_key_env = ""

[models.m]
upstream = "vllm"
upstream_model = ""
tokenizer = "cl100k_base"
price_date = 2026-01-15
"""
    cfg = ServeConfig.from_dict(tomllib.loads(text))
    assert cfg.models["m"].price_date == "2026-01-15"
    assert cfg.upstreams["vllm"].api_key_env == ""

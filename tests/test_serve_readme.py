"""The README's "Run it as a service" examples work: its serve.toml parses, and its OpenAI
client example runs against a live gateway (fake upstream on loopback)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ragtrim.serve.app import create_app
from ragtrim.serve.config import ServeConfig
from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.service import Service
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import DOCS, PEPPER, gateway_config, tenant_with_key

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
SECTION = README.split("## Run it as a service", 1)[1].split("\n## ", 1)[0]


def test_readme_serve_toml_is_a_valid_config():
    [toml] = re.findall(r"```toml\n(.*?)```", SECTION, flags=re.S)
    cfg = ServeConfig.from_dict(tomllib.loads(toml))
    assert cfg.model("gpt-4o").cheaper == "gpt-4o-mini" and cfg.upstreams["openai"].api_key_env == "OPENAI_API_KEY"


def test_readme_openai_client_example_runs(tmp_path):
    pytest.importorskip("openai")
    [block] = re.findall(r"```py\n(.*?)```", SECTION, flags=re.S)
    with serve_in_thread(create_fake_upstream(latency_ms=1, answer_tokens=8)) as up:
        service = Service(gateway_config(up), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
        with serve_in_thread(create_app(service)) as base:
            key = tenant_with_key(service, "acme")
            code = block.replace("http://127.0.0.1:8080", base).replace('"rtk_..."', repr(key))
            scope = {"chunks": DOCS}
            exec(compile(code, "README.md (service example)", "exec"), scope)
    reply = scope["reply"]
    assert reply.choices[0].message.content and reply.usage.completion_tokens == 8
    extra = reply.model_extra["ragtrim"]
    assert extra["tokens_sent"] <= extra["tokens_full"] * 0.25 and extra["cost_micro"] > 0

"""The embedded default upstream: the packaged Gemma-3-270M in-process (slow: loads the model)."""

from __future__ import annotations

import pytest

from ragtrim.serve.config import ServeConfig
from ragtrim.serve.schema import ledger

pytestmark = [pytest.mark.slow, pytest.mark.reader]


def test_default_config_answers_with_the_local_model(tmp_path):
    pytest.importorskip("llama_cpp")
    from evals.readers.local import LocalReader

    if not callable(getattr(LocalReader, "complete", None)):
        pytest.skip("this LocalReader runs llama.cpp in-process (it can crash on AMX CPUs); the gateway needs complete()")
    from starlette.testclient import TestClient

    from ragtrim.serve.app import create_app
    from ragtrim.serve.budgets import set_budget
    from ragtrim.serve.service import Service

    from serve_fixtures import DOCS, PEPPER, tenant_with_key

    service = Service(ServeConfig.from_dict({"preset": "bm25-pack"}), db_url=f"sqlite:///{tmp_path}/s.sqlite", pepper=PEPPER)
    with TestClient(create_app(service)) as client:
        key = tenant_with_key(service, "acme")
        set_budget(service.engine, tenant_id="acme", unit="tokens", period="day", limit=100_000)
        r = client.post("/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                        json={"messages": [{"role": "user", "content": "What is the capital of France?"}],
                              "documents": DOCS, "budget": 80, "max_tokens": 16})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["model"] == "gemma-3-270m" and out["choices"][0]["message"]["content"]
        assert 0 < out["usage"]["completion_tokens"] <= 16
        with service.engine.connect() as c:
            row = c.execute(ledger.select()).first()
        assert row.usage_source == "upstream" and row.prompt_tokens == out["usage"]["prompt_tokens"] and row.cost_micro == 0
        st = client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()["budgets"][0]
        assert st["spent"] == row.prompt_tokens + row.completion_tokens and st["reserved"] == 0
